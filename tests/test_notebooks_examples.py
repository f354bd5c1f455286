"""The notebooks and example scripts users read first: executed here so they cannot rot.

Each notebook runs top to bottom on a fresh kernel (nbclient) from the project root, on the bundled MiniLM and
the data directory, writing into a temporary directory; the example scripts run with ``--smoke``. The committed
notebook files must hold the outputs of a complete run, stay small and name no path of the machine that ran them.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = ["01_adapter_fusion_basics", "02_training_workflow", "03_fusion_analysis"]


def outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]


def text_of(output: dict) -> str:
    data = output.get("data", {})
    return str(output.get("text", "")) + str(data.get("text/plain", "")) + str(data.get("text/markdown", ""))


def test_the_promised_notebooks_exist() -> None:
    assert [path.stem for path in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_committed_notebooks_hold_a_complete_run_small_and_portable(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "re-run: jupyter execute --inplace " + path.name
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))  # one clean top-to-bottom run
    assert not [o for o in outputs(notebook) if o["output_type"] == "error"]
    assert path.stat().st_size < 100_000
    for output in outputs(notebook):
        text = text_of(output)
        assert str(ROOT) not in text and "/tmp/" not in text and str(Path.home()) + "/" not in text, text[:200]


@pytest.mark.realdata
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_executes(path: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAPTER_FUSION_DATA_DIR", str(data_dir))  # the kernel inherits the environment
    monkeypatch.setenv("ADAPTER_FUSION_NOTEBOOK_OUTPUT", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    produced = outputs(notebook)
    assert not [o for o in produced if o["output_type"] == "error"]
    if path.stem == "03_fusion_analysis":  # the heatmaps from analyze_fusion and the transfer matrix are shown
        assert sum("image/png" in o.get("data", {}) for o in produced) == 5
        assert (tmp_path / "03" / "analysis" / "report.md").is_file()
    if path.stem == "01_adapter_fusion_basics":
        assert "detached == bare, bit for bit: True" in "".join(map(text_of, produced))


@pytest.mark.realdata
def test_example_scripts_run_with_smoke_budgets(data_dir: Path, tmp_path: Path) -> None:
    train = runpy.run_path(str(ROOT / "examples" / "train_individual_adapters.py"))
    results = train["main"](["--smoke", "--output", str(tmp_path), "--data-dir", str(data_dir)])
    assert set(results) == {"sst2", "mnli", "cr"}
    assert all((tmp_path / "adapters" / task / "adapter.safetensors").is_file() for task in results)
    fusion = runpy.run_path(str(ROOT / "examples" / "fusion_training.py"))
    out = fusion["main"](["--smoke", "--output", str(tmp_path), "--data-dir", str(data_dir)])
    assert [row["system"] for row in out["rows"]] == ["ST-A", "attention fusion", "weighted fusion"]
    assert all(row["split"] == "test" and row["examples"] == 32 for row in out["rows"])
    assert out["analysis"].images["layers"].stat().st_size > 5000
