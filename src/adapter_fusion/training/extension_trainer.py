"""``ExtensionTrainer``: continual learning on the one training path: extend a saved fusion with a new task's
adapter and train only that task's gates and head (see ``fusion.continual``).

    trainer = ExtensionTrainer("rte", "fusions/sst2", "adapters/rte")
    trainer.train()                     # the task's train/validation splits from the data dir
    trainer.save_fusion("fusions/sst2+rte")   # old tasks' heads and gates travel along, unchanged
"""

from __future__ import annotations

from pathlib import Path

from adapter_fusion.models.fusion_model import FusionModel
from adapter_fusion.tasks import TaskSpec
from adapter_fusion.training.config import ModelConfig, TrainingConfig
from adapter_fusion.training.distributed import is_main_process
from adapter_fusion.training.task_trainer import TaskTrainer


class ExtensionTrainer(TaskTrainer):
    """Load the fusion at ``fusion_dir``, extend it with ``adapter_path`` for ``task``, train the extension."""

    def __init__(
        self,
        task: str | TaskSpec,
        fusion_dir: str | Path,
        adapter_path: str | Path,
        model_config: ModelConfig | None = None,
        training_config: TrainingConfig | None = None,
        data_dir: str | Path | None = None,
    ) -> None:
        super().__init__(task, model_config, training_config, data_dir)
        name = self.model_config.model_name_or_path
        self.model = FusionModel.load_fusion(fusion_dir, model=None if name in ("default", "", None) else name)
        self.tokenizer = self.load_tokenizer(self.model.name_or_path)
        self.head_name = self.task.name
        self.adapter_name = self.model.extend_fusion(str(adapter_path), task=self.head_name)
        wanted = self.task_type.head_config(self.task, self.model_config.pooling)
        if self.head_name in self.model.heads:  # the adapter's saved head: keep it if it fits this task
            saved = self.model.head_config(self.head_name)
            if (saved.head_type, saved.num_labels, saved.label_names) != (
                wanted.head_type,
                wanted.num_labels,
                wanted.label_names,
            ):
                del self.model.heads[self.head_name]
        if self.head_name not in self.model.heads:
            self.add_task_head(self.head_name)
        self.model.train_extension(self.head_name)

    def save_fusion(self, directory: str | Path) -> Path:
        """Save the extended fusion with every task's head, and this run's configs and metrics (on several
        processes only the main one, rank 0, writes; the others return the path)."""
        if not is_main_process():
            return Path(directory)
        return self.model.save_fusion(directory, **self.run_metadata())
