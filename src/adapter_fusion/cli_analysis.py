"""``adapter-fusion compare`` and ``adapter-fusion analyze``: thin commands over ``FusionEvaluator`` and
``analyze_fusion`` (registered by ``cli.build_parser``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from adapter_fusion.cli_checks import check_writable_directory, check_writable_file


def _compare(args: argparse.Namespace) -> int:
    from adapter_fusion.evaluation.fusion_evaluator import FusionEvaluator, parse_system
    from adapter_fusion.io import atomic_write_text

    if not (args.adapter or args.fusion or args.baseline):
        raise ValueError("give at least one --adapter, --fusion or --baseline")
    if args.output:
        check_writable_file(args.output, "--output")
    evaluator = FusionEvaluator(
        args.task, data_dir=args.data_dir, split=args.split, max_examples=args.max_examples, model=args.model
    )
    systems = {kind: [parse_system(text) for text in getattr(args, kind) or ()] for kind in ("adapter", "fusion")}
    baselines = [parse_system(text) for text in args.baseline or ()]
    rows = evaluator.compare(adapters=systems["adapter"], fusions=systems["fusion"], baselines=baselines)
    table = evaluator.to_markdown(rows)
    print(table)
    if args.output:
        atomic_write_text(Path(args.output), table + "\n")
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from adapter_fusion.evaluation.analysis import analyze_fusion, describe

    if args.output:
        check_writable_directory(args.output, "--output")
    analysis = analyze_fusion(
        args.fusion_dir, task=args.task, split=args.split, output=args.output, data_dir=args.data_dir,
        max_examples=args.max_examples, examples=args.examples, model=args.model,
    )  # fmt: skip
    print(json.dumps(describe(analysis), indent=2))
    return 0


def add_analysis_commands(sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]) -> None:
    compare = sub.add_parser("compare", help="one table for a target task: single-task adapter, fusions and baselines")
    common(compare)
    compare.add_argument("--task", required=True, help="target task name or alias (see list-tasks)")
    compare.add_argument("--adapter", nargs="+", help="single-task adapter directory (DIR or NAME=DIR)")
    compare.add_argument("--fusion", nargs="+", help="fusion directories (DIR or NAME=DIR)")
    compare.add_argument(
        "--baseline", nargs="+",
        help="baseline directories (DIR or NAME=DIR: head-only, full fine-tuning, ...) or 'zero-shot' (the bare "
        "base model, for task types whose head needs no training)",
    )  # fmt: skip
    compare.add_argument("--split", default="validation", help="train, validation or test (default: validation)")
    compare.add_argument("--max-examples", type=int, help="score a fixed random subset of this size")
    compare.add_argument("--output", help="also write the markdown table to this file")
    compare.set_defaults(func=_compare)

    analyze = sub.add_parser("analyze", help="heatmaps and a report of a fusion's weights on a task split")
    common(analyze)
    analyze.add_argument("fusion_dir", help="fusion directory (train-fusion --output)")
    analyze.add_argument("--task", help="task (default: the one the fusion was trained for)")
    analyze.add_argument("--split", default="validation", help="train, validation or test (default: validation)")
    analyze.add_argument("--max-examples", type=int, help="analyse a fixed random subset of this size")
    analyze.add_argument("--examples", type=int, default=3, help="per-example views to draw (default: 3)")
    analyze.add_argument("--output", help="directory for the PNGs and report.md (default: FUSION_DIR.analysis)")
    analyze.set_defaults(func=_analyze)
