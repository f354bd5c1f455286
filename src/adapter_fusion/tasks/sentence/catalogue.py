"""The registered sentence(-pair) classification and regression tasks: GLUE, the LM-BFF/PCP sets, AG News.

Local layouts (GLUE TSVs, LM-BFF/PCP JSON, AG News TSV, e-SNLI lines) follow the data README
(``../shared/data/README.md`` from the project root).
Where a split is missing locally it is carved from another file with ``CARVE_SEED`` (see ``Carve``); where a Hub
dataset has no validation split, 10% of its train split is carved off the same way. Label orders follow the Hub
datasets (GLUE, SNLI, TREC coarse, AG News, IMDb), so local and Hub class ids agree.
"""

from __future__ import annotations

from adapter_fusion.tasks.base import HubSource, LabelMap, LocalFile, LocalSource, TaskSpec, carve, register_task
from adapter_fusion.tasks.sentence.readers import AlignedLinesReader, JsonReader, TsvReader

GLUE_HUB = "nyu-mll/glue"
LMBFF = "lmbff_pcp/glue_pretrain"
HUB_VALIDATION_FRACTION = 0.1
LOCAL_TEST_FRACTION = 0.1

NLI_LABELS = ("entailment", "neutral", "contradiction")
BINARY_NLI_LABELS = ("entailment", "not_entailment")
SENTIMENT_LABELS = ("negative", "positive")
MULTICLASS_METRICS = ("accuracy", "macro_f1")


def glue_local(folder: str, reader: TsvReader, test: LocalFile | None = None) -> LocalSource:
    """``glue/<folder>/{train,dev}.tsv`` as train/validation; the GLUE test file is unlabelled unless ``test``."""
    splits = {
        "train": LocalFile((f"glue/{folder}/train.tsv",), reader),
        "validation": LocalFile((f"glue/{folder}/dev.tsv",), reader),
    }
    if test is not None:
        return LocalSource({**splits, "test": test})
    return LocalSource(splits, unlabelled={"test": f"glue/{folder}/test.tsv"})


def lmbff_local(folder: str, pair: bool, test: LocalFile | None = None, label_map: LabelMap | None = None,
                carve_test: bool = True) -> LocalSource:
    """``lmbff_pcp/glue_pretrain/<folder>/{train,dev}.json``: dev is the validation split; the test split is
    ``test`` if given, else (``carve_test``) 10% of train carved off with ``CARVE_SEED`` (train keeps the other
    90%), else there is no test split and train is the whole file."""
    reader = JsonReader(text_b="text_b" if pair else None)
    train = LocalFile((f"{LMBFF}/{folder}/train.json",), reader, label_map)
    if test is not None:
        splits = {"train": train, "test": test}
    elif carve_test:
        splits = carve(train, {"test": LOCAL_TEST_FRACTION})
    else:
        splits = {"train": train}
    return LocalSource({**splits, "validation": LocalFile((f"{LMBFF}/{folder}/dev.json",), reader, label_map)})


def lmbff_note(folder: str, train_rows: int, dev_rows: int) -> str:
    """The description of an ``lmbff_local`` layout with a carved test split (row counts of the shared data)."""
    test_rows = round(LOCAL_TEST_FRACTION * train_rows)
    return (f"Local: {LMBFF}/{folder}: dev.json ({dev_rows:,}) is the validation split; test is "
            f"{LOCAL_TEST_FRACTION:.0%} of train.json ({train_rows:,}) carved off with CARVE_SEED ({test_rows:,}), "
            f"train the rest ({train_rows - test_rows:,}).")


LMBFF_GLUE_NOTE = (
    "Local: " + LMBFF + "/{folder}: train.json (8,999, the whole file) is the train split and dev.json (1,000) the "
    "validation split; there is no local test split (these are the GLUE-pretraining subsets that adapters and "
    "fusion are trained on)."
)


def glue_hub(config: str, text_a: str, text_b: str | None = None, validation: str = "validation") -> HubSource:
    """A GLUE configuration of ``nyu-mll/glue``; its test labels are hidden."""
    return HubSource(GLUE_HUB, config, text_a, text_b, splits={"train": "train", "validation": validation},
                     unlabelled=("test",))


def hub_with_carved_validation(path: str, text_a: str, label: str = "label",
                               label_map: LabelMap | None = None) -> HubSource:
    """A single-sentence Hub dataset with only train/test: validation is 10% of its train split (``CARVE_SEED``)."""
    parts = carve("train", {"validation": HUB_VALIDATION_FRACTION})
    return HubSource(path, None, text_a, label=label, splits={**parts, "test": "test"}, label_map=label_map)


# --- GLUE --------------------------------------------------------------------------------------------------------

register_task(TaskSpec(
    name="sst2", task_type="classification", label_names=SENTIMENT_LABELS, is_pair=False,
    metrics=("accuracy",), main_metric="accuracy", aliases=("sst-2", "sentiment"),
    description="SST-2 (GLUE): binary sentiment of movie-review phrases. Local: glue/SST-2 train (67,349) and dev "
                "(872) as validation; the GLUE test file is unlabelled. Hub: nyu-mll/glue 'sst2'.",
    local=glue_local("SST-2", TsvReader(text_a="sentence", label="label")),
    hub=glue_hub("sst2", "sentence"),
))

register_task(TaskSpec(
    name="cola", task_type="classification", label_names=("unacceptable", "acceptable"), is_pair=False,
    metrics=("matthews_correlation", "accuracy"), main_metric="matthews_correlation", aliases=("acceptability",),
    description="CoLA (GLUE): grammatical acceptability. Local: glue/CoLA train (8,551) and dev (1,043) as "
                "validation, headerless TSV (source, label, original label, sentence); test is unlabelled. "
                "Hub: nyu-mll/glue 'cola'.",
    local=glue_local("CoLA", TsvReader(text_a=3, label=1, header=False)),
    hub=glue_hub("cola", "sentence"),
))

_MRPC_READER = TsvReader(text_a="#1 String", text_b="#2 String", label="Quality")
register_task(TaskSpec(
    name="mrpc", task_type="classification", label_names=("not_equivalent", "equivalent"), is_pair=True,
    metrics=("accuracy", "f1"), main_metric="f1", aliases=("paraphrase",),
    description="MRPC (GLUE): are two news sentences paraphrases? Local: glue/MRPC train (3,667) and dev (408) as "
                "validation; test is the labelled original MSR test set msr_paraphrase_test.txt (1,725), not the "
                "unlabelled GLUE test.tsv. Hub: nyu-mll/glue 'mrpc' (train/validation).",
    local=glue_local("MRPC", _MRPC_READER, test=LocalFile(("glue/MRPC/msr_paraphrase_test.txt",), _MRPC_READER)),
    hub=glue_hub("mrpc", "sentence1", "sentence2"),
))

register_task(TaskSpec(
    name="stsb", task_type="regression", label_names=(), is_pair=True,
    metrics=("pearson", "spearmanr", "pearson_spearman_mean"), main_metric="pearson_spearman_mean",
    aliases=("sts-b", "similarity"),
    description="STS-B (GLUE): semantic similarity of a sentence pair, a score in [0, 5]. Local: glue/STS-B train "
                "(5,749) and dev (1,500) as validation; test is unlabelled. Hub: nyu-mll/glue 'stsb'.",
    local=glue_local("STS-B", TsvReader(text_a="sentence1", text_b="sentence2", label="score")),
    hub=glue_hub("stsb", "sentence1", "sentence2"),
))

register_task(TaskSpec(
    name="rte", task_type="classification", label_names=BINARY_NLI_LABELS, is_pair=True,
    metrics=("accuracy",), main_metric="accuracy",
    description="RTE (GLUE): textual entailment. Local: glue/RTE train (2,490) and dev (277) as validation; test "
                "is unlabelled. Hub: nyu-mll/glue 'rte'.",
    local=glue_local("RTE", TsvReader(text_a="sentence1", text_b="sentence2", label="label")),
    hub=glue_hub("rte", "sentence1", "sentence2"),
))

register_task(TaskSpec(
    name="wnli", task_type="classification", label_names=("not_entailment", "entailment"), is_pair=True,
    metrics=("accuracy",), main_metric="accuracy",
    description="WNLI (GLUE): Winograd pronoun resolution as entailment (label 1 = entailment). Local: glue/WNLI "
                "train (635) and dev (71) as validation; test is unlabelled. Hub: nyu-mll/glue 'wnli'.",
    local=glue_local("WNLI", TsvReader(text_a="sentence1", text_b="sentence2", label="label")),
    hub=glue_hub("wnli", "sentence1", "sentence2"),
))

register_task(TaskSpec(
    name="qnli", task_type="classification", label_names=BINARY_NLI_LABELS, is_pair=True,
    metrics=("accuracy",), main_metric="accuracy",
    description="QNLI (GLUE): does the sentence answer the question? Local: train is the LM-BFF subset "
                "lmbff_pcp/glue_pretrain/QNLI/train.json (8,999 of the original train set); validation is the "
                "official GLUE dev set glue/QNLI/dev.tsv (5,463); test is unlabelled. Hub: nyu-mll/glue 'qnli'.",
    local=LocalSource(
        {
            "train": LocalFile((f"{LMBFF}/QNLI/train.json",), JsonReader()),
            "validation": LocalFile(("glue/QNLI/dev.tsv",), TsvReader(text_a="question", text_b="sentence",
                                                                      label="label")),
        },
        unlabelled={"test": "glue/QNLI/test.tsv"},
    ),
    hub=glue_hub("qnli", "question", "sentence"),
))

# --- LM-BFF / PCP subsets ----------------------------------------------------------------------------------------

register_task(TaskSpec(
    name="mnli", task_type="classification", label_names=NLI_LABELS, is_pair=True,
    metrics=MULTICLASS_METRICS, main_metric="accuracy", aliases=("nli", "multinli"),
    description="MNLI: 3-way entailment, GLUE label order (entailment, neutral, contradiction). LM-BFF subsets of "
                "the original train set. " + LMBFF_GLUE_NOTE.format(folder="MNLI") + " Hub: nyu-mll/glue 'mnli' "
                "(validation = validation_matched; test labels hidden).",
    local=lmbff_local("MNLI", pair=True, carve_test=False),
    hub=glue_hub("mnli", "premise", "hypothesis", validation="validation_matched"),
))

register_task(TaskSpec(
    name="snli", task_type="classification", label_names=NLI_LABELS, is_pair=True,
    metrics=MULTICLASS_METRICS, main_metric="accuracy",
    description="SNLI: 3-way entailment (entailment, neutral, contradiction). Local: LM-BFF subsets "
                "lmbff_pcp/glue_pretrain/SNLI train (8,999) and dev (1,000) as validation (from the original train "
                "set); test is the official SNLI dev set from snli_esnli (9,842 pairs, PTB-tokenised text). Hub: "
                "stanfordnlp/snli (rows without a gold label dropped).",
    local=lmbff_local("SNLI", pair=True, test=LocalFile(
        ("snli_esnli/s1.dev", "snli_esnli/s2.dev", "snli_esnli/labels.dev"), AlignedLinesReader())),
    hub=HubSource("stanfordnlp/snli", None, "premise", "hypothesis"),
))

register_task(TaskSpec(
    name="qqp", task_type="classification", label_names=("not_duplicate", "duplicate"), is_pair=True,
    metrics=("accuracy", "f1"), main_metric="f1", aliases=("quora",),
    description="QQP: are two Quora questions duplicates? LM-BFF subsets of the original train set. "
                + LMBFF_GLUE_NOTE.format(folder="QQP") + " Hub: nyu-mll/glue 'qqp' (test labels hidden).",
    local=lmbff_local("QQP", pair=True, carve_test=False),
    hub=glue_hub("qqp", "question1", "question2"),
))

_TREC_HUB_ORDER = ("abbreviation", "entity", "description", "human", "location", "number")
register_task(TaskSpec(
    name="trec", task_type="classification", label_names=_TREC_HUB_ORDER, is_pair=False,
    metrics=MULTICLASS_METRICS, main_metric="accuracy", aliases=("trec-6",),
    description="TREC: 6 coarse question types, in the Hub's order (ABBR, ENTY, DESC, HUM, LOC, NUM); the LM-BFF "
                "files' ids (0 DESC, 1 ENTY, 2 ABBR, 3 HUM, 4 LOC, 5 NUM) are remapped. "
                + lmbff_note("trec", 4906, 546)
                + " Hub: CogComp/trec 'coarse_label' (validation = 10% of train, carved).",
    local=lmbff_local("trec", pair=False, label_map={
        "0": "description", "1": "entity", "2": "abbreviation", "3": "human", "4": "location", "5": "number",
    }),
    hub=hub_with_carved_validation("CogComp/trec", "text", label="coarse_label",
                                   label_map=dict(enumerate(_TREC_HUB_ORDER))),
))

register_task(TaskSpec(
    name="sst5", task_type="classification",
    label_names=("very negative", "negative", "neutral", "positive", "very positive"), is_pair=False,
    metrics=MULTICLASS_METRICS, main_metric="accuracy", aliases=("sst-5",),
    description="SST-5: 5-way sentiment of movie-review sentences. " + lmbff_note("sst-5", 7689, 855)
                + " Hub: SetFit/sst5.",
    local=lmbff_local("sst-5", pair=False),
    hub=HubSource("SetFit/sst5", None, "text"),
))

register_task(TaskSpec(
    name="mr", task_type="classification", label_names=SENTIMENT_LABELS, is_pair=False,
    metrics=("accuracy",), main_metric="accuracy", aliases=("movie_review", "rotten_tomatoes"),
    description="MR: binary sentiment of Rotten Tomatoes snippets. " + lmbff_note("mr", 7795, 867)
                + " Hub: cornell-movie-review-data/rotten_tomatoes.",
    local=lmbff_local("mr", pair=False),
    hub=HubSource("cornell-movie-review-data/rotten_tomatoes", None, "text"),
))

register_task(TaskSpec(
    name="cr", task_type="classification", label_names=SENTIMENT_LABELS, is_pair=False,
    metrics=("accuracy",), main_metric="accuracy", aliases=("customer_reviews",),
    description="CR: binary sentiment of customer product reviews. " + lmbff_note("cr", 1597, 178)
                + " Hub: SetFit/SentEval-CR (validation = 10% of train, carved).",
    local=lmbff_local("cr", pair=False),
    hub=hub_with_carved_validation("SetFit/SentEval-CR", "text"),
))

register_task(TaskSpec(
    name="mpqa", task_type="classification", label_names=SENTIMENT_LABELS, is_pair=False,
    metrics=("accuracy",), main_metric="accuracy",
    description="MPQA: opinion polarity of short phrases. " + lmbff_note("mpqa", 7742, 861)
                + " Hub: SetFit/mpqa (validation = 10% of train, carved).",
    local=lmbff_local("mpqa", pair=False),
    hub=hub_with_carved_validation("SetFit/mpqa", "text"),
))

register_task(TaskSpec(
    name="subj", task_type="classification", label_names=("subjective", "objective"), is_pair=False,
    metrics=("accuracy",), main_metric="accuracy", aliases=("subjectivity",),
    description="Subj: is a movie sentence subjective (review) or objective (plot summary)? LM-BFF ids: "
                "0 subjective, 1 objective. " + lmbff_note("subj", 7200, 800) + " Hub: SetFit/subj, labels read by "
                "name from 'label_text' (validation = 10% of train, carved).",
    local=lmbff_local("subj", pair=False),
    hub=hub_with_carved_validation("SetFit/subj", "text", label="label_text"),
))

# --- Other topic / sentiment sets --------------------------------------------------------------------------------

_AGNEWS_FILE = LocalFile(("agnews/dev.tsv",), TsvReader(text_a=0, label=1, header=False))
register_task(TaskSpec(
    name="ag_news", task_type="classification", label_names=("World", "Sports", "Business", "Sci/Tech"),
    is_pair=False, metrics=MULTICLASS_METRICS, main_metric="accuracy", aliases=("agnews", "topic"),
    description="AG News: 4-way news topic. Local: agnews/dev.tsv (10,001 articles sampled from the AG train set) "
                "is split with CARVE_SEED into test 10% (1,000), validation 10% (1,000) and train (8,001); the "
                "smaller lmbff_pcp/ag_news (1,000 + 1,000, title and body glued together) is not used. "
                "Hub: fancyzhx/ag_news (validation = 10% of train, carved).",
    local=LocalSource(carve(_AGNEWS_FILE, {"test": 0.1, "validation": 0.1})),
    hub=hub_with_carved_validation("fancyzhx/ag_news", "text"),
))

# The PCP copy of aclImdb uses 0 = positive, 1 = negative (checked on the texts); the Hub uses 0 = negative.
_IMDB_LABELS = {"0": "positive", "1": "negative"}
_IMDB_DEV = LocalFile(("lmbff_pcp/aclImdb/dev.json",), JsonReader(text_a="ori", text_b=None), label_map=_IMDB_LABELS)
register_task(TaskSpec(
    name="imdb_pcp", task_type="classification", label_names=SENTIMENT_LABELS, is_pair=False,
    metrics=("accuracy",), main_metric="accuracy",
    description="IMDb (PCP subset; the full 25k/25k set is the task 'imdb'): binary sentiment of full movie reviews. "
                "Local: lmbff_pcp/aclImdb dev.json (1,000) is split "
                "with CARVE_SEED into train (900) and validation (10%, 100); test.json (1,000) is the test split. "
                "The PCP files use 0 = positive, 1 = negative; ids are remapped to the Hub's (0 negative, "
                "1 positive). Hub: stanfordnlp/imdb (validation = 10% of train, carved).",
    local=LocalSource({
        **carve(_IMDB_DEV, {"validation": 0.1}),
        "test": LocalFile(("lmbff_pcp/aclImdb/test.json",), JsonReader(text_a="ori", text_b=None),
                          label_map=_IMDB_LABELS),
    }),
    hub=hub_with_carved_validation("stanfordnlp/imdb", "text"),
))
