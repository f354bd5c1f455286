"""What every fusion training run sets up, one task or many: the fusion's temperature schedule and a head started
from a source adapter's trained head (``FusionTrainer`` and ``MultiTaskFusionTrainer`` both build on it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
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


def init_head_from_source(
    model: FusionModel, head: str, path: str | Path, label_map: Mapping[str, Sequence[str]] | None = None
) -> dict[str, tuple[str, ...]]:
    """Start classification ``head`` from the saved head of the adapter at ``path``, trained on another task whose
    labels carry over: the hidden layer is copied, and each target label's output row (weight and bias) is the mean
    of the rows of the source labels ``label_map`` gives it (default: the source label of the same name). Lets a
    few-shot target start from, say, the IMDB head (negative/positive) or the MNLI head (``not_entailment`` from
    ``neutral`` and ``contradiction``). Returns the map used."""
    directory = Path(path)
    if not (directory / HEAD_CONFIG).is_file():
        raise ValueError(f"{directory} holds no saved head ({HEAD_CONFIG}); a head can start only from a saved one")
    saved, target = HeadConfig.load(directory / HEAD_CONFIG), model.head_config(head)
    if target.head_type != "classification" or target.problem_type != "single_label_classification":
        raise ValueError(
            f"head {head!r} is a {target.head_type} head ({target.problem_type}): only a single-label "
            "classification head can start from another task's head"
        )
    for field in ("head_type", "pooling", "problem_type"):
        if getattr(saved, field) != getattr(target, field):
            raise ValueError(
                f"the head at {directory} has {field} {getattr(saved, field)!r}, head {head!r} has "
                f"{getattr(target, field)!r}: only classification heads of the same pooling carry over"
            )
    wanted = {name: (name,) for name in target.label_names} if label_map is None else {
        name: tuple(sources) for name, sources in label_map.items()}  # fmt: skip
    unknown = sorted({s for sources in wanted.values() for s in sources} - set(saved.label_names))
    if sorted(wanted) != sorted(target.label_names) or unknown or not all(wanted.values()):
        raise ValueError(
            f"label map {dict(wanted)} does not fit: it must give each of head {head!r}'s labels "
            f"{list(target.label_names)} one or more of the source's labels {list(saved.label_names)}"
            + (f" (unknown: {unknown})" if unknown else "")
        )
    weights = load_tensors(directory / HEAD_WEIGHTS)
    rows = [[saved.label_names.index(s) for s in wanted[name]] for name in target.label_names]
    weights["out.weight"] = torch.stack([weights["out.weight"][r].mean(0) for r in rows])
    weights["out.bias"] = torch.stack([weights["out.bias"][r].mean(0) for r in rows])
    load_exact(model.heads[head], weights, str(directory))
    return {name: wanted[name] for name in target.label_names}
