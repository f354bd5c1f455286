"""Quickstart: the whole AdapterFusion workflow on real data, on CPU.

1. Train three small task adapters on a frozen all-MiniLM-L6-v2 (SST-2 sentiment, MNLI and RTE inference).
2. Fuse them with attention fusion (Pfeiffer et al., 2021) for the target task RTE.
3. Evaluate the single RTE adapter against the fusion on the RTE dev set.
4. Reload the saved fusion and predict.

Run from the project root (the data is read from ../shared/data, or $ADAPTER_FUSION_DATA_DIR):

    HF_HUB_OFFLINE=1 python examples/quickstart.py

Small budgets keep it to a few minutes on 2 CPU cores, so the scores are far from converged: the recipe with
real budgets is in experiments/. Outputs go to outputs/quickstart/.
"""

from __future__ import annotations

import logging
import time

from adapter_fusion import (
    AdapterTrainer,
    FusionConfig,
    FusionEvaluator,
    FusionPipeline,
    FusionTrainer,
    TrainingConfig,
)

logging.basicConfig(level=logging.WARNING)
OUT = "outputs/quickstart"
# task: training examples for its adapter (one epoch each)
ADAPTER_BUDGETS = {"sst2": 2000, "mnli": 1500, "rte": 1500}


def train_adapter(task: str, examples: int) -> str:
    config = TrainingConfig(
        output_dir=f"{OUT}/runs/{task}",
        num_train_epochs=1,
        max_train_examples=examples,
        max_eval_examples=500,
        adapter_learning_rate=1e-3,
        seed=42,
        disable_tqdm=True,
        save_total_limit=1,
    )
    trainer = AdapterTrainer(task, training_config=config)
    metrics = trainer.train()
    directory = f"{OUT}/adapters/{task}"
    trainer.save_adapter(directory, overwrite=True)  # a rerun replaces what the last one saved
    print(
        f"adapter {task:5s}: {metrics['train_examples']} examples, {metrics['train_seconds']:.0f} s, "
        f"dev {trainer.task.main_metric} {metrics[trainer.task.main_metric]:.4f} -> {directory}"
    )
    return directory


def main() -> None:
    start = time.monotonic()
    adapters = {task: train_adapter(task, examples) for task, examples in ADAPTER_BUDGETS.items()}

    fusion_trainer = FusionTrainer(
        "rte",
        FusionConfig(fusion_method="attention"),
        training_config=TrainingConfig(
            output_dir=f"{OUT}/runs/fusion-rte",
            num_train_epochs=1,
            max_train_examples=1500,
            fusion_learning_rate=5e-3,
            seed=42,
            disable_tqdm=True,
            save_total_limit=1,
        ),
    )
    model = fusion_trainer.setup_model(list(adapters.values()))
    model.print_model_info()
    metrics = fusion_trainer.train_fusion()
    fusion_trainer.save_fusion(f"{OUT}/fusions/rte-attention", overwrite=True)
    print(f"fusion for rte: {metrics['train_seconds']:.0f} s of training")

    evaluator = FusionEvaluator("rte")
    rows = evaluator.compare(
        adapters={"rte adapter": adapters["rte"]}, fusions={"attention fusion": f"{OUT}/fusions/rte-attention"}
    )
    print(evaluator.to_markdown(rows))

    pipeline = FusionPipeline.from_pretrained(f"{OUT}/fusions/rte-attention")
    premise, hypothesis = "A man is playing a guitar on stage.", "A person is making music."
    print(pipeline.predict(premise, text_pairs=hypothesis, task="rte"))
    print(f"quickstart done in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
