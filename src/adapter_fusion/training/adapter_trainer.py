"""``AdapterTrainer``: train one adapter (+ head) for one task with the base model frozen.

    trainer = AdapterTrainer("sst2")
    trainer.train()                    # loads the task's train/validation splits from the data dir
    trainer.save_adapter("adapters/sst2")

With ``TrainingConfig(full_finetune=True)`` the same path fine-tunes the whole model instead (the baseline).
"""

from __future__ import annotations

from pathlib import Path

from adapter_fusion.adapters import AdapterConfig, AnyAdapterConfig
from adapter_fusion.models import AdapterModel, save_adapter
from adapter_fusion.tasks import TaskSpec
from adapter_fusion.training.config import ModelConfig, TrainingConfig
from adapter_fusion.training.distributed import is_main_process
from adapter_fusion.training.task_trainer import TaskTrainer, evaluate_model

__all__ = ["AdapterTrainer", "evaluate_model"]


class AdapterTrainer(TaskTrainer):
    """Train, evaluate and save one task adapter."""

    def __init__(
        self,
        task: str | TaskSpec,
        model_config: ModelConfig | None = None,
        adapter_config: AnyAdapterConfig | None = None,
        training_config: TrainingConfig | None = None,
        data_dir: str | Path | None = None,
        adapter_name: str | None = None,
    ) -> None:
        super().__init__(task, model_config, training_config, data_dir)
        self.adapter_config = adapter_config or AdapterConfig()
        self.adapter_name = self.head_name = adapter_name or self.task.name
        name, causal_lm = self.base_model()
        self.tokenizer = self.load_tokenizer(name)
        self.model = AdapterModel.from_pretrained(name, causal_lm=causal_lm)
        self.add_task_head(self.adapter_name)
        if self.training_config.full_finetune:
            self.model.freeze_base(False)
        else:
            self.model.add_adapter(self.adapter_name, self.adapter_config)
            self.model.train_adapter(self.adapter_name)

    def save_adapter(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Save the adapter, its head (with label names), and the run's configs and metrics (``directory``: a new
        path, or a saved adapter to replace with ``overwrite=True``). On several processes only the main one
        (rank 0) writes; the others return the path."""
        if self.training_config.full_finetune:
            raise ValueError(
                "this trainer fine-tuned the whole model (full_finetune=True): there is no adapter to save"
            )
        if not is_main_process():
            return Path(directory)
        return save_adapter(
            self.model, self.adapter_name, directory, head=self.adapter_name, metadata=self.run_metadata(),
            overwrite=overwrite,
        )  # fmt: skip
