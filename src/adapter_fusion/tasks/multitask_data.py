"""Multi-task data: which task each batch comes from (``TaskSampler``), per-task features (``MultiTaskPreprocessor``)
and a stream of single-task batches (``MultiTaskBatches``) for ``training/multi_task_trainer.py``.

Each batch holds examples of ONE task, collated by that task's own type, and names the head and adapter to use
(``{"input_ids": ..., "labels": ..., "head": "sst2", "adapter_names": "sst2"}``): task types stay independent, and
the model routes a batch by plain strings that the Trainer passes through untouched.

Sampling strategies over tasks of sizes ``n_i`` (temperature sampling as in multilingual training, e.g. XLM-R,
https://arxiv.org/abs/1911.02116, and the analysis of https://arxiv.org/abs/1907.05019):

- ``proportional``: ``p_i ∝ n_i`` (every example is seen about equally often; big tasks dominate);
- ``temperature``: ``p_i ∝ n_i^(1/T)``; ``T = 1`` is proportional, ``T → ∞`` uniform;
- ``round_robin``: tasks in a fixed cycle (uniform over batches, deterministic).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from adapter_fusion.config import check_choice
from adapter_fusion.tasks.base import TaskSpec, get_task, load_task_split
from adapter_fusion.tasks.mixed import normalise_dataset, task_specs
from adapter_fusion.tasks.types import MetricsFn, TaskType, as_mapping, get_task_type

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SAMPLING_STRATEGIES = ("proportional", "temperature", "round_robin")
DEFAULT_TEMPERATURE = 2.0
"""T of ``temperature`` sampling when none is given."""


def check_temperature(strategy: str, temperature: float | None) -> None:
    """``temperature`` must be None or a number > 0 (``math.inf``: uniform), and only with 'temperature'."""
    check_choice("sampling", strategy, SAMPLING_STRATEGIES)
    if temperature is None:
        return
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0 (inf: uniform sampling); got {temperature!r}")
    if strategy != "temperature":
        raise ValueError(
            f"temperature={temperature!r} is only used by sampling='temperature'; got sampling={strategy!r}"
        )


def sampling_probabilities(
    sizes: Mapping[str, int], strategy: str = "proportional", temperature: float | None = None
) -> dict[str, float]:
    """Probability of drawing each task: ``p_i ∝ n_i`` (proportional), ``∝ n_i^(1/T)`` (temperature), or
    uniform (round_robin: its long-run share of batches)."""
    names = check_sizes(sizes)
    check_temperature(strategy, temperature)
    counts = np.array([sizes[name] for name in names], dtype=np.float64)
    if strategy == "round_robin":
        weights = np.ones_like(counts)
    else:
        inverse = 1.0 if strategy == "proportional" else 1.0 / (temperature or DEFAULT_TEMPERATURE)
        logits = np.log(counts) * inverse  # in log space: n_i^(1/T) for large n_i and T stays finite
        weights = np.exp(logits - logits.max())
    return dict(zip(names, (weights / weights.sum()).tolist()))


def check_sizes(sizes: Mapping[str, int]) -> list[str]:
    """Task names of ``sizes`` (task -> number of examples), refusing an empty mapping and empty tasks."""
    if not isinstance(sizes, Mapping):
        raise TypeError(f"sizes must be a dict of task name -> number of examples; got {sizes!r}")
    if not sizes:
        raise ValueError("multi-task sampling needs at least one task; got none")
    for name, size in sizes.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"task names must be non-empty strings; got {name!r}")
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
            raise ValueError(f"task {name!r}: the number of examples must be an integer >= 1; got {size!r}")
        if size == 0:
            raise ValueError(f"task {name!r} has 0 examples; every task needs at least one (sizes: {dict(sizes)})")
    return list(sizes)


class TaskSampler:
    """An endless, seeded stream of task names, one per batch, drawn by ``strategy``.

    ``draw(k)`` continues the stream: ``draw(3) + draw(4)`` equals ``draw(7)`` after a ``reset()``.
    """

    def __init__(
        self,
        sizes: Mapping[str, int],
        strategy: str = "proportional",
        temperature: float | None = None,
        seed: int = 0,
    ) -> None:
        self.probabilities = sampling_probabilities(sizes, strategy, temperature)
        self.names = tuple(self.probabilities)
        self.sizes = {name: int(sizes[name]) for name in self.names}
        self.strategy = strategy
        self.temperature = temperature
        self.seed = seed
        self._weights = np.array([self.probabilities[name] for name in self.names])
        self.reset()

    def reset(self) -> None:
        """Back to the start of the stream."""
        self._rng = np.random.default_rng(self.seed)
        self._position = 0

    def draw(self, count: int) -> list[str]:
        """The next ``count`` tasks of the stream."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be an integer >= 0; got {count!r}")
        if self.strategy == "round_robin":
            indices = (self._position + np.arange(count)) % len(self.names)
        else:  # inverse-CDF on consecutive uniforms: the stream does not depend on how it is chunked
            indices = self._rng.choice(len(self.names), size=count, p=self._weights)
        self._position += count
        return [self.names[index] for index in indices]

    def __repr__(self) -> str:
        shares = ", ".join(f"{name}={p:.3f}" for name, p in self.probabilities.items())
        return f"TaskSampler({self.strategy}, T={self.temperature}, seed={self.seed}: {shares})"


class _Stream:
    """Where the batch stream stands: the sampler, and per task its shuffled order and cursor."""

    def __init__(self, sizes: Mapping[str, int], batch_size: int, sampler: TaskSampler, seed: int) -> None:
        self.sizes = dict(sizes)
        self.batch_size = batch_size
        self.sampler = copy.deepcopy(sampler)
        self.sampler.reset()
        self.rngs = {name: np.random.default_rng([seed, index]) for index, name in enumerate(self.sizes)}
        self.orders = {name: self.rngs[name].permutation(size) for name, size in self.sizes.items()}
        self.cursors = dict.fromkeys(self.sizes, 0)

    def take(self, count: int) -> list[tuple[str, list[int]]]:
        """The next ``count`` batches as (task, feature indices); a task's order is reshuffled when used up (the
        last batch of each pass may be smaller)."""
        plan = []
        for task in self.sampler.draw(count):
            if self.cursors[task] >= self.sizes[task]:
                self.orders[task] = self.rngs[task].permutation(self.sizes[task])
                self.cursors[task] = 0
            start = self.cursors[task]
            indices = self.orders[task][start : start + self.batch_size]
            self.cursors[task] = start + len(indices)
            plan.append((task, indices.tolist()))
        return plan


class MultiTaskBatches(torch.utils.data.IterableDataset):
    """Collated single-task batches: each draws a task from ``sampler``, takes that task's next ``batch_size``
    features (its own shuffled order, reshuffled when exhausted), collates them with the task's collator and adds
    ``routes[task]`` (e.g. ``{"head": task, "adapter_names": task}``).

    One epoch is ``sum_i ceil(n_i / batch_size)`` batches. The stream is a pure function of ``seed`` and the epoch
    (``set_epoch``, called by the Trainer): a resumed run sees the same batches. Use it with
    ``DataLoader(batches, batch_size=None)``.
    """

    def __init__(
        self,
        features: Mapping[str, Any],
        collators: Mapping[str, Callable[[list[dict[str, Any]]], Mapping[str, Any]]],
        batch_size: int,
        sampler: TaskSampler,
        routes: Mapping[str, Mapping[str, Any]] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")
        sizes = {name: len(features[name]) for name in features}
        for what, mapping in (("collators", collators), ("sampler tasks", sampler.names), ("routes", routes)):
            if mapping is not None and sorted(mapping) != sorted(sizes):
                raise ValueError(f"{what} {sorted(mapping)} do not match the tasks of the features {sorted(sizes)}")
        if sampler.sizes != sizes:
            raise ValueError(f"the sampler's task sizes {sampler.sizes} differ from the features' {sizes}")
        self.features = dict(features)
        self.collators = dict(collators)
        self.batch_size = batch_size
        self.sampler = sampler
        self.routes = {name: dict(route) for name, route in (routes or {}).items()}
        self.seed = seed
        self.batch_counts = {name: math.ceil(size / batch_size) for name, size in sizes.items()}
        self.num_batches = sum(self.batch_counts.values())
        self.num_examples = sum(sizes.values())
        self.epoch = 0
        self._starts: dict[int, _Stream] = {}

    def __len__(self) -> int:
        return self.num_batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def plan(self, epoch: int) -> list[tuple[str, list[int]]]:
        """Epoch ``epoch``'s batches as (task, feature indices), without collating."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0; got {epoch!r}")
        known = [start for start in self._starts if start <= epoch]
        at = max(known, default=0)
        if at in self._starts:
            stream = copy.deepcopy(self._starts[at])
        else:
            sizes = {name: len(f) for name, f in self.features.items()}
            stream = _Stream(sizes, self.batch_size, self.sampler, self.seed)
        for _ in range(at, epoch):  # fast-forward (a resumed run, or epochs taken out of order)
            stream.take(self.num_batches)
        start = copy.deepcopy(stream)
        plan = stream.take(self.num_batches)
        self._starts = {epoch: start, epoch + 1: stream}  # the sequential case continues from here
        return plan

    def collate(self, task: str, indices: Sequence[int]) -> dict[str, Any]:
        rows = [self.features[task][int(index)] for index in indices]
        batch = dict(self.collators[task](rows))
        return {**batch, **self.routes.get(task, {})}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self.epoch
        for task, indices in self.plan(epoch):
            yield self.collate(task, indices)
        if self.epoch == epoch:  # iterated without set_epoch: the next pass is the next epoch
            self.epoch = epoch + 1


def resolve_tasks(tasks: Sequence[str | TaskSpec]) -> dict[str, TaskSpec]:
    """Task name -> spec for names/aliases or ``TaskSpec``s, refusing none, a bare string and duplicates."""
    if isinstance(tasks, (str, TaskSpec)):
        raise TypeError(f"tasks must be a list of task names or TaskSpecs; got {tasks!r}")
    specs: dict[str, TaskSpec] = {}
    for task in tasks:
        if not isinstance(task, (str, TaskSpec)):
            raise TypeError(f"each task must be a task name or a TaskSpec; got {task!r} ({type(task).__name__})")
        spec = task if isinstance(task, TaskSpec) else get_task(task)
        if spec.name in specs:
            raise ValueError(f"task {spec.name!r} is listed twice (given: {list(tasks)!r})")
        specs[spec.name] = spec
    if not specs:
        raise ValueError("multi-task training needs at least one task; got none")
    return specs


class MultiTaskPreprocessor:
    """Per-task splits and features: each task's data is loaded (or given), checked and tokenised by its own
    task type, and collated by its own collator.

    >>> pre = MultiTaskPreprocessor(["sst2", "rte"], tokenizer, max_length=128)
    >>> features = pre.features(pre.datasets("train", max_examples=1000))   # {"sst2": Dataset, "rte": Dataset}

    The documented keyword form names the tasks by ``task_configs`` (task -> ``{"dataset": registered task whose
    data and labels it uses, "num_labels": ...}``; see ``tasks.mixed.task_spec``):
    ``MultiTaskPreprocessor(tokenizer=tok, task_configs={"sentiment": {"dataset": "imdb", "num_labels": 2}})``.
    """

    def __init__(
        self,
        tasks: Sequence[str | TaskSpec] | None = None,
        tokenizer: PreTrainedTokenizerBase = None,
        max_length: int = 128,
        data_dir: str | Path | None = None,
        seed: int = 42,
        *,
        task_configs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        if tokenizer is None:
            raise TypeError("MultiTaskPreprocessor needs a tokenizer (tokenizer=...)")
        if task_configs is not None:
            tasks = [*(tasks or ()), *task_specs(as_mapping(task_configs, "task_configs")).values()]
        self.specs = resolve_tasks(tasks if tasks is not None else [])
        self.task_types: dict[str, TaskType] = {name: get_task_type(spec) for name, spec in self.specs.items()}
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.data_dir = data_dir
        self.seed = seed

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    def datasets(
        self, split: str, given: Mapping[str, Any] | None = None, max_examples: int | None = None
    ) -> dict[str, Any]:
        """Each task's ``split`` (the task's schema), from ``given`` (task -> Dataset; tasks left out are loaded)
        or loaded from the data directory / Hub, subsampled to ``max_examples`` per task."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.specs))
        if unknown:
            raise ValueError(f"datasets given for unknown tasks {unknown}; the tasks are {self.names}")
        result = {}
        for name, spec in self.specs.items():
            if name in given:
                dataset = normalise_dataset(spec, given[name], f"the {split} dataset of task {name!r}")
            else:
                dataset = load_task_split(spec, split, self.data_dir, max_examples=max_examples, seed=self.seed)
            self.task_types[name].check_dataset(dataset, f"task {name!r} {split} dataset")
            result[name] = dataset
        return result

    def features(self, datasets: Mapping[str, Any]) -> dict[str, Any]:
        """Each task's tokenised features (model inputs and ``labels``) from its dataset."""
        self._check_keys(datasets, "datasets")
        return {
            name: self.task_types[name].preprocess(self.specs[name], datasets[name], self.tokenizer, self.max_length)
            for name in self.specs
        }

    def collators(self) -> dict[str, Callable[[list[dict[str, Any]]], dict[str, Any]]]:
        return {name: self.task_types[name].collator(spec, self.tokenizer) for name, spec in self.specs.items()}

    def metrics_fns(self, datasets: Mapping[str, Any], features: Mapping[str, Any]) -> dict[str, MetricsFn | None]:
        """Each task's scorer of logits on ``features`` (None where metrics need more, e.g. generation)."""
        self._check_keys(datasets, "datasets")
        self._check_keys(features, "features")
        return {
            name: self.task_types[name].metrics_fn(spec, datasets[name], features[name], self.tokenizer)
            for name, spec in self.specs.items()
        }

    def _check_keys(self, mapping: Mapping[str, Any], what: str) -> None:
        if sorted(mapping) != sorted(self.specs):
            raise ValueError(f"{what} are for tasks {sorted(mapping)}; expected one per task: {sorted(self.specs)}")


__all__ = [
    "DEFAULT_TEMPERATURE",
    "SAMPLING_STRATEGIES",
    "MultiTaskBatches",
    "MultiTaskPreprocessor",
    "TaskSampler",
    "resolve_tasks",
    "sampling_probabilities",
]
