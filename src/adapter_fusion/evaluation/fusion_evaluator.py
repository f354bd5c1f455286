"""``FusionEvaluator``: score single adapters and fusions on one task split, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapter_fusion.evaluation.evaluate import evaluate_adapter
from adapter_fusion.tasks import get_task


class FusionEvaluator:
    """Compare saved adapters and fusions on ``task``'s ``split`` with the task's metrics.

    evaluator = FusionEvaluator("rte", data_dir="../shared/data")
    rows = evaluator.compare(adapters={"rte": "adapters/rte"}, fusions={"attention": "fusions/rte-attention"})
    print(evaluator.to_markdown(rows))
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
        return evaluate_adapter(
            directory, task=self.task.name, split=self.split, data_dir=self.data_dir, model=self.model,
            max_examples=self.max_examples,
        )  # fmt: skip

    def compare(
        self, adapters: dict[str, str | Path] | None = None, fusions: dict[str, str | Path] | None = None
    ) -> list[dict[str, Any]]:
        """One row per directory: ``{"name", "kind", "directory", <metrics>}``."""
        rows = []
        for kind, entries in (("adapter", adapters or {}), ("fusion", fusions or {})):
            for name, directory in entries.items():
                rows.append({"name": name, "kind": kind, "directory": str(directory), **self.evaluate(directory)})
        if not rows:
            raise ValueError("compare needs at least one adapter or fusion directory")
        return rows

    def to_markdown(self, rows: list[dict[str, Any]]) -> str:
        metrics = list(self.task.metrics)
        lines = [
            f"| name | kind | {' | '.join(metrics)} |",
            "|---|---|" + "---|" * len(metrics),
        ]
        for row in rows:
            values = " | ".join(f"{row[m]:.4f}" if m in row else "–" for m in metrics)
            lines.append(f"| {row['name']} | {row['kind']} | {values} |")
        return "\n".join(lines)
