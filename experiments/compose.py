"""Small real-data experiments for sparse, hierarchical and continual fusion (issue 16), on the default MiniLM.

    python experiments/compose.py sources   --tasks sst2 mr cr mpqa subj trec mnli qnli   # tiny source adapters
    python experiments/compose.py sparse    --targets cr mrpc      # sparse k=2 vs dense gating vs attention, N=8
    python experiments/compose.py hierarchy --target cr            # flat attention vs sentiment/NLI groups
    python experiments/compose.py continual --tasks sst2 trec subj mnli qnli   # extend_fusion vs sequential FT

Every run is single-threaded with tiny budgets (``--steps``, ``--max-train-examples``, ``--max-eval-examples``,
``--max-seq-length``); adapters go to ``experiments/adapters/compose`` (git-ignored, reused when present) and each
experiment writes ``experiments/results/compose_<name>.md`` with its command, budgets and scores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner import ADAPTERS, ROOT  # noqa: E402

from adapter_fusion.fusion import FusionConfig, FusionNode, HierarchyConfig  # noqa: E402
from adapter_fusion.models import AdapterModel, load_tokenizer  # noqa: E402
from adapter_fusion.models.fusion_model import FusionModel  # noqa: E402
from adapter_fusion.tasks import get_task, load_task_split  # noqa: E402
from adapter_fusion.training.adapter_trainer import AdapterTrainer  # noqa: E402
from adapter_fusion.training.config import ModelConfig, TrainingConfig  # noqa: E402
from adapter_fusion.training.multi_task_trainer import MultiTaskTrainer  # noqa: E402
from adapter_fusion.training.task_trainer import TaskTrainer, evaluate_model  # noqa: E402

OUT = ADAPTERS / "compose"
RESULTS = ROOT / "experiments" / "results"
SENTIMENT, NLI = ("sst2", "mr", "cr", "mpqa"), ("mnli", "qnli", "rte", "snli")


class ModelTrainer(TaskTrainer):
    """The one training path for a model built here (a fusion, a hierarchy, an extended fusion, a full model)."""

    def __init__(self, task: str, model: AdapterModel, args: argparse.Namespace, *, add_head: bool = True) -> None:
        super().__init__(task, model_config(args), training_config(args, task), args.data_dir)
        self.model = model
        self.tokenizer = load_tokenizer(model.name_or_path)
        if add_head and task not in model.heads:
            self.add_task_head(task)


def model_config(args: argparse.Namespace) -> ModelConfig:
    return ModelConfig(max_seq_length=args.max_seq_length)


def training_config(args: argparse.Namespace, name: str, **overrides: Any) -> TrainingConfig:
    values: dict[str, Any] = dict(
        output_dir=str(OUT / "runs" / name), max_steps=args.steps, batch_size=args.batch_size,
        max_train_examples=args.max_train_examples, max_eval_examples=args.max_eval_examples,
        fusion_learning_rate=args.fusion_learning_rate, head_learning_rate=args.head_learning_rate,
        load_best_model_at_end=False, save_total_limit=1, disable_tqdm=True, logging_steps=max(1, args.steps // 4),
        seed=args.seed,
    )  # fmt: skip
    return TrainingConfig(**{**values, **overrides})


def main_score(task: str, metrics: dict[str, Any]) -> float:
    return float(metrics[get_task(task).main_metric])


def source(args: argparse.Namespace, task: str) -> Path:
    """The tiny adapter of ``task`` (trained here when missing)."""
    directory = OUT / "sources" / task
    if not (directory / "adapter_config.json").is_file():
        trainer = AdapterTrainer(task, model_config(args), None, training_config(args, f"src-{task}"), args.data_dir)
        trainer.train()
        trainer.save_adapter(directory)
    return directory


def score(trainer: TaskTrainer, task: str, head: str | None = None) -> float:
    config = trainer.training_config
    split = load_task_split(
        task, "validation", trainer.data_dir, max_examples=config.max_eval_examples, seed=config.seed
    )
    metrics = evaluate_model(trainer.model, trainer.tokenizer, task, split,
                             trainer.model_config.max_seq_length, trainer.training_config.eval_batch_size,
                             head=head or task)  # fmt: skip
    return main_score(task, metrics)


def fusion_model(args: argparse.Namespace, paths: list[str], config: FusionConfig) -> FusionModel:
    """A fusion of ``paths`` built right after seeding: its initial fusion weights do not depend on what ran before
    in the process (which adapters had to be trained first, which variants came before it)."""
    transformers.set_seed(args.seed)
    return FusionModel.from_adapters(paths, config)


def train_fusion(args: argparse.Namespace, task: str, model: FusionModel) -> float:
    trainer = ModelTrainer(task, model, args)
    model.train_fusion(task)
    return main_score(task, trainer.train())


# -------------------------------------------------------------------------------------------------- experiments
def sources(args: argparse.Namespace) -> list[str]:
    rows = ["| task | adapter dev score |", "|---|---|"]
    for task in args.tasks:
        directory = source(args, task)
        info = json.loads((directory / "adapter_config.json").read_text())
        metrics = info.get("metadata", {}).get("metrics", {})
        rows.append(f"| {task} | {metrics.get(get_task(task).main_metric, 'n/a')} |")
    return rows


def sparse(args: argparse.Namespace) -> list[str]:
    paths = [str(source(args, task)) for task in args.tasks]
    variants = {
        "sparse k=2 (token routing)": FusionConfig(fusion_method="sparse", top_k=2),
        "dense softmax gating (= sparse k=N)": FusionConfig(fusion_method="gating", gate_activation="softmax"),
        "attention (AdapterFusion)": FusionConfig(fusion_method="attention"),
    }
    rows = ["| target | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for target in args.targets:
        scores = []
        for config in variants.values():
            started = time.monotonic()
            value = train_fusion(args, target, fusion_model(args, paths, config))
            scores.append(f"{value:.4f} ({time.monotonic() - started:.0f} s)")
        rows.append(f"| {target} | " + " | ".join(scores) + " |")
    return rows


def hierarchy(args: argparse.Namespace) -> list[str]:
    groups = {"sentiment": [t for t in args.tasks if t in SENTIMENT], "nli": [t for t in args.tasks if t in NLI]}
    names = [t for group in groups.values() for t in group]
    paths = [str(source(args, task)) for task in names]
    flat = fusion_model(args, paths, FusionConfig(fusion_method="attention"))
    tree = fusion_model(args, paths, FusionConfig(fusion_method="weighted"))  # loads the adapters
    tree.remove_fusion()
    nodes = tuple(FusionNode(name, tuple(group), FusionConfig(fusion_method="attention"))
                  for name, group in groups.items() if group)  # fmt: skip
    tree.add_hierarchy(HierarchyConfig((*nodes, FusionNode("top", tuple(n.name for n in nodes),
                                                           FusionConfig(fusion_method="attention")))))  # fmt: skip
    flat_score = train_fusion(args, args.target, flat)
    tree_score = train_fusion(args, args.target, tree)
    return [
        f"groups: {groups}",
        "",
        "| target | flat attention over all | attention within groups, attention over groups |",
        "|---|---|---|",
        f"| {args.target} | {flat_score:.4f} | {tree_score:.4f} |",
    ]


def continual(args: argparse.Namespace) -> list[str]:
    tasks = list(args.tasks)
    table: dict[str, dict[str, list[str]]] = {"extend_fusion": {}, "sequential full fine-tuning": {}}
    # ours: fusion over the first task's adapter, then one extension per task
    model = fusion_model(args, [str(source(args, tasks[0]))], FusionConfig(fusion_method="attention"))
    for head in list(model.heads):
        del model.heads[head]
    for step, task in enumerate(tasks):
        if step == 0:
            trainer = ModelTrainer(task, model, args)
            model.train_fusion(task)
        else:
            model.extend_fusion(str(source(args, task)), name=f"{task}_adapter", task=task)
            trainer = ModelTrainer(task, model, args, add_head=task not in model.heads)
            model.train_extension(task)
        trainer.train()
        table["extend_fusion"][task] = [f"{score(trainer, t):.4f}" for t in tasks[: step + 1]]
    # sequential full fine-tuning: one encoder, a head per task, trained task after task
    full = AdapterModel.from_pretrained()
    for step, task in enumerate(tasks):
        trainer = ModelTrainer(task, full, args)
        full.freeze_base(False)
        for name, head in full.heads.items():
            head.requires_grad_(name == task)
        full.active_head = task
        trainer.training_config = training_config(args, f"ft-{task}", full_finetune=True)
        trainer.train()
        table["sequential full fine-tuning"][task] = [f"{score(trainer, t):.4f}" for t in tasks[: step + 1]]
    # multi-task full fine-tuning (the upper bound): every task at once, the same total number of steps
    joint = MultiTaskTrainer(tasks, model_config(args), None,
                             training_config(args, "mtl", full_finetune=True, max_steps=args.steps * len(tasks)),
                             args.data_dir)  # fmt: skip
    joint.train()
    scores = joint.evaluate()
    table["multi-task full fine-tuning (all tasks at once)"] = {
        "all": [f"{main_score(t, {k.removeprefix(t + '_'): v for k, v in scores.items()}):.4f}" for t in tasks]
    }
    rows = []
    for method, steps in table.items():
        rows += [f"**{method}** (row: after training on that task; columns: every task so far)", "",
                 "| after | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]  # fmt: skip
        rows += [f"| {task} | " + " | ".join(values + [""] * (len(tasks) - len(values))) + " |"
                 for task, values in steps.items()]  # fmt: skip
        rows.append("")
    return rows


EXPERIMENTS = {"sources": sources, "sparse": sparse, "hierarchy": hierarchy, "continual": continual}
DEFAULT_TASKS = {
    "sources": ["sst2", "mr", "cr", "mpqa", "subj", "trec", "mnli", "qnli"],
    "sparse": ["sst2", "mr", "cr", "mpqa", "subj", "trec", "mnli", "qnli"],
    "hierarchy": ["sst2", "mr", "cr", "mnli", "qnli", "rte"],
    "continual": ["sst2", "trec", "subj", "mnli", "qnli"],
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument("--tasks", nargs="+", help="source adapters / task sequence (default: per experiment)")
    parser.add_argument("--targets", nargs="+", default=["cr", "mrpc"], help="sparse: target tasks")
    parser.add_argument("--target", default="cr", help="hierarchy: target task")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per training run")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--max-train-examples", type=int, default=2000)
    parser.add_argument("--max-eval-examples", type=int, default=200)
    parser.add_argument("--fusion-learning-rate", type=float, default=1e-3)
    parser.add_argument("--head-learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data-dir", help="default: $ADAPTER_FUSION_DATA_DIR, ./data or ../shared/data")
    args = parser.parse_args(argv)
    args.tasks = args.tasks or DEFAULT_TASKS[args.experiment]
    torch.set_num_threads(1)
    started = time.monotonic()
    rows = EXPERIMENTS[args.experiment](args)
    command = "python experiments/compose.py " + " ".join(argv if argv is not None else sys.argv[1:])
    budget = (
        f"{args.steps} steps x batch {args.batch_size}, <= {args.max_train_examples} training and "
        f"{args.max_eval_examples} dev examples per task, sequences of {args.max_seq_length} tokens, 1 thread"
    )
    text = "\n".join([f"# compose: {args.experiment}", "", f"Command: `{command}`", "", f"Budget: {budget}; "
                      f"wall time {time.monotonic() - started:.0f} s.", "", *rows, ""])  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"compose_{args.experiment}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
