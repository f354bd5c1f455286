"""``FusionPipeline``: load a saved adapter (or fusion) directory and predict on raw text.

pipe = FusionPipeline.from_pretrained("adapters/sst2")
pipe.predict("a gorgeous, witty film", task="sentiment")  # {"label": "positive", "score": 0.97, ...}
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from adapter_fusion.models import AdapterModel, load_adapter, load_tokenizer, read_adapter_config
from adapter_fusion.models.loading import resolve_model_name
from adapter_fusion.models.saving import base_model_arguments
from adapter_fusion.tasks import task_type_for_head


def _base_model_for(recorded: str | None, override: str | None) -> str:
    return resolve_model_name(override or recorded)


class FusionPipeline:
    """Text in, labels and scores out, for every task head the loaded directory holds."""

    def __init__(self, model: AdapterModel, tokenizer: Any, max_length: int = 128) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length

    @classmethod
    def from_pretrained(cls, directory: str | Path, model: str | None = None, max_length: int = 128) -> FusionPipeline:
        """Load a fusion directory (``FusionModel.save_fusion``) or an adapter directory (``save_adapter``)."""
        from adapter_fusion.bank import resolve_artefact
        from adapter_fusion.fusion.saving import is_fusion_directory, load_fusion, read_fusion_config

        directory = resolve_artefact(directory)
        if is_fusion_directory(directory):
            info = read_fusion_config(directory)
            fusion_model = load_fusion(directory, model=model)
            recorded = info.get("metadata", {}).get("model_config", {}).get("max_seq_length")
            return cls(fusion_model, load_tokenizer(fusion_model.name_or_path), max_length=recorded or max_length)
        info = read_adapter_config(directory)
        base_name = _base_model_for(info.get("base_model"), model)
        adapter_model = AdapterModel.from_pretrained(base_name, **base_model_arguments(info))
        load_adapter(adapter_model, directory)
        recorded = info.get("metadata", {}).get("model_config", {}).get("max_seq_length")
        return cls(adapter_model, load_tokenizer(base_name), max_length=recorded or max_length)

    @property
    def tasks(self) -> dict[str, str]:
        """Map of task name -> head name for every head."""
        return {(self.model.head_config(name).task or name): name for name in self.model.heads}

    def _head_for(self, task: str | None) -> str:
        if task is None:
            if len(self.model.heads) != 1:
                raise ValueError(f"this pipeline holds several heads; pass task= one of {sorted(self.tasks)}")
            return next(iter(self.model.heads))
        if task in self.model.heads:
            return task
        from adapter_fusion.tasks import get_task

        tasks = self.tasks
        try:
            canonical = get_task(task).name
        except KeyError:
            canonical = task
        if canonical in tasks:
            return tasks[canonical]
        raise KeyError(f"no head for task {task!r}; this pipeline has tasks {sorted(tasks)}")

    def predict(
        self,
        inputs: Any,
        task: str | None = None,
        text_pairs: str | list[str] | None = None,
        batch_size: int = 32,
        **options: Any,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Predict for one input (returns a dict) or a list of inputs (returns a list of dicts).

        What an input is depends on the task's type (``adapter_fusion.tasks.types``): a text for classification
        (``text_pairs``: second sentences) and generation (the prompt/source); a text or a list of words for
        token classification (tags per word); ``{"question", "context"}`` for extractive QA (answer span with
        character offsets); ``{"context", "question", "options"}`` for multiple choice (the chosen option).
        ``options`` go to the task type (e.g. ``max_new_tokens`` for generation).
        """
        head = self._head_for(task)
        task_type = task_type_for_head(self.model.head_config(head))
        single = task_type.is_single_input(inputs)
        batch = [inputs] if single else list(inputs)
        if not batch:
            raise ValueError(f"inputs must be one input or a non-empty list of inputs; got {inputs!r}")
        if text_pairs is not None:
            options["text_pairs"] = [text_pairs] if isinstance(text_pairs, str) else list(text_pairs)
        with torch.no_grad():
            results = task_type.predict(
                self.model, self.tokenizer, head, batch, max_length=self.max_length, batch_size=batch_size, **options
            )
        _check_finite(results, head)
        return results[0] if single else results


def _check_finite(value: Any, head: str) -> None:
    """Refuse NaN or infinite scores: an adapter or head with broken weights is an error, not an answer."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(
            f"head {head!r} produced a non-finite score ({value}): the adapter or head weights are not finite "
            "(NaN/inf); retrain or reload them"
        )
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_finite(item, head)
