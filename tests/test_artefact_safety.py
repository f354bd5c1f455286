"""Saved artefacts never destroy the user's files and never load silently wrong (issue 14, points 1 and 2).

One test per class of bad input: names that would become paths, output paths that would replace something else,
files changed after saving, another base model, and an interrupted Trainer checkpoint. Tiny random BERTs.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch

from adapter_fusion import manifest
from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.cli import main
from adapter_fusion.fusion import FusionConfig
from adapter_fusion.inference import FusionPipeline
from adapter_fusion.models import AdapterModel, load_adapter, read_adapter_config, save_adapter
from adapter_fusion.models.fusion_model import FusionModel, load_fusion
from adapter_fusion.tasks import get_task, get_task_type
from adapter_fusion.training.config import TrainingConfig
from adapter_fusion.training.trainer import ModularTrainer, learning_rates, resolve_resume, training_arguments
from conftest import build_tiny_model, make_batch, randomise_

ADAPTER = AdapterConfig(bottleneck_size=4)


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two tiny BERTs of the same shape on disk: seed 0 and seed 1 (another base model)."""
    root = tmp_path_factory.mktemp("bases")
    paths = {}
    for seed in (0, 1):
        build_tiny_model("bert", seed=seed).save_pretrained(root / f"bert{seed}")
        paths[f"bert{seed}"] = str(root / f"bert{seed}")
    return paths


def trained(base: str, name: str = "task", seed: int = 1) -> AdapterModel:
    model = AdapterModel.from_pretrained(base).eval()
    model.add_adapter(name, ADAPTER)
    model.add_classification_head(name, num_labels=2, label_names=("no", "yes"), task="sst2")
    randomise_(model.adapters.adapters[name], seed=seed, std=0.3)
    randomise_(model.heads[name], seed=seed + 10, std=0.3)
    return model


def logits(model: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(**make_batch(batch=2, length=6)).logits


def listing(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------ 1. names
@pytest.mark.parametrize("bad", ["/tmp/thesis", "../escape", "a/b", ".hidden", "", "..", "a\\b", "x" * 129])
def test_names_that_would_become_paths_are_refused(bases: dict[str, str], tmp_path: Path, bad: str) -> None:
    directory = save_adapter(trained(bases["bert0"]), "task", tmp_path / "task")
    # a downloaded adapter whose adapter_config.json names it with a path: refused on reading
    config = json.loads((directory / "adapter_config.json").read_text())
    (directory / "adapter_config.json").write_text(json.dumps({**config, "name": bad}))
    with pytest.raises(ValueError, match="adapter name in .* must be a plain identifier"):
        read_adapter_config(directory, allow_modified=True)
    # a name chosen for the adapters of a fusion (FusionConfig.adapter_names / load_adapter(name=...))
    source = save_adapter(trained(bases["bert0"]), "task", tmp_path / "src")
    with pytest.raises(ValueError, match="must be a plain identifier|non-empty strings"):
        FusionModel.from_adapters([source], FusionConfig(adapter_names=(bad,)))
    # a head name that would become heads/<name> in a saved fusion (torch itself refuses names with dots)
    model = FusionModel.from_adapters([source], FusionConfig(adapter_names=("ok",)))
    model.add_classification_head(bad.replace(".", "/") or " ", num_labels=2)
    with pytest.raises(ValueError, match="head name must be a plain identifier"):
        model.save_fusion(tmp_path / "fusion")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "task"]  # nothing written


def test_a_fusion_only_references_files_inside_itself(bases: dict[str, str], tmp_path: Path) -> None:
    model = FusionModel.from_adapters(
        [save_adapter(trained(bases["bert0"], seed=s), "task", tmp_path / f"a{s}") for s in (1, 2)],
        FusionConfig(adapter_names=("a", "b")),
    )
    model.add_classification_head("rte", num_labels=2)
    fusion = model.save_fusion(tmp_path / "fusion")
    config = json.loads((fusion / "fusion_config.json").read_text())
    (fusion / "fusion_config.json").write_text(json.dumps({**config, "adapter_names": ["a", "../../a1"]}))
    with pytest.raises(ValueError, match=r"adapter name in .*fusion_config.json must be a plain identifier"):
        load_fusion(fusion, allow_modified=True)  # refused even when the user accepts modified files
    (fusion / "fusion_config.json").write_text(json.dumps(config))
    # adapters/b replaced by a symbolic link to an adapter outside the fusion
    moved = tmp_path / "outside_b"
    (fusion / "adapters" / "b").rename(moved)
    (fusion / "adapters" / "b").symlink_to(moved, target_is_directory=True)
    with pytest.raises(ValueError, match="adapters/b/adapter.safetensors' listed in .* points outside"):
        load_fusion(fusion, allow_modified=True)
    manifest = json.loads((fusion / "manifest.json").read_text())
    manifest["files"]["../outside_b/adapter_config.json"] = manifest["files"].pop("adapters/b/adapter_config.json")
    (fusion / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="listed in .*manifest.json points outside"):
        load_fusion(fusion)


# ------------------------------------------------------------------------------------------------ 1. outputs
def test_output_never_replaces_what_is_not_its_own_kind(bases: dict[str, str], tmp_path: Path) -> None:
    model = trained(bases["bert0"])
    parent = tmp_path / "adapters"
    for name in ("sst2", "rte"):
        save_adapter(trained(bases["bert0"], name), name, parent / name)
    file = tmp_path / "notes.txt"
    file.write_text("the user's notes")
    link = tmp_path / "link"
    link.symlink_to(parent / "sst2", target_is_directory=True)
    before = listing(tmp_path)
    for target, match in [
        (parent, r"not a saved adapter \(it holds rte, sst2\)"),  # a parent folder of adapters (forgot '/mr')
        (file, "is an existing file"),
        (link, "is a symbolic link"),
        (tmp_path, "not a saved adapter"),
    ]:
        for overwrite in (False, True):
            with pytest.raises(FileExistsError, match=match):
                save_adapter(model, "task", target, head="task", overwrite=overwrite)
    with pytest.raises(NotADirectoryError, match="is a file, not a directory"):
        save_adapter(model, "task", file / "sub")
    assert listing(tmp_path) == before
    # an existing adapter: only with overwrite; a fusion never over an adapter
    with pytest.raises(FileExistsError, match="already holds a saved adapter; pass overwrite=True"):
        save_adapter(model, "task", parent / "sst2")
    assert listing(tmp_path) == before
    save_adapter(model, "task", parent / "sst2", head="task", overwrite=True)
    assert read_adapter_config(parent / "sst2")["name"] == "task"
    fusion = FusionModel.from_adapters([parent / "rte"], FusionConfig())
    fusion.add_classification_head("rte2", num_labels=2)
    with pytest.raises(FileExistsError, match="is a saved adapter; a fusion is only written"):
        fusion.save_fusion(parent / "sst2", overwrite=True)
    (tmp_path / "empty").mkdir()  # an empty directory holds nothing to lose
    save_adapter(model, "task", tmp_path / "empty")
    assert sorted(p.name for p in parent.iterdir()) == ["rte", "sst2"]  # no leftovers beside them


def test_output_is_never_an_input_of_the_same_run(bases: dict[str, str], tmp_path: Path) -> None:
    paths = [save_adapter(trained(bases["bert0"], seed=s), "task", tmp_path / f"a{s}") for s in (1, 2)]
    model = FusionModel.from_adapters(paths, FusionConfig(adapter_names=("a", "b")))
    model.add_classification_head("rte", num_labels=2)
    before = listing(tmp_path)
    for target in (paths[0], paths[1] / "fusion", tmp_path):
        with pytest.raises((ValueError, FileExistsError), match="an input of this run|not a saved fusion"):
            model.save_fusion(target, overwrite=True)
    assert listing(tmp_path) == before
    # the CLI refuses it before loading or training anything
    code = main(["train-fusion", "--task", "rte", "--adapters", *map(str, paths), "--output", str(paths[1])])
    assert code == 2 and listing(tmp_path) == before


def test_cli_checks_the_output_before_training(
    bases: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    existing = save_adapter(trained(bases["bert0"]), "task", tmp_path / "sst2")
    (tmp_path / "file").write_text("x")
    before = listing(tmp_path)
    capsys.readouterr()
    for output, message in [
        (existing, "already holds a saved adapter; pass overwrite=True (CLI: --overwrite)"),
        (tmp_path, "is a directory that is not a saved adapter"),
        (tmp_path / "file" / "sst2", "is a file, so the directory cannot be made"),
    ]:
        # no data directory is given: the run would fail on loading data if the check came after it
        assert main(["train-adapter", "--task", "sst2", "--model", bases["bert0"], "--output", str(output),
                     "--data-dir", str(tmp_path / "no-data")]) == 2  # fmt: skip
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    # the Trainer's checkpoints would land inside the adapter (which would then be refused after training)
    assert main(["train-adapter", "--task", "sst2", "--output", str(tmp_path / "new"),
                 "--output-dir", str(tmp_path / "new" / "runs")]) == 2  # fmt: skip
    assert "overlap; give them separate paths" in capsys.readouterr().err
    assert listing(tmp_path) == before


# ------------------------------------------------------------------------------------------------ 2. integrity
def test_every_file_is_checked_against_the_manifest(
    bases: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = trained(bases["bert0"])
    expected = logits(model)
    directory = save_adapter(model, "task", tmp_path / "task", head="task")
    manifest = json.loads((directory / "manifest.json").read_text())
    assert set(manifest["files"]) == {"adapter_config.json", "adapter.safetensors", "head_config.json",
                                      "head.safetensors", "README.md"}  # fmt: skip
    assert manifest["kind"] == "adapter" and manifest["format_version"] == 1
    assert manifest["base_model"]["name"] == bases["bert0"] and len(manifest["base_model"]["weights_sha256"]) == 64

    def edit(name: str, change: Any) -> None:
        path = directory / name
        original = path.read_bytes()
        change(path)
        with pytest.raises((ValueError, FileNotFoundError), match=rf"{name}.*(changed|missing|added|does not list)"):
            load_adapter(AdapterModel.from_pretrained(bases["bert0"]), directory)
        path.write_bytes(original) if original else path.unlink(missing_ok=True)

    labels = json.loads((directory / "head_config.json").read_text())
    edit("head_config.json", lambda p: p.write_text(json.dumps({**labels, "label_names": ["yes", "no"]})))
    edit("adapter.safetensors", lambda p: p.write_bytes(p.read_bytes()[:-8] + b"\x00" * 8))
    edit("head.safetensors", lambda p: p.unlink())
    (directory / "extra.safetensors").write_bytes(b"")
    edit("extra.safetensors", lambda p: None)
    emptied = {**manifest, "files": {}}
    edit("manifest.json", lambda p: p.write_text(json.dumps(emptied)))  # deleting the checksums turns nothing off
    (directory / "manifest.json").write_text(json.dumps(manifest))
    removed = (directory / "manifest.json").read_bytes()
    (directory / "manifest.json").unlink()
    with pytest.raises(ValueError, match="manifest.json is missing"):
        load_adapter(AdapterModel.from_pretrained(bases["bert0"]), directory)
    (directory / "manifest.json").write_bytes(removed)
    # the explicit flag loads a modified adapter, with a warning naming the file
    (directory / "adapter_config.json").write_text((directory / "adapter_config.json").read_text() + " ")
    fresh = AdapterModel.from_pretrained(bases["bert0"]).eval()
    with caplog.at_level(logging.WARNING):
        load_adapter(fresh, directory, allow_modified=True)
    assert "adapter_config.json changed after the adapter was saved" in caplog.text
    assert torch.equal(logits(fresh), expected)
    weights = directory / "adapter.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])  # cut off: even with the flag, a clear error, not a crash
    with pytest.raises(ValueError, match="adapter.safetensors is not a readable safetensors file"):
        load_adapter(AdapterModel.from_pretrained(bases["bert0"]), directory, name="again", allow_modified=True)


def test_fusion_manifest_covers_json_too(bases: dict[str, str], tmp_path: Path) -> None:
    model = FusionModel.from_adapters([save_adapter(trained(bases["bert0"]), "task", tmp_path / "a")], FusionConfig())
    model.add_classification_head("rte", num_labels=2)
    fusion = model.save_fusion(tmp_path / "fusion")
    config = json.loads((fusion / "fusion_config.json").read_text())
    (fusion / "fusion_config.json").write_text(json.dumps({**config, "temperature": 0.1}))
    with pytest.raises(ValueError, match="fusion_config.json changed after the fusion was saved"):
        load_fusion(fusion)
    (fusion / "fusion_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    load_fusion(fusion)


def test_one_load_hashes_each_file_once(
    tiny_cli_env: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """``evaluate`` of a saved fusion or adapter, and ``FusionPipeline.from_pretrained``, check every file against
    the manifest once and load what was checked (issue 15: evaluating a fusion hashed each file three times)."""
    spec = get_task("sst2")
    model = AdapterModel.from_pretrained(str(tiny_cli_env["model"]))
    model.add_head("sst2", get_task_type(spec).head_config(spec))
    sources = []
    for seed, name in enumerate(("a", "b"), start=1):
        model.add_adapter(name, ADAPTER, activate=False)
        randomise_(model.adapters.adapters[name], seed=seed, std=0.3)
        sources.append(save_adapter(model, name, tmp_path / name, head="sst2", metadata={"task": "sst2"}))
    fused = FusionModel.from_adapters(sources, FusionConfig())
    fused.add_head("sst2", get_task_type(spec).head_config(spec))
    fusion = fused.save_fusion(tmp_path / "fusion", task="sst2")
    hashed: Counter[Path] = Counter()

    def counting(path: Path, _original: Any = manifest.file_sha256) -> str:
        hashed[Path(path)] += 1
        return _original(path)

    monkeypatch.setattr(manifest, "file_sha256", counting)
    evaluate = ["evaluate", "--data-dir", str(tiny_cli_env["data"]), "--max-examples", "4", "--adapter"]
    for directory in (fusion, sources[0]):
        files = {path for path in directory.rglob("*") if path.is_file() and path.name != "manifest.json"}
        files |= set(directory.glob("adapters/*/manifest.json"))  # the fused adapters' own are files of the fusion
        hashed.clear()
        assert main([*evaluate, str(directory)]) == 0
        assert hashed == dict.fromkeys(files, 1)
        hashed.clear()
        FusionPipeline.from_pretrained(directory)
        assert hashed == dict.fromkeys(files, 1)
    # checked once, still checked: a changed weights file is refused, named, before anything is scored
    weights = fusion / "fusion.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
    capsys.readouterr()
    assert main([*evaluate, str(fusion)]) == 2
    assert "fusion.safetensors changed after the fusion was saved" in capsys.readouterr().err
    with pytest.raises(ValueError, match="fusion.safetensors changed after the fusion was saved"):
        FusionPipeline.from_pretrained(fusion)


def test_another_base_model_is_refused_naming_both(
    bases: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    on0 = save_adapter(trained(bases["bert0"]), "task", tmp_path / "on0", head="task", metadata={"task": "sst2"})
    on1 = save_adapter(trained(bases["bert1"]), "task", tmp_path / "on1")
    capsys.readouterr()
    both = rf"saved on base model '{bases['bert0']}' .*but the base model here is '{bases['bert1']}'"
    with pytest.raises(ValueError, match=both):
        load_adapter(AdapterModel.from_pretrained(bases["bert1"]), on0)
    with pytest.raises(ValueError, match=both):
        FusionPipeline.from_pretrained(on0, model=bases["bert1"])  # predict / evaluate --model OTHER
    for order in ([on0, on1], [on1, on0]):  # fusing adapters of two base models: refused in either order
        with pytest.raises(ValueError, match="saved on base model .*but the base model here is"):
            FusionModel.from_adapters(order, FusionConfig(adapter_names=("a", "b")))
    assert main(["evaluate", "--adapter", str(on0), "--model", bases["bert1"]]) == 2
    error = capsys.readouterr().err.splitlines()[-1]  # after transformers' own progress bars
    assert error.startswith("adapter-fusion evaluate: error: adapter at") and bases["bert1"] in error
    fused = FusionModel.from_adapters([on0, on1], FusionConfig(adapter_names=("a", "b")), allow_other_base=True)
    fused.add_classification_head("rte", num_labels=2)
    fusion = fused.save_fusion(tmp_path / "fusion")
    with pytest.raises(ValueError, match=f"fusion at .*but the base model here is '{bases['bert1']}'"):
        load_fusion(fusion, model=bases["bert1"])
    assert load_fusion(fusion, model=bases["bert1"], allow_other_base=True).fusion.adapter_names == ("a", "b")
    same = AdapterModel(build_tiny_model("bert", seed=0))  # the same weights and config, built in memory
    load_adapter(same, on0)


def test_legacy_artefacts_load_with_a_note(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import shutil

    legacy = shutil.copytree(Path(__file__).parent / "fixtures" / "legacy" / "adapter", tmp_path / "legacy")
    with caplog.at_level(logging.WARNING):
        load_adapter(AdapterModel(build_tiny_model("bert", seed=0)), legacy)
    notes = [r.getMessage() for r in caplog.records if "unverified" in r.getMessage()]
    assert len(notes) == 1 and "\n" not in notes[0] and str(legacy) in notes[0]


# ------------------------------------------------------------------------------------------------ 2. checkpoints
def test_resume_last_skips_an_incomplete_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def run(resume: str | None) -> Any:
        torch.manual_seed(0)
        model = AdapterModel(build_tiny_model("bert", seed=0))
        model.add_classification_head("toy", num_labels=2, dropout=0.0)
        model.add_adapter("toy", ADAPTER)
        model.train_adapter("toy")
        batch = make_batch(batch=8, length=6, seed=3)
        rows = [{"input_ids": i.tolist(), "attention_mask": m.tolist(), "labels": int(i[0]) % 2}
                for i, m in zip(batch["input_ids"], batch["attention_mask"])]  # fmt: skip
        config = TrainingConfig(output_dir=str(tmp_path), max_steps=4, batch_size=4, eval_steps=2,
                                disable_tqdm=True, resume_from_checkpoint=resume)  # fmt: skip
        trainer = ModularTrainer(
            model=model, args=training_arguments(config, None), train_dataset=datasets.Dataset.from_list(rows),
            data_collator=lambda f: {k: torch.tensor([x[k] for x in f]) for k in f[0]},
            learning_rates=learning_rates(config),
        )  # fmt: skip
        return trainer.train(resume_from_checkpoint=resolve_resume(config))

    run(None)
    state = tmp_path / "checkpoint-4" / "trainer_state.json"
    state.write_text(state.read_text()[:40])  # killed while the Trainer wrote its state (it writes it last)
    with caplog.at_level(logging.WARNING):
        config = TrainingConfig(output_dir=str(tmp_path), resume_from_checkpoint="last")
        assert resolve_resume(config) == str(tmp_path / "checkpoint-2")
    assert "skipping incomplete checkpoint" in caplog.text and "trainer_state.json is cut off" in caplog.text
    assert run("last").global_step == 4  # resumed from checkpoint-2
    (tmp_path / "checkpoint-2" / "trainable.safetensors").write_bytes(b"\x10\x00")
    with pytest.raises(ValueError, match="cannot resume from checkpoint .*checkpoint-2: trainable.safetensors"):
        resolve_resume(TrainingConfig(output_dir=str(tmp_path), resume_from_checkpoint=str(tmp_path / "checkpoint-2")))
