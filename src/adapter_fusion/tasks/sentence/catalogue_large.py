"""The larger sentence(-pair) training sets for source adapters (the ``Larger training sets`` section of the shared
data README): IMDB 25k/25k, BoolQ, MNLI with about 45k extra NLI pairs, QNLI pairs derived from SQuAD v1.1 train and
WikiQA (SQuAD v1.1 itself is in the QA catalogue). Each is registered under its usual name and loads from the local
data directory or the Hub; their readers are in ``sentence/readers.py``.
"""

from __future__ import annotations

from adapter_fusion.tasks.base import Carve, HubSource, LocalFile, LocalSource, TaskSpec, register_task
from adapter_fusion.tasks.sentence.catalogue import (
    BINARY_NLI_LABELS,
    GLUE_HUB,
    LMBFF,
    NLI_LABELS,
    SENTIMENT_LABELS,
)
from adapter_fusion.tasks.sentence.readers import (
    ConcatReader,
    CsvPairsReader,
    JsonLinesReader,
    JsonReader,
    SquadQnliReader,
    TsvReader,
)

IMDB_VALIDATION_ROWS = 2000
"""Rows of IMDB's train file carved off (``CARVE_SEED``) as the validation split used for model selection."""


# --- sentiment ---------------------------------------------------------------------------------------------------

_IMDB_READER = JsonLinesReader(text_a="text", label="label")
_IMDB_TRAIN = LocalFile(("imdb/train.jsonl.gz",), _IMDB_READER)
register_task(TaskSpec(
    name="imdb", task_type="classification", label_names=SENTIMENT_LABELS, is_pair=False,
    metrics=("accuracy",), main_metric="accuracy", aliases=("aclimdb",),
    description=f"IMDb: binary sentiment of full movie reviews (Maas et al. 2011); the files label 0 = negative "
                f"(rating <= 4), 1 = positive (>= 7). Local: imdb/train.jsonl.gz "
                f"(25,000) less {IMDB_VALIDATION_ROWS:,} reviews carved off with CARVE_SEED as the validation split "
                f"(train 23,000); imdb/test.jsonl.gz (25,000) is the test split. Reviews are long (median ~230 "
                f"words): raise max_seq_length where time allows. Hub: stanfordnlp/imdb (validation = "
                f"{IMDB_VALIDATION_ROWS:,} rows of train, carved).",
    local=LocalSource({
        "train": Carve(_IMDB_TRAIN, "train", (("validation", IMDB_VALIDATION_ROWS),)),
        "validation": Carve(_IMDB_TRAIN, "validation", (("validation", IMDB_VALIDATION_ROWS),)),
        "test": LocalFile(("imdb/test.jsonl.gz",), _IMDB_READER),
    }),
    hub=HubSource("stanfordnlp/imdb", None, "text", splits={
        "train": Carve("train", "train", (("validation", IMDB_VALIDATION_ROWS),)),
        "validation": Carve("train", "validation", (("validation", IMDB_VALIDATION_ROWS),)),
        "test": "test",
    }),
))

# --- NLI ---------------------------------------------------------------------------------------------------------

_NLI_EXTRA_TRAIN = ("nli_extra/mnli/dev.csv", "nli_extra/sick/train.csv", "nli_extra/mpe/train.csv",
                    "nli_extra/joci/train.csv")
register_task(TaskSpec(
    name="mnli_plus", task_type="classification", label_names=NLI_LABELS, is_pair=True,
    metrics=("accuracy", "macro_f1"), main_metric="accuracy", aliases=("nli_plus", "mnli_extra"),
    description="MNLI+: 3-way entailment trained on more pairs, evaluated on MNLI. Local train (55,558 pairs): the "
                "LM-BFF MNLI train subset (8,999) + nli_extra MNLI dev matched and mismatched (19,647; disjoint from "
                "the LM-BFF subsets, which come from MNLI train) + SICK train (9,500) + MPE train (9,000) + JOCI "
                "train (8,412). Validation: the LM-BFF MNLI dev subset (1,000). SNLI, SciTail and Add-One RTE are "
                "left out (SNLI and RTE are transfer targets; the other two are binary). Hub: nyu-mll/glue 'mnli' "
                "(validation = validation_matched).",
    local=LocalSource({
        "train": LocalFile((f"{LMBFF}/MNLI/train.json", *_NLI_EXTRA_TRAIN),
                           ConcatReader(((1, JsonReader()), (len(_NLI_EXTRA_TRAIN), CsvPairsReader())))),
        "validation": LocalFile((f"{LMBFF}/MNLI/dev.json",), JsonReader()),
    }),
    hub=HubSource(GLUE_HUB, "mnli", "premise", "hypothesis",
                  splits={"train": "train", "validation": "validation_matched"}),
))

register_task(TaskSpec(
    name="qnli_squad", task_type="classification", label_names=BINARY_NLI_LABELS, is_pair=True,
    metrics=("accuracy",), main_metric="accuracy", aliases=("qnli_plus",),
    description="QNLI from SQuAD: (question, sentence) pairs derived from SQuAD v1.1 train the way GLUE built QNLI "
                "(tasks.sentence.readers.SquadQnliReader: the answer's sentence is entailment, the other sentence "
                "with the most question words not_entailment), minus every question of the official QNLI dev set. "
                "Validation: the official GLUE QNLI dev set (glue/QNLI/dev.tsv, 5,463). Hub: nyu-mll/glue 'qnli'.",
    local=LocalSource({
        "train": LocalFile(("squad_v1/train-v1.1.json.gz", "glue/QNLI/dev.tsv"), SquadQnliReader()),
        "validation": LocalFile(("glue/QNLI/dev.tsv",), TsvReader(text_a="question", text_b="sentence",
                                                                  label="label")),
    }),
    hub=HubSource(GLUE_HUB, "qnli", "question", "sentence", splits={"train": "train", "validation": "validation"}),
))

# --- question answering ------------------------------------------------------------------------------------------

_BOOLQ_LABELS = {"false": "no", "true": "yes"}
register_task(TaskSpec(
    name="boolq", task_type="classification", label_names=("no", "yes"), is_pair=True,
    metrics=("accuracy",), main_metric="accuracy", aliases=("bool_q",),
    description="BoolQ: yes/no questions over Wikipedia passages (question, passage). Local: boolq train (9,427) "
                "and dev (3,270) as validation; passages are long (~110 words): raise max_seq_length where time "
                "allows. Hub: google/boolq.",
    local=LocalSource({
        "train": LocalFile(("boolq/train.jsonl.gz",), JsonLinesReader("question", "label", "passage"),
                           label_map=_BOOLQ_LABELS),
        "validation": LocalFile(("boolq/dev.jsonl.gz",), JsonLinesReader("question", "answer", "passage"),
                                label_map=_BOOLQ_LABELS),
    }),
    hub=HubSource("google/boolq", None, "question", "passage", label="answer",
                  splits={"train": "train", "validation": "validation"}, label_map=_BOOLQ_LABELS),
))

_WIKIQA_READER = TsvReader(text_a=0, text_b=1, label=2, header=False)
register_task(TaskSpec(
    name="wikiqa", task_type="classification", label_names=("no", "yes"), is_pair=True,
    metrics=("accuracy", "f1"), main_metric="f1", aliases=("wiki_qa",),
    description="WikiQA answer-sentence selection: does the Wikipedia sentence answer the question? (about 5% yes). "
                "Local: wikiqa train (20,360), dev (2,733) as validation, test (6,165). Hub: microsoft/wiki_qa "
                "(question, answer, label).",
    local=LocalSource({split: LocalFile((f"wikiqa/{name}.txt",), _WIKIQA_READER)
                       for split, name in (("train", "train"), ("validation", "dev"), ("test", "test"))}),
    hub=HubSource("microsoft/wiki_qa", None, "question", "answer"),
))
