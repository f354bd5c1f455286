"""The ``adapter-fusion`` subcommands: each reads its parsed options, calls the library and prints what it did
(``cli.py`` builds the parser and turns failures into one-line errors)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.adapters.kinds import ADAPTER_KINDS, DEFAULT_KIND
from adapter_fusion.cli_args import build_config, build_kind_config, check_config_file, load_config_file
from adapter_fusion.cli_checks import check_writable_directory, check_writable_file
from adapter_fusion.cli_inputs import parse_label_map, read_predict_inputs
from adapter_fusion.io import check_apart, check_container, check_output, check_outside_artefacts
from adapter_fusion.training.config import ModelConfig, TrainingConfig


def check_outputs(
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
    check_outside_artefacts(training_config.output_dir, "--output-dir")
    if args.metrics_file:
        check_writable_file(args.metrics_file, "--metrics-file")
        check_outside_artefacts(args.metrics_file, "--metrics-file")
        if not training_config.full_finetune:
            check_apart(output, args.metrics_file, "--metrics-file")
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


ADAPTER_KIND_OPTIONS = {
    name: (kind.config_class, "" if name == DEFAULT_KIND else f"{name}-") for name, kind in ADAPTER_KINDS.items()
}
"""Adapter kind -> (its config class, the prefix of its CLI options): the default kind's options are unprefixed
(``--reduction-factor``), another kind's carry its name (``--lora-r``)."""


def write_metrics(args: argparse.Namespace, metrics: dict[str, Any]) -> None:
    """``--metrics-file``, written by the main process only (rank 0 when torchrun starts several)."""
    from adapter_fusion.io import write_json
    from adapter_fusion.training.distributed import is_main_process

    if args.metrics_file and is_main_process():
        write_json(Path(args.metrics_file), metrics)


def train_adapter(args: argparse.Namespace) -> int:
    from adapter_fusion.training.adapter_trainer import AdapterTrainer

    file_data = load_config_file(args.config)
    kind_classes = tuple(cls for cls, _ in ADAPTER_KIND_OPTIONS.values())
    check_config_file(file_data, (*kind_classes, TrainingConfig, ModelConfig), "task", "output", "adapter_kind")
    task = args.task or file_data.get("task")
    if not task:
        raise ValueError("--task is required (see `adapter-fusion list-tasks`)")
    output = Path(args.output or file_data.get("output") or f"adapters/{task}")
    model_config = build_config(ModelConfig, file_data, args, model_name_or_path=args.model)
    kind = args.adapter_kind or file_data.get("adapter_kind") or DEFAULT_KIND
    adapter_config = build_kind_config(ADAPTER_KIND_OPTIONS, kind, file_data, args)
    training_defaults = {} if "training.output_dir" in vars(args) else {"output_dir": str(output) + ".runs"}
    training_config = build_config(TrainingConfig, {**training_defaults, **file_data}, args)
    check_outputs(args, output, training_config)
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
    write_metrics(args, metrics)
    return 0


def train_fusion(args: argparse.Namespace) -> int:
    from adapter_fusion.fusion import FusionConfig
    from adapter_fusion.training.fusion_trainer import FusionTrainer

    file_data = load_config_file(args.config)
    check_config_file(
        file_data, (FusionConfig, TrainingConfig, ModelConfig), "task", "adapters", "method", "output", "head_from",
        "head_label_map",
    )  # fmt: skip
    task = args.task or file_data.get("task")
    head_from = args.head_from or file_data.get("head_from")
    label_map = parse_label_map(args.head_label_map) if args.head_label_map else file_data.get("head_label_map")
    if label_map is not None and head_from is None:
        raise ValueError("--head-label-map needs --head-from (the adapter whose head the target head starts from)")
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
    check_outputs(args, output, training_config, "fusion", inputs=adapters)
    trainer = FusionTrainer(
        task, fusion_config, model_config, training_config, data_dir=args.data_dir,
        allow_modified=args.allow_modified, allow_other_base=args.allow_other_base, head_from=head_from,
        head_label_map=label_map,
    )  # fmt: skip
    assert trainer.model is not None
    if head_from is not None:
        print(f"the {trainer.task.name} head starts from the head of {trainer.head_init_from}")
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
    write_metrics(args, metrics)
    return 0


def extend_fusion(args: argparse.Namespace) -> int:
    from adapter_fusion.training.extension_trainer import ExtensionTrainer

    file_data = load_config_file(args.config)
    task, fusion, adapter = (args.task or file_data.get("task"), args.fusion or file_data.get("fusion"),
                             args.adapter or file_data.get("adapter"))  # fmt: skip
    if not task or not fusion or not adapter:
        raise ValueError("--task, --fusion DIR and --adapter DIR are required")
    output = Path(args.output or file_data.get("output") or f"{fusion}+{task}")
    model_config = build_config(ModelConfig, file_data, args, model_name_or_path=args.model)
    training_defaults = {} if "training.output_dir" in vars(args) else {"output_dir": str(output) + ".runs"}
    training_config = build_config(TrainingConfig, {**training_defaults, **file_data}, args)
    check_outputs(args, output, training_config, "fusion", inputs=(fusion, adapter))
    trainer = ExtensionTrainer(task, fusion, adapter, model_config, training_config, data_dir=args.data_dir)
    print(f"extended {fusion} with {trainer.adapter_name!r} for task {trainer.task.name}: "
          f"{trainer.model.trainable_parameters():,} trainable parameters (old tasks unchanged)")  # fmt: skip
    metrics = trainer.train()
    print(json.dumps(metrics, indent=2, default=str))
    trainer.save_fusion(output)
    print(f"saved fusion to {output}")
    return 0


def train_multitask(args: argparse.Namespace) -> int:
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
    check_outputs(args, output, training_config, tasks=tasks)
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
    write_metrics(args, metrics)
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from adapter_fusion.evaluation import evaluate_adapter, evaluate_base

    if args.base == bool(args.adapter):
        raise ValueError("give --adapter DIR, or --base with --task (the zero-shot base model)")
    if args.base and args.head:
        raise ValueError("--base: --head names a saved adapter's head; give --adapter DIR with it")
    if args.metrics_file:
        check_writable_file(args.metrics_file, "--metrics-file")
        check_outside_artefacts(args.metrics_file, "--metrics-file")
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


def predict(args: argparse.Namespace) -> int:
    from adapter_fusion.inference import FusionPipeline
    from adapter_fusion.tasks import task_type_for_head

    if not args.texts and not args.input:
        raise ValueError("give texts as arguments or --input FILE (one text or JSON object per line)")
    pipeline = FusionPipeline.from_pretrained(
        args.adapter, model=args.model, allow_modified=args.allow_modified, allow_other_base=args.allow_other_base
    )
    head_config = pipeline.model.head_config(pipeline.head_for(args.task))
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


def export_onnx(args: argparse.Namespace) -> int:
    from adapter_fusion.interop.onnx import export_onnx

    try:
        path = export_onnx(args.directory, args.output, model=args.model, head=args.head, opset=args.opset)
    except (ImportError, RuntimeError) as error:  # the onnx extra is missing / ONNX Runtime disagreed
        print(f"adapter-fusion export: error: {error}", file=sys.stderr)
        return 2
    print(f"exported {args.directory} (head {args.head or 'default'}) to {path}; ONNX Runtime matches PyTorch")
    return 0


def list_tasks(args: argparse.Namespace) -> int:
    from adapter_fusion.tasks import list_tasks

    for task in list_tasks():
        aliases = f" (aliases: {', '.join(task.aliases)})" if task.aliases else ""
        names = task.label_names
        labels = f" [{', '.join(names[:6])}{f', ... {len(names)} labels' if len(names) > 6 else ''}]" if names else ""
        print(f"{task.name:22s} {task.task_type:22s}{labels} metric={task.main_metric}{aliases}")
    return 0


def list_bank(args: argparse.Namespace) -> int:
    from adapter_fusion.bank import bank_directory, list_bank, read_card

    version = args.bank_version
    suffix = f"@{version}" if version else ""
    names = list_bank(version)
    for name in names:
        card = read_card(name + suffix)
        scores = ", ".join(f"{k} {v:.4f}" for k, v in card["dev"].items() if isinstance(v, float))
        print(f"bank:{name + suffix:14s} task={card['task']:14s} dev ({card['dev']['examples']} examples): {scores}")
    print(f"({len(names)} adapters in {bank_directory(version)}; cards: NAME.md there)")
    return 0


def export_adapterhub(args: argparse.Namespace) -> int:
    from adapter_fusion.interop.adapterhub_export import export_adapterhub

    written = export_adapterhub(args.directory, args.output)
    print(f"exported {args.directory} as adapterhub to {written}")
    return 0


# export format -> its command; each format adds its own options in build_parser
EXPORT_FORMATS = {"onnx": export_onnx, "adapterhub": export_adapterhub}


def export(args: argparse.Namespace) -> int:
    return EXPORT_FORMATS[args.format](args)


def push_to_hub(args: argparse.Namespace) -> int:
    from adapter_fusion.hub_upload import push_to_hub

    print(f"uploaded {args.directory} to {push_to_hub(args.directory, args.repo_id, private=args.private or None)}")
    return 0


def import_artefact(args: argparse.Namespace) -> int:
    """An AdapterHub adapter (+ head) or AdapterFusion directory -> ours, through our save path."""
    from adapter_fusion.interop.adapterhub import is_adapterhub_adapter, is_adapterhub_fusion
    from adapter_fusion.models import AdapterModel, load_adapter, read_adapter_config, save_adapter
    from adapter_fusion.models.fusion_model import FusionModel

    source = Path(args.directory)
    if is_adapterhub_fusion(source):  # the output is checked before any model loads, as the save will check it
        check_output(args.output, "fusion", inputs=(source, *(args.adapters or ())))
        fusion_model = FusionModel.from_adapterhub(source, args.adapters, model=args.model)
        fusion_model.save_fusion(args.output)
    elif is_adapterhub_adapter(source):
        check_output(args.output, "adapter", inputs=(source,))
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
