"""Step 1 of AdapterFusion: train one small adapter per task on a frozen base model.

An adapter is a bottleneck MLP (down-projection, non-linearity, up-projection, residual) inserted after the
feed-forward block of every transformer layer (Pfeiffer placement). Only the adapter and a small task head train;
the base model (here the bundled all-MiniLM-L6-v2, 22.7M parameters) stays frozen and is shared by every task. The
adapter's up-projection starts at zero, so before training the model computes exactly what the base model does.

This script trains three adapters, the sources that examples/fusion_training.py will fuse:

- ``sst2``: movie-review sentiment, plenty of data (67k sentences): a strong sentiment source.
- ``mnli``: natural-language inference (the 9k GLUE-pretraining subset): a source of sentence-pair reasoning.
- ``cr``: customer-review sentiment with only 64 training examples: the low-resource target task. Its adapter is
  the single-task adapter (ST-A) that a fusion must beat.

Run from the project root (data from ../shared/data, or $ADAPTER_FUSION_DATA_DIR; outputs under outputs/):

    HF_HUB_OFFLINE=1 python examples/train_individual_adapters.py    # real budgets (SST-2, MNLI: <= 25 min each)
    HF_HUB_OFFLINE=1 python examples/train_individual_adapters.py --smoke    # 32 examples each, to try it out

Each adapter directory holds adapter_config.json (config, base model, geometry, metrics) and adapter.safetensors
(113k parameters, 0.5% of the base model, 454 KB), plus the task head (595 KB): about 1 MB per task.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from adapter_fusion import AdapterConfig, AdapterTrainer, TrainingConfig

# Budgets per task. ``max_train_minutes`` caps a run on a slow machine (the best checkpoint so far is kept);
# ``max_train_examples`` makes CR a low-resource task on purpose. The recipe (Pfeiffer placement, reduction
# factor 16, lr 1e-3, batch 32) is the one behind experiments/results/core_table.md.
REAL_BUDGETS: dict[str, dict[str, Any]] = {
    "sst2": {"num_train_epochs": 1, "max_train_minutes": 25, "eval_steps": 400},
    "mnli": {"num_train_epochs": 2, "max_train_minutes": 25},
    "cr": {"num_train_epochs": 20, "max_train_examples": 64},
}
# --smoke: enough to run every line in seconds; the scores are meaningless at this size.
SMOKE_BUDGETS: dict[str, dict[str, Any]] = {
    task: {"num_train_epochs": 1, "max_train_examples": 32, "max_eval_examples": 32} for task in REAL_BUDGETS
}


def train_one(task: str, budget: dict[str, Any], output: Path, data_dir: str | None) -> dict[str, Any]:
    """Train the ``task`` adapter with ``budget`` and save it to ``output/adapters/<task>``; returns its dev
    metrics."""
    training = TrainingConfig(
        output_dir=str(output / "runs" / task),  # Trainer checkpoints (only trainable weights, as safetensors)
        adapter_learning_rate=1e-3,  # adapters want a much larger learning rate than full fine-tuning (2e-5)
        batch_size=32,
        seed=42,
        save_total_limit=1,  # keep the best checkpoint only: it is reloaded at the end (best dev score)
        disable_tqdm=True,
        **budget,
    )
    # reduction_factor=16: bottleneck = hidden size / 16 = 24 for MiniLM's 384. Smaller adapters lose accuracy on
    # large tasks; larger ones overfit small tasks and cost more in a fusion of many adapters.
    adapter = AdapterConfig(reduction_factor=16, placement="pfeiffer")
    trainer = AdapterTrainer(task, adapter_config=adapter, training_config=training, data_dir=data_dir)
    count = trainer.model.adapters.num_parameters(task)
    print(f"{task}: training an adapter of {count:,} parameters ({budget})")
    metrics = trainer.train()  # the task's train split; evaluated on its dev split, best checkpoint restored
    directory = trainer.save_adapter(output / "adapters" / task, overwrite=True)  # a rerun replaces it
    metric = trainer.task.main_metric
    print(
        f"{task}: dev {metric} {metrics[metric]:.4f} after {metrics['global_step']} steps on "
        f"{metrics['train_examples']} examples ({metrics['train_seconds']:.0f} s) -> {directory}"
    )
    return {k: v for k, v in metrics.items() if k != "eval_history"}


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny budgets: check that everything runs")
    parser.add_argument("--tasks", nargs="+", default=list(REAL_BUDGETS), help="tasks to train (default: %(default)s)")
    parser.add_argument("--output", default="outputs/examples", help="adapters go to OUTPUT/adapters/<task>")
    parser.add_argument("--data-dir", help="data directory (default: $ADAPTER_FUSION_DATA_DIR or ../shared/data)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    budgets = SMOKE_BUDGETS if args.smoke else REAL_BUDGETS
    unknown = [task for task in args.tasks if task not in budgets]
    if unknown:
        parser.error(f"no budget for tasks {unknown}; this example knows {list(budgets)}")
    results = {task: train_one(task, budgets[task], Path(args.output), args.data_dir) for task in args.tasks}
    print(json.dumps({task: {k: results[task][k] for k in ("eval_examples", "global_step")} for task in results}))
    return results


if __name__ == "__main__":
    main()
