"""``TaskTrainer``: the one training path for a task (data, Trainer, evaluation), shared by adapter training,
full fine-tuning, and sequential or joint fusion training. Subclasses only build the model and say what trains."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import transformers

from adapter_fusion.models import AdapterModel
from adapter_fusion.models.loading import check_max_length
from adapter_fusion.tasks import TaskSpec, get_task, get_task_type, load_task_split
from adapter_fusion.tasks.mixed import normalise_dataset
from adapter_fusion.training.config import ModelConfig, TrainingConfig
from adapter_fusion.training.trainer import (
    ModularTrainer,
    TimeBudgetCallback,
    learning_rates,
    resolve_resume,
    training_arguments,
)

logger = logging.getLogger(__name__)


class TaskTrainer:
    """Train and evaluate ``self.model`` (built by the subclass) on one task."""

    def __init__(
        self,
        task: str | TaskSpec,
        model_config: ModelConfig | None = None,
        training_config: TrainingConfig | None = None,
        data_dir: str | Path | None = None,
    ) -> None:
        self.task = task if isinstance(task, TaskSpec) else get_task(task)
        self.task_type = get_task_type(self.task)
        self.model_config = model_config or ModelConfig()
        self.training_config = training_config or TrainingConfig()
        self.data_dir = data_dir
        transformers.set_seed(self.training_config.seed)
        self.trainer: ModularTrainer | None = None
        self.metrics: dict[str, Any] = {}
        self.model: AdapterModel  # set by the subclass
        self.tokenizer: Any = None
        self.head_name: str = self.task.name

    def base_model_name(self) -> str:
        """The configured base model, or the task type's default (a decoder for generation) when none is named."""
        name = self.model_config.model_name_or_path
        if name in ("default", "", None) and self.task_type.default_model:
            return self.task_type.default_model
        return name

    def add_task_head(self, name: str) -> None:
        config = self.task_type.head_config(self.task, self.model_config.pooling)
        if self.model_config.casing_dim:  # HeadConfig refuses it for heads other than token classification
            config = config.replace(casing_dim=self.model_config.casing_dim)
        self.model.add_head(name, config)

    # ----------------------------------------------------------------- data
    def load_split(self, split: str, max_examples: int | None = None) -> Any:
        return load_task_split(
            self.task, split, self.data_dir, max_examples=max_examples, seed=self.training_config.seed
        )

    def _prepare(self, dataset: Any) -> Any:
        self.task_type.check_dataset(dataset)
        check_max_length(self.model.config, self.model_config.max_seq_length, self.model.name_or_path)
        return self.task_type.preprocess(self.task, dataset, self.tokenizer, self.model_config.max_seq_length)

    def callbacks(self) -> list[transformers.TrainerCallback]:
        minutes = self.training_config.max_train_minutes
        return [TimeBudgetCallback(minutes)] if minutes else []

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
        self.trainer = ModularTrainer(
            model=self.model,
            args=arguments,
            train_dataset=train_tok,
            eval_dataset=eval_tok,
            data_collator=self.task_type.collator(self.task, self.tokenizer),
            compute_metrics=score,
            callbacks=self.callbacks(),
            learning_rates=learning_rates(config),
        )
        logger.info("trainable parameters: %s", f"{self.model.trainable_parameters():,}")
        start = time.monotonic()
        result = self.trainer.train(resume_from_checkpoint=resolve_resume(config))
        train_seconds = time.monotonic() - start
        history = eval_history(self.trainer.state.log_history)  # before the final evaluation adds itself to it
        eval_metrics = self.trainer.evaluate()
        if score is None:
            eval_metrics.update(self.evaluate(eval_dataset))
        self.metrics = {
            "task": self.task.name,
            "train_examples": len(train_dataset),
            "eval_examples": len(eval_dataset),
            "train_seconds": round(train_seconds, 1),
            "global_step": result.global_step,
            "train_loss": result.training_loss,
            "trainable_parameters": self.model.trainable_parameters(),
            "seed": config.seed,
            **{k.removeprefix("eval_"): v for k, v in eval_metrics.items()},
            "eval_history": history,
        }
        return self.metrics

    def evaluate(self, dataset: Any = None, split: str = "validation") -> dict[str, float]:
        """Metrics of the current model on ``dataset`` (default: the task's ``split``)."""
        if dataset is None:
            dataset = self.load_split(split, self.training_config.max_eval_examples)
        return evaluate_model(
            self.model,
            self.tokenizer,
            self.task,
            dataset,
            self.model_config.max_seq_length,
            self.training_config.eval_batch_size,
            head=self.head_name,
        )

    def run_metadata(self) -> dict[str, Any]:
        return {
            "task": self.task.name,
            "model_config": self.model_config.to_dict(),
            "training_config": self.training_config.to_dict(),
            "metrics": self.metrics,
        }


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
    tokenizer: Any,
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
