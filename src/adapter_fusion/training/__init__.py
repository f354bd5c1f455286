"""Training: one path (``transformers.Trainer``) for adapters, fusions and multi-task runs.

``from adapter_fusion.training import AdapterTrainer, FusionTrainer, MultiTaskTrainer`` (loaded on first use, so
that importing a submodule such as ``training.config`` stays light)."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AdapterTrainer": "adapter_fusion.training.adapter_trainer",
    "FusionTrainer": "adapter_fusion.training.fusion_trainer",
    "MultiTaskFusionTrainer": "adapter_fusion.training.multitask_fusion",
    "MultiTaskTrainer": "adapter_fusion.training.multi_task_trainer",
    "ModelConfig": "adapter_fusion.training.config",
    "TrainingConfig": "adapter_fusion.training.config",
    "train_adapter_router": "adapter_fusion.training.routing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'adapter_fusion.training' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
