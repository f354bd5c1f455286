"""The documented module path of task adapters: a model with named adapters and task heads (``AdapterModel``),
saved and loaded per task (``save_adapter`` / ``load_adapter``), trained by ``AdapterTrainer``."""

from adapter_fusion.models import AdapterModel, load_adapter, save_adapter

__all__ = ["AdapterModel", "load_adapter", "save_adapter"]
