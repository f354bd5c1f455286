"""Import PEFT LoRA adapters: a directory written by PEFT's ``save_pretrained`` (``adapter_config.json`` +
``adapter_model.safetensors``) becomes a LoRA adapter of this library, computing what PEFT computes.

PEFT stores ``base_model.model.<module path>.lora_A.weight`` ``[r, in]`` and ``.lora_B.weight`` ``[out, r]`` per
adapted linear layer; the path holds the architecture's layer list (``encoder.layer.3.attention.self.query``),
which gives the layer index and the linear layer's path inside the layer. The scaling is ``lora_alpha / r``
(``/ sqrt(r)`` with ``use_rslora``), as in PEFT. Options that change the maths in ways a plain LoRA can't express
(DoRA, trained biases, per-module ranks, ...) are refused by name; so are other PEFT types (IA3, prefix tuning).
Only safetensors weights are read (a ``.bin`` would need unpickling).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from adapter_fusion.adapters import LoraConfig
from adapter_fusion.io import load_tensors, read_json
from adapter_fusion.models.install import load_exact
from adapter_fusion.models.points import point_key
from adapter_fusion.models.specs import location_of

if TYPE_CHECKING:
    from adapter_fusion.models.model import AdapterModel

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
SUPPORTED_PEFT_TYPES = ("LORA",)
# PEFT LoRA options this importer refuses when set (each changes what the adapter computes)
_REFUSED_OPTIONS = {
    "use_dora": "DoRA (use_dora)",
    "lora_bias": "a bias on lora_B (lora_bias)",
    "layer_replication": "layer replication",
    "target_parameters": "LoRA on parameters (target_parameters)",
    "trainable_token_indices": "trainable tokens",
    "alora_invocation_tokens": "activated LoRA (alora_invocation_tokens)",
    "use_qalora": "QALoRA",
    "use_bdlora": "block-diagonal LoRA (use_bdlora)",
    "rank_pattern": "per-module ranks (rank_pattern)",
    "alpha_pattern": "per-module alphas (alpha_pattern)",
    "modules_to_save": "fully trained extra modules (modules_to_save)",
}


def is_peft_directory(directory: str | Path) -> bool:
    """Whether ``directory`` holds a PEFT adapter (its ``adapter_config.json`` has a ``peft_type``)."""
    path = Path(directory) / PEFT_CONFIG
    if not path.is_file():
        return False
    try:
        data = read_json(path)
    except ValueError:
        return False
    return isinstance(data, dict) and "peft_type" in data


def read_peft_config(directory: str | Path) -> dict[str, Any]:
    """PEFT's ``adapter_config.json``, checked: a LoRA, without the options this importer can't reproduce."""
    directory = Path(directory)
    config = read_json(directory / PEFT_CONFIG)
    peft_type = str(config.get("peft_type"))
    if peft_type.upper() not in SUPPORTED_PEFT_TYPES:
        raise ValueError(
            f"PEFT adapter at {directory} has peft_type {peft_type!r}; supported: "
            f"{', '.join(SUPPORTED_PEFT_TYPES)} (LoRA on linear layers inside the transformer layers)"
        )
    refused = [text for key, text in _REFUSED_OPTIONS.items() if config.get(key)]
    if config.get("bias", "none") != "none":
        refused.append(f"trained base biases (bias={config['bias']!r})")
    if refused:
        raise ValueError(
            f"PEFT LoRA adapter at {directory} uses {', '.join(refused)}; supported: plain LoRA "
            "(one r and lora_alpha, optional use_rslora and lora_dropout, bias='none')"
        )
    if not (directory / PEFT_WEIGHTS).is_file():
        present = sorted(p.name for p in directory.iterdir())
        raise FileNotFoundError(
            f"PEFT adapter at {directory} has no {PEFT_WEIGHTS} (it holds {present}); only safetensors weights are "
            "read (a .bin needs unpickling): re-save it with save_pretrained(..., safe_serialization=True)"
        )
    return config


def peft_adapter_info(directory: str | Path) -> dict[str, Any]:
    """What ``read_adapter_config`` returns for a PEFT directory: name, kind, base model, the PEFT config."""
    directory = Path(directory)
    config = read_peft_config(directory)
    return {
        "format": "peft",
        "name": directory.resolve().name,
        "adapter_kind": "lora",
        "base_model": config.get("base_model_name_or_path"),
        "peft": config,
        "metadata": {},
    }


def peft_lora_weights(
    model: AdapterModel, directory: str | Path
) -> tuple[LoraConfig, dict[str, torch.Tensor]]:
    """The ``LoraConfig`` and the state dict (this library's keys) of the PEFT adapter at ``directory``."""
    directory = Path(directory)
    config = read_peft_config(directory)
    manager = model.adapters
    pattern = re.compile(rf"(?:^|\.){re.escape(manager.spec.layers)}\.(\d+)\.(.+)\.lora_([AB])\.weight$")
    found: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    unplaced = []
    for key, tensor in load_tensors(directory / PEFT_WEIGHTS).items():
        match = pattern.search(key)
        if match is None:
            unplaced.append(key)
            continue
        found.setdefault((int(match.group(1)), match.group(2)), {})[match.group(3)] = tensor
    if unplaced or not found:
        raise ValueError(
            f"PEFT adapter at {directory} holds weights this library can't place: {unplaced[:3] or 'none at all'}; "
            f"supported: lora_A/lora_B weights of linear layers inside the {manager.model_type} layers "
            f"('{manager.spec.layers}.N.<path>')"
        )
    layers = sorted({layer for layer, _ in found})
    paths = sorted({path for _, path in found})
    bad = [layer for layer in layers if layer >= manager.num_layers]
    if bad:
        raise ValueError(f"PEFT adapter at {directory} adapts layers {bad}; the model has {manager.num_layers}")
    incomplete = [f"{layer}.{path}" for (layer, path), pair in found.items() if set(pair) != {"A", "B"}]
    uneven = [layer for layer in layers if {p for lay, p in found if lay == layer} != set(paths)]
    if incomplete or uneven:
        raise ValueError(
            f"PEFT adapter at {directory}: every adapted layer must hold lora_A and lora_B of the same linear "
            f"layers; lacking a pair: {incomplete[:3]}, layers adapting other modules: {uneven}"
        )
    lora = LoraConfig(
        r=int(config["r"]),
        alpha=float(config["lora_alpha"]),
        dropout=float(config.get("lora_dropout") or 0.0),
        target_modules=tuple(paths),
        layers=tuple(layers) if len(layers) < manager.num_layers else None,
        use_rslora=bool(config.get("use_rslora", False)),
    )
    weights = {}
    for (layer, path), pair in found.items():
        key = point_key(layer, location_of(manager.spec, path))
        weights[f"{key}.lora_A.weight"] = pair["A"]
        weights[f"{key}.lora_B.weight"] = pair["B"]
    return lora, weights


def load_peft_adapter(
    model: AdapterModel, directory: str | Path, name: str | None = None, *, activate: bool = True
) -> str:
    """Add the PEFT LoRA adapter at ``directory`` to ``model`` as ``name`` (default: the directory's name)."""
    directory = Path(directory)
    lora, weights = peft_lora_weights(model, directory)
    name = name or directory.resolve().name.replace(".", "_")
    manager = model.adapters
    manager.add_adapter(name, lora, activate=False)
    try:
        load_exact(manager.adapters[name], weights, f"PEFT adapter at {directory}")
    except Exception:
        manager.remove_adapter(name)  # no half-loaded adapter
        raise
    if activate:
        manager.set_active(name)
    return name
