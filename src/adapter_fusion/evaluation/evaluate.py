"""Score a saved adapter directory on a task split."""

from __future__ import annotations

from pathlib import Path

import torch

from adapter_fusion.bank import resolve_artefact
from adapter_fusion.fusion.saving import is_fusion_directory, open_fusion
from adapter_fusion.heads import HEADS, build_head
from adapter_fusion.inference import FusionPipeline
from adapter_fusion.models import AdapterModel, load_tokenizer
from adapter_fusion.models.loading import resolve_model_name
from adapter_fusion.models.saving import open_adapter
from adapter_fusion.tasks import get_task, get_task_type, load_task_split
from adapter_fusion.training.adapter_trainer import evaluate_model


def evaluate_adapter(
    directory: str | Path,
    task: str | None = None,
    split: str = "validation",
    data_dir: str | Path | None = None,
    model: str | None = None,
    max_examples: int | None = None,
    seed: int = 42,
    head_task: str | None = None,
    *,
    allow_modified: bool = False,
    allow_other_base: bool = False,
) -> dict[str, float]:
    """Metrics of the adapter or fusion (and head) saved in ``directory`` on ``task``'s ``split``.

    ``head_task``: score with the saved head of this task instead of ``task``'s own (transfer: an adapter trained
    on one task scored on another of the same type and labels, e.g. an XQuAD adapter on COVID-QA).
    ``model`` other than the recorded base model: refused unless ``allow_other_base``; files that differ from the
    manifest: refused unless ``allow_modified`` (see ``FusionPipeline.from_pretrained``)."""
    directory = resolve_artefact(directory)
    opener = open_fusion if is_fusion_directory(directory) else open_adapter
    opened = opener(directory, allow_modified=allow_modified)  # checked once: the pipeline loads what was checked
    info = opened[0]
    task_name = task or info.get("metadata", {}).get("task")
    if not task_name:
        raise ValueError(f"adapter at {directory} records no task; pass task=")
    spec = get_task(task_name)
    pipeline = FusionPipeline.from_pretrained(
        directory, model=model, allow_modified=allow_modified, allow_other_base=allow_other_base, opened=opened
    )
    head = pipeline.head_for(head_task or spec.name)
    config = pipeline.model.head_config(head)
    wanted = HEADS.canonical_name(get_task_type(spec.task_type).head_type)
    labels_differ = bool(config.label_names) and tuple(config.label_names) != tuple(spec.label_names)
    if HEADS.canonical_name(config.head_type) != wanted or labels_differ:
        raise ValueError(
            f"head {head!r} ({config.head_type}, labels {list(config.label_names)}) cannot score task {spec.name!r} "
            f"({wanted}, labels {list(spec.label_names)}): the head type and labels must match"
        )
    # NaN logits still give an argmax, hence a score that looks real: broken weights are an error, not a metric
    broken = next((name for name, p in pipeline.model.named_parameters() if not torch.isfinite(p).all()), None)
    if broken is not None:
        raise ValueError(
            f"{directory}: weight {broken} holds NaN or inf values, so any score would be meaningless; retrain or "
            "reload the adapter"
        )
    dataset = load_task_split(spec, split, data_dir, max_examples=max_examples, seed=seed)
    metrics = evaluate_model(pipeline.model, pipeline.tokenizer, spec, dataset, pipeline.max_length, head=head)
    return {"task": spec.name, "split": split, "examples": len(dataset), **metrics}


def evaluate_base(
    task: str,
    split: str = "validation",
    data_dir: str | Path | None = None,
    model: str | None = None,
    max_examples: int | None = None,
    seed: int = 42,
    max_length: int = 128,
) -> dict[str, float]:
    """Zero-shot metrics of the bare base model (no adapter) on ``task``'s ``split``: the baseline an adapter or a
    fusion must beat. Only for task types whose head needs no training (generation: the base model's own LM head);
    a classification head would be random."""
    spec = get_task(task)
    task_type = get_task_type(spec)
    head_config = task_type.head_config(spec)
    if list(build_head(head_config, hidden_size=8).parameters()):
        raise ValueError(
            f"task {spec.name!r} ({spec.task_type}) has a {head_config.head_type!r} head that must be trained; "
            "a zero-shot base model is only defined for task types whose head has no weights (generation)"
        )
    name = resolve_model_name(model or task_type.default_model)
    base = AdapterModel.from_pretrained(name, causal_lm=task_type.causal_lm)
    base.add_head(spec.name, head_config)
    dataset = load_task_split(spec, split, data_dir, max_examples=max_examples, seed=seed)
    metrics = evaluate_model(base, load_tokenizer(name), spec, dataset, max_length, head=spec.name)
    return {"task": spec.name, "split": split, "examples": len(dataset), "model": name, **metrics}
