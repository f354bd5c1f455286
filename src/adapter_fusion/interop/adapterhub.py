"""AdapterHub ``adapters`` artefacts: read its adapter, head and AdapterFusion directories, write ours in its layout.

An AdapterHub adapter directory holds ``adapter_config.json`` (``{"config": {...BnConfig...}, "name", "model_type",
"hidden_size", ...}``) and ``pytorch_adapter.bin`` or ``adapter.safetensors``; with a head, ``head_config.json`` and
``pytorch_model_head.bin`` / ``model_head.safetensors``; an AdapterFusion directory holds
``adapter_fusion_config.json`` and ``pytorch_model_adapter_fusion.bin`` / ``model_adapter_fusion.safetensors``.

Mapping (checked against AdapterHub 1.3.0's own outputs by ``tests/test_adapterhub.py``):

* ``SeqBnConfig`` (Pfeiffer) -> ``placement="pfeiffer"`` with its ``original_ln_before`` / ``residual_before_ln``;
  ``DoubleSeqBnConfig`` (Houlsby) -> ``"houlsby"``; ``ParBnConfig`` -> ``"parallel"`` (encoders: AdapterHub's
  parallel adapter reads the residual stream, which in pre-LN decoders is not the feed-forward input ours read).
* ``adapter_down.0`` / ``adapter_up`` -> ``down`` / ``up`` of the adapter at ``<layer>_attention`` (keys under an
  ``attention`` module) or ``<layer>_ffn``; ``leave_out`` -> ``layers``.
* AdapterFusion (``BertFusion``: query, key, value without bias) -> attention fusion (value bias 0).
* A classification head (2 layers, tanh, CLS token) -> our classification head (``1`` -> ``dense``, ``4`` -> ``out``).

Weights in ``.bin`` files are read with ``torch.load(weights_only=True)`` only: a file that needs full unpickling
(which can run arbitrary code) is refused, never loaded.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.heads import HeadConfig
from adapter_fusion.io import load_tensors, read_json
from adapter_fusion.models.install import install_adapter

if TYPE_CHECKING:
    from adapter_fusion.models import AdapterModel

CONFIG = "adapter_config.json"
WEIGHTS = ("adapter.safetensors", "pytorch_adapter.bin")
HEAD_CONFIG = "head_config.json"
HEAD_WEIGHTS = ("model_head.safetensors", "pytorch_model_head.bin")
FUSION_CONFIG = "adapter_fusion_config.json"
FUSION_WEIGHTS = ("model_adapter_fusion.safetensors", "pytorch_model_adapter_fusion.bin")
ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "silu": "silu", "swish": "swish", "tanh": "tanh"}
SUPPORTED = "bottleneck adapters: SeqBnConfig (Pfeiffer), DoubleSeqBnConfig (Houlsby), ParBnConfig (parallel)"
# an option we cannot represent -> the value every supported AdapterHub preset has
REQUIRED_OPTIONS: dict[str, Any] = {
    "original_ln_after": True,
    "ln_before": False,
    "ln_after": False,
    "use_gating": False,
    "phm_layer": False,
    "inv_adapter": None,
    "cross_adapter": False,
}
FUSION_REQUIRED: dict[str, Any] = {
    "key": True,
    "query": True,
    "query_before_ln": False,
    "residual_before": False,
    "temperature": False,
    "value_before_softmax": True,
}


# ------------------------------------------------------------------------------------------------ files
def is_adapterhub_adapter(directory: str | Path) -> bool:
    """Whether ``directory`` holds an AdapterHub adapter (its ``adapter_config.json`` has a ``config`` section and
    no ``adapter`` section, which ours has)."""
    path = Path(directory) / CONFIG
    if not path.is_file():
        return False
    info = read_json(path)
    return isinstance(info, dict) and "config" in info and "adapter" not in info


def is_adapterhub_fusion(directory: str | Path) -> bool:
    return (Path(directory) / FUSION_CONFIG).is_file()


def load_weights(directory: Path, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The first of ``names`` found in ``directory``: safetensors, or a ``.bin`` read with ``weights_only=True``."""
    for name in names:
        path = directory / name
        if path.is_file():
            return load_tensors(path) if name.endswith(".safetensors") else load_bin(path)
    present = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    raise FileNotFoundError(f"{directory} holds no weights file ({' or '.join(names)}); it holds {present}")


def load_bin(path: Path) -> dict[str, torch.Tensor]:
    """A PyTorch ``.bin`` state dict, read with ``torch.load(weights_only=True)``: tensors and plain containers
    only. Anything else is refused, because full unpickling can run arbitrary code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{path} needs full unpickling, which can run arbitrary code: torch.load(weights_only=True) refused it "
            f"({reason}). adapter-fusion only reads tensors; re-save the weights as safetensors in an environment "
            "you trust (AdapterHub: save_adapter(..., use_safetensors=True))"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a state dict of tensors; got {type(state).__name__}")
    return state


# ------------------------------------------------------------------------------------------------ adapters
def adapter_config_from_adapterhub(
    config: dict[str, Any], bottleneck: int, num_layers: int, where: str
) -> AdapterConfig:
    """Our ``AdapterConfig`` for an AdapterHub bottleneck config (``where`` names the file, for errors)."""
    architecture = config.get("architecture") or "bottleneck"
    if "configs" in config:
        architecture = "union of " + ", ".join(str(c.get("architecture", "bottleneck")) for c in config["configs"])
    if architecture != "bottleneck":
        raise ValueError(f"{where}: AdapterHub method {architecture!r} cannot be imported; supported: {SUPPORTED}")
    for option, required in REQUIRED_OPTIONS.items():
        if option in config and config[option] != required:
            raise ValueError(
                f"{where}: AdapterHub option {option}={config[option]!r} has no equivalent here (supported: "
                f"{option}={required!r}, as in every SeqBn / DoubleSeqBn / ParBn preset)"
            )
    scaling = config.get("scaling", 1.0)
    if isinstance(scaling, bool) or not isinstance(scaling, (int, float)):
        raise ValueError(f"{where}: AdapterHub scaling={scaling!r} (learned) cannot be imported; supported: a number")
    activation = str(config.get("non_linearity", "relu")).lower()
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"{where}: AdapterHub non_linearity={activation!r} cannot be imported; supported: {sorted(ACTIVATIONS)}"
        )
    mh, output, parallel = config.get("mh_adapter"), config.get("output_adapter"), bool(config.get("is_parallel"))
    if (mh, output, parallel) == (False, True, False):
        placement = "pfeiffer"
    elif (mh, output, parallel) == (True, True, False):
        placement = "houlsby"
    elif (mh, output, parallel) == (False, True, True):
        placement = "parallel"
    else:
        raise ValueError(
            f"{where}: AdapterHub adapter with mh_adapter={mh}, output_adapter={output}, is_parallel={parallel} "
            f"cannot be imported; supported: {SUPPORTED}"
        )
    leave_out = set(config.get("leave_out") or ())
    layers = tuple(i for i in range(num_layers) if i not in leave_out)
    placement_fields: dict[str, Any] = {}
    if placement != "parallel":  # AdapterHub's parallel adapter ignores both fields
        placement_fields = {
            "original_ln_before": bool(config.get("original_ln_before", False)),
            "residual_before_ln": config.get("residual_before_ln", True),
        }
    return AdapterConfig(
        bottleneck_size=bottleneck,
        activation=ACTIVATIONS[activation],
        dropout=float(config.get("dropout", 0.0)),
        placement=placement,
        scaling=float(scaling),
        initialization="bert",
        layers=layers if len(layers) < num_layers else None,
        **placement_fields,
    )


_PARAMETERS = {"adapter_down.0": "down", "adapter_up": "up"}


def point_of(key: str, marker: str, where: str) -> tuple[str, str]:
    """``(our point key, the rest after marker)`` for an AdapterHub weight key, e.g.
    ``bert.encoder.layer.1.attention.output.adapters.a.adapter_up.weight`` ->
    ``("1_attention", "adapter_up.weight")``."""
    prefix, rest = key.split(marker, 1)
    numbers = re.findall(r"(?:^|\.)(\d+)(?=\.)", prefix + ".")
    if not numbers:
        raise ValueError(f"{where}: weight {key!r} names no layer index")
    after_layer = prefix.rsplit(f".{numbers[-1]}.", 1)[-1] if f".{numbers[-1]}." in prefix else prefix
    if "cross" in after_layer:
        raise ValueError(f"{where}: weight {key!r} belongs to a cross-attention adapter, which cannot be imported")
    location = "attention" if "attention" in after_layer else "ffn"
    return f"{int(numbers[-1])}_{location}", rest


def adapter_weights_from_adapterhub(state: dict[str, torch.Tensor], name: str, where: str) -> dict[str, torch.Tensor]:
    """AdapterHub's keys of adapter ``name`` -> ours (``<layer>_<location>.down.weight``, ...)."""
    marker = f"adapters.{name}."
    weights: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if marker not in key:
            raise ValueError(f"{where}: unexpected weight {key!r} (expected keys of adapter {name!r})")
        point, rest = point_of(key, marker, where)
        parameter, _, kind = rest.rpartition(".")
        if parameter not in _PARAMETERS:
            raise ValueError(f"{where}: weight {key!r} is not a bottleneck projection; supported: {SUPPORTED}")
        weights[f"{point}.{_PARAMETERS[parameter]}.{kind}"] = tensor
    return weights


def read_adapterhub_adapter(
    directory: str | Path, hidden_size: int, num_layers: int, model_type: str
) -> dict[str, Any]:
    """``{"name", "config": AdapterConfig, "weights": our state dict, "head": HeadConfig | None, "head_weights"}``
    of an AdapterHub adapter directory, checked against the model's geometry."""
    directory = Path(directory)
    info = read_json(directory / CONFIG)
    where = str(directory / CONFIG)
    config = info.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{where} has no 'config' section; is it an AdapterHub adapter?")
    if "architecture" in config and config["architecture"] != "bottleneck" or "configs" in config:
        adapter_config_from_adapterhub(config, 1, num_layers, where)  # raises naming the method
    recorded = info.get("hidden_size")
    if recorded is not None and recorded != hidden_size:
        raise ValueError(f"{where}: adapter for hidden size {recorded}, but the model has hidden size {hidden_size}")
    if info.get("model_type") not in (None, model_type):
        raise ValueError(f"{where}: adapter for a {info['model_type']!r} model, but the model is a {model_type!r}")
    name = str(info.get("name") or directory.name)
    weights = adapter_weights_from_adapterhub(load_weights(directory, WEIGHTS), name, where)
    sizes = {tuple(t.shape)[0] for key, t in weights.items() if key.endswith("down.weight")}
    if len(sizes) != 1:
        raise ValueError(f"{where}: bottleneck sizes differ across layers {sorted(sizes)}; one size is supported")
    result = {
        "name": name,
        "config": adapter_config_from_adapterhub(config, sizes.pop(), num_layers, where),
        "weights": weights,
        "head": None,
        "head_weights": {},
    }
    if (directory / HEAD_CONFIG).is_file():
        result["head"], result["head_weights"] = read_adapterhub_head(directory)
    return result


def read_adapterhub_head(directory: Path) -> tuple[HeadConfig, dict[str, torch.Tensor]]:
    """A classification head (2 layers, tanh, CLS token) as our ``HeadConfig`` and weights."""
    info = read_json(directory / HEAD_CONFIG)
    where = str(directory / HEAD_CONFIG)
    config = info.get("config") or {}
    shape = {k: config.get(k) for k in ("head_type", "layers", "activation_function", "use_pooler", "bias")}
    if shape != {"head_type": "classification", "layers": 2, "activation_function": "tanh", "use_pooler": False,
                 "bias": True}:  # fmt: skip
        raise ValueError(
            f"{where}: AdapterHub head {shape} cannot be imported; supported: a classification head with 2 layers, "
            "tanh, bias and no pooler (AdapterHub's default)"
        )
    label2id = config.get("label2id") or {}
    num_labels = int(config["num_labels"])
    names = tuple(sorted(label2id, key=label2id.get)) if len(label2id) == num_labels else ()
    dropout = config.get("dropout_prob")
    head = HeadConfig(head_type="classification", num_labels=num_labels, label_names=names, pooling="cls",
                      dropout=0.1 if dropout is None else float(dropout))  # fmt: skip
    mapping = {"1.weight": "dense.weight", "1.bias": "dense.bias", "4.weight": "out.weight", "4.bias": "out.bias"}
    state = load_weights(directory, HEAD_WEIGHTS)
    weights = {}
    for key, tensor in state.items():
        suffix = ".".join(key.split(".")[-2:])
        if not key.startswith("heads.") or suffix not in mapping:
            raise ValueError(f"{where}: unexpected head weight {key!r}")
        weights[mapping[suffix]] = tensor
    return head, weights


# ------------------------------------------------------------------------------------------------ fusion
def read_adapterhub_fusion(directory: str | Path) -> dict[str, Any]:
    """``{"name", "adapter_names", "settings": FusionConfig fields, "weights": {point: {query/key/value...}}}``."""
    directory = Path(directory)
    info = read_json(directory / FUSION_CONFIG)
    where = str(directory / FUSION_CONFIG)
    config = info.get("config") or {}
    for option, required in FUSION_REQUIRED.items():
        if config.get(option, required) != required:
            raise ValueError(
                f"{where}: AdapterFusion option {option}={config[option]!r} has no equivalent here; supported: "
                f"{option}={required!r} (the 'dynamic' and 'static' presets)"
            )
    names = tuple(info.get("adapter_names") or str(info.get("name", directory.name)).split(","))
    fusion_name = str(info.get("name") or directory.name)
    state = load_weights(directory, FUSION_WEIGHTS)
    marker = f"adapter_fusion_layer.{fusion_name}."
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        if marker not in key:
            raise ValueError(f"{where}: unexpected weight {key!r} (expected keys of fusion {fusion_name!r})")
        point, rest = point_of(key, marker, where)
        if rest not in ("query.weight", "query.bias", "key.weight", "key.bias", "value.weight"):
            raise ValueError(f"{where}: unexpected fusion weight {key!r}")
        weights.setdefault(point, {})[rest] = tensor
    dropout = config.get("dropout_prob")
    settings = {
        "fusion_method": "attention",
        "adapter_names": names,
        "name": fusion_name.replace(".", "_"),
        "attention_dropout": 0.1 if dropout is None else float(dropout),
        "value_regularization": 0.01 if config.get("regularization", True) else 0.0,
    }
    return {"name": fusion_name, "adapter_names": names, "settings": settings, "weights": weights}


# ------------------------------------------------------------------------------------------------ into a model
def adapterhub_info(directory: str | Path) -> dict[str, Any]:
    """What ``read_adapter_config`` reports for an AdapterHub adapter directory (the base model is its
    ``model_name``)."""
    info = read_json(Path(directory) / CONFIG)
    return {
        "name": info.get("name") or Path(directory).name,
        "base_model": info.get("model_name") or None,
        "model_type": info.get("model_type"),
        "hidden_size": info.get("hidden_size"),
        "format": "adapterhub",
        "metadata": {},
    }


def load_adapterhub_adapter(
    model: AdapterModel, directory: str | Path, name: str | None = None, *, load_head: bool = True,
    activate: bool = True,
) -> str:  # fmt: skip
    """Load an AdapterHub adapter directory (and its head) into ``model``; returns the adapter's name. A failed
    load leaves the model as it was."""
    manager = model.adapters
    read = read_adapterhub_adapter(directory, manager.hidden_size, manager.num_layers, manager.model_type)
    if read["config"].placement == "parallel" and manager.spec.is_decoder:
        raise ValueError(
            f"{directory}: AdapterHub's parallel adapter reads the residual stream, which in a pre-LN decoder "
            f"({manager.model_type}) is not the feed-forward input ours read; supported there: SeqBn, DoubleSeqBn"
        )
    head = read["head"] if load_head else None
    return install_adapter(
        model, name or read["name"], read["config"], read["weights"], head, lambda _: read["head_weights"],
        activate=activate, where=f"{directory} (AdapterHub)",
    )  # fmt: skip
