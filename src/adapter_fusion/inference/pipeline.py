"""``FusionPipeline``: load a saved adapter (or fusion) directory and predict on raw text.

pipe = FusionPipeline.from_pretrained("adapters/sst2")
pipe.predict("a gorgeous, witty film", task="sentiment")  # {"label": "positive", "score": 0.97, ...}

A multi-task fusion serves every task it has a head for; ``predict(x)`` without ``task=`` asks its router (a
``router`` head trained with the fusion, see ``tasks.routing``) and says which task it chose (``"task"``). Several
single adapters serve the same way without a fusion: ``FusionPipeline.from_adapters([...], router=dir)`` with a
router trained by ``train_adapter_router``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from adapter_fusion.bank import resolve_artefact
from adapter_fusion.fusion.saving import is_fusion_directory, open_fusion
from adapter_fusion.models import AdapterModel, load_adapter, load_tokenizer, read_adapter_config
from adapter_fusion.models.fusion_model import load_fusion
from adapter_fusion.models.loading import resolve_model_name
from adapter_fusion.models.saving import base_model_arguments, open_adapter
from adapter_fusion.tasks import get_task, get_task_type, task_type_for_head
from adapter_fusion.tasks.routing import ROUTER, input_text

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from adapter_fusion.manifest import Opened


def _base_model_for(recorded: str | None, override: str | None) -> str:
    return resolve_model_name(override or recorded)


class FusionPipeline:
    """Text in, labels and scores out, for every task head the loaded directory holds.

    ``adapters``: head -> the adapter to run with it (pipelines of several single adapters, ``from_adapters``);
    empty: the model's own active adapters or fusion serve every head.
    """

    def __init__(
        self,
        model: AdapterModel,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int = 128,
        adapters: dict[str, str] | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.adapters = dict(adapters or {})

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        model: str | None = None,
        max_length: int = 128,
        *,
        allow_modified: bool = False,
        allow_other_base: bool = False,
        opened: Opened | None = None,
    ) -> FusionPipeline:
        """Load a fusion directory (``FusionModel.save_fusion``), an adapter directory (``save_adapter``) or
        ``bank:NAME``.

        ``model``: another base model than the recorded one, refused unless it is the same (same weights and
        config) or ``allow_other_base``; a file that differs from the manifest is refused unless
        ``allow_modified``. ``opened``: what ``open_fusion`` / ``open_adapter`` returned for ``directory`` to a
        caller that has already checked the files (they are not hashed again)."""
        directory = resolve_artefact(directory)
        options = {"allow_modified": allow_modified, "allow_other_base": allow_other_base}
        if is_fusion_directory(directory):
            opened = opened or open_fusion(directory, allow_modified=allow_modified)
            fusion_model = load_fusion(directory, model=model, opened=opened, **options)
            recorded = opened[0].get("metadata", {}).get("model_config", {})
            tokenizer = load_tokenizer(recorded.get("tokenizer_name_or_path") or fusion_model.name_or_path)
            return cls(fusion_model, tokenizer, max_length=recorded.get("max_seq_length") or max_length)
        opened = opened or open_adapter(directory, allow_modified=allow_modified)
        info = opened[0]
        base_name = _base_model_for(info.get("base_model"), model)
        adapter_model = AdapterModel.from_pretrained(base_name, **base_model_arguments(info))
        load_adapter(adapter_model, directory, opened=opened, **options)
        recorded = info.get("metadata", {}).get("model_config", {})
        tokenizer = load_tokenizer(recorded.get("tokenizer_name_or_path") or base_name)
        return cls(adapter_model, tokenizer, max_length=recorded.get("max_seq_length") or max_length)

    @classmethod
    def from_adapters(
        cls,
        directories: Sequence[str | Path],
        router: str | Path | None = None,
        model: str | None = None,
        max_length: int = 128,
    ) -> FusionPipeline:
        """Several saved adapters (each with its head) on one base model, each head served by its own adapter;
        ``router``: a router adapter directory (``train_adapter_router``) over these adapters' names, so that
        ``predict(x)`` without ``task=`` picks the adapter."""
        if not directories:
            raise ValueError("from_adapters needs at least one adapter directory; got none")
        info = read_adapter_config(directories[0])
        base_name = _base_model_for(info.get("base_model"), model)
        adapter_model = AdapterModel.from_pretrained(base_name, **base_model_arguments(info))
        adapters = {}
        for directory in directories:
            name = load_adapter(adapter_model, directory, activate=False)
            if name == ROUTER:
                raise ValueError(f"{directory} is a router; pass it as router=, not among the adapters")
            adapters[name] = name
        if router is not None:
            name = load_adapter(adapter_model, router, ROUTER, activate=False)
            routes = adapter_model.head_config(name).label_names
            if sorted(routes) != sorted(adapters):
                raise ValueError(f"router {router} chooses among {list(routes)}; the adapters are {list(adapters)}")
            adapters[ROUTER] = ROUTER
        recorded = info.get("metadata", {}).get("model_config", {})
        return cls(adapter_model, load_tokenizer(base_name), recorded.get("max_seq_length") or max_length, adapters)

    @property
    def router(self) -> str | None:
        """The router head's name when the pipeline has one."""
        return ROUTER if ROUTER in self.model.heads else None

    @property
    def tasks(self) -> dict[str, str]:
        """Map of task name -> head name for every task head (the router is not a task)."""
        return {(self.model.head_config(name).task or name): name for name in self.model.heads if name != self.router}

    def head_for(self, task: str | None) -> str:
        """The head that serves ``task`` (a task's name, one of its aliases such as ``sentiment``, or a head name);
        None: the only task head (``ValueError`` when there are several). An unknown task raises ``KeyError`` naming
        the pipeline's tasks."""
        if task is None:
            heads = list(self.tasks.values())
            if len(heads) != 1:
                raise ValueError(f"this pipeline holds several heads and no router; pass task= one of "
                                 f"{sorted(self.tasks)}")  # fmt: skip
            return heads[0]
        if task in self.model.heads and task != self.router:
            return task
        tasks = self.tasks
        try:
            canonical = get_task(task).name
        except (KeyError, TypeError):
            canonical = task
        if canonical in tasks:
            return tasks[canonical]
        raise KeyError(f"no head for task {task!r}; this pipeline has tasks {sorted(tasks)}")

    def _running(self, head: str) -> Any:
        """The adapters to run for ``head``: its own adapter in a pipeline of single adapters, else as loaded."""
        adapter = self.adapters.get(head)
        return self.model.adapters.using(adapter) if adapter is not None else nullcontext()

    def route(self, inputs: Any, text_pairs: str | list[str] | None = None, batch_size: int = 32) -> Any:
        """The router's choice for one input (``{"task", "score", "scores"}``) or a list of inputs (a list)."""
        if self.router is None:
            raise ValueError(f"this pipeline has no router; pass task= one of {sorted(self.tasks)}")
        single = isinstance(inputs, (str, dict))
        batch = [inputs] if single else list(inputs)
        pairs = [text_pairs] if isinstance(text_pairs, str) else text_pairs
        texts = [input_text(x, pairs[i] if pairs else None) for i, x in enumerate(batch)]
        with torch.no_grad(), self._running(ROUTER):
            chosen = get_task_type("classification").predict(
                self.model, self.tokenizer, ROUTER, texts, max_length=self.max_length, batch_size=batch_size
            )
        results = [{"task": r["label"], "score": r["score"], "scores": r["scores"]} for r in chosen]
        return results[0] if single else results

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
        ``options`` go to the task type (e.g. ``max_new_tokens`` for generation). Without ``task=`` a pipeline of
        several tasks routes each input (its router must be there) and adds ``"task"`` (and ``"task_score"``).
        """
        if task is None and self.router is not None and len(self.tasks) > 1:
            return self._predict_routed(inputs, text_pairs, batch_size, **options)
        head = self.head_for(task)
        task_type = task_type_for_head(self.model.head_config(head))
        single = task_type.is_single_input(inputs)
        batch = [inputs] if single else list(inputs)
        if not batch:
            raise ValueError(f"inputs must be one input or a non-empty list of inputs; got {inputs!r}")
        if text_pairs is not None:
            options["text_pairs"] = [text_pairs] if isinstance(text_pairs, str) else list(text_pairs)
        with torch.no_grad(), self._running(head):
            results = task_type.predict(
                self.model, self.tokenizer, head, batch, max_length=self.max_length, batch_size=batch_size, **options
            )
        _check_finite(results, head)
        return results[0] if single else results

    def _predict_routed(
        self, inputs: Any, text_pairs: str | list[str] | None, batch_size: int, **options: Any
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Route every input, then predict each task's inputs with its head (in the inputs' order)."""
        single = isinstance(inputs, (str, dict))
        batch = [inputs] if single else list(inputs)
        if not batch:
            raise ValueError(f"inputs must be one input or a non-empty list of inputs; got {inputs!r}")
        pairs = [text_pairs] if isinstance(text_pairs, str) else (list(text_pairs) if text_pairs else None)
        if pairs is not None and len(pairs) != len(batch):
            raise ValueError(f"got {len(batch)} inputs but {len(pairs)} text_pairs")
        routes = [self._fitting_route(route, bool(pairs and pairs[i])) for i, route in enumerate(
            self.route(batch, pairs, batch_size))]  # fmt: skip
        results: list[dict[str, Any]] = [{} for _ in batch]
        for task in dict.fromkeys(route["task"] for route in routes):
            indices = [i for i, route in enumerate(routes) if route["task"] == task]
            group_pairs = [pairs[i] for i in indices] if pairs is not None else []
            extra = {"text_pairs": group_pairs} if any(group_pairs) else {}  # "" pairs: single sentences
            chosen = self.predict([batch[i] for i in indices], task=task, batch_size=batch_size, **extra, **options)
            for index, result in zip(indices, chosen):  # type: ignore[arg-type]
                results[index] = {**result, "task": task, "task_score": routes[index]["score"]}
        return results[0] if single else results

    def _fitting_route(self, route: dict[str, Any], has_pair: bool) -> dict[str, Any]:
        """``route``, or, when its task cannot take the input's shape (a second sentence for a single-sentence task,
        none for a sentence-pair task), the best-scoring task that can: the router reads both sentences joined, so
        its first choice may be a task that could not answer."""
        def fits(task: str) -> bool:
            config = self.model.head_config(self.head_for(task))
            takes = task_type_for_head(config).takes_pairs(config)
            return takes is None or takes == has_pair

        if fits(route["task"]):
            return route
        fitting = {task: score for task, score in route["scores"].items() if task in self.tasks and fits(task)}
        if not fitting:
            shape = "a second sentence" if has_pair else "no second sentence"
            raise ValueError(f"an input with {shape} fits none of this pipeline's tasks {sorted(self.tasks)}")
        best = max(fitting, key=fitting.__getitem__)
        return {**route, "task": best, "score": fitting[best]}


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
