"""Sentence(-pair) classification and regression: the ``classification`` and ``regression`` task types
(``type.py``), the readers of their files (``readers.py``), their metrics (``metrics.py``) and the registered
datasets (``catalogue.py``: GLUE, LM-BFF/PCP, AG News; ``catalogue_large.py``: the larger source-adapter sets)."""

from adapter_fusion.tasks.sentence import type as _type  # noqa: F401, I001  (registers the task types first)
from adapter_fusion.tasks.sentence import catalogue as _catalogue  # noqa: F401  (registers the datasets)
from adapter_fusion.tasks.sentence import catalogue_large as _catalogue_large  # noqa: F401
from adapter_fusion.tasks.sentence.metrics import METRICS, compute_metrics
from adapter_fusion.tasks.sentence.readers import RawColumns
from adapter_fusion.tasks.sentence.type import SequenceClassificationType, SequenceRegressionType

__all__ = ["METRICS", "RawColumns", "SequenceClassificationType", "SequenceRegressionType", "compute_metrics"]
