"""Task specifications, the task registry, and loading a task's split from local files or the Hugging Face Hub.

Every split comes back as a ``datasets.Dataset`` in its task type's schema (``adapter_fusion.tasks.types``): for
sentence(-pair) classification and regression ``text_a`` (str), ``text_b`` (str, ``""`` for single-sentence tasks)
and ``label`` (a ``ClassLabel`` id, or a float32 score for regression).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import datasets
import numpy as np

from adapter_fusion.config import check_choice
from adapter_fusion.heads import HeadConfig
from adapter_fusion.registry import Registry
from adapter_fusion.tasks.types import TASK_TYPES, TaskType, get_task_type

SPLITS = ("train", "validation", "test")
DATA_DIR_ENV = "ADAPTER_FUSION_DATA_DIR"
LabelMap = Mapping[str | int, str]
"""Raw label (as in the file or on the Hub; compared as a lower-cased string) -> label name."""
CARVE_SEED = 42
"""Seed of every carved split. Fixed, and independent of ``load_task_split(seed=...)``, so that carved
validation/test sets never move and never overlap the training part."""


class Reader(Protocol):
    """Reads the files of one split (paths in the order ``LocalFile.paths`` names them) into what the task type's
    ``to_dataset`` takes; each family's ``readers.py`` holds its readers."""

    def __call__(self, paths: Sequence[Path]) -> Any: ...


@dataclass(frozen=True)
class LocalFile:
    """A labelled source under the data directory."""

    paths: tuple[str, ...]
    """File path(s) relative to the data directory, as the reader expects them."""
    reader: Reader
    """Turns the files into what the task type's ``to_dataset`` reads (``RawColumns`` for sentence tasks, records
    for the other families; see ``adapter_fusion.tasks.<family>.readers``)."""
    label_map: LabelMap | None = None
    """Raw label -> label name, where the file's ids differ from the task's label order; None: raw labels are
    label names or class ids in ``TaskSpec.label_names`` order."""


@dataclass(frozen=True)
class Carve:
    """A split taken from a deterministic partition (seed ``CARVE_SEED``) of a bigger source.

    The parts in ``sizes`` take their share of a fixed permutation in order; ``remainder`` gets the rest. Each part
    keeps the source's row order.
    """

    source: LocalFile | str
    """What to partition: a ``LocalFile`` (local data) or a Hub split name (Hub data)."""
    part: str
    """Which part of the partition this split is."""
    sizes: tuple[tuple[str, float | int], ...]
    """``(part, size)`` pairs; a float in (0, 1) is a fraction of the source, an int a number of rows."""
    remainder: str = "train"
    """The part that gets the rows left over."""

    def __post_init__(self) -> None:
        parts = [name for name, _ in self.sizes] + [self.remainder]
        for name in parts:
            check_choice("carved part", name, SPLITS)
        if len(set(parts)) != len(parts):
            raise ValueError(f"carved parts must be distinct; got {parts}")
        check_choice("part", self.part, parts)

    def indices(self, num_rows: int) -> list[int]:
        """Row indices of ``self.part`` in a source of ``num_rows`` rows."""
        order = np.random.default_rng(CARVE_SEED).permutation(num_rows)
        start = 0
        for name, size in self.sizes:
            count = round(size * num_rows) if isinstance(size, float) else size
            if count < 1 or start + count >= num_rows:
                raise ValueError(f"cannot carve {name!r} of size {size!r} out of {num_rows} rows ({self.sizes})")
            if name == self.part:
                return sorted(order[start : start + count].tolist())
            start += count
        return sorted(order[start:].tolist())

    def select(self, dataset: datasets.Dataset) -> datasets.Dataset:
        """This part of ``dataset`` (the whole source, in its task type's schema). Subclasses may override it to
        partition by something other than rows (extractive QA carves by article)."""
        return dataset.select(self.indices(len(dataset)))


def carve(source: LocalFile | str, sizes: dict[str, float | int], remainder: str = "train") -> dict[str, Carve]:
    """All parts of one deterministic partition of ``source``, keyed by split name."""
    frozen = tuple(sizes.items())
    return {part: Carve(source, part, frozen, remainder) for part in (*sizes, remainder)}


@dataclass(frozen=True)
class LocalSource:
    """Where a task's splits live under the data directory."""

    splits: Mapping[str, LocalFile | Carve]
    """Split name -> labelled file, or a carved part of one."""
    unlabelled: Mapping[str, str] = field(default_factory=dict)
    """Split name -> relative path of a file that exists but has no labels (not offered)."""

    def __post_init__(self) -> None:
        for split in (*self.splits, *self.unlabelled):
            check_choice("local split", split, SPLITS)


@dataclass(frozen=True)
class HubSource:
    """How to load a task from the Hugging Face Hub with ``datasets.load_dataset(path, config, split=...)``."""

    path: str
    """Dataset repository, e.g. ``"nyu-mll/glue"``."""
    config: str | None
    """Configuration name, e.g. ``"sst2"``; None for datasets without configurations."""
    text_a: str | None = None
    """Column of the first text (sentence tasks)."""
    text_b: str | None = None
    """Column of the second text, or None for single-sentence tasks."""
    label: str = "label"
    """Column of the label."""
    splits: Mapping[str, str | Carve] = field(
        default_factory=lambda: {"train": "train", "validation": "validation", "test": "test"}
    )
    """Our split name -> Hub split name, or a part carved out of a Hub split."""
    unlabelled: tuple[str, ...] = ()
    """Splits whose Hub labels are hidden (GLUE test sets): refused without downloading."""
    label_map: LabelMap | None = None
    """Hub label -> label name where the Hub's ids differ from ``TaskSpec.label_names`` order."""
    missing_label: object = -1
    """Label value of rows without a gold label (dropped; e.g. SNLI's -1)."""
    columns: Mapping[str, str] = field(default_factory=dict)
    """For task types other than sentence classification: our schema field -> Hub column (see the type's
    ``from_hub``)."""

    def __post_init__(self) -> None:
        for split in (*self.splits, *self.unlabelled):
            check_choice("hub split", split, SPLITS)


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: its type, labels, metrics and data sources."""

    name: str
    """Canonical lower-case name, e.g. ``"sst2"``."""
    task_type: str
    """A registered task type (``adapter_fusion.tasks.types.TASK_TYPES``): ``"classification"``,
    ``"regression"``, ``"token_classification"``, ``"extractive_qa"``, ``"multiple_choice"``, ``"generation"``."""
    label_names: tuple[str, ...]
    """Human-readable name of each class id or tag (index = id); ``()`` where there are none (regression, QA,
    multiple choice, generation)."""
    is_pair: bool
    """Whether examples are sentence pairs (``text_b`` non-empty); False for other task types."""
    metrics: tuple[str, ...]
    """Names of the metrics the task reports (allowed: its task type's ``metric_names()``)."""
    main_metric: str
    """The metric that selects the best checkpoint (higher is better)."""
    description: str
    """What the task is and where its splits come from (local layout, carved splits, Hub source)."""
    aliases: tuple[str, ...] = ()
    """Other accepted names; lookups also ignore case, dashes, underscores and spaces."""
    local: LocalSource | None = field(default=None, repr=False, compare=False)
    """The task's files under a local data directory."""
    hub: HubSource | None = field(default=None, repr=False, compare=False)
    """The task's Hugging Face Hub dataset."""

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.lower():
            raise ValueError(f"task name must be non-empty and lower-case; got {self.name!r}")
        check_choice("task_type", self.task_type, TASK_TYPES.names())
        get_task_type(self).validate_spec(self)
        lowered = [label.lower() for label in self.label_names]
        if not self.metrics:
            raise ValueError(f"task {self.name!r}: metrics must not be empty")
        for metric in self.metrics:
            check_choice("metric", metric, get_task_type(self).metric_names())
        check_choice("main_metric", self.main_metric, self.metrics)
        entries = [*(self.local.splits.values() if self.local else ()), self.hub]
        sources = [entry.source if isinstance(entry, Carve) else entry for entry in entries]
        for label_map in filter(None, (getattr(source, "label_map", None) for source in sources)):
            for name in label_map.values():
                check_choice(f"task {self.name!r} label_map value", name.lower(), lowered)

    @property
    def num_labels(self) -> int:
        """Number of head outputs: the number of classes or tags (1 for regression)."""
        return get_task_type(self).num_labels(self)

    @property
    def id2label(self) -> dict[int, str]:
        """Class id -> label name (empty for regression), as ``transformers`` configs expect."""
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        """Label name -> class id (empty for regression)."""
        return {name: index for index, name in enumerate(self.label_names)}


TASKS: Registry[TaskSpec] = Registry("task")


def _compact(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.lower())


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add ``spec`` to ``TASKS`` under its name, its aliases and their compact forms (no dashes/underscores)."""
    keys = {alias.lower() for alias in spec.aliases} | {_compact(n) for n in (spec.name, *spec.aliases)}
    TASKS.register(spec.name, spec, aliases=tuple(sorted(keys - {spec.name})))
    return spec


def get_task(name: str) -> TaskSpec:
    """The task called ``name`` (case-insensitive; aliases and dash/underscore variants accepted)."""
    if not isinstance(name, str):
        raise TypeError(f"task name must be a str; got {name!r} ({type(name).__name__})")
    for key in (name.strip(), _compact(name)):
        if key in TASKS:
            return TASKS.get(key)
    aliases = sorted(alias for spec in list_tasks() for alias in spec.aliases)
    raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASKS.names())}; aliases: {', '.join(aliases)}")


def list_tasks() -> list[TaskSpec]:
    """All registered tasks, sorted by name."""
    return [spec for _, spec in TASKS.items()]


def task_type_for_head(config: HeadConfig) -> TaskType:
    """The task type that trains heads like ``config``: its task's type when the task is registered, else the
    type whose ``head_type`` matches."""
    if config.task:
        try:
            return get_task_type(get_task(config.task))
        except KeyError:
            pass
    types = [TASK_TYPES.get(name) for name in TASK_TYPES.names()]
    matches = [task_type for task_type in types if task_type.head_type == config.head_type]
    if not matches:
        raise KeyError(f"no task type trains heads of type {config.head_type!r}; task types: {TASK_TYPES.names()}")
    if config.head_type == "classification":  # classification and regression share the head
        wanted = "regression" if config.problem_type == "regression" else "classification"
        return next((m for m in matches if m.name == wanted), matches[0])
    return matches[0]


DEFAULT_DATA_DIRS = (Path("data"), Path("..") / "shared" / "data")
"""Where a data directory is looked for when neither ``data_dir`` nor the environment variable names one."""


def _no_data_dir(spec: TaskSpec, reason: str) -> str:
    looked = ", ".join(str(path.absolute()) for path in DEFAULT_DATA_DIRS)
    return (
        f"task {spec.name!r}: no local data directory (no data_dir / --data-dir given, ${DATA_DIR_ENV} unset, none "
        f"of {looked} exists) and {reason}; pass data_dir= (CLI: --data-dir DIR) or set ${DATA_DIR_ENV}"
    )


def resolve_data_dir(data_dir: str | Path | None = None) -> Path | None:
    """The local data directory to read, or None to use the Hugging Face Hub.

    Order: ``data_dir`` if given; else ``$ADAPTER_FUSION_DATA_DIR`` if set; else the first existing of ``./data``
    and ``../shared/data`` (relative to the working directory); else None. A given directory (argument or
    environment variable) that does not exist raises ``FileNotFoundError``.
    """
    env_value = os.environ.get(DATA_DIR_ENV)
    if data_dir is not None:
        given, origin = Path(data_dir), "data_dir"
    elif env_value:
        given, origin = Path(env_value), f"${DATA_DIR_ENV}"
    else:
        return next((path.resolve() for path in DEFAULT_DATA_DIRS if path.is_dir()), None)
    given = given.expanduser()
    if not given.is_dir():
        raise FileNotFoundError(f"{origin}: data directory {str(given)!r} does not exist or is not a directory")
    return given.resolve()


def load_hub_dataset(path: str, config: str | None, split: str) -> datasets.Dataset:
    """The single call that reaches the Hugging Face Hub (tests replace it)."""
    return datasets.load_dataset(path, config, split=split)


def load_task_split(
    task: str | TaskSpec,
    split: str,
    data_dir: str | Path | None = None,
    max_examples: int | None = None,
    seed: int = 42,
) -> datasets.Dataset:
    """Load one split of a task as a ``datasets.Dataset`` in its task type's schema (sentence tasks: ``text_a``,
    ``text_b``, ``label``).

    Args:
        task: a task name/alias or a ``TaskSpec``.
        split: ``"train"``, ``"validation"`` or ``"test"``. Unlabelled splits (GLUE test files) are refused.
        data_dir: local data directory (see ``resolve_data_dir``); when none is found the Hub is used.
        max_examples: if smaller than the split, a deterministic subsample: shuffle with ``seed``, take the first
            ``max_examples`` rows.
        seed: seed of that subsample (carved splits always use ``CARVE_SEED``).
    """
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    check_choice("split", split, SPLITS)
    if max_examples is not None and (
        isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1
    ):
        raise ValueError(f"max_examples must be a positive int or None; got {max_examples!r}")
    root = resolve_data_dir(data_dir)
    dataset = _load_hub(spec, split) if root is None else _load_local(spec, split, root)
    if max_examples is not None and max_examples < len(dataset):
        dataset = dataset.shuffle(seed=seed).select(range(max_examples))
    return dataset


def _load_local(spec: TaskSpec, split: str, root: Path) -> datasets.Dataset:
    source = spec.local
    if source is None:
        raise ValueError(f"task {spec.name!r} has no local data layout; load it from the Hub (no data directory)")
    offered = ", ".join(source.splits)
    if split in source.unlabelled:
        raise ValueError(
            f"task {spec.name!r}: the local {split!r} split ({source.unlabelled[split]}) has no labels and is not "
            f"offered; labelled local splits: {offered}"
        )
    if split not in source.splits:
        raise ValueError(f"task {spec.name!r} has no local {split!r} split under {root}; local splits: {offered}")
    entry = source.splits[split]
    file = entry.source if isinstance(entry, Carve) else entry
    assert isinstance(file, LocalFile), f"a local Carve must partition a LocalFile; got {file!r}"
    paths = [root / relative for relative in file.paths]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"task {spec.name!r}, split {split!r}: data file {str(path)!r} not found")
    origin = " + ".join(str(path) for path in paths)
    dataset = get_task_type(spec).to_dataset(spec, file.reader(paths), file.label_map, origin)
    return entry.select(dataset) if isinstance(entry, Carve) else dataset


def _load_hub(spec: TaskSpec, split: str) -> datasets.Dataset:
    hub = spec.hub
    if hub is None:
        raise FileNotFoundError(_no_data_dir(spec, "the task has no Hugging Face Hub source"))
    offered = ", ".join(s for s in hub.splits if s not in hub.unlabelled)
    if split in hub.unlabelled or split not in hub.splits:
        raise ValueError(f"task {spec.name!r}: the Hub has no labelled {split!r} split; labelled splits: {offered}")
    entry = hub.splits[split]
    hub_split = entry.source if isinstance(entry, Carve) else entry
    assert isinstance(hub_split, str), f"a Hub Carve must partition a Hub split name; got {hub_split!r}"
    origin = f"Hub dataset {hub.path!r} (config {hub.config!r}, split {hub_split!r})"
    try:
        raw = load_hub_dataset(hub.path, hub.config, hub_split)
    except (ConnectionError, OSError) as error:  # offline (HF_HUB_OFFLINE) or unreachable, and not in the cache
        reason = f"the Hub dataset {hub.path!r} could not be loaded ({' '.join(str(error).split())[:200]})"
        raise FileNotFoundError(_no_data_dir(spec, reason)) from None
    dataset = get_task_type(spec).from_hub(spec, hub, raw, origin)
    return entry.select(dataset) if isinstance(entry, Carve) else dataset
