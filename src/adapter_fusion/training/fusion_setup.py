"""What every fusion training run sets up, one task or many: the fusion's temperature schedule and a head started
from a source adapter's trained head (``FusionTrainer`` and ``MultiTaskFusionTrainer`` both build on it)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import transformers

from adapter_fusion.fusion import FusionConfig
from adapter_fusion.heads import HeadConfig
from adapter_fusion.io import load_tensors
from adapter_fusion.models import read_adapter_config
from adapter_fusion.models.fusion_model import FusionModel
from adapter_fusion.models.install import load_exact
from adapter_fusion.models.saving import HEAD_CONFIG, HEAD_WEIGHTS


class TemperatureScheduleCallback(transformers.TrainerCallback):
    """Lower the fusion's softmax temperature each step as ``FusionConfig.temperature_at(step)`` says."""

    def __init__(self, model: FusionModel, config: FusionConfig) -> None:
        self.model = model
        self.config = config

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        fuse = self.model.fusion
        if fuse is not None:
            fuse.set_temperature(self.config.temperature_at(state.global_step))


def init_head_from_adapters(model: FusionModel, head: str, task: str, paths: Sequence[str | Path]) -> str | None:
    """Load into ``head`` the saved head of the first adapter in ``paths`` trained on ``task`` with the same labels
    (and pooling, casing); returns its directory, or None when none matches."""
    target = model.head_config(head)
    for path in paths:
        directory = Path(path)
        info = read_adapter_config(directory)
        if info.get("metadata", {}).get("task") != task or not (directory / HEAD_CONFIG).is_file():
            continue
        saved = HeadConfig.load(directory / HEAD_CONFIG)
        shape = ("num_labels", "label_names", "pooling", "casing_dim")
        if all(getattr(saved, field) == getattr(target, field) for field in shape):
            load_exact(model.heads[head], load_tensors(directory / HEAD_WEIGHTS), str(directory))
            return str(directory)
    return None
