"""Train the bank of source adapters for the transfer study (issue 13), resumably, one CLI run per adapter.

Each adapter is trained with ``adapter-fusion train-adapter`` exactly as a user would, on the bundled
all-MiniLM-L6-v2 and the local data directory. Checkpoints go to ``runs/bank/<name>`` (git-ignored) so an
interrupted run resumes from its last complete checkpoint; the trained adapter goes to
``experiments/adapters/bank/<name>`` (git-ignored) and its metrics to
``experiments/transfer/results/bank/<name>.json``.
A finished adapter (metrics file present) is skipped. ``--ship`` copies finished adapters into the shipped bank
``adapters/bank/<name>`` with a card (see ``adapter_fusion.bank``).

    OMP_NUM_THREADS=1 python experiments/transfer/bank.py --names sst2 ag_news      # one queue, one thread
    python experiments/transfer/bank.py --ship                                      # copy finished ones + cards
    python experiments/transfer/bank.py --list                                      # recipes and status

The recipes are the record: every flag a run used is here, and the card repeats the command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from runner import ROOT, run, shown  # noqa: E402

RESULTS = ROOT / "experiments" / "transfer" / "results" / "bank"
TRAINED = ROOT / "experiments" / "adapters" / "bank"
CHECKPOINTS = ROOT / "runs" / "bank"

COMMON = ["--batch-size", "32", "--adapter-learning-rate", "1e-3", "--seed", "42", "--save-total-limit", "1",
          "--disable-tqdm", "true", "--logging-steps", "100", "--group-by-length", "true",
          # v1's adapters read the feed-forward output itself (trained before the field existed, when that was what
          # pfeiffer did); adapters fused at one point must read one input, so the whole bank keeps that
          "--original-ln-before", "false"]

# name: (task, description of the recipe, flags). Budgets are capped in wall minutes because the 2 CPU cores are
# shared; the card records the steps each run reached.
RECIPES: dict[str, tuple[str, str, list[str]]] = {
    "sst2": ("sst2", "Pfeiffer adapter, reduction factor 16, lr 1e-3, length-grouped batches of 32, max 128 tokens",
             ["--num-train-epochs", "3", "--eval-steps", "1000", "--max-seq-length", "128",
              "--max-train-minutes", "35"]),
    "imdb": ("imdb", "Pfeiffer adapter, reduction factor 16, lr 1e-3, batches of 32, max 192 tokens (reviews "
             "truncated), model selection on 500 of the 2,000 carved validation reviews",
             ["--num-train-epochs", "1", "--eval-steps", "300", "--max-seq-length", "192", "--max-eval-examples",
              "500", "--max-train-minutes", "40"]),
    "mnli_plus": ("mnli_plus", "Pfeiffer adapter, reduction factor 8, lr 1e-3, batches of 32, max 128 tokens, "
                  "MNLI + 46k extra NLI pairs",
                  ["--reduction-factor", "8", "--num-train-epochs", "2", "--eval-steps", "400", "--max-seq-length",
                   "128", "--max-train-minutes", "35"]),
    "qnli_squad": ("qnli_squad", "Pfeiffer adapter, reduction factor 16, lr 1e-3, batches of 32, max 128 tokens, "
                   "40,000 of the SQuAD-derived pairs, model selection on 2,000 of the QNLI dev set",
                   ["--num-train-epochs", "1", "--max-train-examples", "40000", "--eval-steps", "300",
                    "--max-eval-examples", "2000", "--max-seq-length", "128", "--max-train-minutes", "25"]),
    "ag_news": ("ag_news", "Pfeiffer adapter, reduction factor 16, lr 1e-3, batches of 32, max 128 tokens",
                ["--num-train-epochs", "3", "--eval-steps", "250", "--max-seq-length", "128",
                 "--max-train-minutes", "12"]),
    "boolq": ("boolq", "Pfeiffer adapter, reduction factor 16, lr 1e-3, batches of 32, max 256 tokens",
              ["--num-train-epochs", "3", "--eval-steps", "150", "--max-eval-examples", "1500", "--max-seq-length",
               "256", "--max-train-minutes", "20"]),
}


def command(name: str, data_dir: str) -> list[str]:
    task, _, flags = RECIPES[name]
    cmd = ["adapter-fusion", "train-adapter", "--task", task, "--data-dir", data_dir,
           "--output", str(TRAINED / name), "--output-dir", str(CHECKPOINTS / name),
           "--metrics-file", str(RESULTS / f"{name}.json"), *COMMON, *flags]
    if any(path.name.startswith("checkpoint-") for path in (CHECKPOINTS / name).glob("checkpoint-*")):
        cmd += ["--resume-from-checkpoint", "last"]
    return cmd


def train(names: list[str], data_dir: str) -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (RESULTS / f"{name}.json").is_file():
            print(f"# {name}: done already ({RESULTS / f'{name}.json'})", flush=True)
            continue
        status = run(command(name, data_dir), name)
        if status != 0:
            return status
    return 0


def ship(names: list[str], data_dir: str) -> None:
    from adapter_fusion.bank.ship import ship_adapter

    for name in names:
        metrics_file = RESULTS / f"{name}.json"
        if not metrics_file.is_file():
            print(f"# {name}: not trained yet", flush=True)
            continue
        task, recipe, _ = RECIPES[name]
        cmd = command(name, "../shared/data")
        cmd = [part for part in cmd if part != "last" and part != "--resume-from-checkpoint"]
        card = ship_adapter(TRAINED / name, name, task=task, recipe=recipe, command=shown(cmd),
                            metrics=json.loads(metrics_file.read_text()), trained_on="2 shared CPU cores",
                            data_dir=data_dir, project_root=ROOT)
        print(f"# {name}: shipped to {card}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--ship", action="store_true", help="copy finished adapters into adapters/bank with cards")
    parser.add_argument("--list", action="store_true", help="print the recipes and which are done")
    args = parser.parse_args()
    if args.list:
        for name, (task, recipe, _) in RECIPES.items():
            done = "done" if (RESULTS / f"{name}.json").is_file() else "pending"
            print(f"{name:12s} {task:12s} {done:8s} {recipe}")
        return 0
    if args.ship:
        ship(args.names, args.data_dir)
        return 0
    return train(args.names, args.data_dir)


if __name__ == "__main__":
    sys.exit(main())
