"""adapter-fusion: bottleneck adapters and AdapterFusion on any Hugging Face transformer."""

__version__ = "0.1.0"

from adapter_fusion.adapters import AdapterConfig, BottleneckAdapter, LoraAdapter, LoraConfig  # noqa: E402
from adapter_fusion.evaluation import FusionEvaluator  # noqa: E402
from adapter_fusion.fusion import (  # noqa: E402
    AttentionFusion,
    FusionConfig,
    GatingFusion,
    WeightedFusion,
)
from adapter_fusion.heads import ClassificationHead, HeadConfig  # noqa: E402
from adapter_fusion.inference import FusionPipeline  # noqa: E402
from adapter_fusion.models import (  # noqa: E402
    AdapterManager,
    AdapterModel,
    load_adapter,
    save_adapter,
)
from adapter_fusion.models.fusion_model import FusionModel  # noqa: E402
from adapter_fusion.tasks import get_task, list_tasks, load_task_split  # noqa: E402
from adapter_fusion.training.adapter_trainer import AdapterTrainer  # noqa: E402
from adapter_fusion.training.config import ModelConfig, TrainingConfig  # noqa: E402
from adapter_fusion.training.fusion_trainer import FusionTrainer  # noqa: E402
from adapter_fusion.training.multi_task_trainer import MultiTaskPreprocessor, MultiTaskTrainer  # noqa: E402

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
    "save_adapter",
]
