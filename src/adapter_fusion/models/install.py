"""Putting given weights into a model: an adapter (and its head) installed exactly or not at all.

The bottom of the loading stack: this library's own directories (``models.saving``), AdapterHub's and PEFT's
(``interop``) all read their files their own way and then install through here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from adapter_fusion.adapters import AnyAdapterConfig
from adapter_fusion.heads import HeadConfig
from adapter_fusion.io import load_tensors

if TYPE_CHECKING:
    from adapter_fusion.models.model import AdapterModel


def install_adapter(
    model: AdapterModel,
    name: str,
    config: AnyAdapterConfig,
    weights: dict[str, torch.Tensor],
    head_config: HeadConfig | None = None,
    head_weights: Callable[[torch.nn.Module], dict[str, torch.Tensor]] | None = None,
    *,
    activate: bool = True,
    where: str | Path = "",
) -> str:
    """Add adapter ``name`` (and its head, whose weights ``head_weights(head)`` gives) with exactly ``weights``;
    a failed load leaves the model as it was. ``where`` names the source in errors."""
    manager = model.adapters
    if head_config is not None and name in model.heads:
        raise ValueError(f"a head named {name!r} already exists in the model; load with another name")
    manager.add_adapter(name, config, activate=False)
    try:
        load_exact(manager.adapters[name], weights, f"adapter at {where}")
        if head_config is not None:
            head = model.add_head(name, head_config, activate=False)
            load_exact(head, head_weights(head) if head_weights else {}, f"head at {where}")
    except Exception:
        # a failed load leaves the model as it was: no half-loaded adapter or head
        manager.remove_adapter(name)
        if head_config is not None and name in model.heads:
            del model.heads[name]
        raise
    if activate:
        manager.set_active(name)
        if head_config is not None:
            model.active_head = name
    return name


def load_head_weights(head: torch.nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """The weights at ``path``; a head without weights (``causal_lm``) needs no file."""
    if not path.is_file() and not head.state_dict():
        return {}
    return load_tensors(path)


def load_exact(module: torch.nn.Module, weights: dict[str, torch.Tensor], what: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{what} does not fit this model: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
        )
    for key, tensor in weights.items():
        if tensor.shape != expected[key].shape:
            raise ValueError(
                f"{what}: weight {key!r} has shape {tuple(tensor.shape)}, "
                f"the model expects {tuple(expected[key].shape)}"
            )
    module.load_state_dict(weights, strict=True)
