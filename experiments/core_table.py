"""Issue 3's results table: one adapter per GLUE task vs full fine-tuning of the same model, same budget.

Runs ``adapter-fusion train-adapter`` (the CLI, exactly as a user would) for every row, sequentially, writing
each run's metrics to ``experiments/results/core/<task>__<mode>.json`` and the adapters to
``experiments/adapters/<task>`` (git-ignored), then writes ``experiments/results/core_table.md``.

    python experiments/core_table.py                 # every row (about two hours on 2 quiet CPU cores)
    python experiments/core_table.py --tasks rte     # one task
    python experiments/core_table.py --table-only    # rebuild the table from the JSON files

Budget per task (identical for the adapter and the full fine-tuning run): ``epochs`` passes over the train split
(batch 32, max 128 tokens), with a wall-time cap that only guards the table's total CPU time (a run that hits
it says so in its step count). The score is that of the best evaluated checkpoint on the task's full dev set.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from runner import ADAPTERS, ROOT, run, shown

RESULTS = ROOT / "experiments" / "results" / "core"
TABLE = ROOT / "experiments" / "results" / "core_table.md"

# task: (epochs, max train examples or None for all, eval_steps or None for once per epoch). The budget is the
# same number of epochs and optimizer steps for both modes; a 25-minute wall-time cap per run only guards the
# table's total CPU time (a run that hits it says so in its step count).
BUDGETS: dict[str, tuple[float, int | None, int | None]] = {
    "sst2": (1, None, 400),
    "rte": (2, None, None),
    "mrpc": (2, None, None),
    "cola": (2, None, None),
    "mnli": (1, None, None),
    "qnli": (1, 4000, None),
    "qqp": (1, 4000, None),
}
WALL_CAP_MINUTES = 25
SST2_WALL_CAP_MINUTES = 28  # the bar: SST-2 >= 0.88 within 30 minutes of CPU training
MODES = {
    "adapter": ["--adapter-learning-rate", "1e-3"],
    "full": ["--full-finetune", "true", "--base-learning-rate", "5e-5"],
}
# Further SST-2 adapter runs for the bar (>= 0.88 within 30 minutes); not part of the adapter-vs-full table.
# variant: (description, extra flags; later flags override the defaults of ``command``)
SST2_VARIANTS: dict[str, tuple[str, list[str]]] = {
    "long": (
        "the default adapter (Pfeiffer, reduction factor 16, 113,040 parameters = 0.50% of the base) and "
        "length-grouped batches (less padding: 3.5 epochs fit in the 30 minutes)",
        ["--group-by-length", "true", "--num-train-epochs", "3.5", "--eval-steps", "500", "--max-train-minutes", "29"],
    ),
    "wide": (
        "a wider adapter (reduction factor 8, 223,776 parameters = 0.985% of the base)",
        ["--reduction-factor", "8", "--num-train-epochs", "1.25"],
    ),
    "houlsby": (
        "Houlsby placement (an adapter after attention and after the feed-forward block, reduction factor 16, "
        "226,080 parameters = 0.995% of the base)",
        ["--placement", "houlsby", "--num-train-epochs", "1.3"],
    ),
}


def command(task: str, mode: str, data_dir: str, seed: int) -> list[str]:
    if mode in SST2_VARIANTS:
        cmd = command(task, "adapter", data_dir, seed)
        cmd[cmd.index("--output") + 1] = str(ADAPTERS / f"{task}-{mode}")
        cmd[cmd.index("--output-dir") + 1] = f"/tmp/adapter-fusion-runs/{task}-{mode}"
        cmd[cmd.index("--metrics-file") + 1] = str(RESULTS / f"{task}__{mode}.json")
        extra = SST2_VARIANTS[mode][1]
        for flag in extra[::2]:  # the variant's flags replace the defaults' (every flag here takes one value)
            if flag in cmd:
                at = cmd.index(flag)
                del cmd[at : at + 2]
        return cmd + extra
    epochs, max_examples, eval_steps = BUDGETS[task]
    cap = SST2_WALL_CAP_MINUTES if task == "sst2" else WALL_CAP_MINUTES
    out = RESULTS / f"{task}__{mode}.json"
    cmd = [
        "adapter-fusion", "train-adapter", "--task", task, "--data-dir", data_dir,
        "--output", str(ADAPTERS / task if mode == "adapter" else ADAPTERS / f".{task}-full"), "--overwrite",
        "--output-dir", f"/tmp/adapter-fusion-runs/{task}-{mode}",
        "--num-train-epochs", str(epochs), "--max-train-minutes", str(cap),
        "--batch-size", "32", "--max-seq-length", "128", "--seed", str(seed), "--save-total-limit", "1",
        "--disable-tqdm", "true", "--logging-steps", "50", "--metrics-file", str(out), *MODES[mode],
        # random batches: what every row ran with on transformers 5 (its --group-by-length default was silently
        # ignored there until fixed), kept so that both columns and all rows share one recipe
        "--group-by-length", "false",
    ]  # fmt: skip
    if eval_steps:
        cmd += ["--eval-steps", str(eval_steps)]
    if max_examples:
        cmd += ["--max-train-examples", str(max_examples)]
    return cmd


def main_metric_value(record: dict) -> tuple[str, float]:
    for key in ("matthews_correlation", "f1", "accuracy", "pearson"):
        if key in record:
            return key, record[key]
    raise KeyError(f"no known metric in {sorted(record)}")


def table_text() -> str:
    """The table's markdown, from the result files alone (what ``--table-only`` writes)."""
    rows = [
        "| task | train examples | metric | adapter | full fine-tuning | adapter steps / wall s "
        "| full steps / wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in BUDGETS:
        runs = {}
        for mode in MODES:
            file = RESULTS / f"{task}__{mode}.json"
            if file.is_file():
                runs[mode] = json.loads(file.read_text())
        if not runs:
            continue
        any_run = next(iter(runs.values()))
        metric, _ = main_metric_value(any_run)
        cells = [f"{runs[m][metric]:.4f}" if m in runs else "–" for m in MODES]
        budget = [f"{runs[m]['global_step']} / {runs[m]['train_seconds']:.0f}" if m in runs else "–" for m in MODES]
        extra = ""
        if "accuracy" in any_run and metric != "accuracy":
            extra = " (acc " + " / ".join(f"{runs[m]['accuracy']:.4f}" if m in runs else "–" for m in MODES) + ")"
        rows.append(
            f"| {task} | {any_run['train_examples']} | {metric}{extra} | {cells[0]} | {cells[1]} | "
            f"{budget[0]} | {budget[1]} |"
        )
    for variant, (description, _) in SST2_VARIANTS.items():
        file = RESULTS / f"sst2__{variant}.json"
        if not file.is_file():
            continue
        record = json.loads(file.read_text())
        history = [e for e in record.get("eval_history", []) if "accuracy" in e]
        if len(history) > 1 and history[-1]["step"] == history[-2]["step"]:
            history = history[:-1]  # the re-evaluation of the best checkpoint after training (logged until 890846a)
        trajectory = (
            f" The best of {len(history)} evaluations during training (every "
            f"{history[0]['step']} steps; checkpoint selection on the dev set, as in every row); the last "
            f"checkpoint scored {history[-1]['accuracy']:.4f}. Dev accuracy by step: "
            + ", ".join(f"{e['step']}: {e['accuracy']:.4f}" for e in history)
            + "."
            if history
            else ""
        )
        rows += [
            "",
            f"SST-2 with {description}, {record['epoch']:.2f} epochs: dev accuracy **{record['accuracy']:.4f}** after "
            f"{record['global_step']} steps and {record['train_seconds'] / 60:.1f} minutes of training on 2 CPU cores "
            f"(`{shown(command('sst2', variant, '../shared/data', 42))}`).{trajectory}",
        ]
    commands = "\n".join("    " + shown(command(t, m, "../shared/data", 42)) for t in BUDGETS for m in MODES)
    return (
        "# Core results: one adapter per task vs full fine-tuning (all-MiniLM-L6-v2, 2 CPU cores)\n\n"
        "Dev-set scores of the best evaluated checkpoint. Same budget for both columns of a row: the same number "
        "of epochs and optimizer steps (see `experiments/core_table.py`), batch 32, 128 tokens, "
        "seed 42. Adapter: Pfeiffer placement, reduction factor 16 (113,040 parameters = 0.50% of the base), "
        "lr 1e-3; full fine-tuning: lr 5e-5. MNLI/QNLI/QQP train on the 9k subsets of `lmbff_pcp/glue_pretrain`; "
        "QNLI is scored on the official GLUE dev set, MNLI/QQP on the 1k lmbff dev subsets. Wall seconds were "
        "taken while other jobs shared the 2 cores: compare speed with `benchmarks/bench_adapter.py`, not here.\n\n"
        + "\n".join(rows)
        + "\n\nMade by `python experiments/core_table.py` (from the project root, venv active), which ran:\n\n"
        + commands
        + "\n"
    )


def write_table() -> Path:
    TABLE.write_text(table_text())
    return TABLE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=[*MODES, *SST2_VARIANTS])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    if not args.table_only:
        RESULTS.mkdir(parents=True, exist_ok=True)
        # Every adapter first (later work fuses them), then the full fine-tuning baselines.
        order = [(t, m) for m in args.modes for t in args.tasks]
        for task, mode in order:
            cmd = command(task, mode, args.data_dir, args.seed)
            status = run(cmd, f"{task} {mode}")
            if status != 0:
                return status
            write_table()
    print(write_table().read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
