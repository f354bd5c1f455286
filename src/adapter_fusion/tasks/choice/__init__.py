"""Multiple choice: the ``multiple_choice`` task type (``type.py``), the DREAM / CODAH / PIQA readers
(``readers.py``), accuracy (``metrics.py``) and the registered datasets (``catalogue.py``)."""

from adapter_fusion.tasks.choice import type as _type  # noqa: F401, I001  (registers the task type first)
from adapter_fusion.tasks.choice import catalogue as _catalogue  # noqa: F401  (registers the datasets)
from adapter_fusion.tasks.choice.metrics import choice_accuracy
from adapter_fusion.tasks.choice.readers import CodahReader, DreamReader, PiqaReader
from adapter_fusion.tasks.choice.type import ChoiceCollator, MultipleChoiceType, encode_choices, segments

__all__ = [
    "ChoiceCollator",
    "CodahReader",
    "DreamReader",
    "MultipleChoiceType",
    "PiqaReader",
    "choice_accuracy",
    "encode_choices",
    "segments",
]
