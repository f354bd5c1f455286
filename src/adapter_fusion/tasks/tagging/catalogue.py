"""The registered token-classification tasks: CoNLL-2003 NER and POS, WNUT-17, WikiANN English and UD English-LinES
UPOS. Tag orders follow the Hub datasets, so local and Hub tag ids agree."""

from __future__ import annotations

from typing import Any

from adapter_fusion.tasks.base import HubSource, LocalFile, LocalSource, TaskSpec, carve, register_task
from adapter_fusion.tasks.tagging.metrics import ENTITY_METRICS
from adapter_fusion.tasks.tagging.readers import ConllReader, ConlluReader, TabTagReader

CONLL_NER_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
"""CoNLL-2003 NER tags in the order of the Hub's ``ner_tags`` feature."""
CONLL_POS_TAGS = (
    '"', "''", "#", "$", "(", ")", ",", ".", ":", "``", "CC", "CD", "DT", "EX", "FW", "IN", "JJ", "JJR", "JJS", "LS",
    "MD", "NN", "NNP", "NNPS", "NNS", "NN|SYM", "PDT", "POS", "PRP", "PRP$", "RB", "RBR", "RBS", "RP", "SYM", "TO",
    "UH", "VB", "VBD", "VBG", "VBN", "VBP", "VBZ", "WDT", "WP", "WP$", "WRB",
)  # fmt: skip
"""The 47 Penn Treebank tags of CoNLL-2003 in the order of the Hub's ``pos_tags`` feature (the local train and
valid files use 45 of them: no ``#`` and no ``` `` ```)."""
WNUT17_TAGS = (
    "O", "B-corporation", "I-corporation", "B-creative-work", "I-creative-work", "B-group", "I-group",
    "B-location", "I-location", "B-person", "I-person", "B-product", "I-product",
)  # fmt: skip
"""WNUT-17 tags (6 entity types) in the order of the Hub's ``ner_tags`` feature."""
WIKIANN_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
"""WikiANN tags in the order of the Hub's ``ner_tags`` feature."""
UPOS_TAGS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT", "SCONJ",
    "SYM", "VERB", "X",
)  # fmt: skip
"""The 17 universal POS tags of UD v2, in the alphabetical order of the UD documentation (the Hub's ``upos``
feature has another order and an extra ``_``; ``from_hub`` maps by name)."""
CONLL_TEST_FRACTION = 0.1
NER_METRICS = ENTITY_METRICS
POS_METRICS = ("accuracy",)


def tag_hub(path: str, config: str | None, tags: str, **kwargs: Any) -> HubSource:
    """A Hub dataset with a ``tokens`` column and the tag column ``tags`` (a sequence of ``ClassLabel`` ids)."""
    return HubSource(path, config, columns={"tokens": "tokens", "tags": tags}, **kwargs)


def conll2003_local(tag_column: int) -> LocalSource:
    """``conll2003/valid.txt`` is the validation split; test is 10% of ``train.txt`` carved off with ``CARVE_SEED``,
    train the other 90%."""
    reader = ConllReader(tag_column=tag_column)
    train = LocalFile(("conll2003/train.txt",), reader)
    return LocalSource(
        {**carve(train, {"test": CONLL_TEST_FRACTION}), "validation": LocalFile(("conll2003/valid.txt",), reader)}
    )


_CONLL_NOTE = (
    "Local: conll2003/valid.txt (3,250 sentences) is the validation split; there is no local test file, so test is "
    "10% of train.txt (14,041) carved off with CARVE_SEED (1,404) and train the other 90% (12,637). Hub: "
    "eriktks/conll2003 (train 14,041 / validation 3,250 / test 3,453, the official test set)."
)

register_task(TaskSpec(
    name="conll2003_ner", task_type="token_classification", label_names=CONLL_NER_TAGS, is_pair=False,
    metrics=NER_METRICS, main_metric="f1", aliases=("ner", "conll2003"),
    description="CoNLL-2003 English NER: PER, ORG, LOC, MISC. The tags are IOB2 (every entity starts with B-; "
                "checked on both local files) and are kept as in the file; entity-level precision/recall/F1 as "
                "seqeval's default mode (conlleval). " + _CONLL_NOTE,
    local=conll2003_local(tag_column=3),
    hub=tag_hub("eriktks/conll2003", None, "ner_tags"),
))  # fmt: skip

register_task(TaskSpec(
    name="conll2003_pos", task_type="token_classification", label_names=CONLL_POS_TAGS, is_pair=False,
    metrics=POS_METRICS, main_metric="accuracy", aliases=("pos",),
    description="CoNLL-2003 English POS tagging: the 47 Penn Treebank tags of column 2 (Hub order), token accuracy. "
                + _CONLL_NOTE,
    local=conll2003_local(tag_column=1),
    hub=tag_hub("eriktks/conll2003", None, "pos_tags"),
))  # fmt: skip

_WNUT = TabTagReader()
register_task(TaskSpec(
    name="wnut17", task_type="token_classification", label_names=WNUT17_TAGS, is_pair=False,
    metrics=NER_METRICS, main_metric="f1", aliases=("wnut_17", "wnut"),
    description="WNUT-17 emerging and rare entities in social media text: corporation, creative-work, group, "
                "location, person, product (IOB2), entity-level precision/recall/F1 (seqeval). Local: "
                "wnut17/wnut17train.conll (3,394 sentences), emerging.dev.conll (1,009) as validation, "
                "emerging.test.annotated (1,287) as test. Hub: leondz/wnut_17 (formerly wnut_17).",
    local=LocalSource({
        "train": LocalFile(("wnut17/wnut17train.conll",), _WNUT),
        "validation": LocalFile(("wnut17/emerging.dev.conll",), _WNUT),
        "test": LocalFile(("wnut17/emerging.test.annotated",), _WNUT),
    }),
    hub=tag_hub("leondz/wnut_17", None, "ner_tags"),
))  # fmt: skip

_WIKIANN = TabTagReader(strip_prefix="en:")
register_task(TaskSpec(
    name="wikiann_en", task_type="token_classification", label_names=WIKIANN_TAGS, is_pair=False,
    metrics=NER_METRICS, main_metric="f1", aliases=("wikiann",),
    description="WikiANN English NER: PER, ORG, LOC (IOB2), entity-level precision/recall/F1 (seqeval). Local: "
                "wikiann_en/train (20,000 sentences), dev (10,000) as validation, test (10,000); the 'en:' prefix of "
                "every token is stripped. Hub: unimelb-nlp/wikiann 'en'.",
    local=LocalSource({
        "train": LocalFile(("wikiann_en/train",), _WIKIANN),
        "validation": LocalFile(("wikiann_en/dev",), _WIKIANN),
        "test": LocalFile(("wikiann_en/test",), _WIKIANN),
    }),
    hub=tag_hub("unimelb-nlp/wikiann", "en", "ner_tags"),
))  # fmt: skip

_UD = ConlluReader(column="upos")
register_task(TaskSpec(
    name="ud_english_lines_pos", task_type="token_classification", label_names=UPOS_TAGS, is_pair=False,
    metrics=POS_METRICS, main_metric="accuracy", aliases=("upos", "ud_pos"),
    description="UD English-LinES universal POS tagging: the 17 UPOS tags of the syntactic words (multiword-token "
                "ranges and empty nodes skipped), token accuracy. Local: ud_english_lines/en_lines-ud-train.conllu "
                "(3,457 sentences), -dev (1,118) as validation, -test (1,121). Hub: universal_dependencies "
                "'en_lines' (column upos).",
    local=LocalSource({
        "train": LocalFile(("ud_english_lines/en_lines-ud-train.conllu",), _UD),
        "validation": LocalFile(("ud_english_lines/en_lines-ud-dev.conllu",), _UD),
        "test": LocalFile(("ud_english_lines/en_lines-ud-test.conllu",), _UD),
    }),
    hub=tag_hub("universal_dependencies", "en_lines", "upos"),
))  # fmt: skip
