"""Benchmark the engine: one epoch of the tutorial against hand-written NumPy (and PyTorch).

    .venv/bin/python bench/engine.py [--sizes 1000 1000000] [--repeats 41]

An epoch is what the tutorial's training loop does per epoch: compute the
logged loss, then one tape step (forward pass, gradient, two assign_sub). The
hand-written NumPy epoch computes the same thing with the gradient derived by
hand: the logged loss, the step's forward pass and loss, dW and db, the update.
PyTorch eager runs the same epoch when torch is importable. All three use the
same float32 data in the same process; their timings are interleaved and each
figure is the median over repeats of the mean epoch time within a repeat.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service import engine as tg

TRUE_W, TRUE_B, LEARNING_RATE = 3.0, 2.0, 0.1


def make_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's synthetic data: x ~ N(0, 1), y = 3x + 2 + N(0, 1) noise, as float32."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n, dtype=np.float32)
    noise = rng.standard_normal(n, dtype=np.float32)
    return x, (x * np.float32(TRUE_W) + np.float32(TRUE_B) + noise).astype(np.float32)


def engine_epoch(x_data: np.ndarray, y_data: np.ndarray) -> Callable[[], object]:
    """The tutorial's epoch, written with the engine exactly as it is written with TensorFlow."""

    class Model:
        def __init__(self) -> None:
            self.W = tg.Variable(5.0)
            self.b = tg.Variable(0.0)

        def __call__(self, x: tg.Tensor) -> tg.Tensor:
            return self.W * x + self.b

    def loss(target_y: tg.Tensor, predicted_y: tg.Tensor) -> tg.Tensor:
        return tg.reduce_mean(tg.square(target_y - predicted_y))

    def train(model: Model, inputs: tg.Tensor, outputs: tg.Tensor, learning_rate: float) -> None:
        with tg.GradientTape() as t:
            current_loss = loss(outputs, model(inputs))
        dW, db = t.gradient(current_loss, [model.W, model.b])
        model.W.assign_sub(learning_rate * dW)
        model.b.assign_sub(learning_rate * db)

    model, inputs, outputs = Model(), tg.constant(x_data), tg.constant(y_data)

    def epoch() -> object:
        current_loss = loss(outputs, model(inputs))
        train(model, inputs, outputs, learning_rate=LEARNING_RATE)
        return current_loss

    return epoch


def numpy_epoch(x: np.ndarray, y: np.ndarray) -> Callable[[], object]:
    """The tutorial ported to plain NumPy: its model and loss, and the gradient derived by hand."""
    params = {"W": np.float32(5.0), "b": np.float32(0.0)}

    def model(x: np.ndarray) -> np.ndarray:
        return params["W"] * x + params["b"]

    def loss(target_y: np.ndarray, predicted_y: np.ndarray) -> np.floating:
        return np.mean(np.square(target_y - predicted_y))

    def train(x: np.ndarray, y: np.ndarray, learning_rate: float) -> None:
        error = y - model(x)
        np.mean(np.square(error))  # the step's own loss, as the tape step computes it
        dW = -2.0 * np.mean(error * x)
        db = -2.0 * np.mean(error)
        params["W"] = params["W"] - learning_rate * dW
        params["b"] = params["b"] - learning_rate * db

    def epoch() -> object:
        current_loss = loss(y, model(x))
        train(x, y, learning_rate=LEARNING_RATE)
        return current_loss

    return epoch


def tuned_numpy_epoch(x: np.ndarray, y: np.ndarray) -> Callable[[], object]:
    """The hand-written epoch tuned: ufunc reductions instead of np.mean, a dot product for dW."""
    params = {"W": np.float32(5.0), "b": np.float32(0.0)}
    n = x.size

    def epoch() -> object:
        W, b = params["W"], params["b"]
        current_loss = np.add.reduce(np.square(y - (W * x + b))) / n
        error = y - (W * x + b)
        np.add.reduce(np.square(error)) / n
        dW = -2.0 * np.dot(error, x) / n
        db = -2.0 * np.add.reduce(error) / n
        params["W"], params["b"] = W - LEARNING_RATE * dW, b - LEARNING_RATE * db
        return current_loss

    return epoch


def torch_epoch(x_data: np.ndarray, y_data: np.ndarray) -> Callable[[], object] | None:
    """The same epoch in PyTorch eager, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)  # like NumPy's elementwise loops; idle OpenMP threads spin otherwise
    W = torch.tensor(5.0, requires_grad=True)
    b = torch.tensor(0.0, requires_grad=True)
    x, y = torch.from_numpy(x_data), torch.from_numpy(y_data)

    def loss(target_y: torch.Tensor, predicted_y: torch.Tensor) -> torch.Tensor:
        return torch.mean(torch.square(target_y - predicted_y))

    def epoch() -> object:
        with torch.no_grad():
            current_loss = loss(y, W * x + b)
        dW, db = torch.autograd.grad(loss(y, W * x + b), [W, b])
        with torch.no_grad():
            W.sub_(LEARNING_RATE * dW)
            b.sub_(LEARNING_RATE * db)
        return current_loss

    return epoch


def measure(epochs: dict[str, Callable[[], object]], n: int, repeats: int) -> dict[str, float]:
    """Median seconds per epoch for each contender, timings interleaved across repeats."""
    inner = max(5, 200_000 // n)  # epochs per timing: 200 at N = 1,000, 5 at N = 1,000,000
    samples: dict[str, list[float]] = {name: [] for name in epochs}
    for epoch in epochs.values():  # warm up
        for _ in range(inner):
            epoch()
    for _ in range(repeats):
        for name, epoch in epochs.items():
            start = time.perf_counter()
            for _ in range(inner):
                epoch()
            samples[name].append((time.perf_counter() - start) / inner)
    return {name: statistics.median(times) for name, times in samples.items()}


def keep_freed_memory() -> None:
    """Set glibc's trim and mmap thresholds to 1 GiB, as MALLOC_TRIM_THRESHOLD_ would."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    m_trim_threshold, m_mmap_threshold = -1, -3
    for parameter in (m_trim_threshold, m_mmap_threshold):
        if not libc.mallopt(parameter, 1 << 30):
            raise OSError("mallopt failed")


def show(seconds: float) -> str:
    return f"{seconds * 1e6:9.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:9.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="stop glibc returning freed memory to the kernel, so that no "
                             "contender pays page faults for fresh large arrays")
    args = parser.parse_args()
    if args.keep_freed_memory:
        keep_freed_memory()
    for n in args.sizes:
        x, y = make_data(n)
        epochs = {"engine": engine_epoch(x, y), "numpy": numpy_epoch(x, y),
                  "numpy-tuned": tuned_numpy_epoch(x, y)}
        torch = torch_epoch(x, y)
        if torch is not None:
            epochs["torch"] = torch
        times = measure(epochs, n, args.repeats)
        print(f"N = {n:,}: median time per epoch over {args.repeats} repeats")
        for name, seconds in times.items():
            numpy, tuned = seconds / times["numpy"], seconds / times["numpy-tuned"]
            print(f"  {name:<12}{show(seconds)}   {numpy:5.2f} x numpy  {tuned:5.2f} x numpy-tuned")


if __name__ == "__main__":
    main()
