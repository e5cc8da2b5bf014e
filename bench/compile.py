"""Benchmark tg.function: compiled training steps against hand-written NumPy (and PyTorch).

    .venv/bin/python bench/compile.py [--workloads linear mlp full-1k full-1m] [--repeats 21]
                                      [--keep-freed-memory]
    .venv/bin/python bench/compile.py --memory

Each workload times one epoch per contender, on the same float32 data in the same
process; timings are interleaved (every contender once, then again) and each figure
is the median over repeats. The ratio that counts is the compiled engine's time over
the baseline's, taken within the run:

* linear: the tutorial's model (W * x + b, mean squared error, SGD at 0.1) over 4,096
  examples in shuffled mini-batches of 32; baseline: the same loop in NumPy with the
  gradient derived by hand (target <= 2.0);
* mlp: a 2-16-16-2 ReLU network, softmax cross-entropy, Adam (Keras' update rule), over
  4,096 examples in shuffled mini-batches of 32; baseline: NumPy with the backward pass
  and the Adam update written by hand (target <= 1.5);
* full-1k and full-1m: the tutorial's full-batch epoch (the logged loss, then one step) at
  N = 1,000 and N = 1,000,000; baseline: bench/engine.py's numpy-tuned (targets <= 1.5 and
  <= 1.05).

The eager engine and PyTorch eager (one thread, when importable) run for scale.
--memory runs a compiled full-batch step of a linear model on a 1,000,000 x 8 float32
dataset in a fresh process and reports its peak RSS over the dataset's bytes (target < 3).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.engine import (
    LEARNING_RATE,
    engine_epoch,
    keep_freed_memory,
    make_data,
    show,
    torch_epoch,
    tuned_numpy_epoch,
)
from service import engine as tg
from tests.engine.compiled_memory import measure as measure_memory

Epoch = Callable[[], object]
EXAMPLES, BATCH = 4_096, 32
ADAM = {"learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}


# The tutorial's linear model in mini-batches


class Model:
    """The tutorial's model, as the tutorial writes it."""

    def __init__(self) -> None:
        self.W = tg.Variable(5.0)
        self.b = tg.Variable(0.0)

    def __call__(self, x: tg.Tensor) -> tg.Tensor:
        return self.W * x + self.b


def loss(target_y: tg.Tensor, predicted_y: tg.Tensor) -> tg.Tensor:
    """The tutorial's loss."""
    return tg.reduce_mean(tg.square(target_y - predicted_y))


def engine_linear(x: np.ndarray, y: np.ndarray, compiled: bool) -> Epoch:
    """One epoch of mini-batch SGD on the tutorial's model, the step compiled or eager."""
    model, rng = Model(), np.random.default_rng(0)

    def train_step(xb: tg.Tensor, yb: tg.Tensor) -> tg.Tensor:
        with tg.GradientTape() as t:
            current_loss = loss(yb, model(xb))
        dW, db = t.gradient(current_loss, [model.W, model.b])
        model.W.assign_sub(LEARNING_RATE * dW)
        model.b.assign_sub(LEARNING_RATE * db)
        return current_loss

    step = tg.function(train_step) if compiled else train_step

    def epoch() -> object:
        order = rng.permutation(len(x))
        for lo in range(0, len(x), BATCH):
            idx = order[lo : lo + BATCH]
            current_loss = step(tg.constant(x[idx]), tg.constant(y[idx]))
        return current_loss

    return epoch


def numpy_linear(x: np.ndarray, y: np.ndarray) -> Epoch:
    """The same epoch in NumPy, the tutorial's model and loss kept, the gradient by hand."""
    params, rng = {"W": np.float32(5.0), "b": np.float32(0.0)}, np.random.default_rng(0)

    def epoch() -> object:
        order = rng.permutation(len(x))
        for lo in range(0, len(x), BATCH):
            idx = order[lo : lo + BATCH]
            xb, yb = x[idx], y[idx]
            error = yb - (params["W"] * xb + params["b"])
            current_loss = np.mean(np.square(error))
            dW = -2.0 * np.mean(error * xb)
            db = -2.0 * np.mean(error)
            params["W"] = params["W"] - LEARNING_RATE * dW
            params["b"] = params["b"] - LEARNING_RATE * db
        return current_loss

    return epoch


def tuned_numpy_linear(x: np.ndarray, y: np.ndarray) -> Epoch:
    """The same epoch in NumPy written for speed: ufunc reductions, a dot product for dW."""
    params, rng = {"W": np.float32(5.0), "b": np.float32(0.0)}, np.random.default_rng(0)

    def epoch() -> object:
        order = rng.permutation(len(x))
        for lo in range(0, len(x), BATCH):
            idx = order[lo : lo + BATCH]
            xb, yb = x[idx], y[idx]
            n = len(idx)
            W, b = params["W"], params["b"]
            error = yb - (W * xb + b)
            current_loss = np.add.reduce(np.square(error)) / n
            dW = -2.0 * np.dot(error, xb) / n
            db = -2.0 * np.add.reduce(error) / n
            params["W"], params["b"] = W - LEARNING_RATE * dW, b - LEARNING_RATE * db
        return current_loss

    return epoch


def torch_linear(x_data: np.ndarray, y_data: np.ndarray) -> Epoch | None:
    """The same epoch in PyTorch eager, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    W = torch.tensor(5.0, requires_grad=True)
    b = torch.tensor(0.0, requires_grad=True)
    x, y, rng = torch.from_numpy(x_data), torch.from_numpy(y_data), np.random.default_rng(0)

    def epoch() -> object:
        order = torch.from_numpy(rng.permutation(len(x_data)))
        for lo in range(0, len(x_data), BATCH):
            idx = order[lo : lo + BATCH]
            xb, yb = x[idx], y[idx]
            current_loss = torch.mean(torch.square(yb - (W * xb + b)))
            dW, db = torch.autograd.grad(current_loss, [W, b])
            with torch.no_grad():
                W.sub_(LEARNING_RATE * dW)
                b.sub_(LEARNING_RATE * db)
        return current_loss

    return epoch


# A small MLP with Adam


def mlp_data(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points in the plane, labelled by the quadrant's sign: inputs, labels, one-hot labels."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 2), dtype=np.float32)
    labels = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    return x, labels, np.eye(2, dtype=np.float32)[labels]


def mlp_init() -> list[np.ndarray]:
    """W1, b1, W2, b2, W3, b3 of a 2-16-16-2 network (Glorot-uniform weights, zero biases)."""
    rng, params = np.random.default_rng(1), []
    for fan_in, fan_out in ((2, 16), (16, 16), (16, 2)):
        limit = np.sqrt(6 / (fan_in + fan_out))
        params.append(rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32))
        params.append(np.zeros(fan_out, np.float32))
    return params


def engine_mlp(x: np.ndarray, onehot: np.ndarray, compiled: bool) -> Epoch:
    """One epoch of the MLP with Adam, written with engine ops; the step compiled or eager."""
    params = [tg.Variable(p) for p in mlp_init()]
    m = [tg.Variable(tg.zeros_like(p), trainable=False) for p in params]
    v = [tg.Variable(tg.zeros_like(p), trainable=False) for p in params]
    iterations = tg.Variable(0, dtype=tg.int64, trainable=False)
    lr, beta_1, beta_2, epsilon = ADAM.values()
    rng = np.random.default_rng(0)

    def train_step(xb: tg.Tensor, yb: tg.Tensor) -> tg.Tensor:
        with tg.GradientTape() as tape:
            h = tg.relu(xb @ params[0] + params[1])
            h = tg.relu(h @ params[2] + params[3])
            logits = h @ params[4] + params[5]
            z = logits - tg.stop_gradient(tg.reduce_max(logits, axis=1, keepdims=True))
            log_p = z - tg.log(tg.reduce_sum(tg.exp(z), axis=1, keepdims=True))
            current_loss = -tg.reduce_mean(tg.reduce_sum(yb * log_p, axis=1))
        grads = tape.gradient(current_loss, params)
        iterations.assign_add(1)
        t = tg.cast(iterations, tg.float32)
        alpha = lr * tg.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        for p, g, m_p, v_p in zip(params, grads, m, v, strict=True):
            m_p.assign(m_p + (g - m_p) * (1 - beta_1))
            v_p.assign(v_p + (tg.square(g) - v_p) * (1 - beta_2))
            p.assign_sub(alpha * m_p / (tg.sqrt(v_p) + epsilon))
        return current_loss

    step = tg.function(train_step) if compiled else train_step

    def epoch() -> object:
        order = rng.permutation(len(x))
        for lo in range(0, len(x), BATCH):
            idx = order[lo : lo + BATCH]
            current_loss = step(tg.constant(x[idx]), tg.constant(onehot[idx]))
        return current_loss

    return epoch


def numpy_mlp(x: np.ndarray, onehot: np.ndarray) -> Epoch:
    """The same epoch in NumPy: forward pass, backward pass and Adam written by hand."""
    params = mlp_init()
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    lr, beta_1, beta_2, epsilon = ADAM.values()
    one = np.float32(1)
    b1, b2, eps = np.float32(beta_1), np.float32(beta_2), np.float32(epsilon)
    state, rng = {"t": 0}, np.random.default_rng(0)

    def step(xb: np.ndarray, yb: np.ndarray) -> np.floating:
        W1, c1, W2, c2, W3, c3 = params
        z1 = xb @ W1 + c1
        h1 = np.maximum(z1, 0)
        z2 = h1 @ W2 + c2
        h2 = np.maximum(z2, 0)
        logits = h2 @ W3 + c3
        z = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        current_loss = -np.mean(np.sum(yb * (z - np.log(s)), axis=1))
        d3 = (e / s - yb) / len(xb)
        dz2 = (d3 @ W3.T) * (z2 > 0)
        dz1 = (dz2 @ W2.T) * (z1 > 0)
        grads = [xb.T @ dz1, dz1.sum(0), h1.T @ dz2, dz2.sum(0), h2.T @ d3, d3.sum(0)]
        state["t"] += 1
        t = np.float32(state["t"])
        alpha = lr * np.sqrt(one - b2**t) / (one - b1**t)
        for p, g, m_p, v_p in zip(params, grads, m, v, strict=True):
            m_p += (g - m_p) * (one - b1)
            v_p += (g * g - v_p) * (one - b2)
            p -= alpha * m_p / (np.sqrt(v_p) + eps)
        return current_loss

    def epoch() -> object:
        order = rng.permutation(len(x))
        for lo in range(0, len(x), BATCH):
            idx = order[lo : lo + BATCH]
            current_loss = step(x[idx], onehot[idx])
        return current_loss

    return epoch


def torch_mlp(x_data: np.ndarray, labels: np.ndarray) -> Epoch | None:
    """The same epoch in PyTorch eager (nn.Sequential, cross_entropy, optim.Adam), or None."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    layers = [torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(),
              torch.nn.Linear(16, 2)]
    model = torch.nn.Sequential(*layers)
    weights = mlp_init()
    with torch.no_grad():
        for i, layer in enumerate(model[::2]):
            layer.weight.copy_(torch.from_numpy(weights[2 * i].T))
            layer.bias.copy_(torch.from_numpy(weights[2 * i + 1]))
    optimizer = torch.optim.Adam(model.parameters(), lr=ADAM["learning_rate"],
                                 betas=(ADAM["beta_1"], ADAM["beta_2"]), eps=ADAM["epsilon"])
    x, y, rng = torch.from_numpy(x_data), torch.from_numpy(labels), np.random.default_rng(0)

    def epoch() -> object:
        order = torch.from_numpy(rng.permutation(len(x_data)))
        for lo in range(0, len(x_data), BATCH):
            idx = order[lo : lo + BATCH]
            optimizer.zero_grad()
            current_loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            current_loss.backward()
            optimizer.step()
        return current_loss

    return epoch


# The tutorial's full-batch epoch


def compiled_full_batch(x_data: np.ndarray, y_data: np.ndarray) -> Epoch:
    """The tutorial's epoch (the logged loss, then the train step), compiled as one function."""
    model, inputs, outputs = Model(), tg.constant(x_data), tg.constant(y_data)

    @tg.function
    def epoch_step(x: tg.Tensor, y: tg.Tensor) -> tg.Tensor:
        current_loss = loss(y, model(x))
        with tg.GradientTape() as t:
            step_loss = loss(y, model(x))
        dW, db = t.gradient(step_loss, [model.W, model.b])
        model.W.assign_sub(LEARNING_RATE * dW)
        model.b.assign_sub(LEARNING_RATE * db)
        return current_loss

    return lambda: epoch_step(inputs, outputs)


# Running


def workloads() -> dict[str, Callable[[], tuple[dict[str, Epoch | None], str, float, int]]]:
    """Each workload: its contenders, the baseline's name, the target ratio, epochs per timing."""

    def linear() -> tuple[dict[str, Epoch | None], str, float, int]:
        x, y = make_data(EXAMPLES)
        return ({"compiled": engine_linear(x, y, True), "numpy": numpy_linear(x, y),
                 "numpy-tuned": tuned_numpy_linear(x, y), "eager": engine_linear(x, y, False),
                 "torch": torch_linear(x, y)},
                "numpy", 2.0, 2)

    def mlp() -> tuple[dict[str, Epoch | None], str, float, int]:
        x, labels, onehot = mlp_data(EXAMPLES)
        return ({"compiled": engine_mlp(x, onehot, True), "numpy": numpy_mlp(x, onehot),
                 "eager": engine_mlp(x, onehot, False), "torch": torch_mlp(x, labels)},
                "numpy", 1.5, 1)

    def full(n: int, target: float) -> Callable[[], tuple[dict[str, Epoch | None], str, float,
                                                          int]]:
        def contenders() -> tuple[dict[str, Epoch | None], str, float, int]:
            x, y = make_data(n)
            return ({"compiled": compiled_full_batch(x, y), "numpy-tuned": tuned_numpy_epoch(x, y),
                     "eager": engine_epoch(x, y), "torch": torch_epoch(x, y)},
                    "numpy-tuned", target, max(5, 200_000 // n))
        return contenders

    return {"linear": linear, "mlp": mlp, "full-1k": full(1_000, 1.5),
            "full-1m": full(1_000_000, 1.05)}


def measure(epochs: dict[str, Epoch], inner: int, repeats: int) -> dict[str, float]:
    """Median seconds per epoch for each contender, timings interleaved across repeats."""
    samples: dict[str, list[float]] = {name: [] for name in epochs}
    for epoch in epochs.values():  # warm up (and trace)
        for _ in range(inner):
            epoch()
    for _ in range(repeats):
        for name, epoch in epochs.items():
            start = time.perf_counter()
            for _ in range(inner):
                epoch()
            samples[name].append((time.perf_counter() - start) / inner)
    return {name: statistics.median(times) for name, times in samples.items()}


def memory() -> None:
    """Peak RSS of a process running a compiled step on 1,000,000 x 8 float32, vs its data."""
    data, before, peak, traces = measure_memory(steps=10)
    mib = 2**20
    print(f"memory: dataset {data / mib:.1f} MiB (1,000,000 x 8 and 1,000,000 float32); "
          f"RSS before the first step {before / mib:.1f} MiB; peak RSS over 10 compiled steps "
          f"({traces} trace) {peak / mib:.1f} MiB = {peak / data:.2f} x the dataset (target < 3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    table = workloads()
    parser.add_argument("--workloads", nargs="+", choices=list(table), default=list(table))
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--memory", action="store_true", help="run the memory check alone")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="stop glibc returning freed memory to the kernel, so that no "
                             "contender pays page faults for fresh large arrays")
    args = parser.parse_args()
    if args.memory:
        memory()
        return
    if args.keep_freed_memory:
        keep_freed_memory()
    for name in args.workloads:
        contenders, baseline, target, inner = table[name]()
        epochs = {k: v for k, v in contenders.items() if v is not None}
        times = measure(epochs, inner, args.repeats)
        ratio = times["compiled"] / times[baseline]
        verdict = "met" if ratio <= target else "MISSED"
        print(f"{name}: median time per epoch over {args.repeats} repeats; compiled / {baseline} "
              f"= {ratio:.2f} (target <= {target}: {verdict})")
        for contender, seconds in times.items():
            print(f"  {contender:<12}{show(seconds)}   {seconds / times[baseline]:6.2f} x "
                  f"{baseline}")


if __name__ == "__main__":
    main()
