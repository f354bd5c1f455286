"""Extractive question answering (SQuAD v1.1 style): the ``extractive_qa`` task type (``type.py``), windows and span
decoding (``spans.py``), the SQuAD reader (``readers.py``), exact match and F1 (``metrics.py``) and the registered
datasets (``catalogue.py``: XQuAD English, COVID-QA, SQuAD v1.1)."""

from adapter_fusion.tasks.qa import type as _type  # noqa: F401, I001  (registers the task type first)
from adapter_fusion.tasks.qa import catalogue as _catalogue  # noqa: F401  (registers the datasets)
from adapter_fusion.tasks.qa.catalogue import ArticleCarve, QAHubSource
from adapter_fusion.tasks.qa.metrics import normalize_answer, squad_scores
from adapter_fusion.tasks.qa.readers import SquadReader, read_squad, split_by_article
from adapter_fusion.tasks.qa.type import QA_FEATURES, QA_METRICS, ExtractiveQAType

__all__ = [
    "QA_FEATURES",
    "QA_METRICS",
    "ArticleCarve",
    "ExtractiveQAType",
    "QAHubSource",
    "SquadReader",
    "normalize_answer",
    "read_squad",
    "split_by_article",
    "squad_scores",
]
