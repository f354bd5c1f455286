"""Export a saved adapter or fusion directory to ONNX: one head's logits from ``input_ids``, ``attention_mask``
(and ``token_type_ids`` where the tokenizer makes them), with dynamic batch and sequence axes.

The exported graph is the model as it computes in PyTorch, hooks, LoRA and fusion included, traced by
``torch.onnx.export``: by default its TorchScript tracer (about 10x faster to export than ``dynamo=True``, measured
40 s against 400 s for a tiny fusion on this project's busy machine), or the ``torch.export``-based exporter with
``dynamo=True``. The fusion's weight products become constants that ONNX Runtime folds once. The trace uses padded
sample inputs, so the graph keeps the attention-mask path for every input.
The file is checked before it is written: ONNX Runtime's logits on sample inputs of two shapes must equal
PyTorch's within ``tolerance``, else nothing is written. Its metadata records the base model, the adapters, the
fusion method, the head and its labels, so the artefact knows what it is.

AdapterHub users report exported fusion models that compute something else (adapters issue #656); the built-in
check is the answer to that.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from adapter_fusion._version import __version__
from adapter_fusion.inference import FusionPipeline
from adapter_fusion.models.saving import recorded_model_name

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from adapter_fusion.models.model import AdapterModel

SAMPLE_TEXTS = (
    "An example sentence to trace the model with.",
    "A second, shorter one.",
    "Third.",
)


class HeadLogits(nn.Module):
    """``(input_ids, attention_mask[, token_type_ids]) -> logits`` of one head of an ``AdapterModel``."""

    def __init__(self, model: nn.Module, head: str, input_names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.head = head
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs)), head=self.head).logits


def export_onnx(
    directory: str | Path,
    output: str | Path,
    *,
    model: str | None = None,
    head: str | None = None,
    opset: int = 18,
    tolerance: float = 1e-4,
    dynamo: bool = False,
) -> Path:
    """Write the adapter (or fusion) at ``directory`` with head ``head`` (default: its only or active head) to the
    ONNX file ``output``; ``model`` overrides the recorded base model. Returns ``output``."""
    try:  # fail early, before the slow export, when the onnx extra is missing
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        needs = "ONNX export needs onnx and onnxruntime: pip install 'adapter-fusion[onnx]'"
        raise ImportError(f"{needs} ({error})") from error

    output = Path(output)
    if output.suffix != ".onnx":
        raise ValueError(f"output must be a .onnx file path; got {str(output)!r}")
    pipeline = FusionPipeline.from_pretrained(directory, model=model)
    adapter_model = pipeline.model.eval()
    head_name = _choose_head(adapter_model, head)
    samples = _samples(pipeline.tokenizer, adapter_model)
    input_names = tuple(samples[0])
    wrapper = HeadLogits(adapter_model, head_name, input_names).eval()
    proto = _trace(wrapper, samples[0], opset, dynamo)
    for key, value in _metadata(adapter_model, head_name, input_names).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    _write_checked(proto, output, wrapper, samples, tolerance)
    return output


def _trace(wrapper: HeadLogits, sample: dict[str, torch.Tensor], opset: int, dynamo: bool) -> Any:
    """The ONNX ``ModelProto`` of ``wrapper`` traced on ``sample``, batch and sequence axes dynamic."""
    import onnx

    names = list(sample)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent Python branches (fixed per model)
        if dynamo:
            batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
            program = torch.onnx.export(
                wrapper, tuple(sample.values()), dynamo=True, input_names=names, output_names=["logits"],
                dynamic_shapes=tuple({0: batch, 1: sequence} for _ in names), opset_version=opset, optimize=True,
                verbose=False,
            )  # fmt: skip
            return program.model_proto
        buffer = io.BytesIO()
        axes = {name: {0: "batch", 1: "sequence"} for name in names}
        torch.onnx.export(
            wrapper, tuple(sample.values()), buffer, dynamo=False, input_names=names, output_names=["logits"],
            dynamic_axes={**axes, "logits": {0: "batch"}}, opset_version=opset, do_constant_folding=True,
        )  # fmt: skip
        return onnx.load_from_string(buffer.getvalue())


def _choose_head(model: AdapterModel, head: str | None) -> str:
    if not model.heads:
        raise ValueError("the directory holds no head; ONNX export writes a head's logits (save one with the adapter)")
    if head is None:
        if model.active_head is not None:
            head = model.active_head
        elif len(model.heads) == 1:
            head = next(iter(model.heads))
        else:
            raise ValueError(f"the directory holds several heads; choose one with head=: {sorted(model.heads)}")
    if head not in model.heads:
        raise KeyError(f"no head named {head!r}; the directory holds {sorted(model.heads) or 'none'}")
    module = model.heads[head]
    config = model.head_config(head)
    if getattr(module, "uses_lm_logits", False) or getattr(module, "extra_inputs", ()):
        raise ValueError(
            f"ONNX export supports heads that read only the encoder's hidden states (classification, tagging "
            f"without casing, span QA, multiple choice); head {head!r} is {config.head_type!r}"
            + (f" with extra inputs {list(module.extra_inputs)}" if getattr(module, "extra_inputs", ()) else "")
        )
    return head


def _samples(tokenizer: PreTrainedTokenizerBase, model: AdapterModel) -> list[dict[str, torch.Tensor]]:
    """Two tokenized batches of different shapes (the first traces; both check the exported file)."""
    accepted = set(model._body_accepts)
    batches = []
    for texts in (list(SAMPLE_TEXTS), list(SAMPLE_TEXTS[1:2])):
        encoded = tokenizer(texts, padding=True, return_tensors="pt")
        batches.append({k: encoded[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded
                        and k in accepted})  # fmt: skip
    return batches


def _metadata(model: AdapterModel, head: str, input_names: tuple[str, ...]) -> dict[str, str]:
    fuse = getattr(model, "fusion", None)
    config = model.head_config(head)
    return {
        "adapter_fusion_version": __version__,
        "base_model": str(recorded_model_name(model.name_or_path)),
        "adapters": json.dumps(list(fuse.adapter_names) if fuse is not None else list(model.adapters.active)),
        "fusion_method": fuse.config.fusion_method if fuse is not None and fuse.config is not None else "",
        "head": head,
        "head_type": config.head_type,
        "label_names": json.dumps(list(config.label_names)),
        "inputs": json.dumps(list(input_names)),
    }


def _write_checked(
    proto: Any, output: Path, wrapper: nn.Module, samples: list[dict[str, torch.Tensor]], tolerance: float
) -> None:
    """Save ``proto`` next to ``output``, check it in ONNX Runtime against PyTorch, then move it into place."""
    import onnx
    import onnxruntime

    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    os.close(fd)
    try:
        onnx.save(proto, tmp)
        session = onnxruntime.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        for sample in samples:
            with torch.no_grad():
                expected = wrapper(*sample.values()).float().numpy()
            got = session.run(None, {name: tensor.numpy() for name, tensor in sample.items()})[0]
            difference = float(abs(got - expected).max())
            if got.shape != expected.shape or not difference <= tolerance:
                raise RuntimeError(
                    f"the exported model computes other logits than PyTorch (max difference {difference:.3g}, "
                    f"shapes {got.shape} vs {expected.shape}, tolerance {tolerance}); nothing was written"
                )
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
