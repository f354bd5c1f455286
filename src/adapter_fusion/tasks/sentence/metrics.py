"""Evaluation metrics for sentence(-pair) classification and regression tasks.

Each metric is a function ``(predictions, references) -> float`` on 1-D arrays, registered by name in ``METRICS``;
a ``TaskSpec`` lists the names it reports. Definitions follow the GLUE benchmark: binary ``f1`` is the F1 of the
positive class (id 1, as for MRPC and QQP), ``matthews_correlation`` as for CoLA, ``pearson``/``spearmanr`` as for
STS-B. sklearn and scipy are imported on first use to keep ``import adapter_fusion`` fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from adapter_fusion.registry import Registry
from adapter_fusion.tasks.base import TaskSpec, get_task

MetricFn = Callable[[np.ndarray, np.ndarray], float]
METRICS: Registry[MetricFn] = Registry("metric")


@METRICS.decorator("accuracy")
def accuracy(predictions: np.ndarray, references: np.ndarray) -> float:
    """Fraction of exact matches."""
    return float(np.mean(predictions == references))


@METRICS.decorator("f1")
def binary_f1(predictions: np.ndarray, references: np.ndarray) -> float:
    """F1 of the positive class (id 1); 0.0 when there are no true or predicted positives."""
    from sklearn.metrics import f1_score

    return float(f1_score(references, predictions, pos_label=1, average="binary", zero_division=0.0))


@METRICS.decorator("macro_f1")
def macro_f1(predictions: np.ndarray, references: np.ndarray) -> float:
    """Unweighted mean of the per-class F1 over the classes present in references or predictions."""
    from sklearn.metrics import f1_score

    return float(f1_score(references, predictions, average="macro", zero_division=0.0))


@METRICS.decorator("matthews_correlation")
def matthews_correlation(predictions: np.ndarray, references: np.ndarray) -> float:
    """Matthews correlation coefficient in [-1, 1] (0.0 when undefined, e.g. a constant prediction)."""
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(references, predictions))


@METRICS.decorator("pearson")
def pearson(predictions: np.ndarray, references: np.ndarray) -> float:
    """Pearson correlation (NaN when either side is constant)."""
    from scipy.stats import pearsonr

    return float(pearsonr(predictions, references).statistic)


@METRICS.decorator("spearmanr")
def spearman(predictions: np.ndarray, references: np.ndarray) -> float:
    """Spearman rank correlation, ties given their average rank (NaN when either side is constant)."""
    from scipy.stats import spearmanr

    return float(spearmanr(predictions, references).statistic)


@METRICS.decorator("pearson_spearman_mean")
def pearson_spearman_mean(predictions: np.ndarray, references: np.ndarray) -> float:
    """Mean of ``pearson`` and ``spearmanr``: the usual single STS-B score."""
    return (pearson(predictions, references) + spearman(predictions, references)) / 2.0


def compute_metrics(task: str | TaskSpec, predictions: Sequence | np.ndarray, references: Sequence | np.ndarray
                    ) -> dict[str, float]:
    """Score ``predictions`` against ``references`` with every metric of ``task``.

    Args:
        task: a task name/alias or a ``TaskSpec``.
        predictions: classification: class ids ``[n]`` or scores/logits ``[n, num_labels]`` (the argmax is taken);
            regression: values ``[n]`` or ``[n, 1]``.
        references: gold class ids (or values) ``[n]``.

    Returns:
        ``{metric_name: value}`` for each name in ``task.metrics``, as Python floats.
    """
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    preds = np.asarray(predictions)
    refs = np.asarray(references)
    if spec.task_type == "classification" and preds.ndim == 2:
        if preds.shape[1] != spec.num_labels:
            raise ValueError(
                f"task {spec.name!r}: 2-D predictions must be scores of shape [n, {spec.num_labels}]; "
                f"got shape {preds.shape}"
            )
        preds = preds.argmax(axis=-1)
    elif spec.task_type == "regression" and preds.ndim == 2 and preds.shape[1] == 1:
        preds = preds[:, 0]
    if preds.ndim != 1 or refs.ndim != 1 or len(preds) != len(refs) or len(refs) == 0:
        raise ValueError(
            f"task {spec.name!r}: predictions and references must be non-empty 1-D arrays of the same length; "
            f"got shapes {preds.shape} and {refs.shape}"
        )
    if spec.task_type == "classification":
        preds, refs = _class_ids("predictions", preds, spec), _class_ids("references", refs, spec)
    else:
        preds, refs = preds.astype(np.float64), refs.astype(np.float64)
    return {name: float(METRICS.get(name)(preds, refs)) for name in spec.metrics}


def _class_ids(what: str, values: np.ndarray, spec: TaskSpec) -> np.ndarray:
    """Check that ``values`` are integer class ids of ``spec`` and return them as int64."""
    integral_floats = values.dtype.kind == "f" and bool(np.all(np.mod(values, 1) == 0))
    if values.dtype.kind not in "iub" and not integral_floats:
        raise ValueError(f"task {spec.name!r}: {what} must be integer class ids; got dtype {values.dtype}")
    ids = values.astype(np.int64)
    bad = ids[(ids < 0) | (ids >= spec.num_labels)]
    if bad.size:
        raise ValueError(
            f"task {spec.name!r}: {what} contain class id {int(bad[0])}, outside 0..{spec.num_labels - 1} "
            f"({', '.join(spec.label_names)})"
        )
    return ids
