"""Per-architecture specs: where the layers and sub-layer outputs of a Hugging Face model are.

Supporting a new model family means adding one ``ArchitectureSpec`` (a few dotted paths) and a test row.
Paths are relative to ``model.base_model`` so the same spec serves ``AutoModel`` and ``AutoModelFor...``.
"""

from __future__ import annotations

import dataclasses

from torch import nn
from transformers.pytorch_utils import Conv1D

from adapter_fusion.registry import Registry


@dataclasses.dataclass(frozen=True)
class ArchitectureSpec:
    """Where adapters attach in one model family.

    ``ffn_output`` and ``attention_output`` name the module whose output is the sub-layer's output before the
    residual connection and layer norm; ``ffn_input`` names the module whose first positional input is the
    feed-forward block's input (read by parallel adapters).

    For adapters that add the residual and apply the sub-layer's own LayerNorm before they run
    (``AdapterConfig.original_ln_before``, AdapterHub's ``SeqBnConfig``): the attention sub-layer's residual input
    is the layer's own input; ``ffn_residual`` names the module whose first input is the feed-forward sub-layer's
    residual input; ``attention_norm`` / ``ffn_norm`` name the LayerNorm after each residual add (post-LN models;
    ``None`` in pre-LN decoders, where AdapterHub, too, adds the residual without a norm).
    """

    family: str
    layers: str
    attention_output: str
    ffn_input: str
    ffn_output: str
    hidden_size_attribute: str = "hidden_size"
    is_decoder: bool = False
    lora_targets: tuple[str, ...] = ()
    """The linear layers LoRA adapts when its config names none (PEFT's defaults: attention query and value)."""
    ffn_residual: str | None = None
    attention_norm: str | None = None
    ffn_norm: str | None = None


ARCHITECTURES: Registry[ArchitectureSpec] = Registry("model type")

_BERT_LIKE = dict(
    layers="encoder.layer",
    attention_output="attention.output.dense",
    ffn_input="intermediate",
    ffn_output="output.dense",
    lora_targets=("attention.self.query", "attention.self.value"),
    ffn_residual="intermediate",
    attention_norm="attention.output.LayerNorm",
    ffn_norm="output.LayerNorm",
)
ARCHITECTURES.register("bert", ArchitectureSpec(family="bert", **_BERT_LIKE))
ARCHITECTURES.register("roberta", ArchitectureSpec(family="roberta", **_BERT_LIKE))
ARCHITECTURES.register("xlm-roberta", ArchitectureSpec(family="xlm-roberta", **_BERT_LIKE))
ARCHITECTURES.register("electra", ArchitectureSpec(family="electra", **_BERT_LIKE))
ARCHITECTURES.register(
    "distilbert",
    ArchitectureSpec(
        family="distilbert",
        layers="transformer.layer",
        attention_output="attention.out_lin",
        ffn_input="ffn",
        ffn_output="ffn.lin2",
        hidden_size_attribute="dim",
        lora_targets=("attention.q_lin", "attention.v_lin"),
        ffn_residual="ffn",
        attention_norm="sa_layer_norm",
        ffn_norm="output_layer_norm",
    ),
)
ARCHITECTURES.register(
    "gpt2",
    ArchitectureSpec(
        family="gpt2",
        layers="h",
        attention_output="attn.c_proj",
        ffn_input="mlp",
        ffn_output="mlp.c_proj",
        hidden_size_attribute="n_embd",
        is_decoder=True,
        lora_targets=("attn.c_attn",),
        ffn_residual="ln_2",
    ),
)
_LLAMA_LIKE = dict(
    layers="layers",
    attention_output="self_attn.o_proj",
    ffn_input="mlp",
    ffn_output="mlp.down_proj",
    is_decoder=True,
    lora_targets=("self_attn.q_proj", "self_attn.v_proj"),
    ffn_residual="post_attention_layernorm",
)
for _family in ("llama", "mistral", "qwen2"):
    ARCHITECTURES.register(_family, ArchitectureSpec(family=_family, **_LLAMA_LIKE))


def spec_for(model: nn.Module) -> ArchitectureSpec:
    """The spec for a Hugging Face model, by ``config.model_type``."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        raise TypeError(f"expected a Hugging Face PreTrainedModel with a config; got {type(model).__name__}")
    try:
        return ARCHITECTURES.get(model_type)
    except KeyError:
        raise ValueError(
            f"model type {model_type!r} is not supported yet; supported: {', '.join(ARCHITECTURES.names())}. "
            "Add an ArchitectureSpec in adapter_fusion/models/specs.py."
        ) from None


def hidden_size_of(model: nn.Module, spec: ArchitectureSpec) -> int:
    return int(getattr(model.config, spec.hidden_size_attribute))


def layer_modules(model: nn.Module, spec: ArchitectureSpec) -> list[nn.Module]:
    base = getattr(model, "base_model", model)
    layers = base.get_submodule(spec.layers)
    return list(layers)


def linear_features(module: nn.Module) -> tuple[int, int] | None:
    """``(in_features, out_features)`` of an ``nn.Linear`` or of GPT-2's ``Conv1D`` (weight ``[in, out]``)."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, Conv1D):
        return int(module.weight.shape[0]), int(module.weight.shape[1])
    return None


def linear_modules(layer: nn.Module) -> dict[str, nn.Module]:
    """Every linear layer inside one transformer layer, by its dotted path in the layer."""
    return {name: module for name, module in layer.named_modules() if name and linear_features(module) is not None}


def location_of(spec: ArchitectureSpec, path: str) -> str:
    """The adapter-point location of the linear layer at ``path`` in a layer: ``"attention"`` / ``"ffn"`` for the
    sub-layer outputs bottleneck adapters follow (a LoRA there shares their point), else the path with dots
    written as underscores (module names can't hold dots)."""
    if path == spec.attention_output:
        return "attention"
    if path == spec.ffn_output:
        return "ffn"
    return path.replace(".", "_")
