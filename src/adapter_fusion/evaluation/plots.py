"""Heatmaps of fusion weights and transfer matrices, as matplotlib ``Figure`` objects.

Figures are built with the object API on the Agg canvas (``matplotlib.figure.Figure``), never through pyplot:
no global backend is switched (a notebook keeps its own), nothing accumulates in pyplot's figure list, and the
functions work on machines without a display. Each function returns the ``Figure`` so callers (and tests) can read
its tick labels before ``save_figure`` writes it. Figure sizes grow with the number of adapters, layers, classes
and tokens so labels stay legible; ``save_figure`` writes exactly ``figsize * dpi`` pixels.

matplotlib comes with the ``analysis`` extra: ``pip install "adapter-fusion[analysis]"``.
"""

from __future__ import annotations

import math
import os
import tempfile
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_TOKENS = 40
"""Per-example views show at most this many tokens (the rest is cut, and the title says so)."""
MAX_EXAMPLE_POINTS = 6
"""Per-example views show at most this many fused points (evenly spaced, the first and last included)."""


def _figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            'plotting needs matplotlib: pip install "adapter-fusion[analysis]" (or pip install matplotlib)'
        ) from None
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _wrap(text: str, width_inches: float, fontsize: float = 10) -> str:
    """``text`` broken into lines that fit ``width_inches`` at ``fontsize`` (about 0.55 em per character)."""
    return textwrap.fill(text, width=max(20, int(width_inches * 72 / (0.55 * fontsize))))


def _heatmap(
    ax: Axes,
    values: np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    vmin: float,
    vmax: float,
    cmap: str = "viridis",
    annotate: bool = True,
    fmt: str = ".2f",
    norm: Any = None,
) -> Any:
    """``values[row, column]`` as coloured cells with the row and column names on the axes (NaN: blank cell)."""
    masked = np.ma.masked_invalid(np.asarray(values, dtype=float))
    image = ax.imshow(masked, aspect="auto", cmap=cmap, **({"norm": norm} if norm else {"vmin": vmin, "vmax": vmax}))
    ax.set_yticks(range(len(rows)), labels=list(rows))
    rotate = max((len(c) for c in columns), default=0) > 6
    ax.set_xticks(
        range(len(columns)), labels=list(columns), rotation=30 if rotate else 0, ha="right" if rotate else "center"
    )
    ax.tick_params(labelsize=9)
    if annotate:
        for (row, column), value in np.ndenumerate(np.asarray(values, dtype=float)):
            if math.isnan(value):
                ax.text(column, row, "–", ha="center", va="center", fontsize=8, color="0.4")
                continue
            red, green, blue, _ = image.cmap(image.norm(value))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            ax.text(column, row, format(value, fmt), ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")  # fmt: skip
    return image


def point_label(point: str) -> str:
    """``"3_ffn"`` -> ``"layer 3 ffn"``."""
    layer, _, location = point.partition("_")
    return f"layer {layer} {location}".strip()


def plot_layer_weights(mean: np.ndarray, points: Sequence[str], adapters: Sequence[str], title: str = "") -> Figure:
    """Mean fusion weight per fused point (rows) and source adapter (columns)."""
    mean = np.asarray(mean, dtype=float)
    width = max(4.5, 2.2 + 0.9 * len(adapters))
    figure = _figure(width, max(2.6, 1.4 + 0.42 * len(points)))
    ax = figure.add_subplot()
    image = _heatmap(ax, mean, [point_label(p) for p in points], adapters, 0.0, max(1.0, float(np.nanmax(mean))))
    ax.set_xlabel("source adapter")
    ax.set_title(_wrap(title or "mean fusion weight", width), fontsize=10)
    figure.colorbar(image, ax=ax, shrink=0.9, label="mean weight")
    return figure


def plot_class_weights(
    class_mean: Mapping[str, np.ndarray], points: Sequence[str], adapters: Sequence[str], title: str = ""
) -> Figure:
    """One panel per gold class: mean fusion weight per point and adapter over that class's tokens."""
    if not class_mean:
        raise ValueError("plot_class_weights needs at least one class; got none")
    vmax = max(1.0, max(float(np.nanmax(v)) for v in class_mean.values()))
    panels = len(class_mean)
    columns = min(panels, 4)
    grid_rows = math.ceil(panels / columns)
    width = max(5.0, 1.6 + columns * (0.9 * len(adapters) + 1.3))
    figure = _figure(width, max(2.8, grid_rows * (1.3 + 0.42 * len(points))))
    axes = figure.subplots(grid_rows, columns, squeeze=False)
    image = None
    for index, (label, values) in enumerate(class_mean.items()):
        ax = axes[index // columns][index % columns]
        rows = [point_label(p) for p in points] if index % columns == 0 else [""] * len(points)
        image = _heatmap(ax, np.asarray(values), rows, adapters, 0.0, vmax)
        ax.set_title(f"gold class: {label}", fontsize=10)
    for index in range(panels, grid_rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    figure.suptitle(_wrap(title or "mean fusion weight per class", width, 11), fontsize=11)
    figure.colorbar(image, ax=axes.ravel().tolist(), shrink=0.9, label="mean weight")
    return figure


def plot_example_weights(
    tokens: Sequence[str], weights: np.ndarray, points: Sequence[str], adapters: Sequence[str], title: str = ""
) -> Figure:
    """Per-token fusion weights of one example (``weights[token, point, adapter]``): one panel per fused point
    (at most ``MAX_EXAMPLE_POINTS``), adapters on the rows, tokens along the x axis (at most ``MAX_TOKENS``)."""
    weights = np.asarray(weights, dtype=float)
    shown = list(tokens[:MAX_TOKENS])
    cut = len(tokens) - len(shown)
    chosen = _spread(len(points), MAX_EXAMPLE_POINTS)
    width = max(5.0, 2.4 + 0.32 * len(shown))
    height = max(2.5, 1.3 + len(chosen) * (0.24 * len(adapters) + 0.6))
    figure = _figure(width, height)
    axes = figure.subplots(len(chosen), 1, squeeze=False, sharex=True)
    image = None
    for panel, point_index in enumerate(chosen):
        ax = axes[panel][0]
        values = weights[: len(shown), point_index, :].T  # [adapter, token]
        image = _heatmap(ax, values, adapters, shown, 0.0, 1.0, annotate=False)
        ax.set_title(point_label(points[point_index]), fontsize=9, loc="left")
        ax.tick_params(axis="x", labelbottom=panel == len(chosen) - 1, rotation=90, labelsize=8)
    note = f" (first {len(shown)} of {len(tokens)} tokens)" if cut else ""
    figure.suptitle(_wrap((title or "per-token fusion weights") + note, width), fontsize=10)
    figure.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="weight")
    return figure


def _spread(total: int, most: int) -> list[int]:
    if total <= most:
        return list(range(total))
    return sorted({round(i * (total - 1) / (most - 1)) for i in range(most)})


def transfer_values(
    values: Any, value_key: str = "value"
) -> tuple[list[str], list[str], dict[tuple[str, str], float]]:
    """``(sources, targets, {(source, target): value})`` from a nested dict ``{source: {target: value}}``, a dict
    ``{(source, target): value}``, or table rows (dicts with ``source``, ``target`` and ``value_key``)."""
    cells: dict[tuple[str, str], float] = {}
    if isinstance(values, Mapping):
        for key, value in values.items():
            if isinstance(key, tuple) and len(key) == 2:
                cells[(str(key[0]), str(key[1]))] = float(value)
            elif isinstance(value, Mapping):
                cells.update({(str(key), str(target)): float(v) for target, v in value.items() if v is not None})
            else:
                raise TypeError(f"transfer values: key {key!r} must be a (source, target) pair or map to a dict")
    elif isinstance(values, Sequence) and not isinstance(values, str):
        for row in values:
            if not isinstance(row, Mapping) or not {"source", "target", value_key} <= set(row):
                raise ValueError(f"transfer table rows need keys 'source', 'target', {value_key!r}; got {row!r}")
            if row[value_key] is not None:
                cells[(str(row["source"]), str(row["target"]))] = float(row[value_key])
    else:
        raise TypeError(f"transfer values must be a dict or a list of row dicts; got {type(values).__name__}")
    if not cells:
        raise ValueError("transfer values are empty")
    sources = list(dict.fromkeys(source for source, _ in cells))
    targets = list(dict.fromkeys(target for _, target in cells))
    return sources, targets, cells


def plot_transfer_matrix(
    values: Any,
    output: str | Path | None = None,
    *,
    sources: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    title: str = "",
    value_label: str = "score",
    value_key: str = "value",
    fmt: str = ".2f",
    dpi: int = 120,
) -> Figure:
    """Source adapter (rows) x target task (columns) heatmap; missing cells show "–". Values of both signs (e.g.
    gains over ST-A) get a diverging colour scale centred on 0. Saved to ``output`` (PNG) when given."""
    found_sources, found_targets, cells = transfer_values(values, value_key)
    sources, targets = list(sources or found_sources), list(targets or found_targets)
    grid = np.array([[cells.get((s, t), np.nan) for t in targets] for s in sources], dtype=float)
    low, high = float(np.nanmin(grid)), float(np.nanmax(grid))
    width = max(4.5, 2.6 + 0.85 * len(targets))
    figure = _figure(width, max(2.8, 1.6 + 0.45 * len(sources)))
    ax = figure.add_subplot()
    if low < 0 < high:
        from matplotlib.colors import TwoSlopeNorm

        bound = max(-low, high)
        norm = TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound)
        image = _heatmap(ax, grid, sources, targets, -bound, bound, cmap="RdBu", fmt=fmt, norm=norm)
    else:
        image = _heatmap(ax, grid, sources, targets, low, high if high > low else low + 1e-9, fmt=fmt)
    ax.set_xlabel("target task")
    ax.set_ylabel("source adapter")
    ax.set_title(_wrap(title or "transfer: source adapter x target task", width), fontsize=10)
    figure.colorbar(image, ax=ax, shrink=0.9, label=value_label)
    if output is not None:
        save_figure(figure, output, dpi=dpi)
    return figure


def tick_labels(figure: Figure) -> list[str]:
    """Every tick label text on the figure's axes (what a reader sees named on the axes)."""
    return [
        label.get_text()
        for ax in figure.axes
        for label in (*ax.get_xticklabels(), *ax.get_yticklabels())
        if label.get_text()
    ]


def save_figure(figure: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``figure`` as a PNG of ``figsize * dpi`` pixels, atomically (a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        figure.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
