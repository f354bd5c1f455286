"""adapter-fusion: bottleneck adapters and AdapterFusion on any Hugging Face transformer."""

from adapter_fusion._version import __version__
from adapter_fusion.adapters import AdapterConfig, BottleneckAdapter, LoraAdapter, LoraConfig
from adapter_fusion.evaluation import FusionEvaluator
from adapter_fusion.fusion import (
    AttentionFusion,
    FusionConfig,
    GatingFusion,
    WeightedFusion,
)
from adapter_fusion.heads import ClassificationHead, HeadConfig
from adapter_fusion.hub_upload import push_to_hub
from adapter_fusion.inference import FusionPipeline
from adapter_fusion.models import (
    AdapterManager,
    AdapterModel,
    load_adapter,
    save_adapter,
)
from adapter_fusion.models.fusion_model import FusionModel
from adapter_fusion.tasks import get_task, list_tasks, load_task_split
from adapter_fusion.training.adapter_trainer import AdapterTrainer
from adapter_fusion.training.config import ModelConfig, TrainingConfig
from adapter_fusion.training.fusion_trainer import FusionTrainer
from adapter_fusion.training.multi_task_trainer import MultiTaskPreprocessor, MultiTaskTrainer

__all__ = [
    "AdapterConfig",
    "AdapterManager",
    "AdapterModel",
    "AdapterTrainer",
    "AttentionFusion",
    "BottleneckAdapter",
    "ClassificationHead",
    "FusionConfig",
    "FusionEvaluator",
    "FusionModel",
    "FusionPipeline",
    "FusionTrainer",
    "GatingFusion",
    "HeadConfig",
    "LoraAdapter",
    "LoraConfig",
    "ModelConfig",
    "MultiTaskPreprocessor",
    "MultiTaskTrainer",
    "TrainingConfig",
    "WeightedFusion",
    "__version__",
    "get_task",
    "list_tasks",
    "load_adapter",
    "load_task_split",
    "push_to_hub",
    "save_adapter",
]
