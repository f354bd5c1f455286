"""``FusionTrainer``: learn a fusion of trained adapters for a target task, on the same training path.

    trainer = FusionTrainer("rte", FusionConfig(fusion_method="attention"))
    trainer.setup_model(["adapters/sst2", "adapters/mnli", "adapters/rte"])
    trainer.train_fusion()              # the task's train/validation splits from the data dir
    trainer.save_fusion("fusions/rte")

Sequential training (the paper): adapters frozen, only the fusion and the head train
(``FusionConfig.freeze_adapters_during_fusion=True``). Joint training: the adapters train too, with
``TrainingConfig.adapter_learning_rate`` while the fusion uses ``fusion_learning_rate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import transformers

from adapter_fusion.bank import resolve_artefact
from adapter_fusion.fusion import FusionConfig
from adapter_fusion.heads import HeadConfig
from adapter_fusion.io import load_tensors
from adapter_fusion.models import load_tokenizer, read_adapter_config
from adapter_fusion.models.fusion_model import FusionModel
from adapter_fusion.models.saving import HEAD_CONFIG, HEAD_WEIGHTS, load_exact
from adapter_fusion.tasks import TaskSpec
from adapter_fusion.training.config import ModelConfig, TrainingConfig
from adapter_fusion.training.task_trainer import TaskTrainer


class TemperatureScheduleCallback(transformers.TrainerCallback):
    """Lower the fusion's softmax temperature each step as ``FusionConfig.temperature_at(step)`` says."""

    def __init__(self, model: FusionModel, config: FusionConfig) -> None:
        self.model = model
        self.config = config

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        fuse = self.model.fusion
        if fuse is not None:
            fuse.set_temperature(self.config.temperature_at(state.global_step))


class FusionTrainer(TaskTrainer):
    """Train a fusion (+ a head for the target task) over saved adapters."""

    def __init__(
        self,
        task: str | TaskSpec,
        fusion_config: FusionConfig | None = None,
        model_config: ModelConfig | None = None,
        training_config: TrainingConfig | None = None,
        data_dir: str | Path | None = None,
        init_head_from_adapter: bool = True,
    ) -> None:
        super().__init__(task, model_config, training_config, data_dir)
        self.fusion_config = fusion_config or FusionConfig()
        self.init_head_from_adapter = init_head_from_adapter
        self.model: FusionModel | None = None  # type: ignore[assignment]
        self.head_name = self.task.name
        if self.fusion_config.adapter_paths:
            self.setup_model(self.fusion_config.adapter_paths)

    def setup_model(self, adapter_paths: Sequence[str | Path] | None = None) -> FusionModel:
        """Load the base model, the adapters and the fusion; add the task head; set what trains."""
        paths = [str(resolve_artefact(p)) for p in (adapter_paths or self.fusion_config.adapter_paths)]
        if not paths:
            raise ValueError("setup_model needs adapter directories (argument or FusionConfig.adapter_paths)")
        name = self.model_config.model_name_or_path
        base = None if name in ("default", "", None) else name
        self.model = FusionModel.from_adapters(paths, self.fusion_config, model=base)
        self.tokenizer = load_tokenizer(self.model.name_or_path)
        self.add_task_head(self.head_name)
        if self.init_head_from_adapter:
            self._init_head(paths)
        self.model.train_fusion(self.head_name, freeze_adapters=self.fusion_config.freeze_adapters_during_fusion)
        return self.model

    def _init_head(self, paths: Sequence[str]) -> None:
        """Start the head from the saved head of an adapter trained on the same task with the same labels."""
        assert self.model is not None
        target = self.model.head_config(self.head_name)
        for path in paths:
            directory = Path(path)
            info = read_adapter_config(directory)
            if info.get("metadata", {}).get("task") != self.task.name or not (directory / HEAD_CONFIG).is_file():
                continue
            saved = HeadConfig.load(directory / HEAD_CONFIG)
            shape = ("num_labels", "label_names", "pooling", "casing_dim")
            if all(getattr(saved, field) == getattr(target, field) for field in shape):
                load_exact(self.model.heads[self.head_name], load_tensors(directory / HEAD_WEIGHTS), str(directory))
                self.head_init_from = str(directory)
                return
        self.head_init_from = None

    def callbacks(self) -> list[transformers.TrainerCallback]:
        assert self.model is not None
        return [*super().callbacks(), TemperatureScheduleCallback(self.model, self.fusion_config)]

    def train_fusion(self, train_dataset: Any = None, eval_dataset: Any = None) -> dict[str, Any]:
        """Train the fusion (and head; and adapters in joint training); returns the best checkpoint's metrics."""
        if self.model is None:
            raise ValueError("call setup_model(adapter_paths) first (or give FusionConfig.adapter_paths)")
        return self.train(train_dataset, eval_dataset)

    def save_fusion(self, directory: str | Path) -> Path:
        """Save the fusion, the adapters it fuses (as trained), the head, and the run's configs and metrics."""
        if self.model is None:
            raise ValueError("nothing to save: call setup_model(...) and train_fusion(...) first")
        metadata = {**self.run_metadata(), "fusion_config": self.fusion_config.to_dict()}
        return self.model.save_fusion(directory, heads=[self.head_name], **metadata)
