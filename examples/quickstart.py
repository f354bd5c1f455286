"""Quickstart: train a small sentiment adapter on real SST-2 data, save it, evaluate it, predict with it.

Run from the project root (the data is read from ../shared/data, or $ADAPTER_FUSION_DATA_DIR):

    HF_HUB_OFFLINE=1 python examples/quickstart.py

Takes a few minutes on 2 CPU cores. The base model is the bundled all-MiniLM-L6-v2.
"""

from __future__ import annotations

import logging

from adapter_fusion import AdapterTrainer, FusionPipeline, TrainingConfig
from adapter_fusion.evaluation import evaluate_adapter

logging.basicConfig(level=logging.WARNING)


def main() -> None:
    config = TrainingConfig(
        output_dir="outputs/quickstart/runs/sst2",
        num_train_epochs=1,
        max_train_examples=4000,  # a small budget: the full recipe is in experiments/core_table.py
        adapter_learning_rate=1e-3,
        seed=42,
        disable_tqdm=True,
    )
    trainer = AdapterTrainer("sst2", training_config=config)
    trainer.model.print_model_info()
    metrics = trainer.train()
    print(f"SST-2 dev accuracy after {metrics['train_examples']} examples: {metrics['accuracy']:.4f}")
    trainer.save_adapter("outputs/quickstart/adapters/sst2")

    reloaded = evaluate_adapter("outputs/quickstart/adapters/sst2")
    print(f"reloaded adapter, dev accuracy: {reloaded['accuracy']:.4f}")

    pipeline = FusionPipeline.from_pretrained("outputs/quickstart/adapters/sst2")
    for text in ["a gorgeous, witty, seductive movie.", "the plot is a tired mess and the acting is worse."]:
        result = pipeline.predict(text, task="sentiment")
        print(f"{result['label']:>8s} {result['score']:.3f}  {text}")


if __name__ == "__main__":
    main()
