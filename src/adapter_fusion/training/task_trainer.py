"""``TaskTrainer``: ``BaseTrainer`` over one task (its splits, the Trainer's dataloaders and evaluation with the
task type's ``metrics_fn``), shared by adapter training, full fine-tuning, sequential or joint fusion training and
fusion extension. Subclasses only build the model and say what trains."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapter_fusion.models import AdapterModel
from adapter_fusion.models.loading import check_max_length
from adapter_fusion.tasks import TaskSpec, get_task, get_task_type, load_task_split
from adapter_fusion.tasks.mixed import normalise_dataset
from adapter_fusion.training.base_trainer import BaseTrainer
from adapter_fusion.training.config import ModelConfig, TrainingConfig
from adapter_fusion.training.trainer import ModularTrainer, training_arguments

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class TaskTrainer(BaseTrainer):
    """Train and evaluate ``self.model`` (built by the subclass) on one task."""

    def __init__(
        self,
        task: str | TaskSpec,
        model_config: ModelConfig | None = None,
        training_config: TrainingConfig | None = None,
        data_dir: str | Path | None = None,
    ) -> None:
        self.task = task if isinstance(task, TaskSpec) else get_task(task)
        super().__init__({self.task.name: self.task}, model_config, training_config, data_dir)
        self.task_type = self.task_types[self.task.name]
        self.head_name: str = self.task.name

    def add_task_head(self, name: str) -> None:
        self.model.add_head(name, self.head_configs()[self.task.name])

    # ----------------------------------------------------------------- data
    def load_split(self, split: str, max_examples: int | None = None) -> Any:
        return load_task_split(
            self.task, split, self.data_dir, max_examples=max_examples, seed=self.training_config.seed
        )

    def _prepare(self, dataset: Any) -> Any:
        self.task_type.check_dataset(dataset)
        check_max_length(self.model.config, self.model_config.max_seq_length, self.model.name_or_path)
        return self.task_type.preprocess(self.task, dataset, self.tokenizer, self.model_config.max_seq_length)

    # ----------------------------------------------------------------- training
    def train(self, train_dataset: Any = None, eval_dataset: Any = None) -> dict[str, Any]:
        """Train on ``train_dataset`` (default: the task's train split); evaluate on ``eval_dataset``
        (default: its validation split). Returns the final metrics (of the best checkpoint)."""
        config = self.training_config
        if train_dataset is None:
            train_dataset = self.load_split("train", config.max_train_examples)
        if eval_dataset is None:
            eval_dataset = self.load_split("validation", config.max_eval_examples)
        train_dataset = normalise_dataset(self.task, train_dataset, "the train dataset")
        eval_dataset = normalise_dataset(self.task, eval_dataset, "the eval dataset")
        train_tok, eval_tok = self._prepare(train_dataset), self._prepare(eval_dataset)
        score = self.task_type.metrics_fn(self.task, eval_dataset, eval_tok, self.tokenizer)
        if score is None:  # metrics need generation: pick checkpoints by eval loss (no logits kept), score at the end
            size = self.task_type.loss_eval_batch_size(config.eval_batch_size)
            arguments = training_arguments(config, "loss", False, loss_only=True, eval_batch_size=size)
        else:
            arguments = training_arguments(config, self.task.main_metric)
        result, seconds = self.fit(
            ModularTrainer, arguments, train_dataset=train_tok, eval_dataset=eval_tok, compute_metrics=score,
            data_collator=self.task_type.collator(self.task, self.tokenizer),
        )  # fmt: skip
        assert self.trainer is not None
        history = eval_history(self.trainer.state.log_history)  # before the final evaluation adds itself to it
        eval_metrics = self.trainer.evaluate()
        if score is None:
            eval_metrics.update(self.evaluate(eval_dataset))
        self.metrics = {
            "task": self.task.name,
            "train_examples": len(train_dataset),
            "eval_examples": len(eval_dataset),
            **self.run_summary(result, seconds),
            **{k.removeprefix("eval_"): v for k, v in eval_metrics.items()},
            "eval_history": history,
        }
        return self.metrics

    def evaluate(self, dataset: Any = None, split: str = "validation") -> dict[str, float]:
        """Metrics of the current model on ``dataset`` (default: the task's ``split``)."""
        if dataset is None:
            dataset = self.load_split(split, self.training_config.max_eval_examples)
        return self.score(self.task.name, dataset, self.head_name)

    def run_metadata(self) -> dict[str, Any]:
        return self.run_record(self.metrics, task=self.task.name)


def eval_history(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """The evaluations made during training, from the Trainer's log: step, epoch and each ``eval_*`` score (not
    the timings)."""
    timings = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")
    return [
        {"step": entry["step"], "epoch": entry.get("epoch"),
         **{k.removeprefix("eval_"): v for k, v in entry.items() if k.startswith("eval_") and k not in timings}}
        for entry in log_history
        if "eval_loss" in entry
    ]  # fmt: skip


def evaluate_model(
    model: AdapterModel,
    tokenizer: PreTrainedTokenizerBase,
    task: TaskSpec | str,
    dataset: Any,
    max_length: int = 128,
    batch_size: int = 128,
    head: str | None = None,
    adapter_names: Any = None,
) -> dict[str, float]:
    """Score ``model`` on a task dataset with the task's metrics (no Trainer needed; see ``TaskType.evaluate``)."""
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    return get_task_type(spec).evaluate(
        model, tokenizer, spec, dataset, max_length=max_length, batch_size=batch_size, head=head,
        adapter_names=adapter_names,
    )  # fmt: skip
