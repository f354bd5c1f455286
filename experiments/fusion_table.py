"""Issue 4's results table: fusions of the six GLUE adapters for RTE and MRPC, every method, 3 seeds,
against the single RTE / MRPC adapters (the paper reports +5.8 on RTE and +5.1 on MRPC for BERT-base).

Needs the adapters of ``experiments/core_table.py --modes adapter`` in ``experiments/adapters/`` (sst2, mnli,
qnli, qqp, mrpc, rte). Runs ``adapter-fusion train-fusion`` for every row, sequentially, writing metrics to
``experiments/results/fusion/<target>__<method>__seed<k>.json`` and the table to
``experiments/results/fusion_table.md``.

    python experiments/fusion_table.py                       # everything (18 fusion runs)
    python experiments/fusion_table.py --targets rte --methods attention --seeds 1
    python experiments/fusion_table.py --table-only
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from runner import ADAPTERS, ROOT, run, shown

RESULTS = ROOT / "experiments" / "results" / "fusion"
CORE = ROOT / "experiments" / "results" / "core"
SOURCE_TASKS = ("sst2", "mnli", "qnli", "qqp", "mrpc", "rte")
TARGETS = {"rte": 2, "mrpc": 2}  # target: epochs (the single adapters' budget)
METHODS = ("attention", "weighted", "gating")
SEEDS = (1, 2, 3)
WALL_CAP_MINUTES = 25
TABLE = ROOT / "experiments" / "results" / "fusion_table.md"


def command(target: str, method: str, seed: int, data_dir: str) -> list[str]:
    return [
        "adapter-fusion", "train-fusion", "--task", target, "--method", method, "--strategy", "sequential",
        "--adapters", *[str(ADAPTERS / task) for task in SOURCE_TASKS], "--data-dir", data_dir,
        "--output", f"/tmp/adapter-fusion-fusions/{target}-{method}-seed{seed}", "--overwrite",
        "--output-dir", f"/tmp/adapter-fusion-runs/fusion-{target}-{method}-seed{seed}",
        "--num-train-epochs", str(TARGETS[target]), "--max-train-minutes", str(WALL_CAP_MINUTES),
        "--batch-size", "32", "--max-seq-length", "128", "--seed", str(seed), "--save-total-limit", "1",
        "--fusion-learning-rate", "1e-3", "--adapter-learning-rate", "1e-3", "--disable-tqdm", "true",
        # random batches: the recipe every row of this table ran with (before the transformers-5 fix, the
        # default --group-by-length true was silently ignored there), kept so that all rows share one recipe
        "--group-by-length", "false",
        "--metrics-file", str(RESULTS / f"{target}__{method}__seed{seed}.json"),
    ]  # fmt: skip


def table_text() -> str:
    """The table's markdown, from the result files alone (what ``--table-only`` writes)."""
    rows = ["| target | model | metric | dev score (mean ± std over seeds) | per seed | steps per seed |"]
    rows.append("|---|---|---|---|---|---|")
    notes = []
    for target, epochs in TARGETS.items():
        metric = "f1" if target == "mrpc" else "accuracy"
        single = CORE / f"{target}__adapter.json"
        if single.is_file():
            record = json.loads(single.read_text())
            rows.append(
                f"| {target} | single {target} adapter | {metric} | {record[metric]:.4f} | seed 42 | "
                f"{record['global_step']} |"
            )
        for method in METHODS:
            files = sorted(RESULTS.glob(f"{target}__{method}__seed*.json"))
            records = [json.loads(p.read_text()) for p in files]
            if not records:
                continue
            scores = [r[metric] for r in records]
            spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
            per_seed = ", ".join(f"{r['seed']}: {r[metric]:.4f}{'*' if 'note' in r else ''}" for r in records)
            notes += [f"\\* {target} {method} seed {r['seed']}: {r['note']}." for r in records if "note" in r]
            short = [r for r in records if r["epoch"] < epochs - 1e-6]  # stopped before its planned epochs
            steps = ", ".join(f"{r['seed']}: {r['global_step']}{'†' if r in short else ''}" for r in records)
            notes += [
                f"† {target} {method} seed {r['seed']}: stopped by the {WALL_CAP_MINUTES}-minute time cap after "
                f"{r['train_seconds']:.0f} s of training, at epoch {r['epoch']:.2f} of {epochs}."
                for r in short
            ]
            rows.append(
                f"| {target} | {method} fusion of {len(SOURCE_TASKS)} adapters | {metric} | "
                f"{statistics.mean(scores):.4f} ± {spread:.4f} | {per_seed} | {steps} |"
            )
    commands = "\n".join(
        "    " + shown(command(t, m, s, "../shared/data"))
        for t in TARGETS for m in METHODS for s in SEEDS
    )  # fmt: skip
    return (
        "# Fusion results: six GLUE adapters fused for RTE and MRPC (all-MiniLM-L6-v2, 2 CPU cores)\n\n"
        "Sequential training (adapters frozen), fusion and head lr 1e-3, batch 32, 128 tokens, "
        + ", ".join(f"{target} {epochs} epochs" for target, epochs in TARGETS.items())
        + " (the single adapters' budget); for scale, always predicting the majority class scores RTE accuracy "
        "0.5271 and MRPC F1 0.8122; "
        "the head starts from the target adapter's head. Adapters: `experiments/core_table.py`.\n\n"
        + "\n".join(rows + ([""] + notes if notes else []))
        + "\n\nMade by `python experiments/fusion_table.py`, which ran:\n\n"
        + commands
        + "\n"
    )


def write_table() -> Path:
    TABLE.write_text(table_text())
    return TABLE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--rerun", action="store_true", help="run rows whose metrics file exists again")
    args = parser.parse_args()
    if not args.table_only:
        missing = [task for task in SOURCE_TASKS if not (ADAPTERS / task / "adapter_config.json").is_file()]
        if missing:
            print(f"missing adapters {missing}: run experiments/core_table.py --modes adapter first", file=sys.stderr)
            return 2
        RESULTS.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:  # seed-major: a partial run still covers every method
            for target in args.targets:
                for method in args.methods:
                    cmd = command(target, method, seed, args.data_dir)
                    if (RESULTS / f"{target}__{method}__seed{seed}.json").is_file() and not args.rerun:
                        continue
                    status = run(cmd, f"{target} {method} seed {seed}")
                    if status != 0:
                        return status
                    write_table()
    print(write_table().read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
