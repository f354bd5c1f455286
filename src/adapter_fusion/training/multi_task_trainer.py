"""``MultiTaskTrainer``: train adapters (one per task, or one shared) and a head per task on several tasks at once,
on the one training path (``BaseTrainer`` as for one task: ``ModularTrainer``, per-kind learning rates,
trainable-only checkpoints; this module is also the documented path ``training.multi_task_trainer``).

    trainer = MultiTaskTrainer(["sst2", "mrpc", "rte"], sampling="temperature", temperature=2.0)
    metrics = trainer.train()      # each task's train/validation split from the data dir
    trainer.save("adapters/mt")    # adapters/mt/sst2, adapters/mt/mrpc, adapters/mt/rte: standard adapter dirs

Every batch holds one task (``adapter_fusion.tasks.multitask_data``: a task drawn by the sampling strategy, then that
task's next batch, collated by its own task type) and names its head and adapter. The Trainer logs a running mean
of each task's training loss (``loss_<task>``); evaluation scores every task's dev split with its task type's
``evaluate`` (``eval_<task>_<metric>``) and keeps the checkpoint with the best mean of the tasks' main metrics
(``eval_mean_main``). Tasks whose metrics need more than logits (generation: ``metrics_fn`` is None) are tracked
by dev loss during training (``eval_<task>_loss``, ``eval_mean_loss``; the selection metric when every task is
such) and scored fully at the end (the final ``mean_main`` then includes them).

With one shared adapter this is the multi-task adapter baseline (MT-A) of AdapterFusion,
https://arxiv.org/abs/2005.00247; temperature sampling: https://arxiv.org/abs/1907.05019.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.config import JsonConfig
from adapter_fusion.io import check_container, check_name
from adapter_fusion.models import AdapterModel, save_adapter
from adapter_fusion.models.loading import check_max_length
from adapter_fusion.tasks import TaskSpec
from adapter_fusion.tasks.multitask_data import (
    SAMPLING_STRATEGIES,
    MultiTaskBatches,
    MultiTaskPreprocessor,
    TaskSampler,
    check_temperature,
    resolve_tasks,
)
from adapter_fusion.tasks.types import evaluation_loop, feature_batches
from adapter_fusion.training.base_trainer import BaseTrainer
from adapter_fusion.training.config import ModelConfig, TrainingConfig
from adapter_fusion.training.distributed import RankBatches, is_main_process, rank_dataloader
from adapter_fusion.training.trainer import ModularTrainer, training_arguments, write_run_record

SHARED_ADAPTER = "shared"
"""Name of the one adapter all tasks train when ``adapter_per_task=False``."""


@dataclasses.dataclass(frozen=True)
class MultiTaskConfig(JsonConfig):
    """How tasks are mixed in multi-task training, and whether they share one adapter."""

    config_type: ClassVar[str] = "multitask"

    sampling: str = "proportional"
    """How each batch's task is drawn: 'proportional' (p_i ∝ n_i, the task's training features: its examples, or
    more for QA windows), 'temperature' (p_i ∝ n_i^(1/T)) or 'round_robin' (tasks in turn)."""
    temperature: float | None = None
    """T of 'temperature' sampling: 1 is proportional, larger flattens towards uniform (default 2.0); only with
    sampling='temperature'."""
    adapter_per_task: bool = True
    """One adapter per task, each batch using its task's adapter; false: one adapter shared by all tasks (each
    task keeps its own head)."""

    def __post_init__(self) -> None:
        check_temperature(self.sampling, self.temperature)
        if not isinstance(self.adapter_per_task, bool):
            raise TypeError(f"adapter_per_task must be true or false; got {self.adapter_per_task!r}")


class _TaskLosses:
    """Training losses per task: a window since the last log, and totals over the run (kept as tensors, so no
    device sync per step)."""

    def __init__(self) -> None:
        self.window: dict[str, list[Any]] = {}
        self.total: dict[str, list[Any]] = {}

    def add(self, task: str, loss: torch.Tensor) -> None:
        value = loss.detach().float()
        for store in (self.window, self.total):
            entry = store.setdefault(task, [0.0, 0])
            entry[0], entry[1] = entry[0] + value, entry[1] + 1

    @staticmethod
    def _means(store: dict[str, list[Any]]) -> dict[str, float]:
        return {task: float(total) / count for task, (total, count) in sorted(store.items())}

    def flush(self) -> dict[str, float]:
        means, self.window = self._means(self.window), {}
        return means

    def totals(self) -> dict[str, float]:
        return self._means(self.total)


class MultiTaskModularTrainer(ModularTrainer):
    """``ModularTrainer`` over ``MultiTaskBatches``: logs per-task losses and evaluates with ``scorer`` (task
    metrics, no ``compute_metrics``)."""

    def __init__(self, *args: Any, scorer: Callable[[], dict[str, float]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scorer = scorer
        self.task_losses = _TaskLosses()

    def get_train_dataloader(self) -> Any:
        dataset = self.train_dataset
        if not isinstance(dataset, MultiTaskBatches):
            return super().get_train_dataloader()
        return rank_dataloader(dataset, self.args)  # whole batches; each process takes its slice of each

    def num_examples(self, dataloader: Any) -> int:
        dataset = getattr(dataloader, "dataset", None)
        if isinstance(dataset, (MultiTaskBatches, RankBatches)):
            return dataset.num_examples
        return super().num_examples(dataloader)

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False, **kwargs: Any
    ) -> Any:
        task = inputs.get("head")
        result = super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)
        if model.training and isinstance(task, str):
            self.task_losses.add(task, result[0] if return_outputs else result)
        return result

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs = {**logs, **{f"loss_{task}": value for task, value in self.task_losses.flush().items()}}
        elif "train_loss" in logs:
            logs = {**logs, **{f"train_loss_{task}": value for task, value in self.task_losses.totals().items()}}
        super().log(logs, start_time)

    def evaluate(
        self, eval_dataset: Any = None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        """Every task's dev metrics (``<prefix>_<task>_<metric>``) and their mean (``<prefix>_mean_main``)."""
        if eval_dataset is not None:
            raise TypeError(
                "a multi-task trainer evaluates each task's own dev set; pass eval_datasets to "
                "MultiTaskTrainer.train or call MultiTaskTrainer.evaluate(datasets)"
            )
        start = time.monotonic()
        metrics = {f"{metric_key_prefix}_{key}": value for key, value in self.scorer().items()}
        metrics[f"{metric_key_prefix}_runtime"] = round(time.monotonic() - start, 4)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


class MultiTaskTrainer(BaseTrainer):
    """Train, evaluate and save adapters + heads for several tasks at once (any registered task types).

    ``TrainingConfig`` applies as in single-task training, with ``max_train_examples`` / ``max_eval_examples`` per
    task and ``batch_size`` per (single-task) batch; an epoch is ``sum_i ceil(n_i / batch_size)`` batches whatever
    the sampling. ``group_by_length`` does not apply (the sampler builds the batches). On N processes (torchrun)
    ``batch_size`` is per process: every step, all processes train one task's batch of ``N * batch_size``.
    """

    def __init__(
        self,
        tasks: Sequence[str | TaskSpec],
        model_config: ModelConfig | None = None,
        adapter_config: AdapterConfig | None = None,
        training_config: TrainingConfig | None = None,
        data_dir: str | Path | None = None,
        sampling: str = "proportional",
        temperature: float | None = None,
        adapter_per_task: bool = True,
    ) -> None:
        self.multitask_config = MultiTaskConfig(sampling, temperature, adapter_per_task)
        self.adapter_config = adapter_config or AdapterConfig()
        super().__init__(resolve_tasks(tasks), model_config, training_config, data_dir)
        if self.training_config.full_finetune and not adapter_per_task:
            raise ValueError(
                "adapter_per_task=False shares one adapter, but full_finetune=True trains the whole model and no "
                "adapter; drop one of them"
            )
        name, causal_lm = self.base_model()
        self.tokenizer = self.load_tokenizer(name)
        self.model = self.build_model(name, causal_lm)
        check_max_length(self.model.config, self.model_config.max_seq_length, name)
        self.preprocessor = MultiTaskPreprocessor(
            list(self.specs.values()), self.tokenizer, self.model_config.max_seq_length, data_dir,
            self.training_config.seed,
        )  # fmt: skip
        for task, head in self.head_configs().items():
            self.model.add_head(task, head, activate=False)
        self.add_adapters()
        self._set_trainable()
        self._eval_state: dict[str, Any] = {}

    def build_model(self, name: str, causal_lm: bool) -> AdapterModel:
        """The model the tasks train on (subclasses: a fusion of saved adapters)."""
        return AdapterModel.from_pretrained(name, causal_lm=causal_lm)

    def add_adapters(self) -> None:
        """Add the adapters the tasks train (one per task, or one shared; none in full fine-tuning)."""
        if not self.training_config.full_finetune:
            for adapter in dict.fromkeys(filter(None, map(self.adapter_name, self.specs))):
                self.model.add_adapter(adapter, self.adapter_config, activate=False)

    def adapter_name(self, task: str) -> str | None:
        """The adapter a task's batches use (None in full fine-tuning)."""
        if self.training_config.full_finetune:
            return None
        return task if self.multitask_config.adapter_per_task else SHARED_ADAPTER

    def routes(self) -> dict[str, dict[str, str]]:
        """What each task's batches carry besides the features: its head and adapter, by name."""
        routes = {}
        for task in self.specs:
            adapter = self.adapter_name(task)
            routes[task] = {"head": task, **({"adapter_names": adapter} if adapter else {})}
        return routes

    def _set_trainable(self) -> None:
        full = self.training_config.full_finetune
        self.model.freeze_base(not full)
        mine = {self.adapter_name(task) for task in self.specs}
        for adapter in self.model.adapters.list_adapters():
            self.model.adapters.freeze(adapter, adapter not in mine)
        for head_name, head in self.model.heads.items():
            for parameter in head.parameters():
                parameter.requires_grad_(head_name in self.specs)
        self.model.adapters.set_active()  # every batch names its adapter

    # ----------------------------------------------------------------- training
    def train(
        self, train_datasets: Mapping[str, Any] | None = None, eval_datasets: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Train on every task's train split (or ``train_datasets``: task -> Dataset in its type's schema), evaluate
        on their validation splits (or ``eval_datasets``); returns the best checkpoint's metrics."""
        config, strategy = self.training_config, self.multitask_config
        train_raw = self.preprocessor.datasets("train", train_datasets, config.max_train_examples)
        eval_raw = self.preprocessor.datasets("validation", eval_datasets, config.max_eval_examples)
        train_features = self.preprocessor.features(train_raw)
        eval_features = self.preprocessor.features(eval_raw)
        scorers = self.preprocessor.metrics_fns(eval_raw, eval_features)
        self._eval_state = {"datasets": eval_raw, "features": eval_features, "by_loss": scorers}
        sampler = TaskSampler(
            {task: len(features) for task, features in train_features.items()},
            strategy.sampling, strategy.temperature, seed=config.seed,
        )  # fmt: skip
        batches = MultiTaskBatches(
            train_features, self.preprocessor.collators(), config.batch_size, sampler, self.routes(), config.seed
        )
        config = config.replace(group_by_length=False)  # the sampler makes the batches (4.57 refuses it here)
        if all(score is None for score in scorers.values()):  # no task scores logits: select by mean dev loss
            arguments = training_arguments(config, "mean_loss", greater_is_better=False)
        else:
            arguments = training_arguments(config, "mean_main")
        result, seconds = self.fit(
            MultiTaskModularTrainer, arguments, f"multi-task {sampler}; ", train_dataset=batches,
            eval_dataset=eval_raw, scorer=self._score_during_training,
        )  # fmt: skip
        assert isinstance(self.trainer, MultiTaskModularTrainer)
        task_losses = {f"train_loss_{task}": value for task, value in self.trainer.task_losses.totals().items()}
        final = self.evaluate(eval_raw)
        self.metrics = {
            "tasks": self.tasks,
            "sampling": strategy.sampling,
            "temperature": strategy.temperature,
            "adapter_per_task": strategy.adapter_per_task,
            "sampling_probabilities": sampler.probabilities,
            "train_examples": {task: len(dataset) for task, dataset in train_raw.items()},
            "eval_examples": {task: len(dataset) for task, dataset in eval_raw.items()},
            "batches_per_epoch": len(batches),
            **self.run_summary(result, seconds, **task_losses),
            **final,
        }
        return self.metrics

    def _task_metrics(self, task: str, dataset: Any) -> dict[str, float]:
        route = self.routes()[task]
        return self.score(task, dataset, route["head"], route.get("adapter_names"))

    def _main(self, task: str, metrics: Mapping[str, float]) -> float:
        main = self.specs[task].main_metric
        if main not in metrics:
            raise KeyError(f"task {task!r}: its evaluation gave {sorted(metrics)}, not its main metric {main!r}")
        return float(metrics[main])

    def _score_during_training(self) -> dict[str, float]:
        """The dev scores of an evaluation during training: tasks scored by logits, the others by dev loss."""
        state = self._eval_state
        by_loss = {task: state["features"][task] for task, score in state["by_loss"].items() if score is None}
        return self._scores(state["datasets"], by_loss)

    def _scores(self, datasets: Mapping[str, Any], by_loss: Mapping[str, Any] | None = None) -> dict[str, float]:
        """``<task>_<metric>`` of each task's ``datasets`` and their mean main metric (``mean_main``); tasks in
        ``by_loss`` (task -> features) only by their dev loss (``<task>_loss``, ``mean_loss``)."""
        by_loss = by_loss or {}
        scores: dict[str, float] = {}
        mains, losses = [], []
        for task, dataset in datasets.items():
            if task in by_loss:
                loss = self._dev_loss(task, by_loss[task])
                scores[f"{task}_loss"] = loss
                losses.append(loss)
            else:
                metrics = self._task_metrics(task, dataset)
                scores.update({f"{task}_{name}": value for name, value in metrics.items()})
                mains.append(self._main(task, metrics))
        if mains:
            scores["mean_main"] = sum(mains) / len(mains)
        if losses:
            scores["mean_loss"] = sum(losses) / len(losses)
        return scores

    def _dev_loss(self, task: str, features: Any) -> float:
        """Mean loss over ``features`` (batch losses weighted by batch size)."""
        device, route = next(self.model.parameters()).device, self.routes()[task]

        def loss(batch: tuple[int, dict[str, Any], torch.Tensor | None]) -> float:
            _, inputs, labels = batch
            assert labels is not None
            return float(self.model(**inputs, labels=labels.to(device), **route).loss) * len(labels)

        size = self.task_types[task].loss_eval_batch_size(self.training_config.eval_batch_size)
        collate = self.task_types[task].collator(self.specs[task], self.tokenizer)
        total = sum(evaluation_loop(self.model, feature_batches(features, collate, size, device), loss))
        return total / len(features) if len(features) else math.nan

    def evaluate(self, datasets: Mapping[str, Any] | None = None, split: str = "validation") -> dict[str, float]:
        """Every task's metrics (``<task>_<metric>``, by its task type's ``evaluate``) on ``datasets`` (task ->
        Dataset; tasks left out: their ``split``), and the mean of the tasks' main metrics (``mean_main``)."""
        return self._scores(self.preprocessor.datasets(split, datasets, self.training_config.max_eval_examples))

    # ----------------------------------------------------------------- saving
    def run_metadata(self, task: str | None = None) -> dict[str, Any]:
        metrics = self.metrics
        if task is not None:  # this task's metrics, and what the run shared
            prefix = f"{task}_"
            metrics = {k: v for k, v in self.metrics.items() if not isinstance(v, dict) and k.startswith(prefix)}
            metrics.update({k: self.metrics[k] for k in ("mean_main", "global_step", "seed") if k in self.metrics})
        return self.run_record(metrics, task=task, tasks=self.tasks, multitask_config=self.multitask_config.to_dict())

    def save(self, directory: str | Path, *, overwrite: bool = False) -> dict[str, Path]:
        """Save each task's adapter and head as a standard adapter directory ``directory/<task>`` (loadable by
        ``FusionPipeline.from_pretrained``, ``load_adapter`` and ``train-fusion --adapters``), and the run record
        as ``directory/run.json``. A shared adapter is saved once per head, under the task's name, with a note in
        its metadata. Each ``directory/<task>`` must be new, or a saved adapter replaced with ``overwrite=True``.
        Returns task -> directory. On several processes only the main one (rank 0) writes."""
        if self.training_config.full_finetune:
            raise ValueError("this run fine-tuned the whole model (full_finetune=True): there is no adapter to save")
        if not is_main_process():
            return {task: Path(directory) / task for task in self.specs}
        directory = check_container(directory)
        saved = {}
        for task in self.specs:
            adapter = self.adapter_name(task)
            assert adapter is not None
            metadata = self.run_metadata(task)
            if adapter == SHARED_ADAPTER:
                metadata["shared_adapter"] = {
                    "name": SHARED_ADAPTER,
                    "tasks": self.tasks,
                    "note": "one adapter trained on all these tasks; each task's directory holds the same weights",
                }
            # named after its task, so directories of one run load side by side
            saved[task] = save_adapter(
                self.model, adapter, directory / check_name(task, "task name"), head=task, metadata=metadata,
                overwrite=overwrite, record_name=task,
            )  # fmt: skip
        write_run_record(directory, {**self.run_metadata(), "adapters": {t: str(p) for t, p in saved.items()}})
        return saved


__all__ = [
    "SAMPLING_STRATEGIES",
    "SHARED_ADAPTER",
    "MultiTaskBatches",
    "MultiTaskConfig",
    "MultiTaskModularTrainer",
    "MultiTaskPreprocessor",
    "MultiTaskTrainer",
    "TaskSampler",
]
