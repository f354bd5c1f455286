"""Write our adapter and fusion directories in AdapterHub ``adapters``' layout (``adapters.AutoAdapterModel``'s
``load_adapter`` / ``load_adapter_fusion`` read them; safetensors weights).

* An adapter directory -> ``adapter_config.json`` (the full ``BnConfig``) + ``adapter.safetensors``, and its head
  (a classification head on the CLS token) -> ``head_config.json`` + ``model_head.safetensors``.
* A fusion directory -> ``OUT/<adapter>/`` for every fused adapter and ``OUT/<a,b,...>/`` with
  ``adapter_fusion_config.json`` + ``model_adapter_fusion.safetensors`` (what ``save_all_adapters`` and
  ``save_all_adapter_fusions`` write). Attention fusion with one head only. AdapterHub's value matrix has no bias:
  a non-zero value bias ``bv`` is folded into every fused adapter's up-projection bias (``c = Wv^-1 bv``; the
  same shift of every adapter's output cancels in the attention scores, so the fusion is unchanged), and those
  exported adapters are then specific to this fusion.

Key layouts are those AdapterHub 1.3.0 writes for ``BertAdapterModel``, ``RobertaAdapterModel`` and
``GPT2AdapterModel`` (checked by ``tests/test_adapterhub.py`` against its own files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from adapter_fusion._version import __version__
from adapter_fusion.fusion.saving import FUSION_WEIGHTS, is_fusion_directory, read_fusion_config
from adapter_fusion.interop.adapterhub import CONFIG, FUSION_CONFIG, HEAD_CONFIG
from adapter_fusion.io import atomic_directory, load_tensors, read_json, save_tensors, write_json
from adapter_fusion.models.saving import ADAPTER_WEIGHTS, read_adapter_config

# model type -> (AdapterHub model class, key prefix of the attention adapters, of the feed-forward ones)
LAYOUTS = {
    "bert": ("BertAdapterModel", "bert.encoder.layer.{i}.attention.output", "bert.encoder.layer.{i}.output"),
    "roberta": (
        "RobertaAdapterModel", "roberta.encoder.layer.{i}.attention.output", "roberta.encoder.layer.{i}.output"
    ),
    "gpt2": ("GPT2AdapterModel", "transformer.h.{i}.attention_adapters", "transformer.h.{i}.output_adapters"),
}  # fmt: skip
BN_DEFAULTS: dict[str, Any] = {  # AdapterHub 1.3.0's BnConfig fields we never change
    "adapter_residual_before_ln": False, "cross_adapter": False, "factorized_phm_W": True,
    "factorized_phm_rule": False, "hypercomplex_nonlinearity": "glorot-uniform", "init_weights": "bert",
    "init_weights_seed": None, "inv_adapter": None, "inv_adapter_reduction_factor": None, "learn_phm": True,
    "ln_after": False, "ln_before": False, "original_ln_after": True, "phm_bias": True, "phm_c_init": "normal",
    "phm_dim": 4, "phm_init_range": 0.0001, "phm_layer": False, "phm_rank": 1, "shared_W_phm": False,
    "shared_phm_rule": True, "stochastic_depth": 0.0, "use_gating": False,
}  # fmt: skip


def _layout(model_type: str) -> tuple[str, str, str]:
    if model_type not in LAYOUTS:
        raise ValueError(f"export to AdapterHub supports model types {sorted(LAYOUTS)}; got {model_type!r}")
    return LAYOUTS[model_type]


def _version() -> str:

    return f"adapter-fusion.{__version__}"


def bn_config(adapter: dict[str, Any], hidden_size: int, num_layers: int, bottleneck: int) -> dict[str, Any]:
    """AdapterHub's ``BnConfig`` dict for our saved adapter config ``adapter``."""
    placement = adapter["placement"]
    if placement != "parallel" and not adapter.get("residual", True):
        raise ValueError("an adapter with residual=False has no AdapterHub equivalent; AdapterHub always adds one")
    reduction = hidden_size / bottleneck
    if int(hidden_size // reduction) != bottleneck:
        raise ValueError(f"bottleneck {bottleneck} is not int(hidden {hidden_size} // r) for any reduction factor r")
    layers = adapter.get("layers")
    return {
        **BN_DEFAULTS,
        "dropout": adapter.get("dropout", 0.0),
        "is_parallel": placement == "parallel",
        "leave_out": [i for i in range(num_layers) if layers is not None and i not in layers],
        "mh_adapter": placement == "houlsby",
        "non_linearity": adapter.get("activation", "relu"),
        "original_ln_before": bool(adapter.get("original_ln_before", False)) and placement != "parallel",
        "output_adapter": True,
        "reduction_factor": reduction,
        "residual_before_ln": adapter.get("residual_before_ln", True),
        "scaling": float(adapter.get("scaling", 1.0)),
    }


def adapter_state(weights: dict[str, torch.Tensor], name: str, model_type: str) -> dict[str, torch.Tensor]:
    """Our ``<layer>_<location>.down.weight`` keys -> AdapterHub's."""
    _, attention, ffn = _layout(model_type)
    state = {}
    for key, tensor in weights.items():
        point, part, kind = key.split(".")
        layer, location = point.split("_")
        prefix = (attention if location == "attention" else ffn).format(i=layer)
        parameter = "adapter_down.0" if part == "down" else "adapter_up"
        state[f"{prefix}.adapters.{name}.{parameter}.{kind}"] = tensor
    return state


def _meta(info: dict[str, Any], name: str) -> dict[str, Any]:
    return {
        "hidden_size": info["hidden_size"],
        "model_class": _layout(info["model_type"])[0],
        "model_name": info.get("base_model") or "",
        "model_type": info["model_type"],
        "name": name,
        "version": _version(),
    }


def write_adapter(tmp: Path, info: dict[str, Any], weights: dict[str, torch.Tensor], name: str) -> None:
    bottleneck = next(t.shape[0] for k, t in weights.items() if k.endswith("down.weight"))
    config = bn_config(info["adapter"], info["hidden_size"], info["num_layers"], bottleneck)
    write_json(tmp / CONFIG, {"config": config, **_meta(info, name)})
    save_tensors(tmp / "adapter.safetensors", adapter_state(weights, name, info["model_type"]), {"format": "pt"})


def write_head(tmp: Path, info: dict[str, Any], head_dir: Path, name: str) -> None:
    head = read_json(head_dir / "head_config.json")
    if head.get("head_type") != "classification" or head.get("pooling") != "cls":
        raise ValueError(
            f"head at {head_dir} ({head.get('head_type')}, pooling {head.get('pooling')}) has no AdapterHub "
            "equivalent here; exported: classification heads on the CLS token"
        )
    labels = head.get("label_names") or [f"LABEL_{i}" for i in range(head["num_labels"])]
    config = {
        "activation_function": "tanh", "bias": True, "dropout_prob": head.get("dropout"),
        "head_type": "classification", "label2id": {label: i for i, label in enumerate(labels)}, "layers": 2,
        "num_labels": head["num_labels"], "use_pooler": False,
    }  # fmt: skip
    write_json(tmp / HEAD_CONFIG, {"config": config, **_meta(info, name)})
    weights = load_tensors(head_dir / "head.safetensors")
    parts = {"dense": "1", "out": "4"}
    state = {f"heads.{name}.{parts[k.split('.')[0]]}.{k.split('.')[1]}": v for k, v in weights.items()}
    save_tensors(tmp / "model_head.safetensors", state, {"format": "pt"})


def export_adapter(directory: str | Path, output: str | Path, name: str | None = None) -> Path:
    """Write our adapter ``directory`` (and its head) to ``output`` in AdapterHub's layout, atomically."""
    directory = Path(directory)
    info = read_adapter_config(directory)
    if info.get("format") == "adapterhub":
        raise ValueError(f"{directory} is already an AdapterHub adapter directory")
    name = name or info["name"]
    weights = load_tensors(directory / ADAPTER_WEIGHTS)
    with atomic_directory(Path(output), "AdapterHub adapter", inputs=[directory]) as tmp:
        write_adapter(tmp, info, weights, name)
        if (directory / "head_config.json").is_file():
            write_head(tmp, info, directory, name)
    return Path(output)


def export_fusion(directory: str | Path, output: str | Path) -> Path:
    """Write our fusion ``directory`` to ``output`` as AdapterHub's ``save_all_adapters`` +
    ``save_all_adapter_fusions`` would: one directory per adapter and one for the fusion (heads are not exported)."""
    directory = Path(directory)
    info = read_fusion_config(directory)
    fusion = info["fusion"]
    if fusion.get("fusion_method") != "attention" or fusion.get("num_attention_heads", 1) != 1:
        raise ValueError(
            f"AdapterHub's AdapterFusion is single-head attention; fusion at {directory} is "
            f"{fusion.get('fusion_method')!r} with {fusion.get('num_attention_heads', 1)} head(s)"
        )
    names = list(info["adapter_names"])
    fusion_name = ",".join(names)
    _, attention, ffn = _layout(info["model_type"])
    state = load_tensors(directory / FUSION_WEIGHTS)
    adapters = {n: load_tensors(directory / "adapters" / n / ADAPTER_WEIGHTS) for n in names}
    fusion_state: dict[str, torch.Tensor] = {}
    for point in info["points"]:
        layer, location = point.split("_")
        prefix = (attention if location == "attention" else ffn).format(i=layer)
        for part in ("query.weight", "query.bias", "key.weight", "key.bias", "value.weight"):
            fusion_state[f"{prefix}.adapter_fusion_layer.{fusion_name}.{part}"] = state[f"layers.{point}.{part}"]
        bias = state[f"layers.{point}.value.bias"]
        if bias.abs().max() > 0:  # fold: Wv (sum_i p_i (up_i + c)) = Wv sum_i p_i up_i + bv, since sum_i p_i = 1
            shift = torch.linalg.solve(state[f"layers.{point}.value.weight"].double(), bias.double()).to(bias.dtype)
            for n in names:
                key = f"{point}.up.bias"
                if key in adapters[n]:
                    adapters[n][key] = adapters[n][key] + shift / _scaling(directory, n)
    with atomic_directory(Path(output), "AdapterHub fusion", inputs=[directory]) as tmp:
        for n in names:
            adapter_info = read_adapter_config(directory / "adapters" / n)
            (tmp / n).mkdir()
            write_adapter(tmp / n, adapter_info, adapters[n], n)
        meta = _meta({**info, "base_model": info.get("base_model")}, fusion_name)
        config = {
            "dropout_prob": fusion.get("attention_dropout"), "key": True, "query": True, "query_before_ln": False,
            "regularization": fusion.get("value_regularization", 0.0) > 0, "residual_before": False,
            "temperature": False, "value": True, "value_before_softmax": True, "value_initialized": True,
        }  # fmt: skip
        (tmp / fusion_name).mkdir()
        write_json(tmp / fusion_name / FUSION_CONFIG, {"adapter_names": names, "config": config, **meta})
        save_tensors(tmp / fusion_name / "model_adapter_fusion.safetensors", fusion_state, {"format": "pt"})
    return Path(output)


def _scaling(directory: Path, name: str) -> float:
    """An adapter's up bias enters its output times its scaling: the folded shift is divided by it."""
    return float(read_adapter_config(directory / "adapters" / name)["adapter"].get("scaling", 1.0))


def export_adapterhub(directory: str | Path, output: str | Path) -> Path:
    """Our adapter or fusion ``directory`` in AdapterHub's layout at ``output``."""
    if is_fusion_directory(directory):
        return export_fusion(directory, output)
    return export_adapter(directory, output)
