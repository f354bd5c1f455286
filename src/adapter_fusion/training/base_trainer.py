"""``BaseTrainer``: what every trainer of the library shares, whether it trains one task (``TaskTrainer``: the
adapter, fusion and extension trainers) or several at once (``MultiTaskTrainer``): the configs and the seed, the
choice of base model and tokenizer, each task's head, the callbacks, the timed and resumable ``ModularTrainer``
run, the one scoring call (the task type's ``evaluate``) and the run record. The subclasses say only how data
reaches the Trainer and which metrics they report."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import transformers

from adapter_fusion.heads import HeadConfig
from adapter_fusion.models import AdapterModel, load_tokenizer
from adapter_fusion.tasks import TaskSpec, get_task_type
from adapter_fusion.training.config import ModelConfig, TrainingConfig
from adapter_fusion.training.trainer import ModularTrainer, TimeBudgetCallback, learning_rates, resolve_resume

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)


class BaseTrainer:
    """Configs, seed, model choice, heads, callbacks, the Trainer run and scoring for the tasks of ``specs``
    (task name -> spec). ``self.model`` and ``self.tokenizer`` are set by the subclass."""

    def __init__(
        self,
        specs: Mapping[str, TaskSpec],
        model_config: ModelConfig | None = None,
        training_config: TrainingConfig | None = None,
        data_dir: str | Path | None = None,
    ) -> None:
        self.specs = dict(specs)
        self.task_types = {name: get_task_type(spec) for name, spec in self.specs.items()}
        self.model_config = model_config or ModelConfig()
        self.training_config = training_config or TrainingConfig()
        self.data_dir = data_dir
        transformers.set_seed(self.training_config.seed)
        self.trainer: ModularTrainer | None = None
        self.metrics: dict[str, Any] = {}
        self.model: AdapterModel
        self.tokenizer: PreTrainedTokenizerBase = None

    @property
    def tasks(self) -> list[str]:
        return list(self.specs)

    # ----------------------------------------------------------------- model
    def base_model(self) -> tuple[str, bool]:
        """The configured base model or the task types' common default (a decoder for generation), and whether
        it must be a causal LM (any task type needs one)."""
        causal_lm = any(kind.causal_lm for kind in self.task_types.values())
        name = self.model_config.model_name_or_path
        if name in ("default", "", None):
            defaults = {task: kind.default_model for task, kind in self.task_types.items()}
            named = sorted({model for model in defaults.values() if model})
            if len(named) > 1:
                raise ValueError(
                    f"the tasks' types default to different base models {defaults}; name one with "
                    "ModelConfig.model_name_or_path (--model)"
                )
            name = named[0] if named else name
        return name, causal_lm

    def load_tokenizer(self, model_name: str) -> Any:
        """``ModelConfig.tokenizer_name_or_path``, else the base model's own tokenizer."""
        return load_tokenizer(self.model_config.tokenizer_name_or_path or model_name)

    def head_configs(self) -> dict[str, HeadConfig]:
        """Each task's head as its type builds it. ``ModelConfig.casing_dim`` goes to the tagging (token
        classification) heads; a run with none has it refused, naming the head type (``HeadConfig``)."""
        pooling = self.model_config.pooling
        heads = {task: self.task_types[task].head_config(spec, pooling) for task, spec in self.specs.items()}
        casing = self.model_config.casing_dim
        if casing:
            tagging = [task for task, head in heads.items() if head.head_type == "token_classification"]
            for task in tagging or heads:
                heads[task] = heads[task].replace(casing_dim=casing)
        return heads

    # ----------------------------------------------------------------- training
    def callbacks(self) -> list[transformers.TrainerCallback]:
        minutes = self.training_config.max_train_minutes
        return [TimeBudgetCallback(minutes)] if minutes else []

    def fit(self, trainer_class: type[ModularTrainer], arguments: Any, what: str = "", **data: Any) -> Any:
        """Build ``self.trainer`` (``arguments``, the data and evaluation in ``data``), train it (resuming as
        ``TrainingConfig.resume_from_checkpoint`` says) and return ``(TrainOutput, seconds)``."""
        config = self.training_config
        self.trainer = trainer_class(
            model=self.model, args=arguments, callbacks=self.callbacks(), learning_rates=learning_rates(config), **data
        )
        logger.info("%strainable parameters: %s", what, f"{self.model.trainable_parameters():,}")
        start = time.monotonic()
        result = self.trainer.train(resume_from_checkpoint=resolve_resume(config))
        return result, time.monotonic() - start

    def run_summary(self, result: Any, seconds: float, **losses: float) -> dict[str, Any]:
        """The metrics every run reports about its training (``losses``: more training losses, after the mean)."""
        return {
            "train_seconds": round(seconds, 1),
            "global_step": result.global_step,
            "train_loss": result.training_loss,
            **losses,
            "trainable_parameters": self.model.trainable_parameters(),
            "seed": self.training_config.seed,
        }

    # ----------------------------------------------------------------- scoring and records
    def score(self, task: str, dataset: Any, head: str, adapter_names: Any = None) -> dict[str, float]:
        """``task``'s metrics of the model on ``dataset`` through ``head`` (and ``adapter_names``), by its task
        type's ``evaluate``: the scoring of every trainer and task type."""
        return self.task_types[task].evaluate(
            self.model, self.tokenizer, self.specs[task], dataset,
            max_length=self.model_config.max_seq_length, batch_size=self.training_config.eval_batch_size,
            head=head, adapter_names=adapter_names,
        )  # fmt: skip

    def run_record(self, metrics: Mapping[str, Any], **about: Any) -> dict[str, Any]:
        """What a saved artefact records of its run: ``about`` (task, ...), the configs, ``metrics``."""
        return {
            **about,
            "model_config": self.model_config.to_dict(),
            "training_config": self.training_config.to_dict(),
            "metrics": metrics,
        }


__all__ = ["BaseTrainer"]
