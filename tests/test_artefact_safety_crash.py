"""Crash injection (issue 14, point 5): a save is killed (SIGKILL, in a forked child: no cleanup code runs) or
fails (an exception) before each filesystem step it takes: every directory and file creation, rename and deletion
of the directory swap. Afterwards the artefact at its name always loads, as the previous or the new version
(never missing, never a mixture), and the next load removes whatever the interrupted save left beside it."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.fusion import FusionConfig
from adapter_fusion.fusion.saving import read_fusion_config
from adapter_fusion.models import AdapterModel, load_adapter, save_adapter
from adapter_fusion.models.fusion_model import FusionModel, load_fusion
from conftest import build_tiny_model, make_batch, randomise_

STEPS = ("mkdir", "replace", "rename", "unlink", "rmdir")  # the os functions through which a save changes the disk
BATCH = make_batch(batch=2, length=6)


class Injected(OSError):
    pass


def patch_steps(monkeypatch: pytest.MonkeyPatch | None, action: Callable[[int], None]) -> None:
    """Wrap the ``os`` functions of ``STEPS``: ``action(k)`` runs before the k-th call (1-based)."""
    count = [0]
    for name in STEPS:
        real = getattr(os, name)

        def wrapper(*args: Any, _real: Callable = real, **kwargs: Any) -> Any:
            count[0] += 1
            action(count[0])
            return _real(*args, **kwargs)

        if monkeypatch is None:
            setattr(os, name, wrapper)  # in the forked child only, which ends without restoring anything
        else:
            monkeypatch.setattr(os, name, wrapper)


def count_steps(save: Callable[[Path], Any], target: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    seen: list[int] = []
    with monkeypatch.context() as patch:
        patch_steps(patch, seen.append)
        save(target)
    return len(seen)


def killed_at(step: int, save: Callable[[], Any]) -> bool:
    """Run ``save`` in a forked child killed by SIGKILL just before its ``step``-th filesystem step."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:

            def kill(k: int) -> None:
                if k == step:
                    os.kill(os.getpid(), signal.SIGKILL)

            patch_steps(None, kill)
            save()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def fail_at(step: int, monkeypatch: pytest.MonkeyPatch, save: Callable[[], Any]) -> bool:
    """Run ``save`` with an ``OSError`` raised just before its ``step``-th filesystem step; True if it raised."""

    def fail(k: int) -> None:
        if k == step:
            raise Injected(f"injected failure at step {k}")

    with monkeypatch.context() as patch:
        patch_steps(patch, fail)
        try:
            save()
        except Injected:
            return True
    return False


def run_every_step(
    target: Path,
    pristine: Path,
    save: Callable[[Path], Any],
    which: Callable[[Path], str],
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, list[int]]:
    """Interrupt ``save(target)`` before each of its steps, by a kill and by an exception; after each, ``target``
    must load (``which`` loads it and says which version it is: 'old' or 'new') and nothing else may remain beside
    it. Returns 'mode:version' -> steps."""
    scratch = target.parent.parent / "scratch" / target.name
    shutil.copytree(pristine, scratch)
    steps = count_steps(save, scratch, monkeypatch)
    assert steps >= 10, steps  # the count covers the whole save, not a part of it
    found: dict[str, list[int]] = {}
    for mode in ("kill", "raise"):
        for step in range(1, steps + 2):  # steps + 1: the save runs to its end
            shutil.rmtree(target.parent, ignore_errors=True)
            shutil.copytree(pristine, target)
            if mode == "kill":
                interrupted = killed_at(step, lambda: save(target))
            else:
                interrupted = fail_at(step, monkeypatch, lambda: save(target))
            assert interrupted == (step <= steps) or mode == "raise", (mode, step)
            version = which(target)  # the load recovers a moved-aside previous version
            found.setdefault(f"{mode}:{version}", []).append(step)
            assert [p.name for p in target.parent.iterdir()] == [target.name], (mode, step)
            if mode == "raise" and interrupted:
                assert version == "old", (step, "a save that raised must leave the previous version")
    return found


def adapter_model(seed: int) -> AdapterModel:
    model = AdapterModel(build_tiny_model("bert", seed=0)).eval()
    model.add_adapter("task", AdapterConfig(bottleneck_size=4))
    model.add_classification_head("task", num_labels=2, label_names=("no", "yes"))
    randomise_(model.adapters.adapters["task"], seed=seed, std=0.3)
    randomise_(model.heads["task"], seed=seed + 10, std=0.3)
    return model


def logits_of(model: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(**BATCH).logits


def version_of(value: Any, versions: dict[str, Any], equal: Callable[[Any, Any], bool]) -> str:
    matches = [name for name, expected in versions.items() if equal(value, expected)]
    assert len(matches) == 1, "the artefact at the name is neither the previous nor the new version"
    return matches[0]


def listing(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_adapter_save_interrupted_at_every_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = adapter_model(seed=1), adapter_model(seed=2)
    pristine = save_adapter(old, "task", tmp_path / "pristine" / "task", head="task")

    model = AdapterModel(build_tiny_model("bert", seed=0)).eval()
    versions = {"old": logits_of(old), "new": logits_of(new)}

    def which(directory: Path) -> str:
        load_adapter(model, directory)
        logits = logits_of(model)
        model.adapters.remove_adapter("task")  # the same base model serves the next load
        del model.heads["task"]
        return version_of(logits, versions, torch.equal)

    found = run_every_step(
        tmp_path / "out" / "task", pristine,
        lambda target: save_adapter(new, "task", target, head="task", overwrite=True), which, monkeypatch,
    )  # fmt: skip
    # killed before the new version is renamed into place: the previous one; after: the new one
    assert found["kill:old"] and found["kill:new"] and max(found["kill:old"]) < min(found["kill:new"])


def test_fusion_save_interrupted_at_every_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "base"
    build_tiny_model("bert", seed=0).save_pretrained(base)

    def fusion_model(seed: int) -> FusionModel:
        model = FusionModel.from_pretrained(str(base)).eval()
        for index, name in enumerate(("a", "b")):
            model.add_adapter(name, AdapterConfig(bottleneck_size=4, layers=(1,)), activate=False)
            randomise_(model.adapters.adapters[name], seed=seed + index, std=0.3)
        model.add_fusion(FusionConfig(adapter_names=("a", "b"), fusion_layers=(1,)))
        model.add_classification_head("rte", num_labels=2)
        randomise_(model.fusion, seed=seed + 5, std=0.2)
        randomise_(model.heads["rte"], seed=seed + 6, std=0.3)
        return model

    old, new = fusion_model(seed=1), fusion_model(seed=20)
    pristine = old.save_fusion(tmp_path / "pristine" / "fusion")
    versions = {"old": listing(pristine), "new": listing(new.save_fusion(tmp_path / "reference" / "fusion"))}
    outputs = {"old": logits_of(old), "new": logits_of(new)}
    loaded: set[str] = set()

    def which(directory: Path) -> str:
        """Byte-identical to a version, after the checks of a load (recovery, manifest); loaded for real the
        first time each version is found (loading a fusion rebuilds its base model: slow)."""
        read_fusion_config(directory)
        version = version_of(listing(directory), versions, lambda a, b: a == b)
        if version not in loaded:
            loaded.add(version)
            assert torch.equal(logits_of(load_fusion(directory)), outputs[version])
        return version

    found = run_every_step(
        tmp_path / "out" / "fusion", pristine, lambda target: new.save_fusion(target, overwrite=True), which,
        monkeypatch,
    )  # fmt: skip
    assert loaded == {"old", "new"}
    assert found["kill:old"] and found["kill:new"] and max(found["kill:old"]) < min(found["kill:new"])
