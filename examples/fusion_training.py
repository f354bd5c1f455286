"""Step 2 of AdapterFusion: learn to combine trained adapters for a target task, and see what it learned.

AdapterFusion (Pfeiffer et al., EACL 2021, https://arxiv.org/abs/2005.00247) keeps every adapter frozen and adds,
in each layer, a small attention over their outputs: the layer's hidden state is the query, the adapters' outputs
are keys and values, and a softmax says how much of each adapter this token should use. The fusion (and a head)
train on the target task only, so a task with little data can borrow what adapters trained on other tasks learned,
without the catastrophic forgetting of sequential fine-tuning and without retraining the sources.

This script fuses the adapters that examples/train_individual_adapters.py trained (SST-2 and MNLI sources plus
the low-resource CR adapter) for CR, trained on the same 64 CR examples as the CR adapter. Then it

1. compares the CR adapter alone (ST-A) with each fusion on the CR test split, in one table (``FusionEvaluator``);
2. draws the attention fusion's weights per layer, per class and per token (``analyze_fusion``): does CR lean on
   the SST-2 adapter, as one would hope?
3. reloads the saved fusion and predicts (``FusionPipeline``).

    HF_HUB_OFFLINE=1 python examples/train_individual_adapters.py
    HF_HUB_OFFLINE=1 python examples/fusion_training.py                     # real budget: 20 epochs of 64 examples
    HF_HUB_OFFLINE=1 python examples/train_individual_adapters.py --smoke && \\
        HF_HUB_OFFLINE=1 python examples/fusion_training.py --smoke        # seconds to minutes, scores meaningless
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from adapter_fusion import FusionConfig, FusionEvaluator, FusionPipeline, FusionTrainer, TrainingConfig
from adapter_fusion.evaluation import analyze_fusion

SOURCES = ("sst2", "mnli", "cr")  # the target's own adapter is fused too, as in the paper
REAL_BUDGET: dict[str, Any] = {"num_train_epochs": 20, "max_train_examples": 64}  # the CR adapter's 64 examples
SMOKE_BUDGET: dict[str, Any] = {"num_train_epochs": 1, "max_train_examples": 32, "max_eval_examples": 32}


def train_fusion(
    method: str, adapters: list[Path], target: str, budget: dict[str, Any], output: Path, data_dir: str | None
) -> Path:
    """Train one fusion of ``adapters`` for ``target`` and save it to ``output/fusions/<target>-<method>``."""
    fusion_config = FusionConfig(
        fusion_method=method,  # attention (the paper's), weighted (a learned weight per adapter) or gating
        freeze_adapters_during_fusion=True,  # sequential training: only the fusion and the head learn
    )
    training = TrainingConfig(
        output_dir=str(output / "runs" / f"fusion-{target}-{method}"),
        # Fusion layers start neutral (the value matrix is the identity), so they need a larger learning rate
        # than the paper's 5e-5 to move within a small budget; 1e-3 is the one used in experiments/.
        fusion_learning_rate=1e-3,
        batch_size=16,
        seed=42,
        save_total_limit=1,
        disable_tqdm=True,
        **budget,
    )
    trainer = FusionTrainer(target, fusion_config, training_config=training, data_dir=data_dir)
    model = trainer.setup_model(adapters)  # base model + frozen adapters + fusion + the target head
    # The head starts from the target adapter's trained head (its directory is among the adapters), so the fusion
    # starts from a working classifier instead of a random one.
    print(f"{method} fusion: {sum(p.numel() for p in model.get_fusion_parameters()):,} fusion parameters; "
          f"head initialised from {trainer.head_init_from}")  # fmt: skip
    metrics = trainer.train_fusion()
    directory = trainer.save_fusion(output / "fusions" / f"{target}-{method}", overwrite=True)  # a rerun replaces it
    main_metric = trainer.task.main_metric
    score = metrics[main_metric]
    print(f"{method} fusion: dev {main_metric} {score:.4f} ({metrics['train_seconds']:.0f} s) -> {directory}")
    return directory


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny budgets: check that everything runs")
    parser.add_argument("--target", default="cr", help="target task (default: %(default)s)")
    parser.add_argument("--methods", nargs="+", default=["attention", "weighted"], help="fusion methods")
    parser.add_argument("--output", default="outputs/examples", help="where train_individual_adapters.py wrote")
    parser.add_argument("--data-dir", help="data directory (default: $ADAPTER_FUSION_DATA_DIR or ../shared/data)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    output = Path(args.output)
    adapters = [output / "adapters" / task for task in SOURCES]
    missing = [str(path) for path in adapters if not path.is_dir()]
    if missing:
        parser.error(f"adapters {missing} not found: run examples/train_individual_adapters.py first")
    budget = SMOKE_BUDGET if args.smoke else REAL_BUDGET
    fusions = {
        method: train_fusion(method, adapters, args.target, budget, output, args.data_dir) for method in args.methods
    }

    # 1. One table: the target's own adapter (ST-A) against each fusion, on the test split, which no run has seen
    # (the dev split picked the checkpoints). Every number is what `adapter-fusion evaluate` prints.
    evaluator = FusionEvaluator(args.target, data_dir=args.data_dir, split="test",
                                max_examples=budget.get("max_eval_examples"))  # fmt: skip
    rows = evaluator.compare(adapters={"ST-A": output / "adapters" / args.target}, fusions=list(fusions.values()))
    print(evaluator.to_markdown(rows))

    # 2. What the first fusion reads from each adapter on the dev set: heatmaps and a report (the analysis extra).
    analysis = analyze_fusion(fusions[args.methods[0]], task=args.target, data_dir=args.data_dir,
                              max_examples=budget.get("max_eval_examples"))  # fmt: skip
    print(f"fusion-weight heatmaps and report in {analysis.output} (open {analysis.report.name})")
    for point, adapter, weight in analysis.summary.dominant():
        print(f"  {point}: {adapter} ({weight:.2f})")

    # 3. The saved fusion directory is self-contained (adapters, fusion, head, manifest): reload and predict.
    pipeline = FusionPipeline.from_pretrained(fusions[args.methods[0]])
    for text in ("The battery lasts for days and the screen is gorgeous.", "It broke after a week. Avoid."):
        print(text, "->", pipeline.predict(text, task=args.target))
    return {"rows": rows, "analysis": analysis}


if __name__ == "__main__":
    main()
