"""Metrics of the tagging, QA, choice and generation families (``adapter_fusion.tasks.<family>.metrics``) on
hand-computed examples."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable

import numpy as np
import pytest

from adapter_fusion.tasks.choice.metrics import choice_accuracy
from adapter_fusion.tasks.generation import GenerationTaskSpec
from adapter_fusion.tasks.generation.metrics import bleu_scores, rouge_scores, score_generations
from adapter_fusion.tasks.qa.metrics import normalize_answer, squad_scores
from adapter_fusion.tasks.tagging.metrics import entity_scores, tag_scores, token_accuracy


# ---------------------------------------------------------------------------------------------- token classification
def test_entity_scores_count_a_wrong_boundary_as_wrong() -> None:
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "B-MISC"]]
    # gold: PER[0:2], LOC[3], ORG[0]; predicted: PER[0:1] (boundary wrong), LOC[3], ORG[0], MISC[1] (spurious)
    scores = entity_scores(true, pred)
    assert scores == pytest.approx({"precision": 2 / 4, "recall": 2 / 3, "f1": 2 * (1 / 2 * 2 / 3) / (1 / 2 + 2 / 3)})


def test_entity_scores_follow_seqeval_default_mode() -> None:
    # IOB1 (CoNLL-2003): an entity may start with I-; a B- only separates adjacent entities of one type
    assert entity_scores([["I-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]])["f1"] == 1.0
    assert entity_scores([["I-PER", "B-PER"]], [["I-PER", "I-PER"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert entity_scores([["B-LOC", "O"]], [["B-PER", "O"]])["f1"] == 0.0  # right span, wrong type
    assert entity_scores([["O", "O"]], [["O", "O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}  # undefined


def test_entity_scores_are_zero_without_a_warning_where_undefined() -> None:
    # no predicted entities (early in training) must not flood the log with seqeval's UndefinedMetricWarning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert entity_scores([["B-PER", "O"]], [["O", "O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_token_accuracy() -> None:
    assert token_accuracy([["NN", "VB"], ["DT"]], [["NN", "NN"], ["DT"]]) == pytest.approx(2 / 3)
    assert token_accuracy([["NN"]], [["NN"]]) == 1.0  # a single token is enough
    with pytest.raises(ValueError, match="token_accuracy needs at least one token; got 2 empty sentences"):
        token_accuracy([[], []], [[], []])


# gold: PER[1:3], LOC[0] of sentence 2; predicted: the same plus a spurious LOC[1]; None = no prediction
TAGS_TRUE = [["O", "B-PER", "I-PER", "O"], ["B-LOC", "O"]]
TAGS_PRED = [[None, "B-PER", "I-PER", None], ["B-LOC", "B-LOC"]]
TAGS_EXPECTED = {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "accuracy": 3 / 6}


@pytest.mark.parametrize(
    "metrics", [("precision",), ("recall",), ("f1",), ("accuracy",), ("accuracy", "f1", "precision", "recall")]
)
def test_tag_scores_count_no_prediction_as_o_for_entities_and_as_an_error_for_accuracy(
    metrics: tuple[str, ...],
) -> None:
    # None -> "O" adds no entity (a lower-case "o" or any other tag would start a spurious one before B-PER)
    scores = tag_scores(metrics, TAGS_TRUE, TAGS_PRED)
    assert scores == pytest.approx({metric: TAGS_EXPECTED[metric] for metric in metrics})
    assert list(scores) == list(metrics)


def test_tag_metrics_validate_lengths() -> None:
    with pytest.raises(ValueError, match="got 2 true_tags and 1 pred_tags"):
        entity_scores([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 1: 2 true tags but 1 predicted tags"):
        token_accuracy([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="non-empty"):
        entity_scores([], [])
    for true, pred in [(["O"], ["O"]), (["O"], [["O"]]), ([["O"]], ["O"])]:  # either side a string
        with pytest.raises(ValueError, match="sentence 0: tags must be lists of tag strings, not a string"):
            token_accuracy(true, pred)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------ extractive QA
def test_squad_normalisation() -> None:
    assert normalize_answer("  The Denver   Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("Theatre") == "theatre"  # articles only as whole words


def test_squad_scores_take_the_best_reference() -> None:
    predictions = ["The Cat!", "blue house", "nothing"]
    references = [["cat"], ["the red house", "a house"], ["something"]]
    # EM: 1, 0, 0. F1: 1; max(2*(1/2*1/2)/1 = 1/2, 2*(1/2*1)/(3/2) = 2/3) = 2/3; 0
    assert squad_scores(predictions, references) == pytest.approx({"exact_match": 1 / 3, "f1": (1 + 2 / 3) / 3})
    assert squad_scores(["a"], [["the"]]) == {"exact_match": 1.0, "f1": 0.0}  # as SQuAD v1.1: both empty -> F1 0


def test_squad_scores_validate_inputs() -> None:
    with pytest.raises(ValueError, match="got 1 predictions and 2 references"):
        squad_scores(["x"], [["x"], ["y"]])
    with pytest.raises(ValueError, match=r"references\[0\] must be a non-empty list of strings; got 'x'"):
        squad_scores(["x"], ["x"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"references\[0\] must be a non-empty list"):
        squad_scores(["x"], [[]])


# ---------------------------------------------------------------------------------------------------- multiple choice
def test_choice_accuracy() -> None:
    assert choice_accuracy([1, 2, 0, 0], np.array([1, 2, 1, 0])) == 0.75
    with pytest.raises(ValueError, match="got 2 predictions and 1 labels"):
        choice_accuracy([1, 2], [1])
    with pytest.raises(ValueError, match="integer option indices"):
        choice_accuracy([1.5], [1])
    # the message quotes the first five of each side (mutmut: [:5] -> [:6] survived without this)
    with pytest.raises(ValueError, match=r"got \[0, 1, 2, 3, 4\] and \[0, 1, 2, 3, 0.5\]$"):
        choice_accuracy(list(range(7)), [0, 1, 2, 3, 0.5, 5, 6])


# --------------------------------------------------------------------------------------------------------- generation
def test_rouge_scores() -> None:
    # stemming: "cats" ~ "cat"; the best of the two references counts
    assert rouge_scores(["the cats sat"], [["the cat sat", "dogs bark"]]) == pytest.approx(
        {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    )
    # prediction "a b c d", reference "a c b e": unigrams 3/4 each side; bigrams none shared; LCS "a b" or "a c" = 2
    scores = rouge_scores(["a b c d"], [["a c b e"]])
    assert scores == pytest.approx({"rouge1": 0.75, "rouge2": 0.0, "rougeL": 0.5})
    # averaged over examples
    assert rouge_scores(["x y", "p q"], [["x y"], ["r s"]])["rouge1"] == pytest.approx(0.5)


def test_bleu_scores() -> None:
    identical = bleu_scores(["the cat sat on the mat", "a dog runs in the park"],
                            [["the cat sat on the mat"], ["a dog runs in the park"]])  # fmt: skip
    assert identical == pytest.approx({"bleu": 100.0, "chrf": 100.0})
    assert bleu_scores(["completely different words here"], [["the cat sat on the mat"]])["bleu"] == 0.0


def test_bleu_scores_allow_different_numbers_of_references() -> None:
    import sacrebleu

    predictions = ["the cat sat on the mat", "there is a dog in the park"]
    references = [["the cat sat on the mat"], ["a dog is in the park", "there is a dog in the park"]]
    scores = bleu_scores(predictions, references)
    assert scores == pytest.approx({"bleu": 100.0, "chrf": 100.0})  # the second reference of example 2 matches
    # the same as sacrebleu on None-padded streams, and different from the first references alone
    streams = [["the cat sat on the mat", "a dog is in the park"], [None, "there is a dog in the park"]]
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(predictions, streams).score)
    assert bleu_scores(predictions, [refs[:1] for refs in references])["bleu"] < 100.0
    with pytest.raises(ValueError, match="got 2 predictions and 1 references"):
        bleu_scores(predictions, references[:1])


@pytest.mark.parametrize("scores_fn", [rouge_scores, bleu_scores])
def test_generation_scores_validate_lengths(scores_fn: Callable[..., dict[str, float]]) -> None:
    message = "predictions and references must be non-empty and of the same length; got 1 predictions and 0 references"
    with pytest.raises(ValueError, match=message):
        scores_fn(["a"], [])


def _generation_spec(metrics: tuple[str, ...]) -> GenerationTaskSpec:
    return GenerationTaskSpec(name="toy", task_type="generation", label_names=(), is_pair=False, metrics=metrics,
                              main_metric=metrics[0], description="toy")  # fmt: skip


# example 1 identical; example 2 as in test_rouge_scores (rouge1 3/4, rouge2 0, rougeL 1/2)
GENERATIONS = ["the cat sat on the mat", "a b c d"]
GENERATION_REFERENCES = [["the cat sat on the mat"], ["a c b e"]]
ROUGE_EXPECTED = {"rouge1": (1 + 0.75) / 2, "rouge2": (1 + 0) / 2, "rougeL": (1 + 0.5) / 2}
ROUGE_MODULES = ("rouge_score", "rouge_score.rouge_scorer")


@pytest.mark.parametrize(
    ("metric", "unneeded"),
    [("rouge1", ("sacrebleu",)), ("rouge2", ("sacrebleu",)), ("rougeL", ("sacrebleu",)),
     ("bleu", ROUGE_MODULES), ("chrf", ROUGE_MODULES)],
)  # fmt: skip
def test_score_generations_computes_only_the_spec_metrics(
    metric: str, unneeded: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a summarization task scores without sacrebleu, a translation task without rouge_score
    for module in unneeded:
        monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    if metric in ROUGE_EXPECTED:
        predictions, references, expected = GENERATIONS, GENERATION_REFERENCES, ROUGE_EXPECTED[metric]
    else:
        predictions, references, expected = GENERATIONS[:1], GENERATION_REFERENCES[:1], 100.0
    assert score_generations(_generation_spec((metric,)), predictions, references) == pytest.approx({metric: expected})


def test_score_generations_follow_the_spec_order() -> None:
    metrics = ("chrf", "rougeL", "bleu", "rouge1")
    scores = score_generations(_generation_spec(metrics), GENERATIONS, GENERATION_REFERENCES)
    assert list(scores) == list(metrics)
    expected = bleu_scores(GENERATIONS, GENERATION_REFERENCES) | ROUGE_EXPECTED
    assert scores == pytest.approx({metric: expected[metric] for metric in metrics})
