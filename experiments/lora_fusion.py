"""A fusion of LoRA adapters against the single LoRA adapter on a target task (small, single-threaded run).

Sources: a LoRA adapter trained on MNLI and one on the target (RTE); then an attention fusion of both, trained on
RTE (adapters frozen, as in the paper; the head starts from the RTE LoRA's head), against the RTE LoRA alone.
Every training run reads at most 4000 training examples and stops after ``--minutes`` of wall time (the machine
is small and shared); RTE scores are on its validation split (277 examples), MNLI's on 300 validation examples.
LoRA: r=8, alpha=16 on query, value and the FFN output linear layer.

    OMP_NUM_THREADS=1 python experiments/lora_fusion.py --minutes 3      # writes experiments/results/lora_fusion.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner import ADAPTERS, ROOT  # noqa: E402

from adapter_fusion.adapters import LoraConfig  # noqa: E402
from adapter_fusion.fusion import FusionConfig  # noqa: E402
from adapter_fusion.training.adapter_trainer import AdapterTrainer  # noqa: E402
from adapter_fusion.training.config import ModelConfig, TrainingConfig  # noqa: E402
from adapter_fusion.training.fusion_trainer import FusionTrainer  # noqa: E402

LORA = LoraConfig(r=8, alpha=16.0, target_modules=("query", "value", "output.dense"))
MODEL = ModelConfig(max_seq_length=128)


def training(output: Path, minutes: float, **overrides: object) -> TrainingConfig:
    values: dict[str, object] = dict(
        output_dir=str(output) + ".runs", num_train_epochs=10.0, max_train_minutes=minutes, batch_size=16,
        eval_batch_size=64, adapter_learning_rate=1e-3, eval_steps=100, logging_steps=25, max_eval_examples=300,
        max_train_examples=4000,
        save_total_limit=1, disable_tqdm=True, seed=42,
    )  # fmt: skip
    values.update(overrides)
    return TrainingConfig(**values)  # type: ignore[arg-type]


def train_lora(task: str, minutes: float, data_dir: str | None) -> tuple[Path, dict, float]:
    output = ADAPTERS / f"lora-{task}"
    began = time.monotonic()
    trainer = AdapterTrainer(task, MODEL, LORA, training(output, minutes), data_dir=data_dir)  # type: ignore[arg-type]
    metrics = trainer.train()
    trainer.save_adapter(output)
    return output, metrics, time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0, help="wall-time budget of each training run")
    parser.add_argument("--data-dir", help="data directory (default: $ADAPTER_FUSION_DATA_DIR or ../shared/data)")
    parser.add_argument("--output", default=str(ROOT / "experiments" / "results" / "lora_fusion.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    paths = {}
    for task in ("mnli", "rte"):
        path, metrics, seconds = train_lora(task, args.minutes, args.data_dir)
        paths[task] = path
        rows.append((f"LoRA {task}", metrics, seconds))
        print(task, json.dumps(metrics, default=str), flush=True)
    began = time.monotonic()
    fusion_config = FusionConfig(adapter_paths=(str(paths["mnli"]), str(paths["rte"])), fusion_method="attention")
    output = ADAPTERS / "lora-fusion-rte"
    trainer = FusionTrainer(
        "rte", fusion_config, MODEL, training(output, args.minutes, fusion_learning_rate=5e-4), data_dir=args.data_dir
    )
    metrics = trainer.train_fusion()
    trainer.save_fusion(output)
    rows.append(("attention fusion of LoRA mnli + LoRA rte", metrics, time.monotonic() - began))
    lines = [
        "# Fusion of LoRA adapters vs the single LoRA adapter (RTE validation, 277 examples)",
        "",
        f"Command: `OMP_NUM_THREADS=1 python experiments/lora_fusion.py --minutes {args.minutes:g}` (bundled MiniLM, "
        f"LoRA r={LORA.r}, alpha={LORA.alpha:g} on {', '.join(LORA.target_modules or ())}; every run stopped after "
        f"{args.minutes:g} min of wall time on 1 thread of a shared 2-core machine; seed 42).",
        "",
        "| model | task | accuracy | steps | wall s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, result, seconds in rows:
        task = "mnli" if name.endswith("mnli") else "rte"
        accuracy = result.get("eval_accuracy", result.get("accuracy"))
        steps = result.get("global_step", result.get("steps", ""))
        lines.append(f"| {name} | {task} | {accuracy} | {steps} | {seconds:.0f} |")
    raw = json.dumps({name: result for name, result, _ in rows}, indent=1, default=str)
    lines += ["", "Raw metrics:", "", "```json", raw, "```", ""]
    Path(args.output).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
