"""``analyze_fusion``: what a trained fusion reads from each adapter, as heatmaps and a short report.

    analysis = analyze_fusion("fusions/rte-attention", task="rte", output="fusions/rte-attention.analysis")
    analysis.images          # {"layers": Path(...png), "classes": ..., "example_12": ...}
    analysis.report          # Path(.../report.md)

The output directory gets ``fusion_weights_by_layer.png`` (mean weight per source adapter and fused layer on the
split), ``fusion_weights_by_class.png`` (the same per gold class, for classification and tagging tasks),
``fusion_weights_example_<row>.png`` (per-token weights of a few examples), ``fusion_weights.json`` (the numbers)
and ``report.md``. Only these files are written (each atomically); other files in the directory are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapter_fusion.evaluation.fusion_weights import FusionWeightSummary, collect_fusion_weights
from adapter_fusion.evaluation.plots import (
    plot_class_weights,
    plot_example_weights,
    plot_layer_weights,
    point_label,
    save_figure,
    tick_labels,
)
from adapter_fusion.fusion.saving import read_fusion_config
from adapter_fusion.inference import FusionPipeline
from adapter_fusion.io import atomic_write_text, write_json
from adapter_fusion.tasks import get_task, load_task_split

REPORT = "report.md"
WEIGHTS_JSON = "fusion_weights.json"


@dataclass
class FusionAnalysis:
    """What ``analyze_fusion`` wrote: image paths by name, each image's axis tick labels, the numbers."""

    output: Path
    images: dict[str, Path]
    labels: dict[str, list[str]]
    summary: FusionWeightSummary
    report: Path
    method: str


def default_output(directory: str | Path) -> Path:
    """``<FUSION_DIR>.analysis``, beside the fusion (as training runs go to ``<OUTPUT>.runs``)."""
    directory = Path(directory)
    return directory.with_name(directory.name + ".analysis")


def analyze_fusion(
    directory: str | Path,
    task: str | None = None,
    split: str = "validation",
    output: str | Path | None = None,
    data_dir: str | Path | None = None,
    max_examples: int | None = None,
    examples: int = 3,
    model: str | None = None,
    batch_size: int = 32,
    dpi: int = 110,
) -> FusionAnalysis:
    """Heatmaps and a report of the fusion saved in ``directory`` on ``task``'s ``split`` (default: the task the
    fusion was trained for, its dev set). ``examples``: how many per-example views; ``max_examples``: analyse a
    fixed random subset of the split (seed 42)."""
    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 0:
        raise ValueError(f"examples must be an int >= 0; got {examples!r}")
    info = read_fusion_config(directory)  # a clear error when DIR is not a fusion directory
    task_name = task or info.get("metadata", {}).get("task")
    if not task_name:
        raise ValueError(f"fusion at {directory} records no task; pass task=")
    spec = get_task(task_name)
    pipeline = FusionPipeline.from_pretrained(directory, model=model)
    head = pipeline.head_for(spec.name)
    dataset = load_task_split(spec, split, data_dir, max_examples=max_examples)
    summary = collect_fusion_weights(
        pipeline.model, pipeline.tokenizer, spec, dataset, head=head, max_length=pipeline.max_length,
        batch_size=batch_size, keep_examples=examples,
    )  # fmt: skip
    method = str(info.get("fusion", {}).get("fusion_method", "?"))
    out = Path(output) if output is not None else default_output(directory)
    name = Path(directory).name
    figures = {
        "layers": (
            "fusion_weights_by_layer.png",
            plot_layer_weights(
                summary.mean, summary.points, summary.adapter_names,
                title=f"{name}: mean {method} fusion weight on {spec.name} {split} ({summary.tokens:,} tokens)",
            ),
        ),
    }  # fmt: skip
    if summary.class_mean:
        figures["classes"] = (
            "fusion_weights_by_class.png",
            plot_class_weights(
                summary.class_mean, summary.points, summary.adapter_names,
                title=f"{name}: mean fusion weight per gold class ({spec.name} {split})",
            ),
        )  # fmt: skip
    for sample in summary.samples:
        gold = f", gold: {sample.label}" if sample.label else ""
        figures[f"example_{sample.index}"] = (
            f"fusion_weights_example_{sample.index}.png",
            plot_example_weights(
                sample.tokens, sample.weights, summary.points, summary.adapter_names,
                title=f"{spec.name} {split} row {sample.index}{gold}",
            ),
        )  # fmt: skip
    images, labels = {}, {}
    for key, (filename, figure) in figures.items():
        labels[key] = tick_labels(figure)
        images[key] = save_figure(figure, out / filename, dpi=dpi)
    write_json(out / WEIGHTS_JSON, {"fusion": str(directory), "task": spec.name, "split": split,
                                    "method": method, **summary.to_dict()})  # fmt: skip
    report = out / REPORT
    atomic_write_text(report, render_report(summary, images, str(directory), spec.name, split, method))
    return FusionAnalysis(out, images, labels, summary, report, method)


def render_report(
    summary: FusionWeightSummary, images: dict[str, Path], directory: str, task: str, split: str, method: str
) -> str:
    """The markdown report: the setting, the images, the dominant adapter and the weights' entropy per layer."""
    adapters = ", ".join(f"`{a}`" for a in summary.adapter_names)
    lines = [
        f"# Fusion weights of `{Path(directory).name}` on {task} ({split})",
        "",
        f"{method} fusion over {len(summary.adapter_names)} adapters ({adapters}) at {len(summary.points)} points; "
        f"{summary.examples:,} examples, {summary.tokens:,} tokens (padding masked out). Weights come from the "
        "model's own forward pass (`return_fusion_weights=True`).",
        "",
        "## Images",
        "",
    ]
    captions = {"layers": "mean weight per source adapter and layer", "classes": "the same per gold class"}
    for key, path in images.items():
        caption = captions.get(key, f"per-token weights, {key.replace('_', ' row ')}")
        lines.append(f"- [{path.name}]({path.name}): {caption}")
    lines += ["", *(f"![{key}]({path.name})" for key, path in images.items() if key in captions)]
    lines += [
        "",
        "## Per layer",
        "",
        f"Entropy: mean over tokens of -sum p log p of the weights normalised to sum 1, in nats; "
        f"log {len(summary.adapter_names)} = {summary.max_entropy:.3f} is uniform weights, 0 is one adapter only.",
        "",
        "| point | dominant adapter | its mean weight | entropy (nats) | entropy / max |",
        "|---|---|---:|---:|---:|",
    ]
    for (point, adapter, weight), entropy in zip(summary.dominant(), summary.entropy):
        ratio = entropy / summary.max_entropy if summary.max_entropy > 0 else 0.0
        lines.append(f"| {point_label(point)} | `{adapter}` | {weight:.3f} | {entropy:.3f} | {ratio:.2f} |")
    overall = summary.mean.mean(0)
    top = int(overall.argmax())
    lines += [
        "",
        f"Over all layers the largest mean weight is `{summary.adapter_names[top]}`'s ({overall[top]:.3f}); "
        "mean weights: " + ", ".join(f"`{a}` {w:.3f}" for a, w in zip(summary.adapter_names, overall)) + ".",
    ]
    if summary.class_mean:
        labels = list(summary.class_mean)
        lines += [
            "",
            "## Dominant adapter per class",
            "",
            "| point | " + " | ".join(f"{label} ({summary.class_tokens[label]:,} tokens)" for label in labels) + " |",
            "|---|" + "---|" * len(labels),
        ]
        for index, point in enumerate(summary.points):
            cells = []
            for label in labels:
                row = summary.class_mean[label][index]
                cells.append(f"`{summary.adapter_names[int(row.argmax())]}` {float(row.max()):.3f}")
            lines.append(f"| {point_label(point)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def describe(analysis: FusionAnalysis) -> dict[str, Any]:
    """A short JSON-able description (what the CLI prints)."""
    return {
        "output": str(analysis.output),
        "report": str(analysis.report),
        "images": {key: str(path) for key, path in analysis.images.items()},
        "dominant": {point: adapter for point, adapter, _ in analysis.summary.dominant()},
    }
