"""Benchmark a model kind's training: one epoch of an MLP against hand-written NumPy.

    .venv/bin/python bench/kinds.py [--examples 4096] [--batch 32] [--repeats 21]

The epoch is what the service's loop runs for a run of an MLP 2-16-16-2 (ReLU, softmax
cross-entropy from logits, Adam at learning rate 0.01) on 4,096 examples in mini-batches of
32, in row order: 128 calls of the loop's one step function (the kind's forward pass, the
loss on the tape, ``tape.gradient``, Adam's update on the variables). It is timed against
the same computation written by hand in NumPy (forward, backward derived by hand, Adam) and,
when importable, PyTorch eager on one thread, all on the same float32 data in the same
process, interleaved; each figure is the median over repeats of one epoch's time. The loop's
whole epoch (the steps plus the row it logs: a forward pass over every example and the
metrics) is timed as the service runs it, with its step compiled (``TAPELINE_COMPILE``, the
default; bit-identical to eager) and eager (``TAPELINE_COMPILE=false``); the target is the
service's epoch at or below 4x hand-written NumPy. For scale, the bare step eager and through
``tg.function``. BLAS runs on one thread, as in the service's training workers (see
``service.jobs.attempt.one_blas_thread``).
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

from service import engine as tg
from service.jobs.attempt import one_blas_thread
from service.training.data import blobs
from service.training.kinds import MLP, Model
from service.training.loop import Examples, Fit
from service.training.records import FitSpec

WIDTHS = (2, 16, 16, 2)
LEARNING_RATE, BETA_1, BETA_2, EPSILON = 0.01, 0.9, 0.999, 1e-7


def make_problem(n: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Two classes of blobs in 2-D (float32) and the MLP's Glorot-uniform initial params."""
    x, y = blobs(n, features=2, classes=2, spread=3.0, seed=0)
    kind = MLP(2, WIDTHS[1:-1], "relu", "classification", WIDTHS[-1])
    return x, y, kind.initial(0)


def loop_for(x: np.ndarray, y: np.ndarray, params: dict[str, np.ndarray],
             batch: int, epochs: int = 10**6, compiled: bool = False) -> Fit:
    """The service's epoch loop for this run (mini-batches in row order)."""
    kind = MLP(2, WIDTHS[1:-1], "relu", "classification", WIDTHS[-1])
    spec = FitSpec(epochs=epochs, optimizer={"kind": "adam", "learning_rate": LEARNING_RATE},
                   loss="cross_entropy", batch_size=batch, shuffle=False)
    return Fit(Model(kind, params, "float32"), Examples(x, y), spec, compiled=compiled)


def engine_epoch(x: np.ndarray, y: np.ndarray, params: dict[str, np.ndarray],
                 batch: int, compiled: bool = False) -> Callable[[], object]:
    """128 steps of the loop's step function, batches in row order (``compiled``: the step
    through ``tg.function``)."""
    loop = loop_for(x, y, params, batch)
    inputs, targets = loop.train.x, loop.train.targets
    step = tg.function(loop.step) if compiled else loop.step

    def epoch() -> object:
        for lo in range(0, len(inputs), batch):
            loss, _ = step(tg.constant(inputs[lo:lo + batch]),
                           tg.constant(targets[lo:lo + batch]))
        return loss

    epoch.loop = loop  # type: ignore[attr-defined]
    return epoch


def service_epoch(x: np.ndarray, y: np.ndarray, params: dict[str, np.ndarray],
                  batch: int, compiled: bool) -> Callable[[], object]:
    """One epoch of the loop's own iteration: its logged row, then its steps (compiled as the
    service's loop compiles them, or eager)."""
    records = loop_for(x, y, params, batch, compiled=compiled).run()
    return lambda: next(records)


def numpy_epoch(x: np.ndarray, y: np.ndarray, params: dict[str, np.ndarray],
                batch: int) -> Callable[[], object]:
    """The same epoch by hand: forward, softmax cross-entropy, backward, Adam, in float32."""
    p = {name: value.astype(np.float32) for name, value in params.items()}
    m = {name: np.zeros_like(value) for name, value in p.items()}
    v = {name: np.zeros_like(value) for name, value in p.items()}
    onehot = np.eye(WIDTHS[-1], dtype=np.float32)[y]
    step = [0]
    one = np.float32(1)
    keep_m, keep_v = one - np.float32(BETA_1), one - np.float32(BETA_2)
    eps = np.float32(EPSILON)

    def train(xb: np.ndarray, tb: np.ndarray) -> np.floating:
        a1 = xb @ p["W1"] + p["b1"]
        h1 = np.maximum(a1, 0)
        a2 = h1 @ p["W2"] + p["b2"]
        h2 = np.maximum(a2, 0)
        z = h2 @ p["W3"] + p["b3"]
        shifted = z - z.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        total = e.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(total[:, 0]) - (shifted * tb).sum(axis=1))
        dz = (e / total - tb) / np.float32(len(xb))
        grads = {"W3": h2.T @ dz, "b3": dz.sum(axis=0)}
        d2 = (dz @ p["W3"].T) * (a2 > 0)
        grads |= {"W2": h1.T @ d2, "b2": d2.sum(axis=0)}
        d1 = (d2 @ p["W2"].T) * (a1 > 0)
        grads |= {"W1": xb.T @ d1, "b1": d1.sum(axis=0)}
        step[0] += 1
        t = step[0]
        alpha = np.float32(LEARNING_RATE * np.sqrt(1 - BETA_2**t) / (1 - BETA_1**t))
        for name, g in grads.items():
            m[name] = m[name] + (g - m[name]) * keep_m
            v[name] = v[name] + (g * g - v[name]) * keep_v
            p[name] = p[name] - alpha * m[name] / (np.sqrt(v[name]) + eps)
        return loss

    def epoch() -> object:
        for lo in range(0, len(x), batch):
            loss = train(x[lo:lo + batch], onehot[lo:lo + batch])
        return loss

    epoch.params = p  # type: ignore[attr-defined]
    return epoch


def torch_epoch(x: np.ndarray, y: np.ndarray, params: dict[str, np.ndarray],
                batch: int) -> Callable[[], object] | None:
    """The same epoch in PyTorch eager (one thread), or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    weights = [torch.tensor(params[name], dtype=torch.float32, requires_grad=True)
               for name in ("W1", "b1", "W2", "b2", "W3", "b3")]
    optimizer = torch.optim.Adam(weights, lr=LEARNING_RATE, betas=(BETA_1, BETA_2), eps=EPSILON)
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)

    def epoch() -> object:
        for lo in range(0, len(inputs), batch):
            W1, b1, W2, b2, W3, b3 = weights
            h = torch.relu(inputs[lo:lo + batch] @ W1 + b1)
            h = torch.relu(h @ W2 + b2)
            loss = torch.nn.functional.cross_entropy(h @ W3 + b3, labels[lo:lo + batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return loss

    return epoch


def check_same_computation(x: np.ndarray, y: np.ndarray, params: dict[str, np.ndarray],
                           batch: int) -> float:
    """Run one epoch of the engine and of NumPy from the same start; the largest relative
    difference of their params afterwards (float32 rounding only)."""
    engine, numpy = engine_epoch(x, y, params, batch), numpy_epoch(x, y, params, batch)
    engine()
    numpy()
    found = engine.loop.model.params()  # type: ignore[attr-defined]
    return max(float(np.linalg.norm(found[k] - numpy.params[k])  # type: ignore[attr-defined]
                     / np.linalg.norm(numpy.params[k])) for k in found)  # type: ignore[attr-defined]


def measure(epochs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per epoch of each contender, timings interleaved across repeats."""
    samples: dict[str, list[float]] = {name: [] for name in epochs}
    for epoch in epochs.values():  # warm up
        epoch()
    for _ in range(repeats):
        for name, epoch in epochs.items():
            start = time.perf_counter()
            epoch()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    one_blas_thread()
    x, y, params = make_problem(args.examples)
    difference = check_same_computation(x, y, params, args.batch)
    epochs = {"numpy": numpy_epoch(x, y, params, args.batch),
              "loop epoch": service_epoch(x, y, params, args.batch, compiled=True),
              "loop eager": service_epoch(x, y, params, args.batch, compiled=False),
              "step eager": engine_epoch(x, y, params, args.batch),
              "step compiled": engine_epoch(x, y, params, args.batch, compiled=True)}
    torch = torch_epoch(x, y, params, args.batch)
    if torch is not None:
        epochs["torch"] = torch
    times = measure(epochs, args.repeats)
    steps = -(-args.examples // args.batch)
    print(f"MLP {'-'.join(map(str, WIDTHS))} (ReLU, softmax cross-entropy, Adam), "
          f"{args.examples:,} examples, batch {args.batch} in row order: {steps} steps an "
          f"epoch; median of {args.repeats} interleaved repeats")
    print(f"  same computation: params after one epoch differ by at most {difference:.1e} "
          "(relative) between the engine and NumPy")
    for name, seconds in times.items():
        print(f"  {name:<14}{seconds * 1e3:8.2f} ms   {seconds / times['numpy']:5.2f} x numpy"
              f"   {seconds / steps * 1e6:7.1f} µs a step")
    if torch is None:
        print("  (torch is not importable here: no PyTorch figure)")
    print(f"  target: loop epoch (the service's, compiled) <= 4x numpy: "
          f"{times['loop epoch'] / times['numpy']:.2f}x")


if __name__ == "__main__":
    main()
