"""``FusionTrainer``: learn a fusion of trained adapters for a target task, on the same training path.

    trainer = FusionTrainer("rte", FusionConfig(fusion_method="attention"))
    trainer.setup_model(["adapters/sst2", "adapters/mnli", "adapters/rte"])
    trainer.train_fusion()              # the task's train/validation splits from the data dir
    trainer.save_fusion("fusions/rte")

Multi-task fusion (the documented workflow): without a task, the tasks come from the data (a ``task`` column,
``ModelConfig.task_names`` or a ``MultiTaskPreprocessor``'s ``task_configs``) and ONE fusion learns them all, a
head per task and a router (``MultiTaskFusionTrainer``); it is saved to ``TrainingConfig.fusion_checkpoint_dir``
(default ``fusion_model``) when training ends::

    trainer = FusionTrainer(FusionConfig(adapter_paths=["adapters/sst2", "adapters/mnli"]))
    trainer.train_fusion(mixed)        # rows {"text": ..., "labels": ..., "task": "sentiment"}

Sequential training (the paper): adapters frozen, only the fusion and the head train
(``FusionConfig.freeze_adapters_during_fusion=True``). Joint training: the adapters train too, with
``TrainingConfig.adapter_learning_rate`` while the fusion uses ``fusion_learning_rate``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import transformers

from adapter_fusion.bank import resolve_artefact
from adapter_fusion.fusion import FusionConfig
from adapter_fusion.models.fusion_model import FusionModel
from adapter_fusion.tasks import TaskSpec, get_task
from adapter_fusion.tasks.mixed import has_task_column, split_by_task, task_specs
from adapter_fusion.training.base_trainer import BaseTrainer
from adapter_fusion.training.config import ModelConfig, TrainingConfig
from adapter_fusion.training.distributed import is_main_process
from adapter_fusion.training.fusion_setup import (
    TemperatureScheduleCallback,
    init_head_from_adapters,
    init_head_from_source,
)
from adapter_fusion.training.multitask_fusion import MultiTaskFusionTrainer
from adapter_fusion.training.task_trainer import TaskTrainer

DEFAULT_FUSION_DIR = "fusion_model"
"""Where ``save_fusion_model()`` (and a multi-task fusion at the end of training) writes, when
``TrainingConfig.fusion_checkpoint_dir`` is unset."""


class FusionTrainer(TaskTrainer):
    """Train a fusion (+ a head for the target task) over saved adapters; without a target task, one fusion for
    several tasks (see the module docstring).

    Also takes the documented forms ``FusionTrainer(fusion_config)`` and ``FusionTrainer(model_config=...,
    fusion_config=..., training_config=...)``. ``TrainingConfig.fusion_epochs`` (when set) is the number of epochs.
    """

    def __init__(
        self,
        task: str | TaskSpec | Sequence[str | TaskSpec] | FusionConfig | None = None,
        fusion_config: FusionConfig | None = None,
        model_config: ModelConfig | None = None,
        training_config: TrainingConfig | None = None,
        data_dir: str | Path | None = None,
        init_head_from_adapter: bool = True,
        *,
        sampling: str = "proportional",
        temperature: float | None = None,
        router: bool | None = None,
        allow_modified: bool = False,
        allow_other_base: bool = False,
        head_from: str | Path | None = None,
        head_label_map: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """``head_from`` (a saved adapter directory or ``bank:NAME``, one task): the target head starts from that
        adapter's head, another task's, each target label's output row the mean of the source rows
        ``head_label_map`` names (default: the same label name; see ``init_head_from_source``)."""
        if isinstance(task, FusionConfig):  # the documented FusionTrainer(fusion_config)
            if fusion_config is not None:
                raise TypeError("FusionTrainer got two fusion configs (positional and fusion_config=)")
            task, fusion_config = None, task
        model_config = model_config or ModelConfig()
        training_config = (training_config or TrainingConfig()).for_fusion()
        self.fusion_config = fusion_config or FusionConfig()
        # how the adapters load (see load_adapter): refused if changed since saving, or saved on another base model
        self.load_options = {"allow_modified": allow_modified, "allow_other_base": allow_other_base}
        self.init_head_from_adapter = init_head_from_adapter
        self.head_from, self.head_label_map = head_from, head_label_map
        self.multi_task = task is None or (not isinstance(task, (str, TaskSpec)))
        self.multitask_options = {"sampling": sampling, "temperature": temperature, "router": router}
        if head_from is not None and self.multi_task:
            raise ValueError(f"head_from={str(head_from)!r} starts one target task's head: give the target task")
        self.multitask_trainer: Any = None
        self.saved_at_end: Path | None = None  # where a multi-task fusion saved itself when training ended
        if self.multi_task:  # tasks from the list, ModelConfig.task_names, a preprocessor or the data
            self.task_names: list[str | TaskSpec] = list(task or ()) or list(model_config.task_names)
            BaseTrainer.__init__(self, {}, model_config, training_config, data_dir)  # no target task
            self._task_specs()  # unknown task names fail here, before any model is loaded
        else:
            super().__init__(task, model_config, training_config, data_dir)  # type: ignore[arg-type]
            self.head_name = self.task.name
        self.model: FusionModel | None = None  # type: ignore[assignment]
        if self.fusion_config.adapter_paths:
            self.setup_model(self.fusion_config.adapter_paths)

    def setup_model(
        self, adapter_paths: Sequence[str | Path] | Mapping[str, str | Path] | None = None
    ) -> FusionModel:
        """Load the base model, the adapters (``{name: directory}`` names them) and the fusion; add the task head
        (multi-task: the heads come when the tasks are known, in ``train_fusion``); set what trains."""
        names: tuple[str, ...] = ()
        if isinstance(adapter_paths, Mapping):
            names, adapter_paths = tuple(adapter_paths), [str(p) for p in adapter_paths.values()]
        paths = [str(resolve_artefact(p)) for p in (adapter_paths or self.fusion_config.adapter_paths)]
        if not paths:
            raise ValueError("setup_model needs adapter directories (argument or FusionConfig.adapter_paths)")
        if names:
            self.fusion_config = self.fusion_config.replace(adapter_names=names)
        elif len(self.fusion_config.adapter_names) not in (0, len(paths)):
            self.fusion_config = self.fusion_config.replace(adapter_names=())  # names given for other paths
        self.fusion_config = self.fusion_config.replace(adapter_paths=tuple(paths))
        name = self.model_config.model_name_or_path
        base = None if name in ("default", "", None) else name
        self.model = FusionModel.from_adapters(paths, self.fusion_config, model=base, **self.load_options)
        self.tokenizer = self.load_tokenizer(self.model.name_or_path)
        if self.multi_task:
            return self.model
        self.add_task_head(self.head_name)
        if self.head_from is not None:
            source = resolve_artefact(self.head_from)
            init_head_from_source(self.model, self.head_name, source, self.head_label_map)
            self.head_init_from: str | None = str(source)
        else:
            self.head_init_from = init_head_from_adapters(self.model, self.head_name, self.task.name, paths) if (
                self.init_head_from_adapter) else None  # fmt: skip
        self.model.train_fusion(self.head_name, freeze_adapters=self.fusion_config.freeze_adapters_during_fusion)
        return self.model

    def callbacks(self) -> list[transformers.TrainerCallback]:
        assert self.model is not None
        return [*super().callbacks(), TemperatureScheduleCallback(self.model, self.fusion_config)]

    def train_fusion(
        self, train_dataset: Any = None, eval_dataset: Any = None, preprocessor: Any = None
    ) -> dict[str, Any]:
        """Train the fusion (and heads; and adapters in joint training); returns the best checkpoint's metrics.

        Multi-task: ``train_dataset`` / ``eval_dataset`` are mixed datasets with a ``task`` column, or task ->
        Dataset mappings, or None (each task's own split); ``preprocessor`` (a ``MultiTaskPreprocessor``) may
        name the tasks. The trained fusion is then saved to ``fusion_checkpoint_dir`` (default ``fusion_model``)."""
        if self.model is None:
            raise ValueError("call setup_model(adapter_paths) first (or give FusionConfig.adapter_paths)")
        if not self.multi_task:
            if preprocessor is not None:
                raise TypeError(f"preprocessor= is for multi-task fusion; this trainer fuses for "
                                f"{self.task.name!r} only")  # fmt: skip
            return self.train(self._one_task(train_dataset, "train"), self._one_task(eval_dataset, "eval"))
        return self._train_multi_task(train_dataset, eval_dataset, preprocessor)

    def _one_task(self, dataset: Any, what: str) -> Any:
        """A single-task fusion's dataset: a ``task`` column must name this task only (it is dropped)."""
        if not has_task_column(dataset):
            return dataset
        parts = split_by_task(dataset, {self.task.name: self.task}, f"the {what} dataset")
        return parts[self.task.name]

    def _task_specs(self, described: Mapping[str, TaskSpec] | None = None) -> dict[str, TaskSpec]:
        """The multi-task fusion's tasks: the names given (a list, ``ModelConfig.task_names``), each as
        ``described`` (a preprocessor's ``task_configs``) where that names it, plus the described ones."""
        described = dict(described or {})
        specs: dict[str, TaskSpec] = {}
        for name in self.task_names:
            if isinstance(name, TaskSpec):
                specs[name.name] = name
            elif name.lower() not in described:
                spec = task_specs(task_names=[name], num_labels=self.model_config.num_labels)
                specs.update(spec)
        return {**specs, **described}

    def _train_multi_task(self, train_dataset: Any, eval_dataset: Any, preprocessor: Any) -> dict[str, Any]:
        specs = self._task_specs(getattr(preprocessor, "specs", None))
        if preprocessor is not None and preprocessor.tokenizer is not None:
            self.tokenizer = preprocessor.tokenizer
        train = self._by_task(train_dataset, specs or None, "train dataset")
        if not specs:
            if train is None:
                raise ValueError("a multi-task fusion needs its tasks: a train dataset with a 'task' column, "
                                 "ModelConfig(task_names=[...]) or a MultiTaskPreprocessor")  # fmt: skip
            specs = {name: get_task(name) for name in train}
        evals = self._by_task(eval_dataset, specs, "eval dataset")
        if train is not None:  # tasks without rows in the data load their own split
            unused = sorted(set(specs) - set(train))
            if unused:
                raise ValueError(f"the train dataset has no rows of tasks {unused} (tasks: {sorted(specs)})")
        if self.multitask_trainer is None:
            config = self.model_config.replace(max_seq_length=getattr(preprocessor, "max_length", None)
                                               or self.model_config.max_seq_length)  # fmt: skip
            self.multitask_trainer = MultiTaskFusionTrainer(
                list(specs.values()), self.fusion_config, config, self.training_config, self.data_dir,
                model=self.model, init_heads_from_adapters=self.init_head_from_adapter, **self.multitask_options,
            )  # fmt: skip
            if self.tokenizer is not None:
                self.multitask_trainer.tokenizer = self.tokenizer
        self.metrics = self.multitask_trainer.train(train, evals)
        self.trainer = self.multitask_trainer.trainer
        self.saved_at_end = self.save_fusion(self.training_config.fusion_checkpoint_dir or DEFAULT_FUSION_DIR)
        return self.metrics

    def evaluate(self, dataset: Any = None, split: str = "validation") -> dict[str, float]:
        """Metrics of the current model: the target task's (``dataset`` or its ``split``); multi-task: every
        task's (``dataset``: task -> Dataset, or a mixed dataset with a ``task`` column)."""
        if not self.multi_task:
            return super().evaluate(dataset, split)
        if self.multitask_trainer is None:
            raise ValueError("the multi-task fusion has no heads until train_fusion(...)")
        datasets = self._by_task(dataset, self.multitask_trainer.task_specs, "dataset")
        return self.multitask_trainer.evaluate(datasets, split)

    @staticmethod
    def _by_task(dataset: Any, specs: Mapping[str, TaskSpec] | None, what: str) -> dict[str, Any] | None:
        if dataset is None or isinstance(dataset, Mapping):
            return dict(dataset) if dataset is not None else None
        return split_by_task(dataset, specs, f"the {what}")

    def save_fusion(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Save the fusion, the adapters it fuses (as trained), the head(s) (and router), the run's configs and
        metrics (``directory``: a new path, or a saved fusion to replace with ``overwrite=True``; never an input
        adapter). On several processes only the main one (rank 0) writes; the others return the path."""
        if self.model is None:
            raise ValueError("nothing to save: call setup_model(...) and train_fusion(...) first")
        if not is_main_process():
            return Path(directory)
        if self.multi_task:
            if self.multitask_trainer is None:
                raise ValueError("nothing to save yet: the multi-task fusion has no heads until train_fusion(...)")
            return self.multitask_trainer.save(directory, overwrite=overwrite)
        metadata = {**self.run_metadata(), "fusion_config": self.fusion_config.to_dict()}
        return self.model.save_fusion(directory, heads=[self.head_name], overwrite=overwrite, **metadata)

    def save_fusion_model(self, directory: str | Path | None = None) -> Path:
        """The documented save: the fusion to ``directory`` (default: ``fusion_checkpoint_dir``, else
        ``fusion_model``), the tokenizer to ``TrainingConfig.output_dir``."""
        target = Path(directory or self.training_config.fusion_checkpoint_dir or DEFAULT_FUSION_DIR)
        own = self.saved_at_end is not None and target.resolve() == self.saved_at_end.resolve()
        path = self.save_fusion(target, overwrite=own)  # replaces only what this trainer saved when training ended
        if self.tokenizer is not None and is_main_process():
            self.tokenizer.save_pretrained(self.training_config.output_dir)
        return path
