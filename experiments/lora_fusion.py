"""Fusion of LoRA adapters against the single LoRA adapter on a few-shot target (issue 17; small, one thread).

Protocol: the transfer study's few-shot protocol (``experiments/transfer/study.py``: LM-BFF, 16 training and 16
model-selection examples per class, test on the LM-BFF test set, the same budgets and learning rates). Target: CR
(customer reviews). Systems, per data seed:

- ``lora``: a LoRA adapter trained on the target alone (the single-task baseline);
- ``lora-fusion``: attention fusion of LoRA source adapters (SST-2, AG News) and the target's own LoRA adapter;
- ``mixed-fusion``: attention fusion of the bank's bottleneck adapters (``bank:sst2``, ``bank:imdb``) and the
  target's own LoRA adapter (LoRA and bottleneck adapters in one fusion).

Fusions keep the adapters frozen and train a fresh head. The LoRA sources are trained once (at most
``--source-examples`` examples, ``--source-minutes`` of wall time each). LoRA everywhere: r=8, alpha=16 on the query,
value and FFN-output linear layers. Resumable: a run with a result file is never redone; trained adapters are kept
under ``experiments/adapters/lora-fusion`` (git-ignored).

    OMP_NUM_THREADS=1 python experiments/lora_fusion.py --seeds 13 21 42   # writes experiments/results/lora_fusion/
    python experiments/lora_fusion.py --table-only                        # rewrites its RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "transfer"))
from runner import ADAPTERS, ROOT  # noqa: E402
from study import BUDGETS, LEARNING_RATES, SHOTS, test_split  # noqa: E402

from adapter_fusion import AdapterTrainer, FusionConfig, FusionTrainer, TrainingConfig  # noqa: E402
from adapter_fusion.adapters import LoraConfig  # noqa: E402
from adapter_fusion.io import atomic_write_text, write_json  # noqa: E402
from adapter_fusion.tasks import load_task_split  # noqa: E402
from adapter_fusion.tasks.fewshot import few_shot_splits  # noqa: E402

LORA = LoraConfig(r=8, alpha=16.0, target_modules=("query", "value", "output.dense"))
TARGET = "cr"
SOURCES = ("sst2", "ag_news")
BANK = ("bank:sst2", "bank:imdb")
SYSTEMS = ("lora", "lora-fusion", "mixed-fusion")
WORK = ADAPTERS / "lora-fusion"
RESULTS = ROOT / "experiments" / "results" / "lora_fusion"
COMMAND = "OMP_NUM_THREADS=1 python experiments/lora_fusion.py --seeds 13 21 42"


def train_source(task: str, examples: int, minutes: float, data_dir: str) -> Path:
    """The LoRA source adapter of ``task`` (trained once, then reused); its dev metrics go to the results."""
    output = WORK / f"source-{task}"
    if output.is_dir():
        return output
    with tempfile.TemporaryDirectory() as scratch:
        config = TrainingConfig(
            output_dir=scratch, seed=42, num_train_epochs=1.0, batch_size=32, eval_batch_size=64,
            adapter_learning_rate=1e-3, max_train_examples=examples, max_train_minutes=minutes,
            max_eval_examples=1000, logging_steps=50, save_total_limit=1, disable_tqdm=True, warmup_ratio=0.06,
        )  # fmt: skip
        began = time.monotonic()
        trainer = AdapterTrainer(task, adapter_config=LORA, training_config=config, data_dir=data_dir)
        trainer.train()
        scores = {k: v for k, v in trainer.metrics.items() if isinstance(v, float)}  # train()'s final dev evaluation
        metrics = {**scores, "wall_seconds": round(time.monotonic() - began, 1),
                   "global_step": trainer.metrics.get("global_step"), "train_examples": examples}  # fmt: skip
    trainer.save_adapter(output)
    write_json(RESULTS / f"source-{task}.json", {"task": task, "lora": LORA.to_dict(), "dev": metrics})
    return output


def run_one(system: str, seed: int, sources: dict[str, Path], data_dir: str) -> dict[str, Any]:
    train, dev = few_shot_splits(TARGET, SHOTS, seed, data_dir)
    test = test_split(TARGET, "fewshot", data_dir)
    own = WORK / f"{TARGET}-lora-seed{seed}"
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        kind = "fusion" if system.endswith("fusion") else "st-a"
        config = TrainingConfig(output_dir=scratch, seed=seed, save_total_limit=1, disable_tqdm=True, logging_steps=50,
                                **BUDGETS["fewshot"], **LEARNING_RATES[kind])  # fmt: skip
        if kind == "st-a" or not own.is_dir():
            single = AdapterTrainer(TARGET, adapter_config=LORA, training_config=config, data_dir=data_dir)
            single.train(train, dev)
            if not own.is_dir():
                single.save_adapter(own)
        if kind == "st-a":
            trainer: Any = single
            fused: list[str] = []
        else:
            fused = [str(sources[task]) for task in SOURCES] if system == "lora-fusion" else list(BANK)
            trainer = FusionTrainer(TARGET, FusionConfig(fusion_method="attention"), training_config=config,
                                    data_dir=data_dir, init_head_from_adapter=False)  # fmt: skip
            trainer.setup_model([*fused, str(own)])
            trainer.train_fusion(train, dev)
        result = {
            "target": TARGET, "system": system, "seed": seed, "fused": [Path(p).name for p in fused] + [own.name],
            "test": trainer.evaluate(test), "dev": {k: v for k, v in trainer.metrics.items() if isinstance(v, float)},
            "trainable_parameters": trainer.metrics.get("trainable_parameters"),
            "global_step": trainer.metrics.get("global_step"), "wall_seconds": round(time.monotonic() - began, 1),
            "lora": LORA.to_dict(),
        }  # fmt: skip
    return result


def table(data_dir: str) -> str:
    rows = [json.loads(path.read_text()) for path in sorted(RESULTS.glob(f"{TARGET}__*.json"))]
    tested = len(test_split(TARGET, "fewshot", data_dir))
    by = {(row["system"], row["seed"]): row["test"]["accuracy"] for row in rows}
    seeds = sorted({seed for _, seed in by})
    lines = [
        "# Fusion of LoRA adapters vs the single LoRA adapter (CR, 16 examples per class)",
        "",
        f"Generated by `python experiments/lora_fusion.py --table-only` from the result files of `{COMMAND}` "
        f"(bundled MiniLM; LoRA r={LORA.r}, alpha={LORA.alpha:g} on {', '.join(LORA.target_modules or ())}; the "
        "transfer study's few-shot protocol, budgets and learning rates; one thread of a shared 2-core machine).",
        "",
        f"Test accuracy x100 on the study's CR test split ({tested} reviews), per data seed:",
        "",
        "| system | " + " | ".join(f"seed {seed}" for seed in seeds) + " | mean | minus `lora`, paired |",
        "|---|" + "---|" * (len(seeds) + 2),
    ]
    for system in SYSTEMS:
        scores = [by.get((system, seed)) for seed in seeds]
        done = [score for score in scores if score is not None]
        pairs = [by[(system, s)] - by[("lora", s)] for s in seeds if (system, s) in by and ("lora", s) in by]
        better = sum(p > 0 for p in pairs)
        gain = f"{100 * statistics.mean(pairs):+.1f} ({better}/{len(pairs)} better)" if pairs else ""
        lines.append(
            f"| {system} | " + " | ".join("not run" if s is None else f"{100 * s:.1f}" for s in scores)
            + f" | {100 * statistics.mean(done):.1f} | " + (gain if system != "lora" and pairs else "") + " |"
            if done else f"| {system} | " + " | ".join("not run" for _ in seeds) + " | | |"
        )  # fmt: skip
    lines += ["", "Sources (dev scores of the LoRA source adapters, measured after training):", ""]
    for path in sorted(RESULTS.glob("source-*.json")):
        source = json.loads(path.read_text())
        dev = source["dev"]
        examples = min(1000, len(load_task_split(source["task"], "validation", data_dir)))  # max_eval_examples
        lines.append(f"- LoRA {source['task']}: accuracy {dev.get('accuracy', float('nan')):.4f} on "
                     f"{examples} dev examples after {dev.get('global_step')} steps of 32 (at most "
                     f"{dev.get('train_examples')} training examples and the time cap), {dev.get('wall_seconds')} s "
                     "wall with evaluation")  # fmt: skip
    lines += [f"- bottleneck {name} (the shipped bank; its card gives the dev score)" for name in BANK]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[13, 21, 42])
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--source-examples", type=int, default=8000)
    parser.add_argument("--source-minutes", type=float, default=10.0)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    if not args.table_only:
        torch.set_num_threads(1)
        sources = {}
        if "lora-fusion" in args.systems:
            sources = {task: train_source(task, args.source_examples, args.source_minutes, args.data_dir)
                       for task in SOURCES}  # fmt: skip
        for seed in args.seeds:
            for system in args.systems:
                path = RESULTS / f"{TARGET}__{system}__seed{seed}.json"
                if path.is_file():
                    continue
                result = run_one(system, seed, sources, args.data_dir)
                write_json(path, result)
                print(f"{system} seed {seed}: test accuracy {result['test']['accuracy']:.4f}", flush=True)
                atomic_write_text(RESULTS / "RESULTS.md", table(args.data_dir))
    atomic_write_text(RESULTS / "RESULTS.md", table(args.data_dir))
    print(table(args.data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
