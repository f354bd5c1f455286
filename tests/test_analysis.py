"""Fusion analysis and comparison on a tiny model: ``FusionEvaluator`` tables equal ``evaluate_adapter``'s numbers,
``analyze_fusion`` (and ``adapter-fusion analyze``) writes legible heatmaps naming the adapters, and the transfer
matrix plot reads dicts and table rows.

The model is a tiny random BERT (hidden 32) with the bundled MiniLM's vocabulary and tokenizer; the data is a
24-sentence SST-2 dev file written to a temporary data directory (the real layout, ``glue/SST-2/dev.tsv``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.cli import main
from adapter_fusion.evaluation import FusionEvaluator, evaluate_adapter
from adapter_fusion.evaluation.analysis import analyze_fusion
from adapter_fusion.evaluation.fusion_weights import collect_fusion_weights, point_order
from adapter_fusion.evaluation.plots import plot_transfer_matrix, tick_labels, transfer_values
from adapter_fusion.fusion import FusionConfig
from adapter_fusion.models import AdapterModel, default_model_path, load_tokenizer, save_adapter
from adapter_fusion.models.fusion_model import FusionModel
from adapter_fusion.tasks import get_task, get_task_type, load_task_split
from conftest import build_tiny_model, randomise_

SOURCES = ("sentiment_src", "nli_src")
WORDS = ("good", "bad", "fine", "awful", "great", "dull", "moving", "boring")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT with MiniLM's vocabulary and tokenizer, saved together."""
    tokenizer = load_tokenizer(default_model_path())
    directory = tmp_path_factory.mktemp("tiny_bert_minilm_vocab")
    build_tiny_model("bert", seed=0, vocab_size=tokenizer.vocab_size).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    folder = root / "glue" / "SST-2"
    folder.mkdir(parents=True)
    rows = [f"a {WORDS[i % 8]} film , {WORDS[(3 * i) % 8]} acting\t{i % 2}" for i in range(24)]
    for split in ("train", "dev"):
        (folder / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    return root


def sst2_head(model: AdapterModel, seed: int) -> None:
    spec = get_task("sst2")
    model.add_head("sst2", get_task_type(spec).head_config(spec))
    randomise_(model.heads["sst2"], seed=seed, std=0.5)


@pytest.fixture(scope="module")
def artefacts(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two source adapters (the first with an SST-2 head: the ST-A) and an attention and a weighted fusion."""
    root = tmp_path_factory.mktemp("artefacts")
    torch.manual_seed(0)
    model = AdapterModel.from_pretrained(str(tiny_dir))
    sources = []
    for index, name in enumerate(SOURCES):
        model.add_adapter(name, AdapterConfig(bottleneck_size=4), activate=False)
        randomise_(model.adapters.adapters[name], seed=index + 1, std=0.3)
    sst2_head(model, seed=5)
    for name in SOURCES:
        sources.append(save_adapter(model, name, root / name, head="sst2", metadata={"task": "sst2"}))
    fusions = {}
    for method in ("attention", "weighted"):
        fusion = FusionModel.from_adapters(sources, FusionConfig(fusion_method=method))
        randomise_(fusion.fusion, seed=7, std=0.5)  # trained-looking, uneven weights
        sst2_head(fusion, seed=6)
        fusions[method] = fusion.save_fusion(root / f"sst2-{method}", task="sst2")
    return {"root": root, "adapter": sources[0], "fusions": fusions}


def test_fusion_evaluator_rows_equal_evaluate_adapter(artefacts: dict[str, Any], data_dir: Path) -> None:
    evaluator = FusionEvaluator("sst2", data_dir=data_dir)
    rows = evaluator.compare(
        adapters=[artefacts["adapter"]],
        fusions=list(artefacts["fusions"].values()),
        baselines={"other source": artefacts["root"] / SOURCES[1]},
    )
    assert [(row["system"], row["kind"]) for row in rows] == [
        ("ST-A", "ST-A"), ("attention fusion", "fusion"), ("weighted fusion", "fusion"), ("other source", "baseline")
    ]  # fmt: skip
    directories = [artefacts["adapter"], *artefacts["fusions"].values(), artefacts["root"] / SOURCES[1]]
    for row, directory in zip(rows, directories):
        direct = evaluate_adapter(directory, task="sst2", data_dir=data_dir)
        assert {k: row[k] for k in direct} == direct
        assert row["examples"] == 24 and row["split"] == "validation"
    table = evaluator.to_markdown(rows)
    lines = table.splitlines()
    assert lines[0] == "| system | kind | accuracy | split | n |"
    assert lines[2] == f"| ST-A | ST-A | {rows[0]['accuracy']:.4f} | validation | 24 |"
    assert len(lines) == 2 + len(rows)


def test_fusion_evaluator_refuses_duplicates_nothing_and_zero_shot_classification(
    artefacts: dict[str, Any], data_dir: Path
) -> None:
    evaluator = FusionEvaluator("sst2", data_dir=data_dir)
    with pytest.raises(ValueError, match="at least one adapter, fusion or baseline"):
        evaluator.compare()
    with pytest.raises(ValueError, match=r"unique; got \['x'\]"):
        evaluator.compare(adapters={"x": artefacts["adapter"]}, fusions={"x": artefacts["fusions"]["attention"]})
    with pytest.raises(ValueError, match="must be trained"):
        evaluator.compare(baselines=["zero-shot"])
    with pytest.raises(TypeError, match="list of directories"):
        evaluator.compare(adapters=str(artefacts["adapter"]))


def test_cli_compare_writes_the_table(artefacts: dict[str, Any], data_dir: Path, tmp_path: Path, capsys: Any) -> None:
    output = tmp_path / "table.md"
    fusions = [str(path) for path in artefacts["fusions"].values()]
    code = main([
        "compare", "--task", "sst2", "--data-dir", str(data_dir), "--adapter", str(artefacts["adapter"]),
        "--fusion", *fusions, "--baseline", f"other={artefacts['root'] / SOURCES[1]}", "--output", str(output),
    ])  # fmt: skip
    assert code == 0
    table = output.read_text()
    assert table.strip() in capsys.readouterr().out
    systems = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert systems == ["ST-A", "attention fusion", "weighted fusion", "other"]
    accuracy = evaluate_adapter(fusions[0], task="sst2", data_dir=data_dir)["accuracy"]
    assert f"| attention fusion | fusion | {accuracy:.4f} | validation | 24 |" in table


def test_collected_weights_are_masked_means_of_the_forward_weights(artefacts: dict[str, Any], data_dir: Path) -> None:
    """The summary equals a direct computation from ``return_fusion_weights`` on one padded batch."""
    model = FusionModel.load_fusion(artefacts["fusions"]["attention"])
    tokenizer = load_tokenizer(model.name_or_path)
    spec = get_task("sst2")
    dataset = load_task_split(spec, "validation", data_dir)
    summary = collect_fusion_weights(model, tokenizer, spec, dataset, head="sst2", batch_size=7, keep_examples=2)
    batch = tokenizer(list(dataset["text_a"]), padding=True, return_tensors="pt")
    with torch.no_grad():
        weights = model(**batch, head="sst2", return_fusion_weights=True).fusion_weights
    mask = batch["attention_mask"].bool()
    assert summary.points == tuple(sorted(weights, key=point_order)) == ("0_ffn", "1_ffn")
    expected = np.stack([weights[key][mask].mean(0).numpy() for key in summary.points])
    np.testing.assert_allclose(summary.mean, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(summary.mean.sum(-1), 1.0, rtol=1e-5)
    assert summary.tokens == int(mask.sum()) and summary.examples == 24
    labels = np.array(list(dataset["label"]))
    for index, label in enumerate(spec.label_names):
        rows = torch.tensor(labels == index)
        chosen = mask & rows[:, None]
        np.testing.assert_allclose(summary.class_mean[label][0], weights["0_ffn"][chosen].mean(0).numpy(), rtol=1e-5)
    assert summary.entropy.min() > 0 and summary.entropy.max() <= summary.max_entropy + 1e-6
    assert {sample.label for sample in summary.samples} == set(spec.label_names)  # one view per class


def test_analyze_writes_heatmaps_naming_the_adapters(
    artefacts: dict[str, Any], data_dir: Path, tmp_path: Path
) -> None:
    analysis = analyze_fusion(
        artefacts["fusions"]["attention"], output=tmp_path / "out", data_dir=data_dir, examples=2
    )
    assert set(analysis.images) == {"layers", "classes", *(f"example_{s.index}" for s in analysis.summary.samples)}
    assert len(analysis.summary.samples) == 2
    for key, path in analysis.images.items():
        assert path.stat().st_size > 5000, key
        assert set(SOURCES) <= set(analysis.labels[key]), key
    assert "layer 0 ffn" in analysis.labels["layers"] and "layer 1 ffn" in analysis.labels["layers"]
    height, width = imread(analysis.images["layers"]).shape[:2]
    assert (width, height) == (round(4.5 * 110), round(2.6 * 110))  # 2 adapters, 2 points: the minimum size
    report = analysis.report.read_text()
    for path in analysis.images.values():
        assert f"]({path.name})" in report
    dominant = analysis.summary.dominant()[0]
    assert f"| layer 0 ffn | `{dominant[1]}` | {dominant[2]:.3f} |" in report
    numbers = json.loads((tmp_path / "out" / "fusion_weights.json").read_text())
    assert numbers["adapters"] == list(SOURCES) and np.allclose(numbers["mean"], analysis.summary.mean, atol=1e-6)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporary files left


def test_cli_analyze(artefacts: dict[str, Any], data_dir: Path, tmp_path: Path, capsys: Any) -> None:
    fusion = artefacts["fusions"]["weighted"]
    code = main(["analyze", str(fusion), "--task", "sst2", "--data-dir", str(data_dir), "--output",
                 str(tmp_path / "w"), "--examples", "1"])  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert Path(printed["report"]).is_file() and len(printed["images"]) == 3
    assert set(printed["dominant"]) == {"0_ffn", "1_ffn"}


def test_analyze_refuses_an_adapter_directory_and_a_bad_example_count(
    artefacts: dict[str, Any], data_dir: Path, tmp_path: Path, capsys: Any
) -> None:
    assert main(["analyze", str(artefacts["adapter"]), "--task", "sst2", "--data-dir", str(data_dir)]) == 2
    assert "is not a fusion directory" in capsys.readouterr().err
    with pytest.raises(ValueError, match="examples must be an int >= 0; got -1"):
        analyze_fusion(artefacts["fusions"]["attention"], data_dir=data_dir, output=tmp_path, examples=-1)
    assert not list(tmp_path.iterdir())


def test_transfer_matrix_from_dict_and_rows(tmp_path: Path) -> None:
    nested = {"sst2": {"cr": 0.12, "mr": 0.05}, "mnli": {"rte": 0.031, "cr": -0.02}}
    rows = [{"source": s, "target": t, "gain": v} for s, targets in nested.items() for t, v in targets.items()]
    for values, key in ((nested, "value"), (rows, "gain")):
        figure = plot_transfer_matrix(values, tmp_path / f"{key}.png", value_key=key, dpi=100)
        labels = tick_labels(figure)
        assert {"sst2", "mnli", "cr", "mr", "rte"} <= set(labels)
        assert (tmp_path / f"{key}.png").stat().st_size > 5000
        height, width = imread(tmp_path / f"{key}.png").shape[:2]
        assert (width, height) == (round(max(4.5, 2.6 + 0.85 * 3) * 100), round(max(2.8, 1.6 + 0.45 * 2) * 100))
    sources, targets, cells = transfer_values({("a", "b"): 1.0})
    assert (sources, targets, cells) == (["a"], ["b"], {("a", "b"): 1.0})
    with pytest.raises(ValueError, match="need keys 'source', 'target', 'value'"):
        transfer_values([{"source": "a", "target": "b"}])
    with pytest.raises(TypeError, match="must be a dict or a list"):
        transfer_values(3)


@pytest.mark.parametrize("command", ["compare", "analyze"])
def test_help(command: str, capsys: Any) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert f"usage: adapter-fusion {command}" in capsys.readouterr().out


def test_multi_head_attention_weights_are_averaged_over_heads(tiny_dir: Path, data_dir: Path) -> None:
    torch.manual_seed(0)
    model = FusionModel.from_pretrained(str(tiny_dir)).eval()
    for index, name in enumerate(SOURCES):
        model.add_adapter(name, AdapterConfig(bottleneck_size=4), activate=False)
        randomise_(model.adapters.adapters[name], seed=index + 1, std=0.3)
    model.add_fusion(FusionConfig(adapter_names=SOURCES, fusion_method="attention", num_attention_heads=2))
    randomise_(model.fusion, seed=3, std=0.5)
    sst2_head(model, seed=4)
    tokenizer = load_tokenizer(str(tiny_dir))
    spec = get_task("sst2")
    dataset = load_task_split(spec, "validation", data_dir, max_examples=8)
    summary = collect_fusion_weights(model, tokenizer, spec, dataset, head="sst2", keep_examples=1)
    batch = tokenizer(list(dataset["text_a"]), padding=True, return_tensors="pt")
    with torch.no_grad():
        weights = model(**batch, head="sst2", return_fusion_weights=True).fusion_weights["1_ffn"]
    assert weights.shape[2:] == (2, len(SOURCES))  # [batch, seq, heads, adapters]
    expected = weights.mean(2)[batch["attention_mask"].bool()].mean(0).numpy()
    np.testing.assert_allclose(summary.mean[1], expected, rtol=1e-5, atol=1e-6)
    assert summary.samples[0].weights.shape == (int(batch["attention_mask"][0].sum()), 2, len(SOURCES))
