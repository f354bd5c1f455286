"""``FusionEvaluator``: one target task, every system side by side in one table.

The systems are the single-task adapter (ST-A), each fusion (attention, weighted, gating, ...) and the baselines
(any saved directory, e.g. a head-only or fully fine-tuned run, and ``"zero-shot"``: the bare base model, for the
task types whose head needs no training). Every score comes from ``evaluate_adapter`` / ``evaluate_base``: the
same evaluation loop as ``adapter-fusion evaluate``, so a number in the table is the number ``evaluate`` prints.

    evaluator = FusionEvaluator("rte", data_dir="../shared/data")
    rows = evaluator.compare(adapters={"ST-A": "adapters/rte"},
                             fusions=["fusions/rte-attention", "fusions/rte-weighted"])
    print(evaluator.to_markdown(rows))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from adapter_fusion.evaluation.evaluate import evaluate_adapter, evaluate_base
from adapter_fusion.fusion.saving import is_fusion_directory, read_fusion_config
from adapter_fusion.tasks import get_task

ZERO_SHOT = "zero-shot"
"""The baseline name that stands for the bare base model (``evaluate_base``) instead of a directory."""

Systems = Mapping[str, "str | Path"] | Sequence["str | Path | tuple[str | None, str | Path]"] | None


class FusionEvaluator:
    """Score saved adapters, fusions and baselines on ``task``'s ``split`` with the task's metrics.

    Args:
        task: the target task (name or alias).
        data_dir: local data directory (default: ``$ADAPTER_FUSION_DATA_DIR``, ``./data``, ``../shared/data``).
        split: ``"validation"`` (dev) or ``"test"``.
        max_examples: score a fixed random subset of this size (the same one for every system).
        model: base model override (default: the one each directory records).
    """

    def __init__(
        self,
        task: str,
        data_dir: str | Path | None = None,
        split: str = "validation",
        max_examples: int | None = None,
        model: str | None = None,
    ) -> None:
        self.task = get_task(task)
        self.data_dir = data_dir
        self.split = split
        self.max_examples = max_examples
        self.model = model

    def evaluate(self, directory: str | Path) -> dict[str, Any]:
        """``evaluate_adapter`` of one adapter or fusion directory on this evaluator's task and split."""
        return evaluate_adapter(
            directory, task=self.task.name, split=self.split, data_dir=self.data_dir, model=self.model,
            max_examples=self.max_examples,
        )  # fmt: skip

    def evaluate_zero_shot(self) -> dict[str, Any]:
        """``evaluate_base``: the bare base model (refused for task types whose head must be trained)."""
        return evaluate_base(
            self.task.name, split=self.split, data_dir=self.data_dir, model=self.model, max_examples=self.max_examples
        )

    def compare(
        self, adapters: Systems = None, fusions: Systems = None, baselines: Systems = None
    ) -> list[dict[str, Any]]:
        """One row per system, in the order ST-A, fusions, baselines.

        Each argument maps a system name to a directory, or is a list of directories or ``(name, directory)``
        pairs (unnamed ones are named ``ST-A``, ``<method> fusion`` or after the directory). A baseline may be
        ``"zero-shot"`` instead of a directory.
        Row keys: ``system``, ``kind`` (``ST-A``, ``fusion``, ``baseline``), ``directory``, ``task``, ``split``,
        ``examples`` and the task's metrics."""
        entries = [
            (kind, name, directory)
            for kind, systems in (("ST-A", adapters), ("fusion", fusions), ("baseline", baselines))
            for name, directory in named_systems(kind, systems)
        ]
        if not entries:
            raise ValueError("compare needs at least one adapter, fusion or baseline; got none")
        names = [name for _, name, _ in entries]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"system names must be unique; got {repeated} more than once (name them NAME=DIR)")
        rows = []
        for kind, name, directory in entries:
            if kind == "baseline" and str(directory) == ZERO_SHOT:
                metrics = self.evaluate_zero_shot()
                directory = metrics.pop("model")
            else:
                metrics = self.evaluate(directory)
            rows.append({"system": name, "kind": kind, "directory": str(directory), **metrics})
        return rows

    def to_markdown(self, rows: Sequence[Mapping[str, Any]]) -> str:
        """The table: one row per system; columns: the task's metrics, the split and the number of examples."""
        metrics = list(self.task.metrics)
        lines = [
            f"| system | kind | {' | '.join(metrics)} | split | n |",
            "|---|---|" + "---:|" * len(metrics) + "---|---:|",
        ]
        for row in rows:
            values = " | ".join(_format(row.get(metric)) for metric in metrics)
            lines.append(
                f"| {row['system']} | {row['kind']} | {values} | {row.get('split', self.split)} | "
                f"{row.get('examples', '–')} |"
            )
        return "\n".join(lines)


def _format(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "–"


def named_systems(kind: str, systems: Systems) -> list[tuple[str, str | Path]]:
    """``(name, directory)`` pairs from a mapping or a list of directories (names derived from the kind)."""
    if systems is None:
        return []
    if isinstance(systems, Mapping):
        return [(str(name), directory) for name, directory in systems.items()]
    if isinstance(systems, (str, Path)):
        raise TypeError(f"{kind} systems must be a list of directories or a dict name -> directory; got {systems!r}")
    given = [item if isinstance(item, tuple) else (None, item) for item in systems]
    directories = [directory for _, directory in given]
    derived = [default_name(kind, directory) for directory in directories]
    if len(set(derived)) < len(derived):  # e.g. two attention fusions: tell them apart by their directories
        derived = [f"{name} ({Path(directory).name})" for name, directory in zip(derived, directories)]
    return [(name or fallback, directory) for (name, directory), fallback in zip(given, derived)]


def default_name(kind: str, directory: str | Path) -> str:
    """``ST-A`` for an adapter, ``<method> fusion`` for a fusion directory, the directory's name otherwise."""
    if kind == "ST-A":
        return "ST-A"
    if kind == "baseline" and str(directory) == ZERO_SHOT:
        return ZERO_SHOT
    if kind == "fusion" and is_fusion_directory(directory):
        method = read_fusion_config(directory).get("fusion", {}).get("fusion_method")
        if method:
            return f"{method} fusion"
    return Path(directory).name or str(directory)


def parse_system(text: str) -> tuple[str | None, str]:
    """``"NAME=DIR"`` -> ``(NAME, DIR)``; a plain ``"DIR"`` -> ``(None, DIR)`` (the CLI's form)."""
    name, separator, directory = text.partition("=")
    if not separator:
        return None, text
    if not name or not directory:
        raise ValueError(f"a system is DIR or NAME=DIR; got {text!r}")
    return name, directory
