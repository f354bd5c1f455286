"""Train a router among single adapters: "which of my adapters fits this text".

    train_adapter_router(["adapters/sst2", "adapters/agnews", "adapters/conll2003_ner"], "adapters/router")
    pipe = FusionPipeline.from_adapters([...the same...], router="adapters/router")
    pipe.predict("Stocks fell sharply on Monday")    # {"task": "ag_news", "label": "Business", ...}

The router is an adapter + classification head of its own (``AdapterTrainer`` on the routing task of
``tasks.routing``), trained on examples of each adapter's task: its train split (or the datasets given), its
validation split for checkpoint selection. It reads the base model with its own small adapter only, so routing
costs one forward of the base model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.models import read_adapter_config
from adapter_fusion.tasks import get_task, load_task_split
from adapter_fusion.tasks.routing import ROUTER, router_dataset, router_spec
from adapter_fusion.training.adapter_trainer import AdapterTrainer
from adapter_fusion.training.config import ModelConfig, TrainingConfig


def adapter_tasks(directories: Sequence[str | Path]) -> dict[str, str]:
    """Adapter name -> the task it was trained on (from its saved metadata)."""
    tasks = {}
    for directory in directories:
        info = read_adapter_config(directory)
        task = info.get("metadata", {}).get("task")
        if not task:
            raise ValueError(f"adapter {directory} records no task in its metadata; pass its examples in datasets=")
        tasks[str(info["name"])] = str(task)
    return tasks


def train_adapter_router(
    directories: Sequence[str | Path],
    output: str | Path,
    train_datasets: Mapping[str, Any] | None = None,
    eval_datasets: Mapping[str, Any] | None = None,
    model_config: ModelConfig | None = None,
    adapter_config: AdapterConfig | None = None,
    training_config: TrainingConfig | None = None,
    data_dir: str | Path | None = None,
    per_task: int | None = None,
) -> dict[str, Any]:
    """Train a router over the adapters in ``directories`` and save it to ``output`` (an adapter directory whose
    head's labels are the adapter names). ``train_datasets`` / ``eval_datasets``: adapter name -> Dataset of its
    task (default: the task's train / validation split, ``max_train_examples`` / ``max_eval_examples`` per task of
    ``training_config``). Returns the router's metrics (``accuracy``: routing accuracy on the held-out rows)."""
    names = [str(read_adapter_config(d)["name"]) for d in directories]
    spec = router_spec(names)
    given_train, given_eval = dict(train_datasets or {}), dict(eval_datasets or {})
    tasks = adapter_tasks([d for d, n in zip(directories, names) if n not in given_train or n not in given_eval])
    training_config = training_config or TrainingConfig()
    info = read_adapter_config(directories[0])
    model_config = model_config or ModelConfig(model_name_or_path=str(info.get("base_model") or "default"))

    def split(name: str, which: str, given: dict[str, Any], limit: int | None) -> Any:
        if name in given:
            return given[name]
        return load_task_split(get_task(tasks[name]), which, data_dir, max_examples=limit, seed=training_config.seed)

    train = {n: split(n, "train", given_train, training_config.max_train_examples) for n in names}
    evals = {n: split(n, "validation", given_eval, training_config.max_eval_examples) for n in names}
    trainer = AdapterTrainer(spec, model_config, adapter_config or AdapterConfig(), training_config, data_dir,
                             adapter_name=ROUTER)  # fmt: skip
    metrics = trainer.train(router_dataset(train, names, per_task, training_config.seed),
                            router_dataset(evals, names, per_task, training_config.seed))  # fmt: skip
    trainer.save_adapter(output)
    return metrics


__all__ = ["adapter_tasks", "train_adapter_router"]
