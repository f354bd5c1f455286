"""Collect a fusion's weights over adapters on a task split: per fused point, per class, per token.

The weights come from the forward pass itself (``model(..., return_fusion_weights=True)``: per fused point
``[batch, seq, n_adapters]``, ``[batch, seq, heads, n_adapters]`` for multi-head attention, heads averaged here),
so what is analysed is exactly what the trained model computes. Padding is masked out with the attention mask;
every real token counts once. Sums are accumulated batch by batch, so a large dev set costs no memory beyond the
few per-example views kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from adapter_fusion.models.points import LOCATIONS
from adapter_fusion.tasks import TaskSpec, get_task_type
from adapter_fusion.tasks.types import feature_batches

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from adapter_fusion.models.model import AdapterModel


@dataclass
class WeightSample:
    """One example's per-token weights: ``weights[token, point, adapter]`` for its real (unpadded) tokens."""

    index: int
    label: str | None
    tokens: list[str]
    weights: np.ndarray


@dataclass
class FusionWeightSummary:
    """What ``collect_fusion_weights`` measured.

    ``mean[point, adapter]``: mean weight over real tokens; ``entropy[point]``: mean per-token entropy (nats) of
    the weights normalised to sum 1 (its maximum is ``log n_adapters``: uniform weights); ``class_mean[label]``:
    ``mean`` over the tokens of the examples (or, for tagging, the tokens) whose gold label is ``label``."""

    adapter_names: tuple[str, ...]
    points: tuple[str, ...]
    mean: np.ndarray
    entropy: np.ndarray
    examples: int
    tokens: int
    class_mean: dict[str, np.ndarray] = field(default_factory=dict)
    class_tokens: dict[str, int] = field(default_factory=dict)
    samples: list[WeightSample] = field(default_factory=list)

    @property
    def max_entropy(self) -> float:
        return float(np.log(len(self.adapter_names)))

    def dominant(self) -> list[tuple[str, str, float]]:
        """Per point: ``(point, adapter with the largest mean weight, that weight)``."""
        return [
            (point, self.adapter_names[int(row.argmax())], float(row.max()))
            for point, row in zip(self.points, self.mean)
        ]

    def to_dict(self) -> dict[str, Any]:
        """The numbers as plain JSON (no per-example views)."""
        return {
            "adapters": list(self.adapter_names),
            "points": list(self.points),
            "examples": self.examples,
            "tokens": self.tokens,
            "mean": self.mean.round(6).tolist(),
            "entropy": self.entropy.round(6).tolist(),
            "max_entropy": round(self.max_entropy, 6),
            "class_mean": {label: value.round(6).tolist() for label, value in self.class_mean.items()},
            "class_tokens": self.class_tokens,
        }


def point_order(key: str) -> tuple[int, int, str]:
    """Sort key of a point key ``"3_ffn"``: by layer number (not as text: ``10`` after ``9``), then location."""
    layer, _, location = key.partition("_")
    rank = LOCATIONS.index(location) if location in LOCATIONS else len(LOCATIONS)
    return (int(layer) if layer.isdigit() else -1, rank, key)


@torch.no_grad()
def collect_fusion_weights(
    model: AdapterModel,
    tokenizer: PreTrainedTokenizerBase,
    spec: TaskSpec,
    dataset: Any,
    head: str | None = None,
    max_length: int = 128,
    batch_size: int = 32,
    keep_examples: int = 3,
) -> FusionWeightSummary:
    """Run ``model`` (a ``FusionModel`` with a fusion) over ``dataset`` (``spec``'s schema) and summarise its
    fusion weights. ``keep_examples``: how many per-example views to keep (one per class in turn, from the
    first rows)."""
    fuse = model.fusion if hasattr(model, "fusion") else None
    if fuse is None:
        raise ValueError("collect_fusion_weights needs a FusionModel with a fusion (FusionModel.load_fusion(DIR))")
    if keep_examples < 0:
        raise ValueError(f"keep_examples must be >= 0; got {keep_examples}")
    task_type = get_task_type(spec)
    task_type.check_dataset(dataset)
    features = task_type.preprocess(spec, dataset, tokenizer, max_length)
    collate = task_type.collator(spec, tokenizer)
    labels_known = bool(spec.label_names) and task_type.name != "regression"
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    points: list[str] | None = None
    sums = entropy = None
    class_sums: dict[int, torch.Tensor] = {}
    class_counts: dict[int, int] = {}
    tokens = rows = 0
    pool: list[WeightSample] = []
    try:
        for start, batch, labels in feature_batches(features, collate, batch_size, device):
            output = model(**batch, head=head, return_fusion_weights=True)
            recorded = output.fusion_weights or {}
            if points is None:
                points = sorted(recorded, key=point_order)
                if not points:
                    raise ValueError(f"fusion {fuse.name!r} returned no weights: it fuses at no point")
                sums = torch.zeros(len(points), len(fuse.adapter_names), dtype=torch.float64)
                entropy = torch.zeros(len(points), dtype=torch.float64)
            weights = torch.stack([_per_token(recorded[key]) for key in points], dim=2).cpu()  # [rows, seq, P, N]
            mask = _mask(batch.get("attention_mask"), weights.shape[:2])
            sums += (weights * mask[..., None, None]).sum((0, 1)).double()
            normalised = weights / weights.sum(-1, keepdim=True).clamp_min(1e-12)
            token_entropy = -(normalised * normalised.clamp_min(1e-12).log()).sum(-1)  # [rows, seq, P]
            entropy += (token_entropy * mask[..., None]).sum((0, 1)).double()
            tokens += int(mask.sum())
            rows += weights.shape[0]
            classes = _token_classes(labels, weights.shape[:2], len(spec.label_names)) if labels_known else None
            if classes is not None:
                for label in classes.unique().tolist():
                    if label < 0:
                        continue
                    selected = mask * (classes == label)
                    class_sums[label] = class_sums.get(label, 0) + (weights * selected[..., None, None]).sum((0, 1))
                    class_counts[label] = class_counts.get(label, 0) + int(selected.sum())
            if len(pool) < 8 * keep_examples:
                example_labels = isinstance(labels, torch.Tensor) and labels.dim() == 1
                limit = 8 * keep_examples - len(pool)
                pool += _samples(batch, weights, mask, classes, example_labels, tokenizer, spec, start, limit)
    finally:
        model.train(was_training)
    assert points is not None and sums is not None and entropy is not None
    count = max(tokens, 1)
    return FusionWeightSummary(
        adapter_names=tuple(fuse.adapter_names),
        points=tuple(points),
        mean=(sums / count).numpy(),
        entropy=(entropy / count).numpy(),
        examples=len(dataset),
        tokens=tokens,
        class_mean={
            spec.label_names[label]: (class_sums[label].double() / max(class_counts[label], 1)).numpy()
            for label in sorted(class_sums)
            if class_counts[label]
        },
        class_tokens={spec.label_names[label]: class_counts[label] for label in sorted(class_counts)},
        samples=_pick(pool, keep_examples),
    )


def _per_token(weights: torch.Tensor) -> torch.Tensor:
    """``[..., seq, N]`` or ``[..., seq, heads, N]`` -> ``[rows, seq, N]`` (heads averaged), float."""
    weights = weights.detach().float()
    if weights.dim() == 4:
        weights = weights.mean(2)
    return weights.reshape(-1, weights.shape[-2], weights.shape[-1])


def _mask(attention_mask: torch.Tensor | None, shape: torch.Size) -> torch.Tensor:
    """The attention mask as ``[rows, seq]`` floats (multiple choice: one row per option); all ones without one."""
    if attention_mask is None or attention_mask.numel() != shape[0] * shape[1]:
        return torch.ones(shape)
    return attention_mask.reshape(shape).float().cpu()


def _token_classes(labels: Any, shape: torch.Size, num_labels: int) -> torch.Tensor | None:
    """Gold class per token ``[rows, seq]`` (-1: none): an example's label for all its tokens, or a tagging
    label per token; None when the labels are not class indices of the rows (regression, QA, multiple choice)."""
    if not isinstance(labels, torch.Tensor) or labels.dtype.is_floating_point:
        return None
    labels = labels.cpu().long()
    if labels.dim() == 1 and labels.shape[0] == shape[0]:
        classes = labels[:, None].expand(shape)
    elif tuple(labels.shape) == tuple(shape):
        classes = labels
    else:
        return None
    return torch.where((classes >= 0) & (classes < num_labels), classes, torch.full_like(classes, -1))


def _samples(
    batch: dict[str, Any],
    weights: torch.Tensor,
    mask: torch.Tensor,
    classes: torch.Tensor | None,
    example_labels: bool,
    tokenizer: PreTrainedTokenizerBase,
    spec: TaskSpec,
    start: int,
    limit: int,
) -> list[WeightSample]:
    input_ids = batch.get("input_ids")
    if input_ids is None:
        return []
    ids = input_ids.reshape(weights.shape[0], -1).cpu()
    samples = []
    for row in range(min(limit, weights.shape[0])):
        keep = mask[row].bool()
        label = None
        if classes is not None and example_labels and int(classes[row, 0]) >= 0:
            label = spec.label_names[int(classes[row, 0])]
        samples.append(
            WeightSample(
                index=start + row,
                label=label,
                tokens=list(tokenizer.convert_ids_to_tokens(ids[row][keep].tolist())),
                weights=weights[row][keep].numpy(),
            )
        )
    return samples


def _pick(pool: list[WeightSample], count: int) -> list[WeightSample]:
    """``count`` samples from the pool, taking each class in turn so every class is seen."""
    by_label: dict[str | None, list[WeightSample]] = {}
    for sample in pool:
        by_label.setdefault(sample.label, []).append(sample)
    picked: list[WeightSample] = []
    while len(picked) < count and any(by_label.values()):
        for queue in by_label.values():
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
    return sorted(picked, key=lambda sample: sample.index)
