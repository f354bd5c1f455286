"""``FusionPipeline``: load a saved adapter (or fusion) directory and predict on raw text.

pipe = FusionPipeline.from_pretrained("adapters/sst2")
pipe.predict("a gorgeous, witty film", task="sentiment")  # {"label": "positive", "score": 0.97, ...}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from adapter_fusion.models import AdapterModel, load_adapter, load_tokenizer, read_adapter_config
from adapter_fusion.models.loading import resolve_model_name


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
        from adapter_fusion.fusion.saving import is_fusion_directory, load_fusion, read_fusion_config

        directory = Path(directory)
        if is_fusion_directory(directory):
            info = read_fusion_config(directory)
            fusion_model = load_fusion(directory, model=model)
            recorded = info.get("metadata", {}).get("model_config", {}).get("max_seq_length")
            return cls(fusion_model, load_tokenizer(fusion_model.name_or_path), max_length=recorded or max_length)
        info = read_adapter_config(directory)
        base_name = _base_model_for(info.get("base_model"), model)
        adapter_model = AdapterModel.from_pretrained(base_name)
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

    @torch.no_grad()
    def predict(
        self,
        texts: str | list[str],
        task: str | None = None,
        text_pairs: str | list[str] | None = None,
        batch_size: int = 32,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Predict one text (returns a dict) or a list (returns a list of dicts with label, score, scores)."""
        single = isinstance(texts, str)
        batch_texts = [texts] if single else list(texts)
        pairs = [text_pairs] if isinstance(text_pairs, str) else text_pairs
        if not batch_texts or any(not isinstance(t, str) for t in batch_texts):
            raise ValueError(f"texts must be a non-empty string or list of strings; got {texts!r}")
        if pairs is not None and len(pairs) != len(batch_texts):
            raise ValueError(f"got {len(batch_texts)} texts but {len(pairs)} text_pairs")
        head = self._head_for(task)
        config = self.model.head_config(head)
        results: list[dict[str, Any]] = []
        for start in range(0, len(batch_texts), batch_size):
            chunk = batch_texts[start : start + batch_size]
            chunk_pairs = pairs[start : start + batch_size] if pairs is not None else None
            encoded = self.tokenizer(
                chunk, chunk_pairs, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
            )
            logits = self.model(**encoded, head=head).logits.float()
            if config.problem_type == "regression":
                results.extend({"label": None, "score": float(v)} for v in logits.squeeze(-1).tolist())
                continue
            probabilities = logits.softmax(dim=-1)
            names = config.label_names or tuple(str(i) for i in range(config.num_labels))
            for row in probabilities.tolist():
                best = max(range(len(row)), key=row.__getitem__)
                results.append({"label": names[best], "score": row[best], "scores": dict(zip(names, row))})
        return results[0] if single else results
