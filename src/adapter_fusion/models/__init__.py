"""How adapters attach to Hugging Face models."""

from adapter_fusion.models.loading import default_model_path, load_base_model, load_tokenizer, smollm2_path
from adapter_fusion.models.manager import AdapterManager
from adapter_fusion.models.matching import fusable_adapter_config
from adapter_fusion.models.model import AdapterModel
from adapter_fusion.models.saving import load_adapter, read_adapter_config, save_adapter
from adapter_fusion.models.specs import ARCHITECTURES, ArchitectureSpec, spec_for

__all__ = [
    "ARCHITECTURES",
    "AdapterManager",
    "AdapterModel",
    "ArchitectureSpec",
    "default_model_path",
    "fusable_adapter_config",
    "load_adapter",
    "load_base_model",
    "load_tokenizer",
    "read_adapter_config",
    "save_adapter",
    "smollm2_path",
    "spec_for",
]
