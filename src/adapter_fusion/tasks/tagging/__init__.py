"""Token classification (NER, POS tagging): the ``token_classification`` task type (``type.py``), word features such
as casing (``features.py``), the CoNLL / tab-separated / CoNLL-U readers (``readers.py``), entity and token metrics
(``metrics.py``) and the registered datasets (``catalogue.py``)."""

from adapter_fusion.tasks.tagging import type as _type  # noqa: F401, I001  (registers the task type first)
from adapter_fusion.tasks.tagging import catalogue as _catalogue  # noqa: F401  (registers the datasets)
from adapter_fusion.tasks.tagging.features import casing_ids, word_casings, word_shape
from adapter_fusion.tasks.tagging.metrics import entity_scores, tag_scores, token_accuracy
from adapter_fusion.tasks.tagging.readers import ConllReader, ConlluReader, TabTagReader
from adapter_fusion.tasks.tagging.type import (
    IGNORE_INDEX,
    TokenClassificationType,
    align_labels,
    iob_entities,
    is_iob,
    split_words,
)

__all__ = [
    "IGNORE_INDEX",
    "ConllReader",
    "ConlluReader",
    "TabTagReader",
    "TokenClassificationType",
    "align_labels",
    "casing_ids",
    "entity_scores",
    "iob_entities",
    "is_iob",
    "split_words",
    "tag_scores",
    "token_accuracy",
    "word_casings",
    "word_shape",
]
