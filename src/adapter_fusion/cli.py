"""``adapter-fusion`` command line: thin wrappers over the library's functions.

Each subcommand takes an optional ``--config`` file (YAML/JSON) and ``--field value`` overrides whose help comes
from the config docstrings.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapter_fusion.adapters import AdapterConfig, LoraConfig
from adapter_fusion.cli_args import (
    add_config_arguments,
    build_config,
    build_kind_config,
    check_config_file,
    load_config_file,
)
from adapter_fusion.cli_checks import (
    EXIT_INTERNAL_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    OneLineParser,
    check_writable_directory,
    check_writable_file,
    interrupted_message,
    one_line,
    subcommand_parser,
    unknown_options_message,
    user_error_types,
)
from adapter_fusion.cli_inputs import read_predict_inputs
from adapter_fusion.io import check_apart, check_container, check_output
from adapter_fusion.training.config import ModelConfig, TrainingConfig


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


def _check_outputs(
    args: argparse.Namespace,
    output: Path,
    training_config: TrainingConfig,
    kind: str = "adapter",
    inputs: Sequence[str] = (),
    tasks: Sequence[str] = (),
) -> None:
    """Before any model loads: every path the run will write can be written (a run is never lost at the end), and
    the artefact at ``output`` (``tasks``: one per task inside it) destroys nothing (``io.check_output``)."""
    check_writable_directory(output, "--output")
    check_writable_directory(training_config.output_dir, "--output-dir")
    if args.metrics_file:
        check_writable_file(args.metrics_file, "--metrics-file")
    if not training_config.full_finetune:  # a full fine-tune saves no artefact at --output
        if tasks:
            from adapter_fusion.tasks import get_task

            check_container(output)
            targets = [output / get_task(name).name for name in tasks]
        else:
            targets = [output]
        for target in targets:
            check_output(target, kind, overwrite=args.overwrite, inputs=inputs)
            check_apart(target, training_config.output_dir)


ADAPTER_KINDS = {"bottleneck": (AdapterConfig, ""), "lora": (LoraConfig, "lora-")}


def _write_metrics(args: argparse.Namespace, metrics: dict[str, Any]) -> None:
    """``--metrics-file``, written by the main process only (rank 0 when torchrun starts several)."""
    from adapter_fusion.io import write_json
    from adapter_fusion.training.distributed import is_main_process

    if args.metrics_file and is_main_process():
        write_json(Path(args.metrics_file), metrics)


def _train_adapter(args: argparse.Namespace) -> int:
    from adapter_fusion.training.adapter_trainer import AdapterTrainer

    file_data = load_config_file(args.config)
    check_config_file(file_data, (AdapterConfig, LoraConfig, TrainingConfig, ModelConfig), "task", "output",
                      "adapter_kind")  # fmt: skip
    task = args.task or file_data.get("task")
    if not task:
        raise ValueError("--task is required (see `adapter-fusion list-tasks`)")
    output = Path(args.output or file_data.get("output") or f"adapters/{task}")
    model_config = build_config(ModelConfig, file_data, args, model_name_or_path=args.model)
    kind = args.adapter_kind or file_data.get("adapter_kind") or "bottleneck"
    adapter_config = build_kind_config(ADAPTER_KINDS, kind, file_data, args)
    training_defaults = {} if "training.output_dir" in vars(args) else {"output_dir": str(output) + ".runs"}
    training_config = build_config(TrainingConfig, {**training_defaults, **file_data}, args)
    _check_outputs(args, output, training_config)
    trainer = AdapterTrainer(task, model_config, adapter_config, training_config, data_dir=args.data_dir)
    base = sum(p.numel() for p in trainer.model.base.parameters())
    if training_config.full_finetune:
        print(f"full fine-tuning: {trainer.model.trainable_parameters():,} trainable parameters")
    else:
        count = trainer.model.adapters.num_parameters(trainer.adapter_name)
        print(
            f"adapter {trainer.adapter_name!r}: {count:,} parameters = {100 * count / base:.3f}% of the base "
            f"model's {base:,}"
        )
    metrics = trainer.train()
    print(json.dumps(metrics, indent=2, default=str))
    if not training_config.full_finetune:
        trainer.save_adapter(output, overwrite=args.overwrite)
        print(f"saved adapter to {output}")
    _write_metrics(args, metrics)
    return 0


def _train_fusion(args: argparse.Namespace) -> int:
    from adapter_fusion.fusion import FusionConfig
    from adapter_fusion.training.fusion_trainer import FusionTrainer

    file_data = load_config_file(args.config)
    check_config_file(file_data, (FusionConfig, TrainingConfig, ModelConfig), "task", "adapters", "method", "output")
    task = args.task or file_data.get("task")
    adapters = args.adapters or file_data.get("adapters")
    if not task or not adapters:
        raise ValueError("--task and --adapters DIR [DIR ...] are required")
    method = args.method or file_data.get("method")
    output = Path(args.output or file_data.get("output") or f"fusions/{task}-{method or 'attention'}")
    forced: dict[str, Any] = {"adapter_paths": tuple(adapters), "fusion_method": method}
    if args.strategy:
        forced["freeze_adapters_during_fusion"] = args.strategy == "sequential"
    fusion_config = build_config(FusionConfig, file_data, args, **forced)
    model_config = build_config(ModelConfig, file_data, args, model_name_or_path=args.model)
    training_defaults = {} if "training.output_dir" in vars(args) else {"output_dir": str(output) + ".runs"}
    training_config = build_config(TrainingConfig, {**training_defaults, **file_data}, args)
    _check_outputs(args, output, training_config, "fusion", inputs=adapters)
    trainer = FusionTrainer(
        task, fusion_config, model_config, training_config, data_dir=args.data_dir,
        allow_modified=args.allow_modified, allow_other_base=args.allow_other_base,
    )  # fmt: skip
    assert trainer.model is not None
    fuse = trainer.model.fusion
    assert fuse is not None
    strategy = "sequential" if fusion_config.freeze_adapters_during_fusion else "joint"
    print(
        f"{fusion_config.fusion_method} fusion of {list(fuse.adapter_names)} for {trainer.task.name} ({strategy}): "
        f"{sum(p.numel() for p in fuse.parameters()):,} fusion parameters at {len(fuse.layers)} points; "
        f"{trainer.model.trainable_parameters():,} trainable"
    )
    metrics = trainer.train_fusion()
    print(json.dumps(metrics, indent=2, default=str))
    trainer.save_fusion(output, overwrite=args.overwrite)
    print(f"saved fusion to {output}")
    _write_metrics(args, metrics)
    return 0


def _extend_fusion(args: argparse.Namespace) -> int:
    from adapter_fusion.training.extension_trainer import ExtensionTrainer

    file_data = load_config_file(args.config)
    task, fusion, adapter = (args.task or file_data.get("task"), args.fusion or file_data.get("fusion"),
                             args.adapter or file_data.get("adapter"))  # fmt: skip
    if not task or not fusion or not adapter:
        raise SystemExit("extend-fusion: --task, --fusion DIR and --adapter DIR are required")
    output = Path(args.output or file_data.get("output") or f"{fusion}+{task}")
    model_config = build_config(ModelConfig, file_data, args, model_name_or_path=args.model)
    training_defaults = {} if "training.output_dir" in vars(args) else {"output_dir": str(output) + ".runs"}
    training_config = build_config(TrainingConfig, {**training_defaults, **file_data}, args)
    trainer = ExtensionTrainer(task, fusion, adapter, model_config, training_config, data_dir=args.data_dir)
    print(f"extended {fusion} with {trainer.adapter_name!r} for task {trainer.task.name}: "
          f"{trainer.model.trainable_parameters():,} trainable parameters (old tasks unchanged)")  # fmt: skip
    metrics = trainer.train()
    print(json.dumps(metrics, indent=2, default=str))
    trainer.save_fusion(output)
    print(f"saved fusion to {output}")
    return 0


def _train_multitask(args: argparse.Namespace) -> int:
    from adapter_fusion.training.multi_task_trainer import MultiTaskConfig, MultiTaskTrainer

    file_data = load_config_file(args.config)
    config_classes = (MultiTaskConfig, AdapterConfig, TrainingConfig, ModelConfig)
    check_config_file(file_data, config_classes, "tasks", "output")
    tasks = args.tasks or file_data.get("tasks")
    if not tasks:
        raise ValueError("--tasks NAME [NAME ...] is required (see `adapter-fusion list-tasks`)")
    output = Path(args.output or file_data.get("output") or f"adapters/multitask-{'-'.join(tasks)}")
    model_config = build_config(ModelConfig, file_data, args, model_name_or_path=args.model)
    adapter_config = build_config(AdapterConfig, file_data, args)
    multitask_config = build_config(MultiTaskConfig, file_data, args)
    training_defaults = {} if "training.output_dir" in vars(args) else {"output_dir": str(output) + ".runs"}
    training_config = build_config(TrainingConfig, {**training_defaults, **file_data}, args)
    _check_outputs(args, output, training_config, tasks=tasks)
    trainer = MultiTaskTrainer(
        list(tasks), model_config, adapter_config, training_config, data_dir=args.data_dir,
        sampling=multitask_config.sampling, temperature=multitask_config.temperature,
        adapter_per_task=multitask_config.adapter_per_task,
    )  # fmt: skip
    base = sum(p.numel() for p in trainer.model.base.parameters())
    adapters = trainer.model.adapters.parameter_counts()
    print(
        f"multi-task training of {trainer.tasks} ({multitask_config.sampling} sampling): "
        f"{len(adapters)} adapter(s) of {max(adapters.values(), default=0):,} parameters "
        f"(base model: {base:,}); {trainer.model.trainable_parameters():,} trainable"
    )
    metrics = trainer.train()
    print(json.dumps(metrics, indent=2, default=str))
    if not training_config.full_finetune:
        saved = trainer.save(output, overwrite=args.overwrite)
        print(f"saved adapters to {', '.join(str(path) for path in saved.values())}")
    _write_metrics(args, metrics)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from adapter_fusion.evaluation import evaluate_adapter, evaluate_base

    if args.base == bool(args.adapter):
        raise ValueError("give --adapter DIR, or --base with --task (the zero-shot base model)")
    if args.base and args.head:
        raise ValueError("--base: --head names a saved adapter's head; give --adapter DIR with it")
    if args.metrics_file:
        check_writable_file(args.metrics_file, "--metrics-file")
    if args.base:
        if not args.task:
            raise ValueError("--base: --task is required")
        metrics = evaluate_base(
            args.task, split=args.split, data_dir=args.data_dir, model=args.model, max_examples=args.max_examples
        )
    else:
        metrics = evaluate_adapter(
            args.adapter,
            task=args.task,
            split=args.split,
            data_dir=args.data_dir,
            model=args.model,
            max_examples=args.max_examples,
            head_task=args.head,
            allow_modified=args.allow_modified,
            allow_other_base=args.allow_other_base,
        )
    print(json.dumps(metrics, indent=2))
    if args.metrics_file:
        from adapter_fusion.io import write_json

        write_json(Path(args.metrics_file), metrics)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from adapter_fusion.inference import FusionPipeline
    from adapter_fusion.tasks import task_type_for_head

    if not args.texts and not args.input:
        raise ValueError("give texts as arguments or --input FILE (one text or JSON object per line)")
    pipeline = FusionPipeline.from_pretrained(
        args.adapter, model=args.model, allow_modified=args.allow_modified, allow_other_base=args.allow_other_base
    )
    head_config = pipeline.model.head_config(pipeline._head_for(args.task))
    task_type = task_type_for_head(head_config)
    inputs, pairs = read_predict_inputs(args, bool(task_type.takes_pairs(head_config)))
    options = {} if pairs is None else {"text_pairs": pairs}
    if task_type.is_single_input(inputs):  # token classification reads a list of str as ONE pre-split sentence
        results = [pipeline.predict(item, task=args.task, **options) for item in inputs]
    else:
        results = pipeline.predict(inputs, task=args.task, **options)
    for index, (item, result) in enumerate(zip(inputs, results)):
        record = {("text" if isinstance(item, str) else "input"): item}
        if pairs is not None:
            record["text_pair"] = pairs[index]
        print(json.dumps({**record, **result}, allow_nan=False))
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    from adapter_fusion.interop.onnx import export_onnx

    try:
        path = export_onnx(args.directory, args.output, model=args.model, head=args.head, opset=args.opset)
    except (ImportError, RuntimeError) as error:  # the onnx extra is missing / ONNX Runtime disagreed
        print(f"adapter-fusion export: error: {error}", file=sys.stderr)
        return 2
    print(f"exported {args.directory} (head {args.head or 'default'}) to {path}; ONNX Runtime matches PyTorch")
    return 0


def _list_tasks(args: argparse.Namespace) -> int:
    from adapter_fusion.tasks import list_tasks

    for task in list_tasks():
        aliases = f" (aliases: {', '.join(task.aliases)})" if task.aliases else ""
        names = task.label_names
        labels = f" [{', '.join(names[:6])}{f', ... {len(names)} labels' if len(names) > 6 else ''}]" if names else ""
        print(f"{task.name:22s} {task.task_type:22s}{labels} metric={task.main_metric}{aliases}")
    return 0


def _list_bank(args: argparse.Namespace) -> int:
    from adapter_fusion.bank import bank_directory, list_bank, read_card

    for name in list_bank():
        card = read_card(name)
        scores = ", ".join(f"{k} {v:.4f}" for k, v in card["dev"].items() if isinstance(v, float))
        print(f"bank:{name:12s} task={card['task']:12s} dev ({card['dev']['examples']} examples): {scores}")
    print(f"({len(list_bank())} adapters in {bank_directory()}; cards: NAME.md there)")
    return 0


def _export_adapterhub(args: argparse.Namespace) -> int:
    from adapter_fusion.interop.adapterhub_export import export_adapterhub

    written = export_adapterhub(args.directory, args.output)
    print(f"exported {args.directory} as adapterhub to {written}")
    return 0


# export format -> its command; each format adds its own options in build_parser
EXPORT_FORMATS = {"onnx": _export_onnx, "adapterhub": _export_adapterhub}


def _export(args: argparse.Namespace) -> int:
    return EXPORT_FORMATS[args.format](args)


def _push_to_hub(args: argparse.Namespace) -> int:
    from adapter_fusion.hub import push_to_hub

    print(f"uploaded {args.directory} to {push_to_hub(args.directory, args.repo_id, private=args.private or None)}")
    return 0


def _import(args: argparse.Namespace) -> int:
    """An AdapterHub adapter (+ head) or AdapterFusion directory -> ours, through our save path."""
    from adapter_fusion.interop.adapterhub import is_adapterhub_adapter, is_adapterhub_fusion
    from adapter_fusion.models import AdapterModel, load_adapter, read_adapter_config, save_adapter
    from adapter_fusion.models.fusion_model import FusionModel

    source = Path(args.directory)
    if is_adapterhub_fusion(source):
        fusion_model = FusionModel.from_adapterhub(source, args.adapters, model=args.model)
        fusion_model.save_fusion(args.output)
    elif is_adapterhub_adapter(source):
        model = AdapterModel.from_pretrained(args.model or read_adapter_config(source).get("base_model"))
        name = load_adapter(model, source)
        save_adapter(model, name, args.output, head=name if name in model.heads else None)
    else:
        raise FileNotFoundError(
            f"{source} is not an AdapterHub directory (no adapter_config.json with a 'config' section, no "
            "adapter_fusion_config.json)"
        )
    print(f"imported {source} ({args.format}) to {args.output}")
    return 0


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
        help="bottleneck (default; the --placement, --reduction-factor, ... options) or lora (the --lora-* options)",
    )
    for cls, skip in ((AdapterConfig, ()), (TrainingConfig, ()), (ModelConfig, ("model_name_or_path",))):
        add_config_arguments(train, cls, skip)
    add_config_arguments(train, LoraConfig, prefix="lora-")
    train.set_defaults(func=_train_adapter)

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
    fusion.set_defaults(func=_train_fusion)

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
    multitask.set_defaults(func=_train_multitask)

    extend = sub.add_parser("extend-fusion", help="add a new task's adapter to a trained fusion (continual)")
    _common(extend)
    extend.add_argument("--fusion", help="saved fusion directory to extend")
    extend.add_argument("--adapter", help="saved adapter directory of the new task (same base model)")
    extend.add_argument("--task", help="the new task (see list-tasks)")
    extend.add_argument("--output", help="fusion directory to write (default: FUSION+TASK)")
    for cls, skip in ((TrainingConfig, ()), (ModelConfig, ("model_name_or_path",))):
        add_config_arguments(extend, cls, skip)
    extend.set_defaults(func=_extend_fusion)

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
    evaluate.set_defaults(func=_evaluate)

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
    predict.set_defaults(func=_predict)

    importer = sub.add_parser("import", help="convert an AdapterHub adapter or AdapterFusion directory to ours")
    importer.add_argument("--format", required=True, choices=("adapterhub",), help="input format")
    importer.add_argument("--model", help="base model (default: the model_name the AdapterHub files recorded)")
    importer.add_argument(
        "--adapters", nargs="+", help="a fusion's adapter directories (default: its siblings named after them)"
    )
    importer.add_argument("directory", help="AdapterHub adapter or AdapterFusion directory")
    importer.add_argument("output", help="adapter or fusion directory to write (ours)")
    importer.set_defaults(func=_import)

    from adapter_fusion.cli_analysis import add_analysis_commands

    add_analysis_commands(sub, _common)

    export = sub.add_parser("export", help="export a saved adapter or fusion directory to another format")
    export.add_argument("--format", required=True, choices=sorted(EXPORT_FORMATS), help="what to write")
    export.add_argument("directory", help="adapter or fusion directory")
    export.add_argument("output", help="file (onnx: a .onnx file) or directory (adapterhub) to write")
    export.add_argument("--model", help="base model (default: the one recorded in the directory)")
    onnx = export.add_argument_group("onnx", "ONNX (dynamic batch and sequence axes; checked against PyTorch)")
    onnx.add_argument("--head", help="the head whose logits to export (default: the only or active one)")
    onnx.add_argument("--opset", type=int, default=18, help="ONNX opset version (default: 18)")
    export.set_defaults(func=_export)

    push = sub.add_parser("push-to-hub", help="upload a saved adapter or fusion (or bank:NAME) to the Hub")
    push.add_argument("directory", help="adapter or fusion directory, or bank:NAME")
    push.add_argument("repo_id", help="Hub model repository, org/name (created when missing; token: HF_TOKEN)")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.set_defaults(func=_push_to_hub)

    list_tasks = sub.add_parser("list-tasks", help="list the registered tasks")
    list_tasks.set_defaults(func=_list_tasks)
    list_bank = sub.add_parser("list-bank", help="list the shipped source adapters (use them as bank:NAME)")
    list_bank.set_defaults(func=_list_bank)
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
