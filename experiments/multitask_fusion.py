"""Multi-task fusion and routing on real data (4 sentence tasks of different kinds: SST-2, MNLI, AG News, TREC).

Stages (each a few minutes single-threaded on the bundled MiniLM, max_seq_length 64, batch 16; results cached as
JSON under experiments/results/multitask_fusion/, the table written to experiments/results/multitask_fusion.md):

1. ``adapters``: ``train-multitask`` (an adapter + head per task, temperature sampling) for ``--adapter-steps``;
   its dev scores are the multi-task-learning baseline, and its adapters are what the fusions fuse.
2. ``mtl-more``: the same ``train-multitask`` run for ``--adapter-steps + --fusion-steps`` from scratch: the
   baseline given the whole budget of (1) + a fusion.
3. ``mt-fusion``: ONE attention fusion of the 4 adapters with a head per task and a router, ``--fusion-steps``.
4. ``per-task``: a fusion per task (``FusionTrainer``), ``--fusion-steps / 4`` each (the same total budget).
5. ``routing``: a mixed stream of held-out dev examples of the 4 tasks (rows not in the dev subsets scored
   above): routing accuracy of the fusion's router and of a router among the single adapters
   (``train_adapter_router``, ``--router-steps``), and end-task accuracy routed vs with oracle task labels.

    OMP_NUM_THREADS=1 python experiments/multitask_fusion.py                 # every stage not yet cached
    OMP_NUM_THREADS=1 python experiments/multitask_fusion.py --stages routing --table
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import torch

from adapter_fusion import AdapterConfig, FusionConfig, FusionPipeline, FusionTrainer, ModelConfig, TrainingConfig
from adapter_fusion.tasks import get_task, load_task_split
from adapter_fusion.training.multi_task_trainer import MultiTaskTrainer
from adapter_fusion.training.multitask_fusion import MultiTaskFusionTrainer
from adapter_fusion.training.routing import train_adapter_router

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "experiments" / "adapters" / "multitask_fusion"  # git-ignored
RESULTS = ROOT / "experiments" / "results" / "multitask_fusion"
TABLE = ROOT / "experiments" / "results" / "multitask_fusion.md"
TASKS = ("sst2", "mnli", "ag_news", "trec")
STAGES = ("adapters", "mtl-more", "mt-fusion", "per-task", "routing")


def training(name: str, steps: int, args: argparse.Namespace, **overrides: Any) -> TrainingConfig:
    values: dict[str, Any] = dict(
        output_dir=str(WORK / "runs" / name), max_steps=steps, batch_size=16, logging_steps=50,
        eval_steps=10 * steps, load_best_model_at_end=False,  # one evaluation, of the last state, at the end
        max_train_examples=args.train_examples, max_eval_examples=args.eval_examples, disable_tqdm=True,
        seed=args.seed, save_total_limit=1, fusion_learning_rate=args.fusion_lr,
    )  # fmt: skip
    return TrainingConfig(**{**values, **overrides})


def model_config() -> ModelConfig:
    return ModelConfig(max_seq_length=64)


def mains(metrics: dict[str, Any], tasks: tuple[str, ...] = TASKS) -> dict[str, float]:
    return {task: float(metrics[f"{task}_{get_task(task).main_metric}"]) for task in tasks}


def stage_adapters(args: argparse.Namespace, steps: int, name: str) -> dict[str, Any]:
    trainer = MultiTaskTrainer(list(TASKS), model_config(), AdapterConfig(), training(name, steps, args),
                               sampling="temperature", temperature=2.0)  # fmt: skip
    metrics = trainer.train()
    if name == "adapters":
        trainer.save(WORK / "adapters")
    return {"steps": steps, "scores": mains(metrics), "train_seconds": metrics["train_seconds"]}


def adapter_dirs() -> list[str]:
    return [str(WORK / "adapters" / task) for task in TASKS]


def stage_mt_fusion(args: argparse.Namespace) -> dict[str, Any]:
    trainer = MultiTaskFusionTrainer(list(TASKS), FusionConfig(adapter_paths=adapter_dirs()), model_config(),
                                     training("mt-fusion", args.fusion_steps, args), sampling="temperature",
                                     temperature=2.0)  # fmt: skip
    metrics = trainer.train()
    trainer.save(WORK / "mt-fusion")
    return {"steps": args.fusion_steps, "scores": mains(metrics), "router_dev_accuracy": metrics["router_accuracy"],
            "train_seconds": metrics["train_seconds"]}  # fmt: skip


def stage_per_task(args: argparse.Namespace) -> dict[str, Any]:
    steps = max(1, args.fusion_steps // len(TASKS))
    scores, seconds = {}, 0.0
    for task in TASKS:
        trainer = FusionTrainer(task, FusionConfig(adapter_paths=adapter_dirs()), model_config(),
                                training(f"fusion-{task}", steps, args))  # fmt: skip
        metrics = trainer.train_fusion()
        scores[task] = float(metrics[get_task(task).main_metric])
        seconds += metrics["train_seconds"]
    return {"steps": steps * len(TASKS), "scores": scores, "train_seconds": round(seconds, 1)}


def held_out_stream(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Dev rows after the first ``eval_examples`` of each task's seeded shuffle (those were scored in training)."""
    rows = []
    for task in TASKS:
        size = args.eval_examples + args.stream_examples
        dev = load_task_split(task, "validation", max_examples=size, seed=args.seed)
        for row in dev.select(range(args.eval_examples, len(dev))):
            rows.append({"task": task, "text": row["text_a"], "pair": row["text_b"] or "", "label": row["label"]})
    random.Random(args.seed).shuffle(rows)
    return rows


def score_stream(pipeline: FusionPipeline, stream: list[dict[str, Any]], names: dict[str, str]) -> dict[str, float]:
    """Routing accuracy, end-task accuracy routed and with oracle task labels (``names``: task -> pipeline task)."""
    texts, pairs = [row["text"] for row in stream], [row["pair"] for row in stream]
    routed = pipeline.predict(texts, text_pairs=pairs)
    route_ok = end_ok = oracle_ok = 0
    for row, result in zip(stream, routed):
        task = names[row["task"]]
        gold = get_task(row["task"]).label_names[row["label"]]
        route_ok += result["task"] == task
        end_ok += result["task"] == task and result["label"] == gold
        oracle = pipeline.predict(row["text"], task=task, **({"text_pairs": row["pair"]} if row["pair"] else {}))
        oracle_ok += oracle["label"] == gold
    count = len(stream)
    return {"routing_accuracy": route_ok / count, "routed_accuracy": end_ok / count,
            "oracle_accuracy": oracle_ok / count, "examples": count}  # fmt: skip


def stage_routing(args: argparse.Namespace) -> dict[str, Any]:
    stream = held_out_stream(args)
    fusion = FusionPipeline.from_pretrained(WORK / "mt-fusion")
    result: dict[str, Any] = {"mt_fusion": score_stream(fusion, stream, {t: t for t in TASKS})}
    began = time.monotonic()
    metrics = train_adapter_router(
        adapter_dirs(), WORK / "router", model_config=model_config(), adapter_config=AdapterConfig(),
        training_config=training("router", args.router_steps, args, adapter_learning_rate=1e-3),
    )  # fmt: skip
    single = FusionPipeline.from_adapters(adapter_dirs(), router=WORK / "router")
    result["adapter_router"] = {**score_stream(single, stream, {t: t for t in TASKS}),
                                "router_dev_accuracy": metrics["accuracy"], "router_steps": args.router_steps,
                                "train_seconds": round(time.monotonic() - began, 1)}  # fmt: skip
    return result


def write_table(args: argparse.Namespace) -> None:
    results = {path.stem: json.loads(path.read_text()) for path in sorted(RESULTS.glob("*.json"))}
    lines = ["# Multi-task fusion and routing (SST-2, MNLI, AG News, TREC)", "",
             "Bundled MiniLM (all-MiniLM-L6-v2), max_seq_length 64, batch 16, temperature sampling (T = 2), "
             f"{args.train_examples} training and {args.eval_examples} dev examples per task (dev: a seeded subset "
             "of each task's validation split), seed 0, one CPU thread on a shared 2-core machine. Main metric per "
             "task (accuracy). Command: `OMP_NUM_THREADS=1 python experiments/multitask_fusion.py`.", "",
             "| run | training steps | " + " | ".join(TASKS) + " | mean | train s |",
             "|---|---|" + "---|" * len(TASKS) + "---|---|"]  # fmt: skip
    labels = {"adapters": "train-multitask (an adapter + head per task): the fused adapters",
              "mtl-more": "train-multitask, whole budget (adapters + fusion steps)",
              "mt-fusion": "multi-task fusion of the 4 adapters (+ heads, router), after train-multitask",
              "per-task": "a fusion per task (4 fusions, same total steps), after train-multitask"}  # fmt: skip
    for stage, label in labels.items():
        if stage in results:
            run = results[stage]
            scores = [run["scores"][t] for t in TASKS]
            lines.append(f"| {label} | {run['steps']} | " + " | ".join(f"{s:.4f}" for s in scores)
                         + f" | {sum(scores) / len(scores):.4f} | {run['train_seconds']} |")  # fmt: skip
    if "mt-fusion" in results:
        lines += ["", f"Router of the multi-task fusion on the dev subsets: accuracy "
                      f"{results['mt-fusion']['router_dev_accuracy']:.4f}."]  # fmt: skip
    if "routing" in results:
        routing = results["routing"]
        count = routing["mt_fusion"]["examples"]
        lines += ["", f"## Routing a mixed stream of {count} held-out dev examples ({count // len(TASKS)} per task)",
                  "", "| router | routing accuracy | end-task accuracy, routed | end-task accuracy, oracle task |",
                  "|---|---|---|---|"]  # fmt: skip
        for key, label in (("mt_fusion", "the multi-task fusion's router head (trained with the fusion)"),
                           ("adapter_router", f"a router adapter + head among the 4 single adapters "
                                              f"({routing['adapter_router']['router_steps']} steps)")):  # fmt: skip
            r = routing[key]
            lines.append(f"| {label} | {r['routing_accuracy']:.4f} | {r['routed_accuracy']:.4f} | "
                         f"{r['oracle_accuracy']:.4f} |")  # fmt: skip
    TABLE.write_text("\n".join(lines) + "\n")
    print(TABLE.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--adapter-steps", type=int, default=100)
    parser.add_argument("--fusion-steps", type=int, default=60)
    parser.add_argument("--router-steps", type=int, default=40)
    parser.add_argument("--train-examples", type=int, default=500)
    parser.add_argument("--eval-examples", type=int, default=50)
    parser.add_argument("--stream-examples", type=int, default=15, help="held-out rows per task in the stream")
    parser.add_argument("--fusion-lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rerun stages whose results are cached")
    parser.add_argument("--table", action="store_true", help="only write the table from the cached results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs = {
        "adapters": lambda: stage_adapters(args, args.adapter_steps, "adapters"),
        "mtl-more": lambda: stage_adapters(args, args.adapter_steps + args.fusion_steps, "mtl-more"),
        "mt-fusion": lambda: stage_mt_fusion(args), "per-task": lambda: stage_per_task(args),
        "routing": lambda: stage_routing(args),
    }  # fmt: skip
    for stage in [] if args.table else args.stages:
        path = RESULTS / f"{stage}.json"
        if path.is_file() and not args.force:
            print(f"# {stage}: cached in {path.relative_to(ROOT)}")
            continue
        began = time.monotonic()
        result = runs[stage]()
        result["wall_seconds"] = round(time.monotonic() - began, 1)
        path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        print(f"# {stage}: {json.dumps(result)}", flush=True)
    write_table(args)


if __name__ == "__main__":
    main()
