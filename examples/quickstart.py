"""Quickstart: a task with 16 examples per class borrows from adapters trained on other tasks (AdapterFusion).

1. Draw 16 customer reviews per class of CR (product-review sentiment) for training and another 16 per class for
   model selection: the few-shot protocol of LM-BFF (Gao et al., 2021).
2. Train a single-task adapter (ST-A) on those 32 reviews, on a frozen all-MiniLM-L6-v2.
3. Fuse it with two source adapters from the shipped bank, trained on movie-review sentiment (``bank:sst2``,
   ``bank:imdb``), using the paper's attention fusion (Pfeiffer et al., 2021); the fusion and a fresh head train on
   the same 32 reviews, the adapters stay frozen.
4. Score ST-A and the fusion on CR's test set (its 178-review LM-BFF dev set) with ``FusionEvaluator``.
5. Save the fusion, reload it with ``FusionPipeline`` and predict.

Run from the project root (the data is read from ../shared/data, or $ADAPTER_FUSION_DATA_DIR):

    HF_HUB_OFFLINE=1 python examples/quickstart.py

About a minute on 2 CPU cores (50 s measured on quiet cores, 17 minutes with them shared by heavy jobs); with
bank v2 it printed ST-A 0.8034, fusion 0.8764 (+7.3 points) on CR's test set. Outputs go to
outputs/quickstart/. The same comparison over nine few-shot targets and several data seeds is
experiments/transfer/RESULTS.md.
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
from adapter_fusion.bank import read_card
from adapter_fusion.models import fusable_adapter_config
from adapter_fusion.tasks import few_shot_splits

logging.basicConfig(level=logging.WARNING)
OUT = "outputs/quickstart"
TARGET = "cr"
SOURCES = ("sst2", "imdb")
DATA_SEED = 13  # the first of LM-BFF's five data seeds


def config(run: str, **rates: float) -> TrainingConfig:
    """20 epochs over the 32 reviews in batches of 8, the best epoch on the 32 model-selection reviews kept."""
    return TrainingConfig(
        output_dir=f"{OUT}/runs/{run}",
        num_train_epochs=20,
        batch_size=8,
        seed=DATA_SEED,
        disable_tqdm=True,
        save_total_limit=1,
        logging_steps=50,
        **rates,
    )


def main() -> None:
    start = time.monotonic()
    train, dev = few_shot_splits(TARGET, shots=16, seed=DATA_SEED)
    print(f"{TARGET}: {len(train)} training and {len(dev)} model-selection reviews (seed {DATA_SEED})")

    # an adapter that will be fused with the bank's adapters reads the same input as they do at each layer
    single = AdapterTrainer(
        TARGET,
        adapter_config=fusable_adapter_config([f"bank:{name}" for name in SOURCES]),
        training_config=config("st-a", adapter_learning_rate=1e-3),
    )
    single.train(train, dev)
    single.save_adapter(f"{OUT}/adapters/{TARGET}", overwrite=True)  # a rerun replaces the last

    for name in SOURCES:
        card = read_card(name)
        print(f"source bank:{name}: {card['task']} adapter, dev accuracy {card['dev']['accuracy']:.4f}")
    fusion = FusionTrainer(
        TARGET,
        FusionConfig(fusion_method="attention"),
        init_head_from_adapter=False,
        training_config=config("fusion", fusion_learning_rate=5e-4, head_learning_rate=1e-3),
    )
    fusion.setup_model([f"bank:{name}" for name in SOURCES] + [f"{OUT}/adapters/{TARGET}"])
    fusion.train_fusion(train, dev)
    fusion.save_fusion(f"{OUT}/fusions/{TARGET}-attention", overwrite=True)

    evaluator = FusionEvaluator(TARGET)
    rows = evaluator.compare(
        adapters={"ST-A (16 per class)": f"{OUT}/adapters/{TARGET}"},
        fusions={"attention fusion (bank:sst2 + bank:imdb + ST-A)": f"{OUT}/fusions/{TARGET}-attention"},
    )
    print(evaluator.to_markdown(rows))
    scores = [row["accuracy"] for row in rows]
    print(f"fusion - ST-A on the {rows[0]['examples']} test reviews: {100 * (scores[1] - scores[0]):+.1f} points")

    pipeline = FusionPipeline.from_pretrained(f"{OUT}/fusions/{TARGET}-attention")
    for review in ("The battery lasts all day and the screen is gorgeous.", "It broke after a week. Avoid."):
        print(review, "->", pipeline.predict(review, task=TARGET))
    print(f"quickstart done in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
