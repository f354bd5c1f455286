"""Multi-task fusion: ONE fusion of saved adapters trained on a mixture of tasks (any task types), a head per task,
and a router that tells the tasks apart, saved as one fusion directory.

    trainer = MultiTaskFusionTrainer(["sst2", "mnli", "conll2003_ner"], FusionConfig(adapter_paths=[...]))
    trainer.train()                      # each task's train split; batches drawn as in train-multitask
    trainer.save("fusions/mt")           # FusionPipeline.from_pretrained("fusions/mt").predict(x, task="sst2")

It is ``MultiTaskTrainer`` (the sampler, single-task batches, per-task losses and metrics, checkpoint selection by
the tasks' mean main metric) over a ``FusionModel``: the fusion and the heads train, the adapters stay frozen
(or train too, at their own learning rate, with ``freeze_adapters_during_fusion=False``), and every batch runs
the fusion. With ``router=True`` (the default for 2+ tasks) a ``router`` head learns which task an input is, as
one more task of the mix whose examples are the tasks' own inputs (``tasks.routing``), so
``predict(text)`` without ``task=`` picks the head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import transformers

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.bank import resolve_artefact
from adapter_fusion.fusion import FusionConfig
from adapter_fusion.models import read_adapter_config
from adapter_fusion.models.fusion_model import FusionModel
from adapter_fusion.models.saving import base_model_arguments
from adapter_fusion.tasks import TaskSpec
from adapter_fusion.tasks.multitask_data import MultiTaskPreprocessor, resolve_tasks
from adapter_fusion.tasks.routing import ROUTER, router_dataset, router_spec
from adapter_fusion.training.config import ModelConfig, TrainingConfig
from adapter_fusion.training.distributed import is_main_process
from adapter_fusion.training.fusion_setup import TemperatureScheduleCallback, init_head_from_adapters
from adapter_fusion.training.multi_task_trainer import MultiTaskTrainer


class MultiTaskFusionTrainer(MultiTaskTrainer):
    """Train one fusion (+ a head per task, + a router) on several tasks at once.

    ``fusion_config.adapter_paths`` names the adapters to fuse (or pass an existing ``model``, a ``FusionModel``
    with its fusion, e.g. from ``FusionTrainer.setup_model``). ``TrainingConfig.fusion_epochs`` (when set) is the
    number of epochs. Heads start from the saved head of an adapter trained on the same task with the same labels.
    """

    def __init__(
        self,
        tasks: Sequence[str | TaskSpec],
        fusion_config: FusionConfig | None = None,
        model_config: ModelConfig | None = None,
        training_config: TrainingConfig | None = None,
        data_dir: str | Path | None = None,
        sampling: str = "proportional",
        temperature: float | None = None,
        router: bool | None = None,
        model: FusionModel | None = None,
        init_heads_from_adapters: bool = True,
    ) -> None:
        config = fusion_config or FusionConfig()  # bank:NAME references resolve to their directories
        paths = tuple(str(resolve_artefact(p)) for p in config.adapter_paths)
        self.fusion_config = config.replace(adapter_paths=paths)
        if model is None and not self.fusion_config.adapter_paths:
            raise ValueError("a multi-task fusion needs adapters: FusionConfig(adapter_paths=[...]) or model=")
        if model is not None and model.fusion is None:
            raise ValueError("model= must be a FusionModel with a fusion (add_fusion / FusionModel.from_adapters)")
        self.task_specs = resolve_tasks(tasks)
        self.router = len(self.task_specs) > 1 if router is None else bool(router)
        specs = list(self.task_specs.values())
        if self.router:
            specs.append(router_spec(list(self.task_specs)))
        self._given_model = model
        self.init_heads_from_adapters = init_heads_from_adapters
        training_config = (training_config or TrainingConfig()).for_fusion()
        super().__init__(specs, model_config, AdapterConfig(), training_config, data_dir, sampling, temperature)

    # ----------------------------------------------------------------- the model (hooks of MultiTaskTrainer)
    def base_model(self) -> tuple[str, bool]:
        if self._given_model is not None:
            return str(self._given_model.name_or_path), self._given_model.is_causal_lm
        name = self.model_config.model_name_or_path
        info = read_adapter_config(self.fusion_config.adapter_paths[0])
        recorded = base_model_arguments(info).get("causal_lm", False)
        if name in ("default", "", None):
            return str(info.get("base_model") or "default"), bool(recorded)
        return name, bool(recorded)

    def build_model(self, name: str, causal_lm: bool) -> FusionModel:
        if self._given_model is not None:
            return self._given_model
        base = None if self.model_config.model_name_or_path in ("default", "", None) else name
        return FusionModel.from_adapters(self.fusion_config.adapter_paths, self.fusion_config, model=base)

    def add_adapters(self) -> None:
        """The fused adapters came with the fusion; the heads start from matching adapters' heads."""
        if not self.init_heads_from_adapters:
            return
        paths = self.adapter_directories()
        self.head_init_from = {task: init_head_from_adapters(self.model, task, task, paths)
                               for task in self.task_specs}  # fmt: skip

    def adapter_directories(self) -> list[str]:
        return [str(path) for path in self.fusion_config.adapter_paths]

    def adapter_name(self, task: str) -> str | None:
        return None  # every batch runs the fusion

    def _set_trainable(self) -> None:
        assert isinstance(self.model, FusionModel)
        model = self.model
        model.freeze_base(True)
        for adapter in model.adapters.list_adapters():
            model.adapters.freeze(adapter)
        model.train_fusion(next(iter(self.specs)), freeze_adapters=self.fusion_config.freeze_adapters_during_fusion)
        for name, head in model.heads.items():
            for parameter in head.parameters():
                parameter.requires_grad_(name in self.specs)

    def callbacks(self) -> list[transformers.TrainerCallback]:
        assert isinstance(self.model, FusionModel)
        return [*super().callbacks(), TemperatureScheduleCallback(self.model, self.fusion_config)]

    # ----------------------------------------------------------------- training
    def train(
        self, train_datasets: Mapping[str, Any] | None = None, eval_datasets: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Train on every task's train split (or ``train_datasets``: task -> Dataset), evaluate on their
        validation splits (or ``eval_datasets``); the router's examples are drawn from the same data."""
        if not self.router:
            return super().train(train_datasets, eval_datasets)
        limits = self.training_config.max_train_examples, self.training_config.max_eval_examples
        return super().train(self._with_router("train", train_datasets, limits[0]),
                             self._with_router("validation", eval_datasets, limits[1]))  # fmt: skip

    def evaluate(self, datasets: Mapping[str, Any] | None = None, split: str = "validation") -> dict[str, float]:
        """Every task's metrics (and the router's accuracy) on ``datasets`` (task -> Dataset) or their ``split``."""
        if self.router and ROUTER not in (datasets or {}):
            datasets = self._with_router(split, datasets, self.training_config.max_eval_examples)
        return super().evaluate(datasets, split)

    def _with_router(self, split: str, given: Mapping[str, Any] | None, limit: int | None) -> dict[str, Any]:
        """The tasks' ``split`` (or ``given``) and the router's examples drawn from them."""
        config = self.training_config
        specs, length = list(self.task_specs.values()), self.model_config.max_seq_length
        tasks = MultiTaskPreprocessor(specs, self.tokenizer, length, self.data_dir, config.seed)
        result = tasks.datasets(split, {k: v for k, v in (given or {}).items() if k != ROUTER}, limit)
        result[ROUTER] = router_dataset(result, list(self.task_specs), seed=config.seed)
        return result

    # ----------------------------------------------------------------- saving
    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:  # type: ignore[override]
        """One fusion directory: the fusion, the adapters it fuses, every task's head and the router
        (``overwrite``: replace a saved fusion there). On several processes only the main one (rank 0) writes."""
        assert isinstance(self.model, FusionModel)
        if not is_main_process():
            return Path(directory)
        metadata = {
            **self.run_metadata(),
            "fusion_config": self.fusion_config.to_dict(),
            "router": ROUTER if self.router else None,
            "task_heads": list(self.task_specs),
        }
        return self.model.save_fusion(directory, heads=list(self.specs), overwrite=overwrite, **metadata)


__all__ = ["MultiTaskFusionTrainer"]
