"""A new adapter that will be fused with saved ones must read what they read at each fused point.

Sequential adapters (``pfeiffer``, ``houlsby``) fused at one point share one input, the fusion's query: either the
sub-layer output itself or, with ``original_ln_before``, the sub-layer's LayerNorm of output plus residual input (see
``AdapterConfig``). ``fusable_adapter_config`` reads that setting from the adapters to fuse with, so a user (or the
quickstart, or the transfer study) never has to know which setting, say, the shipped bank was trained with:

>>> config = fusable_adapter_config(["bank:sst2", "bank:imdb"])          # reads what the bank's adapters read
>>> AdapterTrainer("cr", adapter_config=config).train(train, dev)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapter_fusion.adapters import AdapterConfig, adapter_config_from_dict
from adapter_fusion.adapters.config import SEQUENTIAL_PLACEMENTS
from adapter_fusion.models.saving import read_adapter_config

INPUT_FIELDS = ("original_ln_before", "residual_before_ln")


def input_mode(directory: str | Path) -> tuple[bool, bool | str] | None:
    """``(original_ln_before, residual_before_ln)`` of a saved sequential bottleneck adapter (a directory or
    ``bank:NAME``); None for a parallel or LoRA adapter, which reads no shared query."""
    info = read_adapter_config(directory)
    if "adapter" not in info:  # a PEFT directory: LoRA
        return None
    config = adapter_config_from_dict(info["adapter"], info.get("adapter_kind"))  # the loader's own reading
    if not isinstance(config, AdapterConfig) or config.placement not in SEQUENTIAL_PLACEMENTS:
        return None
    return config.original_ln_before, config.residual_before_ln  # type: ignore[return-value]


def fusable_adapter_config(sources: Sequence[str | Path], **fields: Any) -> AdapterConfig:
    """An ``AdapterConfig`` (``fields`` as its keyword arguments) for a new adapter that will be fused with the saved
    adapters ``sources``: a sequential one reads the same input as the sources' sequential adapters. Raises
    ``ValueError`` when the sources disagree among themselves (they cannot be fused together either) or when
    ``fields`` set an input the sources do not read."""
    if isinstance(sources, (str, Path)):
        raise TypeError(f"sources must be a list of adapter directories or bank:NAME; got the single {sources!r}")
    modes = {str(source): mode for source in sources if (mode := input_mode(source)) is not None}
    if len(set(modes.values())) > 1:
        raise ValueError(
            "the adapters to fuse with read different inputs ((original_ln_before, residual_before_ln)); got "
            + ", ".join(f"{source}: {mode}" for source, mode in modes.items())
        )
    placement = fields.get("placement", "pfeiffer")
    if not modes or placement not in SEQUENTIAL_PLACEMENTS:
        return AdapterConfig(**fields)
    wanted = dict(zip(INPUT_FIELDS, next(iter(modes.values())), strict=True))
    clash = {key: fields[key] for key in INPUT_FIELDS if key in fields and fields[key] != wanted[key]}
    if clash:
        raise ValueError(
            f"{', '.join(f'{key}={value!r}' for key, value in clash.items())} would read another input than the "
            f"adapters to fuse with ({', '.join(f'{key}={value!r}' for key, value in wanted.items())}); drop it"
        )
    return AdapterConfig(**{**fields, **wanted})
