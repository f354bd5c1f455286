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
