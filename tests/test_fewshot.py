"""Few-shot splits (LM-BFF protocol): k per class for training and k per class for model selection, disjoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapter_fusion.tasks import few_shot_splits


@pytest.fixture
def cr_dir(tmp_path: Path) -> Path:
    """A tiny ``lmbff_pcp`` CR layout: 40 reviews, 30 negative and 10 positive."""
    rows = {str(i): {"text_a": f"review {i}", "label": int(i >= 30)} for i in range(40)}
    folder = tmp_path / "lmbff_pcp/glue_pretrain/cr"
    folder.mkdir(parents=True)
    (folder / "train.json").write_text(json.dumps(rows))
    (folder / "dev.json").write_text(json.dumps({"0": {"text_a": "x", "label": 0}}))
    return tmp_path


def test_splits_hold_k_per_class_disjoint_and_reproducible(cr_dir: Path) -> None:
    train, dev = few_shot_splits("cr", shots=4, seed=13, data_dir=cr_dir)
    assert sorted(train["label"]) == [0] * 4 + [1] * 4 and sorted(dev["label"]) == [0] * 4 + [1] * 4
    assert not set(train["text_a"]) & set(dev["text_a"])
    again, _ = few_shot_splits("cr", shots=4, seed=13, data_dir=cr_dir)
    other, _ = few_shot_splits("cr", shots=4, seed=21, data_dir=cr_dir)
    assert again["text_a"] == train["text_a"] and other["text_a"] != train["text_a"]


def test_too_few_examples_of_a_class_is_an_error_naming_the_counts(cr_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"too few examples for 6 dev examples.*'positive': 2"):
        few_shot_splits("cr", shots=6, seed=13, data_dir=cr_dir)


@pytest.mark.parametrize("shots", [0, -1, 1.5])
def test_bad_shot_counts_are_refused(cr_dir: Path, shots: object) -> None:
    with pytest.raises((ValueError, TypeError), match="shots"):
        few_shot_splits("cr", shots=shots, seed=13, data_dir=cr_dir)  # type: ignore[arg-type]


def test_non_classification_tasks_are_refused() -> None:
    with pytest.raises(ValueError, match="'xquad' is 'extractive_qa'"):
        few_shot_splits("xquad", shots=4)
