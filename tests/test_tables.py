"""The result tables are made from the committed result files alone: ``experiments/<table>.py --table-only`` on
them gives back the committed markdown byte for byte (issue 15). A script changed without rewriting its table
(the commands it lists, the wording, the number format) fails here. Needs no data and trains nothing."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.parametrize("script", ["core_table", "fusion_table", "task_table"])
def test_table_regenerates_byte_identical_from_the_result_files(script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXPERIMENTS))  # the scripts import their shared ``runner`` as a sibling
    module = importlib.import_module(script)
    committed = module.TABLE.read_bytes()
    assert module.table_text().encode() == committed, (
        f"{module.TABLE.relative_to(EXPERIMENTS.parent)} is not what `python experiments/{script}.py --table-only` "
        "writes from the result files: run it and commit the table"
    )


def test_transfer_study_picks_each_seeds_system_on_the_dev_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """``DEV_SELECTIONS``: per seed, the candidate with the best dev score (ties: the first listed), and only seeds
    where ST-A and every candidate ran."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    monkeypatch.syspath_prepend(str(EXPERIMENTS / "transfer"))
    table = importlib.import_module("table")

    def record(dev: float, test: float) -> dict:
        return {"target": "cr", "dev": {"accuracy": dev}, "test": {"accuracy": test}}

    runs = {
        ("cr", "st-a"): {13: record(0.7, 0.70), 21: record(0.7, 0.70), 42: record(0.7, 0.7)},
        ("cr", "a"): {13: record(0.9, 0.80), 21: record(0.8, 0.90), 42: record(0.9, 0.9)},
        ("cr", "b"): {13: record(0.8, 0.95), 21: record(0.8, 0.60)},
    }
    assert table.dev_selected(runs, "cr", ("a", "b")) == {13: "a", 21: "a"}  # 21: a tie goes to the first listed
    assert table.dev_selected(runs, "cr", ("b", "a")) == {13: "a", 21: "b"}
    assert table.dev_selected(runs, "mr", ("a", "b")) == {}


def test_transfer_results_regenerate_from_the_result_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """``experiments/transfer/RESULTS.md`` is what ``study.py --table-only`` writes from the committed result files
    and the bank's cards (figures not redrawn here)."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    monkeypatch.syspath_prepend(str(EXPERIMENTS / "transfer"))
    table = importlib.import_module("table")
    assert table.results_text() == table.OUT.read_text(), (
        "experiments/transfer/RESULTS.md is not what `python experiments/transfer/study.py --table-only` writes "
        "from the result files: run it and commit the table"
    )
