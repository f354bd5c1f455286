"""Generation with a causal decoder LM (summarization, translation): the ``generation`` task type and its
``GenerationTaskSpec`` (``type.py``), the DialogSum / SciTLDR / parallel-lines readers (``readers.py``), ROUGE and
BLEU/chrF (``metrics.py``) and the registered datasets (``catalogue.py``)."""

from adapter_fusion.tasks.generation import type as _type  # noqa: F401, I001  (registers the task type first)
from adapter_fusion.tasks.generation import catalogue as _catalogue  # noqa: F401  (registers the datasets)
from adapter_fusion.tasks.generation.metrics import bleu_scores, rouge_scores, score_generations
from adapter_fusion.tasks.generation.readers import DialogSumReader, ParallelLinesReader, SciTldrReader
from adapter_fusion.tasks.generation.type import IGNORE_INDEX, GenerationTaskSpec, GenerationType, pad_token_id

__all__ = [
    "IGNORE_INDEX",
    "DialogSumReader",
    "GenerationTaskSpec",
    "GenerationType",
    "ParallelLinesReader",
    "SciTldrReader",
    "bleu_scores",
    "pad_token_id",
    "rouge_scores",
    "score_generations",
]
