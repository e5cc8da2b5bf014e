"""Metrics, one row each: a number per epoch computed in float64 from a model's outputs and
the true values or labels, the task it belongs to, and which way is better."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from service.training.kinds import Task

MetricFn = Callable[[np.ndarray, np.ndarray], float]
# Logits are taken to float64 this many rows at a time: a split's own float64 copy and its
# temporaries would be several times the size of its float32 outputs.
BLOCK_ROWS = 4096


def _mse(outputs: np.ndarray, y: np.ndarray) -> float:
    residual = outputs - y
    return float(np.dot(residual, residual) / residual.size)


def _rmse(outputs: np.ndarray, y: np.ndarray) -> float:
    return math.sqrt(_mse(outputs, y))


def _mae(outputs: np.ndarray, y: np.ndarray) -> float:
    return float(np.add.reduce(np.abs(outputs - y)) / y.size)


def _r2(outputs: np.ndarray, y: np.ndarray) -> float:
    residual = outputs - y
    spread = y - np.add.reduce(y) / y.size
    unexplained, total = float(np.dot(residual, residual)), float(np.dot(spread, spread))
    if total == 0.0:  # constant targets: perfect or nothing, never a division by zero
        return 1.0 if unexplained == 0.0 else 0.0
    return 1.0 - unexplained / total


def _predicted(outputs: np.ndarray) -> np.ndarray:
    return (outputs > 0).astype(np.int64) if outputs.ndim == 1 else np.argmax(outputs, axis=1)


def _accuracy(outputs: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(_predicted(outputs) == y))


def _log_loss(outputs: np.ndarray, y: np.ndarray) -> float:
    if outputs.ndim == 1:
        per_example = np.maximum(outputs, 0) - outputs * y + np.log1p(np.exp(-np.abs(outputs)))
        return float(np.mean(per_example))
    per_example = np.empty(len(y))
    for lo in range(0, len(y), BLOCK_ROWS):
        block = np.asarray(outputs[lo:lo + BLOCK_ROWS], dtype=np.float64)
        shifted = block - block.max(axis=1, keepdims=True)
        log_sum = np.log(np.exp(shifted).sum(axis=1))
        labels = y[lo:lo + BLOCK_ROWS].astype(np.int64)
        per_example[lo:lo + len(block)] = log_sum - shifted[np.arange(len(block)), labels]
    return float(np.mean(per_example))


@dataclass(frozen=True)
class Metric:
    """A metric: its function of (outputs, y), its task, and whether higher is better."""

    fn: MetricFn
    task: Task
    higher_is_better: bool = False


METRICS: dict[str, Metric] = {
    "mse": Metric(_mse, "regression"),
    "rmse": Metric(_rmse, "regression"),
    "mae": Metric(_mae, "regression"),
    "r2": Metric(_r2, "regression", higher_is_better=True),
    "accuracy": Metric(_accuracy, "classification", higher_is_better=True),
    "log_loss": Metric(_log_loss, "classification"),
}


def names(task: Task) -> list[str]:
    """The metrics of a task, in the table's order."""
    return [name for name, metric in METRICS.items() if metric.task == task]


_BY_TASK = {task: names(task) for task in ("regression", "classification")}


def measure(task: Task, outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Every metric of ``task`` for these outputs (values, or logits) and true values (or
    class indices), in float64 (non-finite results are the caller's to report). Rows of
    logits are converted where a metric needs their values, a block at a time."""
    if outputs.ndim < 2:
        outputs = np.asarray(outputs, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return {name: METRICS[name].fn(outputs, y) for name in _BY_TASK[task]}


def higher_is_better(monitor: str) -> bool:
    """Whether a larger value of a monitored quantity (``loss``, a metric, ``val_`` either)
    is an improvement."""
    metric = METRICS.get(monitor.removeprefix("val_"))
    return metric is not None and metric.higher_is_better
