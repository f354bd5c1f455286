"""``adapter-fusion`` command line: thin wrappers over the library's functions.

Each subcommand takes an optional ``--config`` file (YAML/JSON) and ``--field value`` overrides whose help comes
from the config docstrings.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from adapter_fusion import cli_commands as commands
from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.bank import bank_versions
from adapter_fusion.cli_args import add_config_arguments
from adapter_fusion.cli_checks import (
    EXIT_INTERNAL_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    OneLineParser,
    interrupted_message,
    one_line,
    subcommand_parser,
    unknown_options_message,
    user_error_types,
)
from adapter_fusion.training.config import ModelConfig, TrainingConfig
from adapter_fusion.training.distributed import process_rank


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        help="YAML or JSON file with config values (flat, or in sections "
        "'bottleneck_adapter', 'training', 'model'); flags override it",
    )
    parser.add_argument(
        "--data-dir",
        help="local data directory laid out as shared/data "
        "(default: $ADAPTER_FUSION_DATA_DIR, ./data or ../shared/data; else the Hugging Face Hub)",
    )
    parser.add_argument("--model", help="base model: Hub id or local path (default: the bundled all-MiniLM-L6-v2)")


def _output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace what --output names if it is a saved artefact of the same kind (kept until the new one is "
        "complete); without it an existing output is refused",
    )


def _load_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-modified",
        action="store_true",
        help="load a saved adapter or fusion even if its files differ from its manifest (refused by default)",
    )
    parser.add_argument(
        "--allow-other-base",
        action="store_true",
        help="use a saved adapter or fusion on another base model than it was trained on (refused by default)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="adapter-fusion", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train-adapter", help="train one task adapter (+ head) on a frozen base model")
    _common(train)
    train.add_argument("--task", help="task name or alias (see list-tasks)")
    train.add_argument("--output", help="adapter directory to write (default: adapters/TASK)")
    train.add_argument("--metrics-file", help="also write the final metrics as JSON here")
    _output_flags(train)
    train.add_argument(
        "--adapter-kind",
        help=", ".join(
            f"{name} (the --{prefix}* options)" if prefix else f"{name} (default; --placement, ...)"
            for name, (_, prefix) in commands.ADAPTER_KIND_OPTIONS.items()
        ),
    )
    for cls, skip in ((AdapterConfig, ()), (TrainingConfig, ()), (ModelConfig, ("model_name_or_path",))):
        add_config_arguments(train, cls, skip)
    for cls, prefix in commands.ADAPTER_KIND_OPTIONS.values():
        if prefix:  # the default kind's options were added above, unprefixed
            add_config_arguments(train, cls, prefix=prefix)
    train.set_defaults(func=commands.train_adapter)

    fusion = sub.add_parser("train-fusion", help="learn a fusion of saved adapters for a target task")
    _common(fusion)
    fusion.add_argument("--task", help="target task name or alias (see list-tasks)")
    fusion.add_argument("--adapters", nargs="+", help="directories of the saved adapters to fuse")
    from adapter_fusion.fusion import FUSION_METHODS, FusionConfig

    methods = "; ".join(f"{name}: {method.description}" for name, method in FUSION_METHODS.items())
    fusion.add_argument("--method", help=f"fusion method (default: attention). {methods}")
    fusion.add_argument(
        "--strategy",
        choices=("sequential", "joint"),
        help="sequential: adapters frozen (the paper); joint: adapters train too, at adapter-learning-rate",
    )
    fusion.add_argument(
        "--head-from",
        help="start the target head from this saved adapter's head (another task's; a directory or bank:NAME), "
        "its labels matched by name or by --head-label-map",
    )
    fusion.add_argument(
        "--head-label-map",
        nargs="+",
        metavar="TARGET=SOURCE[+SOURCE]",
        help="with --head-from: the source labels each target label starts from (rows averaged), e.g. "
        "not_entailment=neutral+contradiction entailment=entailment",
    )
    fusion.add_argument("--output", help="fusion directory to write (default: fusions/TASK-METHOD)")
    fusion.add_argument("--metrics-file", help="also write the final metrics as JSON here")
    _output_flags(fusion)
    _load_flags(fusion)
    for cls, skip in (
        (FusionConfig, ("adapter_paths", "fusion_method", "freeze_adapters_during_fusion")),
        (TrainingConfig, ()),
        (ModelConfig, ("model_name_or_path",)),
    ):
        add_config_arguments(fusion, cls, skip)
    fusion.set_defaults(func=commands.train_fusion)

    multitask = sub.add_parser("train-multitask", help="train adapters + heads on several tasks at once")
    _common(multitask)
    multitask.add_argument("--tasks", nargs="+", help="task names or aliases (see list-tasks)")
    multitask.add_argument("--output", help="directory to write one adapter directory per task into")
    multitask.add_argument("--metrics-file", help="also write the final metrics as JSON here")
    _output_flags(multitask)
    from adapter_fusion.training.multi_task_trainer import MultiTaskConfig

    for cls, skip in (
        (MultiTaskConfig, ()),
        (AdapterConfig, ()),
        (TrainingConfig, ("group_by_length",)),  # batches are built per task by the sampler
        (ModelConfig, ("model_name_or_path",)),
    ):
        add_config_arguments(multitask, cls, skip)
    multitask.set_defaults(func=commands.train_multitask)

    extend = sub.add_parser("extend-fusion", help="add a new task's adapter to a trained fusion (continual)")
    _common(extend)
    extend.add_argument("--fusion", help="saved fusion directory to extend")
    extend.add_argument("--adapter", help="saved adapter directory of the new task (same base model)")
    extend.add_argument("--task", help="the new task (see list-tasks)")
    extend.add_argument("--output", help="fusion directory to write (default: FUSION+TASK)")
    for cls, skip in ((TrainingConfig, ()), (ModelConfig, ("model_name_or_path",))):
        add_config_arguments(extend, cls, skip)
    extend.set_defaults(func=commands.extend_fusion, metrics_file=None, overwrite=False)  # what check_outputs reads

    evaluate = sub.add_parser("evaluate", help="score a saved adapter or fusion on a task split")
    _common(evaluate)
    evaluate.add_argument("--adapter", help="adapter or fusion directory")
    evaluate.add_argument(
        "--base", action="store_true", help="score the bare base model zero-shot instead (generation tasks)"
    )
    evaluate.add_argument("--metrics-file", help="also write the metrics as JSON here")
    evaluate.add_argument("--task", help="task (default: the one the adapter was trained for)")
    evaluate.add_argument(
        "--head", help="score with the saved head of this task (transfer to --task; same head type and labels)"
    )
    evaluate.add_argument("--split", default="validation", help="train, validation or test (default: validation)")
    evaluate.add_argument("--max-examples", type=int, help="evaluate on a fixed random subset of this size")
    _load_flags(evaluate)
    evaluate.set_defaults(func=commands.evaluate)

    predict = sub.add_parser("predict", help="predict labels for texts with a saved adapter")
    predict.add_argument("--adapter", required=True, help="adapter (or fusion) directory")
    predict.add_argument("--model", help="base model (default: the one recorded in the adapter)")
    predict.add_argument("--task", help="task head to use (default: the only one)")
    _load_flags(predict)
    predict.add_argument(
        "--input",
        help="file with one input per line: a text, 'first<TAB>second' for a sentence-pair task, or a JSON object "
        'for QA / multiple choice ({"text": ..., "text_pair": ...} for a pair)',
    )
    predict.add_argument(
        "--pair",
        action="append",
        metavar="SECOND",
        help="second sentence of a sentence-pair task (e.g. rte, mrpc): give one --pair per text, in order",
    )
    predict.add_argument(
        "texts",
        nargs="*",
        help='inputs: texts, or JSON objects such as \'{"question": "...", "context": "..."}\' (QA) and '
        '\'{"context": "...", "options": ["...", "..."]}\' (multiple choice)',
    )
    predict.set_defaults(func=commands.predict)

    importer = sub.add_parser("import", help="convert an AdapterHub adapter or AdapterFusion directory to ours")
    importer.add_argument("--format", required=True, choices=("adapterhub",), help="input format")
    importer.add_argument("--model", help="base model (default: the model_name the AdapterHub files recorded)")
    importer.add_argument(
        "--adapters", nargs="+", help="a fusion's adapter directories (default: its siblings named after them)"
    )
    importer.add_argument("directory", help="AdapterHub adapter or AdapterFusion directory")
    importer.add_argument("output", help="adapter or fusion directory to write (ours)")
    importer.set_defaults(func=commands.import_artefact)

    from adapter_fusion.cli_analysis import add_analysis_commands

    add_analysis_commands(sub, _common)

    export = sub.add_parser("export", help="export a saved adapter or fusion directory to another format")
    export.add_argument("--format", required=True, choices=sorted(commands.EXPORT_FORMATS), help="what to write")
    export.add_argument("directory", help="adapter or fusion directory")
    export.add_argument("output", help="file (onnx: a .onnx file) or directory (adapterhub) to write")
    export.add_argument("--model", help="base model (default: the one recorded in the directory)")
    onnx = export.add_argument_group("onnx", "ONNX (dynamic batch and sequence axes; checked against PyTorch)")
    onnx.add_argument("--head", help="the head whose logits to export (default: the only or active one)")
    onnx.add_argument("--opset", type=int, default=18, help="ONNX opset version (default: 18)")
    export.set_defaults(func=commands.export)

    push = sub.add_parser("push-to-hub", help="upload a saved adapter or fusion (or bank:NAME) to the Hub")
    push.add_argument("directory", help="adapter or fusion directory, or bank:NAME")
    push.add_argument("repo_id", help="Hub model repository, org/name (created when missing; token: HF_TOKEN)")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.set_defaults(func=commands.push_to_hub)

    list_tasks = sub.add_parser("list-tasks", help="list the registered tasks")
    list_tasks.set_defaults(func=commands.list_tasks)
    list_bank = sub.add_parser("list-bank", help="list the shipped source adapters (use them as bank:NAME)")
    list_bank.add_argument("--bank-version", choices=bank_versions(),
                           help="an earlier shipped version (its adapters load as bank:NAME@VERSION)")
    list_bank.set_defaults(func=commands.list_bank)
    for subparser in sub.choices.values():  # also accepted after the subcommand
        subparser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand. Failures end in one line on stderr: exit 2 for bad input, 1 for internal errors
    (``--debug`` adds the traceback), 130 for Ctrl-C (after the trainer saved a checkpoint if it could)."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = subcommand_parser(parser, args.command)
        command.error(unknown_options_message(command, unknown))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    prefix = f"adapter-fusion {args.command}"
    debug = getattr(args, "debug", False)
    try:
        # under torchrun every rank runs the command: rank 0 alone prints its results (errors: every rank)
        with contextlib.ExitStack() as stack:
            if process_rank():
                stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
            return int(args.func(args))
    except KeyboardInterrupt as interrupt:
        if debug:
            traceback.print_exc()
        print(f"{prefix}: {interrupted_message(interrupt)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except user_error_types() as error:
        if debug:
            traceback.print_exc()
        print(f"{prefix}: error: {one_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as error:  # the last resort: one line, not a traceback, unless --debug
        if debug:
            traceback.print_exc()
        hint = "" if debug else "; run again with --debug for the traceback"
        print(f"{prefix}: internal error: {type(error).__name__}: {one_line(error)}{hint}", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
