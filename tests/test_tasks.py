"""Tests of the task registry, the local readers, Hub loading (with a fake Hub) and the metrics.

The fast tests write tiny files in the formats of the shared data directory. The ``realdata`` test loads every task
from the real data directory and checks the split sizes of its README.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import datasets
import numpy as np
import pytest

from adapter_fusion.tasks import (
    DATA_DIR_ENV,
    SPLITS,
    TaskSpec,
    compute_metrics,
    get_task,
    list_tasks,
    load_task_split,
    resolve_data_dir,
)
from adapter_fusion.tasks import base as tasks_base
from adapter_fusion.tasks.sentence.readers import JsonReader, TsvReader

EXPECTED_TASKS = {
    "ag_news", "boolq", "cola", "cr", "imdb", "imdb_pcp", "mnli", "mnli_plus", "mpqa", "mr", "mrpc", "qnli",
    "qnli_squad", "qqp", "rte", "snli", "sst2", "sst5", "stsb", "subj", "trec", "wikiqa", "wnli",
}


# --- tiny data directory -----------------------------------------------------------------------------------------

def write_tsv(path: Path, rows: list[list[str]], bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join("\t".join(row) for row in rows) + "\n"
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    return path


def write_json(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({str(i): record for i, record in enumerate(records)}), encoding="utf-8")
    return path


@pytest.fixture()
def tiny_data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    sst2_rows = [[f"film number {i} is {'good' if i % 2 else 'bad'} ", str(i % 2)] for i in range(30)]
    sst2_rows[0] = ['a "quoted" film , the "best', "1"]
    write_tsv(root / "glue/SST-2/train.tsv", [["sentence", "label"], *sst2_rows])
    write_tsv(root / "glue/SST-2/dev.tsv", [["sentence", "label"], ["fine .", "1"], ["awful .", "0"]])
    write_tsv(root / "glue/SST-2/test.tsv", [["index", "sentence"], ["0", "no label here"]])
    write_tsv(root / "glue/CoLA/train.tsv", [["gj04", "1", "", "The cat sat."], ["gj04", "0", "*", "Cat the sat."]])
    mrpc_header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    write_tsv(root / "glue/MRPC/train.tsv", [mrpc_header, ["1", "1", "2", "A b .", "B a ."]], bom=True)
    write_tsv(root / "glue/MRPC/msr_paraphrase_test.txt", [mrpc_header, ["0", "3", "4", "C .", "D ."]], bom=True)
    write_tsv(root / "glue/STS-B/train.tsv", [["index", "genre", "sentence1", "sentence2", "score"],
                                              ["0", "news", "A plane.", "An air plane.", "5.000"],
                                              ["1", "news", "A man.", "A flute.", "0.800"]])
    write_tsv(root / "glue/RTE/train.tsv", [["index", "sentence1", "sentence2", "label"],
                                            ["0", "P one.", "H one.", "not_entailment"],
                                            ["1", "P two.", "H two.", "entailment"]])
    nli = [{"text_a": f"p{i}", "text_b": f"h{i}", "label": label}
           for i, label in enumerate(["entailment", "neutral", "contradiction"] * 4)]
    write_json(root / "lmbff_pcp/glue_pretrain/MNLI/train.json", nli)
    write_json(root / "lmbff_pcp/glue_pretrain/MNLI/dev.json", nli[:3])
    sst5 = [{"text_a": "meh .", "text_b": None, "label": 2}, {"text_a": "wow .", "text_b": "None", "label": "4"},
            {"text_a": "bad .", "text_b": None, "label": 0}]
    write_json(root / "lmbff_pcp/glue_pretrain/sst-5/dev.json", sst5)
    write_json(root / "lmbff_pcp/glue_pretrain/sst-5/train.json",
               [{"text_a": f"s{i} .", "text_b": None, "label": i % 5} for i in range(12)])
    trec = [{"text_a": f"q{i} ?", "text_b": None, "label": i} for i in range(6)]
    write_json(root / "lmbff_pcp/glue_pretrain/trec/dev.json", trec)
    write_tsv(root / "agnews/dev.tsv", [[f"news {i}", ["World", "Sports", "Business", "Sci/Tech"][i % 4]]
                                        for i in range(20)])
    imdb = [{"ori": f"review {i}", "label": str(i % 2)} for i in range(20)]
    write_json(root / "lmbff_pcp/aclImdb/dev.json", imdb)
    write_json(root / "lmbff_pcp/aclImdb/test.json", imdb[:4])
    (root / "snli_esnli").mkdir(parents=True)
    (root / "snli_esnli/s1.dev").write_text("A man sleeps . \nTwo dogs run .\n", encoding="utf-8")
    (root / "snli_esnli/s2.dev").write_text("A person rests .\nCats sit .\n", encoding="utf-8")
    (root / "snli_esnli/labels.dev").write_text("entailment\ncontradiction\n", encoding="utf-8")
    return root


@pytest.fixture()
def no_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No explicit dir, no env var, and a working directory without ./data or ../shared/data: the Hub is used."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    workdir = tmp_path / "empty" / "work"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)


# --- registry ----------------------------------------------------------------------------------------------------

def test_registry_holds_the_expected_tasks() -> None:
    sentence_tasks = {spec.name for spec in list_tasks() if spec.task_type in ("classification", "regression")}
    assert sentence_tasks == EXPECTED_TASKS
    names = [spec.name for spec in list_tasks()]
    assert names == sorted(names)


@pytest.mark.parametrize(("name", "canonical"), [
    ("sst2", "sst2"), ("SST2", "sst2"), ("sst-2", "sst2"), ("SST_2", "sst2"), ("sentiment", "sst2"),
    ("nli", "mnli"), ("topic", "ag_news"), ("agnews", "ag_news"), ("ag-news", "ag_news"), ("AG News", "ag_news"),
    ("paraphrase", "mrpc"), ("similarity", "stsb"), ("sts-b", "stsb"), ("sst-5", "sst5"), ("trec-6", "trec"),
])
def test_get_task_accepts_aliases_and_spelling_variants(name: str, canonical: str) -> None:
    assert get_task(name).name == canonical


def test_unknown_task_raises_key_error_listing_known_names() -> None:
    with pytest.raises(KeyError, match="'no-such-task'.*sst2.*sentiment"):
        get_task("no-such-task")


def test_task_spec_properties() -> None:
    assert get_task("stsb").num_labels == 1 and get_task("stsb").task_type == "regression"
    mnli = get_task("mnli")
    assert mnli.label_names == ("entailment", "neutral", "contradiction") and mnli.num_labels == 3
    assert mnli.label2id["neutral"] == 1 and mnli.id2label[2] == "contradiction"
    assert "local=" not in repr(mnli) and "hub=" not in repr(mnli)
    with pytest.raises(dataclasses.FrozenInstanceError):
        mnli.name = "other"  # type: ignore[misc]
    for spec in list_tasks():
        assert spec.main_metric in spec.metrics and spec.description
        if spec.task_type in ("classification", "regression"):
            assert spec.is_pair == (spec.hub is not None and spec.hub.text_b is not None)


@pytest.mark.parametrize(("changes", "match"), [
    ({"main_metric": "f1"}, "main_metric"),
    ({"metrics": ("accuracy", "bleu")}, "bleu"),
    ({"task_type": "tagging"}, "tagging"),
    ({"label_names": ("yes",)}, "at least 2"),
    ({"task_type": "regression"}, "regression"),
    ({"name": "SST2"}, "lower-case"),
])
def test_task_spec_validates_fields(changes: dict, match: str) -> None:
    fields = {"name": "toy", "task_type": "classification", "label_names": ("no", "yes"), "is_pair": False,
              "metrics": ("accuracy",), "main_metric": "accuracy", "description": "toy"}
    TaskSpec(**fields)
    with pytest.raises(ValueError, match=match):
        TaskSpec(**{**fields, **changes})


def test_task_spec_rejects_label_maps_to_unknown_names() -> None:
    file = tasks_base.LocalFile(("x.json",), JsonReader(), label_map={"0": "maybe"})
    local = tasks_base.LocalSource({"train": file})
    with pytest.raises(ValueError, match="label_map value.*'no', 'yes'; got 'maybe'"):
        TaskSpec("toy", "classification", ("no", "yes"), False, ("accuracy",), "accuracy", "toy", local=local)


# --- local readers -----------------------------------------------------------------------------------------------

def test_glue_tsv_single_sentence(tiny_data_dir: Path) -> None:
    train = load_task_split("sst2", "train", data_dir=tiny_data_dir)
    assert train.column_names == ["text_a", "text_b", "label"]
    assert len(train) == 30 and train.cache_files == []
    assert train[0] == {"text_a": 'a "quoted" film , the "best', "text_b": "", "label": 1}
    assert train[2] == {"text_a": "film number 2 is bad", "text_b": "", "label": 0}
    assert train.features["label"].names == ["negative", "positive"]
    assert load_task_split("sentiment", "validation", data_dir=tiny_data_dir)["label"] == [1, 0]


def test_cola_headerless_tsv(tiny_data_dir: Path) -> None:
    train = load_task_split("cola", "train", data_dir=tiny_data_dir)
    assert train["text_a"] == ["The cat sat.", "Cat the sat."] and train["label"] == [1, 0]


def test_mrpc_with_bom_and_labelled_msr_test_file(tiny_data_dir: Path) -> None:
    assert load_task_split("mrpc", "train", data_dir=tiny_data_dir)[0] == {"text_a": "A b .", "text_b": "B a .",
                                                                        "label": 1}
    assert load_task_split("mrpc", "test", data_dir=tiny_data_dir)[0] == {"text_a": "C .", "text_b": "D .", "label": 0}


def test_stsb_regression_scores(tiny_data_dir: Path) -> None:
    train = load_task_split("stsb", "train", data_dir=tiny_data_dir)
    assert train["label"] == pytest.approx([5.0, 0.8]) and train[1]["text_b"] == "A flute."


def test_string_labels_map_to_class_ids(tiny_data_dir: Path) -> None:
    assert load_task_split("rte", "train", data_dir=tiny_data_dir)["label"] == [1, 0]
    mnli = load_task_split("mnli", "validation", data_dir=tiny_data_dir)
    assert mnli["label"] == [0, 1, 2] and mnli[0]["text_b"] == "h0"


def test_lmbff_single_sentence_json_has_empty_text_b(tiny_data_dir: Path) -> None:
    dev = load_task_split("sst5", "validation", data_dir=tiny_data_dir)
    assert dev["text_b"] == ["", "", ""] and dev["label"] == [2, 4, 0]


def test_trec_ids_are_remapped_to_hub_order(tiny_data_dir: Path) -> None:
    dev = load_task_split("trec", "validation", data_dir=tiny_data_dir)
    names = [get_task("trec").label_names[i] for i in dev["label"]]
    assert names == ["description", "entity", "abbreviation", "human", "location", "number"]


def test_imdb_pcp_labels_are_reversed_and_validation_carved(tiny_data_dir: Path) -> None:
    train = load_task_split("imdb_pcp", "train", data_dir=tiny_data_dir)
    validation = load_task_split("imdb_pcp", "validation", data_dir=tiny_data_dir)
    assert (len(train), len(validation)) == (18, 2)
    assert not set(train["text_a"]) & set(validation["text_a"])
    test = load_task_split("imdb_pcp", "test", data_dir=tiny_data_dir)
    assert test["label"] == [1, 0, 1, 0]  # file "0" (positive) -> id 1


def test_snli_test_reads_aligned_lines(tiny_data_dir: Path) -> None:
    test = load_task_split("snli", "test", data_dir=tiny_data_dir)
    assert test[:] == {"text_a": ["A man sleeps .", "Two dogs run ."], "text_b": ["A person rests .", "Cats sit ."],
                       "label": [0, 2]}


@pytest.mark.parametrize(("task", "file_rows", "sizes"), [("ag_news", 20, {"train": 16, "validation": 2, "test": 2}),
                                                          ("sst5", 12, {"train": 11, "test": 1})])
def test_carved_splits_are_disjoint_complete_and_fixed(tiny_data_dir: Path, task: str, file_rows: int, sizes: dict
                                                       ) -> None:
    parts = {split: load_task_split(task, split, data_dir=tiny_data_dir)["text_a"] for split in sizes}
    assert {split: len(texts) for split, texts in parts.items()} == sizes
    assert len(set().union(*parts.values())) == file_rows == sum(sizes.values())
    again = load_task_split(task, "test", data_dir=tiny_data_dir, seed=7)["text_a"]
    assert again == parts["test"]  # the carve ignores the subsampling seed


def test_glue_pretraining_subsets_train_on_the_whole_file(tiny_data_dir: Path) -> None:
    assert len(load_task_split("mnli", "train", data_dir=tiny_data_dir)) == 12
    with pytest.raises(ValueError, match="test"):
        load_task_split("mnli", "test", data_dir=tiny_data_dir)


# --- errors ------------------------------------------------------------------------------------------------------

def test_unknown_split_is_refused(tiny_data_dir: Path) -> None:
    with pytest.raises(ValueError, match="'train', 'validation', 'test'; got 'dev'"):
        load_task_split("sst2", "dev", data_dir=tiny_data_dir)


def test_unlabelled_glue_test_split_is_refused(tiny_data_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"SST-2/test.tsv\) has no labels.*train, validation"):
        load_task_split("sst2", "test", data_dir=tiny_data_dir)


def test_bad_class_label_names_label_file_and_allowed(tiny_data_dir: Path) -> None:
    path = write_tsv(tiny_data_dir / "glue/RTE/train.tsv", [["index", "sentence1", "sentence2", "label"],
                                                      ["0", "P.", "H.", "maybe"]])
    with pytest.raises(ValueError, match=rf"'maybe' in {path}.*'entailment'"):
        load_task_split("rte", "train", data_dir=tiny_data_dir)


def test_bad_regression_label(tiny_data_dir: Path) -> None:
    write_tsv(tiny_data_dir / "glue/STS-B/train.tsv", [["sentence1", "sentence2", "score"], ["a", "b", "high"]])
    with pytest.raises(ValueError, match="'high'.*not a finite number"):
        load_task_split("stsb", "train", data_dir=tiny_data_dir)


def test_missing_file_names_path_and_task(tiny_data_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"'qnli'.*QNLI/train.json"):
        load_task_split("qnli", "train", data_dir=tiny_data_dir)


def test_reader_format_errors(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "x.tsv", [["sentence", "label"], ["only one field"]])
    with pytest.raises(ValueError, match=r"x.tsv:2: expected 2 tab-separated fields \(the header.s\), got 1"):
        TsvReader(text_a="sentence", label="label")([path])
    with pytest.raises(ValueError, match="no column 'text'"):
        TsvReader(text_a="text", label="label")([path])
    json_path = write_json(tmp_path / "x.json", [{"text_a": "t"}])
    with pytest.raises(ValueError, match="record '0' needs fields 'text_a' and 'label'"):
        JsonReader()([json_path])


# --- max_examples ------------------------------------------------------------------------------------------------

def test_max_examples_is_a_deterministic_subsample(tiny_data_dir: Path) -> None:
    full = load_task_split("sst2", "train", data_dir=tiny_data_dir)["text_a"]
    first = load_task_split("sst2", "train", data_dir=tiny_data_dir, max_examples=10, seed=1)["text_a"]
    assert first == load_task_split("sst2", "train", data_dir=tiny_data_dir, max_examples=10, seed=1)["text_a"]
    assert first != load_task_split("sst2", "train", data_dir=tiny_data_dir, max_examples=10, seed=2)["text_a"]
    assert len(set(first)) == 10 and set(first) <= set(full)
    assert load_task_split("sst2", "train", data_dir=tiny_data_dir, max_examples=1000)["text_a"] == full
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="max_examples"):
            load_task_split("sst2", "train", data_dir=tiny_data_dir, max_examples=bad)  # type: ignore[arg-type]


# --- data directory resolution -----------------------------------------------------------------------------------

def test_resolve_data_dir_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    explicit, env_dir, work = tmp_path / "explicit", tmp_path / "env", tmp_path / "a" / "work"
    for path in (explicit, env_dir, work):
        path.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert resolve_data_dir(None) is None
    (tmp_path / "a" / "shared" / "data").mkdir(parents=True)
    assert resolve_data_dir(None) == (tmp_path / "a" / "shared" / "data").resolve()
    (work / "data").mkdir()
    assert resolve_data_dir(None) == (work / "data").resolve()
    monkeypatch.setenv(DATA_DIR_ENV, str(env_dir))
    assert resolve_data_dir(None) == env_dir.resolve()
    assert resolve_data_dir(str(explicit)) == explicit.resolve()
    with pytest.raises(FileNotFoundError, match="nowhere"):
        resolve_data_dir(tmp_path / "nowhere")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "gone"))
    with pytest.raises(FileNotFoundError, match=f"{DATA_DIR_ENV}.*gone"):
        resolve_data_dir(None)


# --- Hub (faked) -------------------------------------------------------------------------------------------------

@pytest.fixture()
def fake_hub(monkeypatch: pytest.MonkeyPatch, no_data_dir: None) -> list[tuple]:
    """Replace the single Hub call; each fake dataset has 20 rows."""
    calls: list[tuple] = []

    def load(path: str, config: str | None, split: str) -> datasets.Dataset:
        calls.append((path, config, split))
        n = 20
        columns = {
            "sentence": [f"s{i}" for i in range(n)], "premise": [f"p{i}" for i in range(n)],
            "hypothesis": [f"h{i}" for i in range(n)], "text": [f"t{i}" for i in range(n)],
            "label": [i % 2 for i in range(n)],
            "coarse_label": [i % 6 for i in range(n)], "label_text": ["objective", "subjective"] * (n // 2),
        }
        if path == "stanfordnlp/snli":
            columns["label"] = [-1 if i == 0 else i % 3 for i in range(n)]
        if split == "hidden":
            columns["label"] = [-1] * n
        return datasets.Dataset.from_dict(columns)

    monkeypatch.setattr(tasks_base, "load_hub_dataset", load)
    return calls


def test_hub_glue_split_maps_columns(fake_hub: list[tuple]) -> None:
    train = load_task_split("sst2", "train")
    assert fake_hub == [("nyu-mll/glue", "sst2", "train")]
    assert train.column_names == ["text_a", "text_b", "label"] and train[1] == {"text_a": "s1", "text_b": "",
                                                                                 "label": 1}
    mnli = load_task_split("mnli", "validation")
    assert fake_hub[-1] == ("nyu-mll/glue", "mnli", "validation_matched") and mnli[3]["text_b"] == "h3"


def test_hub_hidden_test_labels_are_refused_without_download(fake_hub: list[tuple]) -> None:
    with pytest.raises(ValueError, match="no labelled 'test' split.*train, validation"):
        load_task_split("sst2", "test")
    assert fake_hub == []


def test_hub_rows_without_gold_label_are_dropped(fake_hub: list[tuple], monkeypatch: pytest.MonkeyPatch) -> None:
    snli = load_task_split("snli", "validation")
    assert len(snli) == 19 and snli[0]["text_a"] == "p1"
    hub = dataclasses.replace(get_task("snli").hub, splits={"test": "hidden"})
    spec = dataclasses.replace(get_task("snli"), hub=hub)
    with pytest.raises(ValueError, match="no gold labels"):
        load_task_split(spec, "test")


def test_hub_label_maps_and_label_text(fake_hub: list[tuple]) -> None:
    trec = load_task_split("trec", "test")
    assert trec["label"][:6] == [0, 1, 2, 3, 4, 5]  # Hub ids already in label_names order
    subj = load_task_split("subj", "test")
    assert subj["label"][:2] == [1, 0]  # by name: "objective" -> 1, "subjective" -> 0


def test_hub_validation_is_carved_from_train(fake_hub: list[tuple]) -> None:
    train = load_task_split("ag_news", "train")["text_a"]
    validation = load_task_split("ag_news", "validation")["text_a"]
    assert (len(train), len(validation)) == (18, 2) and not set(train) & set(validation)
    assert {call[2] for call in fake_hub} == {"train"}


def test_hub_missing_column_is_reported(fake_hub: list[tuple]) -> None:
    with pytest.raises(ValueError, match=r"lacks columns \['question1', 'question2'\]"):
        load_task_split("qqp", "train")


# --- metrics -----------------------------------------------------------------------------------------------------

def test_classification_metrics_match_hand_computed_values() -> None:
    refs, preds = [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 1]  # TP 2, FN 1, TN 2, FP 1
    assert compute_metrics("mrpc", preds, refs) == pytest.approx({"accuracy": 4 / 6, "f1": 2 / 3})
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (4 - 1) / 9
    assert compute_metrics("cola", preds, refs) == pytest.approx({"matthews_correlation": 1 / 3,
                                                                  "accuracy": 4 / 6})
    # macro-F1: class 0 F1 = 2/3 (P 1, R 1/2), class 1 F1 = 2/3 (P 1/2, R 1), class 2 F1 = 1 -> mean 7/9
    assert compute_metrics("mnli", [0, 1, 1, 2], [0, 0, 1, 2]) == pytest.approx({"accuracy": 0.75,
                                                                                "macro_f1": 7 / 9})


def test_binary_f1_scores_the_positive_class() -> None:
    """MRPC/QQP's F1 is class 1's: here class 1 has P 1, R 2/3 (F1 0.8) and class 0 P 1/2, R 1 (F1 2/3)."""
    assert compute_metrics("mrpc", [1, 1, 0, 0], [1, 1, 1, 0])["f1"] == pytest.approx(0.8)
    assert compute_metrics("qqp", [0, 0, 1, 1], [0, 0, 0, 1])["f1"] == pytest.approx(2 / 3)
    # no true and no predicted positives: 0.0, not sklearn's 1.0 for an empty class
    assert compute_metrics("mrpc", [0, 0], [0, 0])["f1"] == 0.0


def test_regression_metrics_match_hand_computed_values() -> None:
    # Pearson of [1,2,3,4] vs [1,2,3,5]: sum(dx*dy) = 6.5, sum(dx^2) = 5, sum(dy^2) = 8.75; ranks agree exactly.
    pearson = 6.5 / np.sqrt(5 * 8.75)
    result = compute_metrics("stsb", [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0])
    assert result == pytest.approx({"pearson": pearson, "spearmanr": 1.0, "pearson_spearman_mean": (pearson + 1) / 2})
    # Spearman with rank differences d = (-1, 1, -1, 1): 1 - 6 * 4 / (4 * 15) = 0.6
    assert compute_metrics("stsb", np.array([[1.0], [2.0], [3.0], [4.0]]), [2, 1, 4, 3])["spearmanr"] == (
        pytest.approx(0.6))


def test_metrics_take_argmax_of_scores_and_validate_inputs() -> None:
    logits = np.array([[0.1, 2.0], [3.0, -1.0], [0.0, 0.5]])
    assert compute_metrics("sst2", logits, [1, 0, 0]) == {"accuracy": pytest.approx(2 / 3)}
    assert all(isinstance(value, float) for value in compute_metrics("sst2", logits, [1, 0, 0]).values())
    with pytest.raises(ValueError, match="same length"):
        compute_metrics("sst2", [1, 0], [1])
    with pytest.raises(ValueError, match="class id 3, outside 0..1"):
        compute_metrics("sst2", [3, 0], [1, 0])
    with pytest.raises(ValueError, match="integer class ids"):
        compute_metrics("sst2", [0.5, 0], [1, 0])
    with pytest.raises(ValueError, match=r"shape \[n, 3\]"):
        compute_metrics("mnli", logits, [1, 0, 0])


def test_metrics_accept_one_example_and_integral_float_class_ids() -> None:
    assert compute_metrics("sst2", [1], [1]) == {"accuracy": 1.0}
    # class ids read into a float array (1.0, 0.0) are class ids all the same
    assert compute_metrics("sst2", np.array([1.0, 0.0, 1.0]), [1, 0, 0]) == {"accuracy": pytest.approx(2 / 3)}


@pytest.mark.parametrize(
    ("predictions", "references", "message"),
    [
        ([], [], r"predictions and references must be non-empty 1-D arrays of the same length; "
                 r"got shapes \(0,\) and \(0,\)"),
        ([1, 0], [[1], [0]], r"predictions and references must be non-empty 1-D .*; got shapes \(2,\) and \(2, 1\)"),
        ([0.5, 0], [1, 0], "predictions must be integer class ids; got dtype float64"),
        ([1, 0], [0.5, 0], "references must be integer class ids; got dtype float64"),
        ([2, 0], [1, 0], r"predictions contain class id 2, outside 0\.\.1 \(negative, positive\)$"),
        ([1, 0], [1, -1], r"references contain class id -1, outside 0\.\.1 \(negative, positive\)$"),
    ],
)  # fmt: skip
def test_metrics_refuse_bad_inputs_naming_them(predictions: list, references: list, message: str) -> None:
    with pytest.raises(ValueError, match="^task 'sst2': " + message):
        compute_metrics("sst2", predictions, references)


SENTENCE_TASKS = [spec for spec in list_tasks() if spec.task_type in ("classification", "regression")]


@pytest.mark.parametrize("spec", SENTENCE_TASKS, ids=lambda spec: spec.name)
def test_every_sentence_task_reports_all_its_metrics(spec: TaskSpec) -> None:
    rng = np.random.default_rng(0)
    if spec.task_type == "regression":
        refs, preds = rng.uniform(0, 5, 50), rng.uniform(0, 5, 50)
    else:
        refs, preds = np.arange(50) % spec.num_labels, rng.integers(0, spec.num_labels, 50)
    result = compute_metrics(spec.name, preds, refs)
    assert list(result) == list(spec.metrics) and np.isfinite(list(result.values())).all()


# --- real data ---------------------------------------------------------------------------------------------------

REAL_DATA_DIR = Path(os.environ.get(DATA_DIR_ENV) or Path(__file__).resolve().parents[1].parent / "shared" / "data")
# (train, validation, test) from the data README; None: no labelled local test split (refused).
# Tasks whose test is carved give 10% of the README's train count to test.
REAL_SIZES: dict[str, tuple[int, int, int | None]] = {
    "sst2": (67349, 872, None), "cola": (8551, 1043, None), "mrpc": (3667, 408, 1725), "stsb": (5749, 1500, None),
    "rte": (2490, 277, None), "wnli": (635, 71, None), "qnli": (8999, 5463, None),
    "mnli": (8999, 1000, None), "qqp": (8999, 1000, None), "snli": (8999, 1000, 9842),
    "trec": (4906 - 491, 546, 491), "sst5": (7689 - 769, 855, 769), "mr": (7795 - 780, 867, 780),
    "cr": (1597 - 160, 178, 160), "mpqa": (7742 - 774, 861, 774), "subj": (7200 - 720, 800, 720),
    "ag_news": (8001, 1000, 1000), "imdb_pcp": (900, 100, 1000), "imdb": (23000, 2000, 25000),
    "boolq": (9427, 3270, None), "mnli_plus": (55558, 1000, None), "qnli_squad": (171479, 5463, None),
    "wikiqa": (20360, 2733, 6165),
}


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(REAL_SIZES))
def test_real_data_split_sizes(name: str) -> None:
    if not REAL_DATA_DIR.is_dir():
        pytest.skip(f"real data directory {REAL_DATA_DIR} not found")
    spec = get_task(name)
    for split, expected in zip(SPLITS, REAL_SIZES[name]):
        if expected is None:
            with pytest.raises(ValueError, match="no labels|no local 'test' split"):
                load_task_split(spec, split, data_dir=REAL_DATA_DIR)
            continue
        dataset = load_task_split(spec, split, data_dir=REAL_DATA_DIR)
        assert len(dataset) == expected, (name, split)
        assert sum(map(bool, dataset["text_a"])) >= 0.99 * len(dataset)  # CR has a few blank sentences
        non_empty_b = sum(map(bool, dataset["text_b"]))
        assert (non_empty_b >= 0.99 * len(dataset)) if spec.is_pair else (non_empty_b == 0)
        if spec.task_type == "classification":
            assert set(dataset["label"]) <= set(range(spec.num_labels))
            assert len(set(dataset["label"])) == spec.num_labels or split != "train"


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["imdb_pcp", "imdb"])
def test_real_imdb_label_direction(name: str) -> None:
    """The PCP aclImdb files use 0 = positive, the full set 1 = positive; after mapping, 'positive' reviews praise
    more than they pan in both."""
    if not REAL_DATA_DIR.is_dir():
        pytest.skip(f"real data directory {REAL_DATA_DIR} not found")
    test = load_task_split(name, "test", data_dir=REAL_DATA_DIR, max_examples=2000)
    praise = {0: 0, 1: 0}
    for text, label in zip(test["text_a"], test["label"]):
        praise[label] += sum(text.lower().count(word) for word in ("excellent", "wonderful", "loved")) - sum(
            text.lower().count(word) for word in ("worst", "awful", "waste"))
    assert praise[1] > 0 > praise[0]
