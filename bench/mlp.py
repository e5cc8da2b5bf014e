"""Benchmark the engine's training epoch on real-sized MLPs against PyTorch and hand-written NumPy.

    .venv/bin/python bench/mlp.py [--workloads digits mnist regression] [--repeats 7]
    .venv/bin/python bench/mlp.py --memory

Three workloads users bring, each an MLP with ReLU between its dense layers and Adam
(Keras' defaults: learning rate 0.001, beta_1 0.9, beta_2 0.999, epsilon 1e-7), mini-batches
shuffled every epoch:

* digits: scikit-learn's bundled digits (1,797 x 64, pixels scaled to [0, 1], 10 classes),
  MLP 64-128-64-10, softmax cross-entropy, batch 32;
* mnist: 60,000 x 784 synthetic, seeded, MNIST-shaped (pixels in [0, 1], 10 classes), MLP
  784-256-10, softmax cross-entropy, batch 128;
* regression: 20,000 x 32 synthetic, seeded, MLP 32-512-512-1, mean squared error, batch 256.

Every contender's epoch begins with the logged row, one forward pass over all training rows
at the epoch's starting params and its loss, then runs the epoch's steps:

* tapeline: an epoch as the service's training loop runs it, one record of
  ``service.training.loop.Fit.run`` (the step compiled, the history row with its metrics,
  params recorded only when the service would: models of at most ``history_params_max``);
* torch: PyTorch eager on one thread (``nn.Sequential``, ``optim.Adam``), when importable;
* numpy: forward and hand-derived backward in NumPy, Adam in place, written as a
  competent person writes it.

All three run on the same float32 data and initial params, in one process, with one BLAS
thread for everyone; epochs are interleaved (each contender once, then again) after a
warm-up long enough for the loop to compile its every batch shape, and each figure is the
median over repeats. Targets: tapeline / torch <= 0.9 and tapeline / numpy <= 1.0.

--memory trains the mnist workload with the service's loop alone in a new process (no
PyTorch, no scikit-learn imported) and reports the peak RSS over its compiled epochs against
the dataset's bytes plus the model's (target <= 1.5).
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.config import get_settings
from service.training.kinds import MLP, Model
from service.training.loop import COMPILE_AFTER, Examples, Fit
from service.training.records import EpochRecord, FitSpec

LEARNING_RATE, BETA_1, BETA_2, EPSILON = 0.001, 0.9, 0.999, 1e-7
SEED = 0
Epoch = Callable[[], float]


@dataclass(frozen=True)
class Workload:
    """A dataset, the MLP trained on it, its loss and its batch size."""

    name: str
    title: str
    hidden: tuple[int, ...]
    classes: int | None  # None: regression
    batch: int
    data: Callable[[], tuple[np.ndarray, np.ndarray]]

    def kind(self, features: int) -> MLP:
        """The model kind of this workload."""
        if self.classes is None:
            return MLP(features, self.hidden, "relu", "regression")
        return MLP(features, self.hidden, "relu", "classification", self.classes)


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8 x 8 digits: pixels / 16 in float32, labels 0-9."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)


def mnist_shaped(n: int = 60_000, features: int = 784,
                 classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """n x 784 pixels in [0, 1], nine parts noise and one part a seeded template per class
    (as learnable as MNIST by this MLP: ~91 % accuracy after two epochs), and the labels,
    built in small blocks, so that no copy of the set, nor much garbage, is ever made."""
    rng = np.random.default_rng(SEED)
    templates = rng.random((classes, features), dtype=np.float32)
    labels = rng.integers(0, classes, n)
    x = np.empty((n, features), np.float32)
    for lo in range(0, n, 64):
        block = x[lo:lo + 64]
        rng.random(block.shape, dtype=np.float32, out=block)
        block *= np.float32(0.9)
        block += templates[labels[lo:lo + 64]] * np.float32(0.1)
    return x, labels


def regression(n: int = 20_000, features: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """n x 32 standard normal inputs and a smooth nonlinear target with noise, float32."""
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((n, features), dtype=np.float32)
    w1 = rng.standard_normal((features, 16), dtype=np.float32) / np.float32(math.sqrt(features))
    w2 = rng.standard_normal(16, dtype=np.float32)
    y = np.tanh(x @ w1) @ w2 + np.float32(0.1) * rng.standard_normal(n, dtype=np.float32)
    return x, y.astype(np.float32)


WORKLOADS = {
    "digits": Workload("digits", "scikit-learn's digits (1,797 x 64, 10 classes), "
                       "MLP 64-128-64-10 ReLU, Adam, batch 32", (128, 64), 10, 32, digits),
    "mnist": Workload("mnist", "60,000 x 784, 10 classes (MNIST-shaped), MLP 784-256-10 ReLU, "
                      "Adam, batch 128", (256,), 10, 128, mnist_shaped),
    "regression": Workload("regression", "20,000 x 32 regression, MLP 32-512-512-1 ReLU, MSE, "
                           "Adam, batch 256", (512, 512), None, 256, regression),
}


def initial(workload: Workload, x: np.ndarray) -> dict[str, np.ndarray]:
    """The kind's own seeded initial params (Glorot-uniform kernels, zero biases)."""
    return workload.kind(x.shape[1]).initial(SEED)


# Tapeline: the service's loop


def tapeline_loop(workload: Workload, x: np.ndarray, y: np.ndarray,
                  params: dict[str, np.ndarray], epochs: int = 10**6) -> Fit:
    """The service's loop for this workload, as a run with the API's defaults would train it."""
    kind = workload.kind(x.shape[1])
    spec = FitSpec(
        epochs=epochs,
        optimizer={"kind": "adam", "learning_rate": LEARNING_RATE, "beta_1": BETA_1,
                   "beta_2": BETA_2, "epsilon": EPSILON},
        loss="mse" if workload.classes is None else "cross_entropy",
        batch_size=workload.batch,
        shuffle=True,
        shuffle_seed=SEED,
        record_params=kind.param_count() <= get_settings().history_params_max,
    )
    return Fit(Model(kind, params, "float32"), Examples(x, y), spec, compiled=True)


def tapeline_epoch(workload: Workload, x: np.ndarray, y: np.ndarray,
                   params: dict[str, np.ndarray]) -> Epoch:
    """One record of the loop's iteration: its logged row, then its steps."""
    records: Iterator[Any] = tapeline_loop(workload, x, y, params).run()

    def epoch() -> float:
        record = next(records)
        assert isinstance(record, EpochRecord)
        return record.loss

    return epoch


# Hand-written NumPy


def numpy_epoch(workload: Workload, x: np.ndarray, y: np.ndarray,
                params: dict[str, np.ndarray]) -> Epoch:
    """The same epoch in NumPy: forward, softmax cross-entropy or MSE, the backward pass
    derived by hand, and Adam updating the params and moments in place."""
    layers = len(workload.hidden) + 1
    Ws = [params[f"W{i}"].astype(np.float32) for i in range(1, layers + 1)]
    bs = [params[f"b{i}"].astype(np.float32) for i in range(1, layers + 1)]
    weights = [p for pair in zip(Ws, bs, strict=True) for p in pair]
    ms = [np.zeros_like(p) for p in weights]
    vs = [np.zeros_like(p) for p in weights]
    classify = workload.classes is not None
    targets = np.eye(workload.classes, dtype=np.float32)[y] if workload.classes else y
    one = np.float32(1)
    keep_m, keep_v, eps = one - np.float32(BETA_1), one - np.float32(BETA_2), np.float32(EPSILON)
    rng, step = np.random.default_rng(SEED), [0]

    def forward(xb: np.ndarray) -> list[np.ndarray]:
        """Every layer's output, the ReLU applied in place."""
        outs, h = [], xb
        for i in range(layers):
            h = h @ Ws[i]
            h += bs[i]
            if i < layers - 1:
                np.maximum(h, 0, out=h)
            outs.append(h)
        return outs

    def loss_and_grad(z: np.ndarray, t: np.ndarray, grad: bool) -> tuple[float, np.ndarray]:
        """The mean loss of outputs z against targets t, and its gradient for z."""
        n = np.float32(len(z))
        if classify:
            shifted = z - z.max(axis=1, keepdims=True)
            e = np.exp(shifted)
            total = e.sum(axis=1, keepdims=True)
            loss = float(np.mean(np.log(total[:, 0]) - (shifted * t).sum(axis=1)))
            if not grad:
                return loss, z
            e /= total
            e -= t
            e /= n
            return loss, e
        error = z[:, 0] - t
        loss = float(np.dot(error, error) / n)
        return loss, (error * (np.float32(2) / n))[:, None]

    def train(xb: np.ndarray, tb: np.ndarray) -> None:
        outs = forward(xb)
        _, dz = loss_and_grad(outs[-1], tb, grad=True)
        grads: list[np.ndarray] = [dz] * (2 * layers)
        for i in range(layers - 1, -1, -1):
            below = outs[i - 1] if i else xb
            grads[2 * i] = below.T @ dz
            grads[2 * i + 1] = dz.sum(axis=0)
            if i:
                dz = dz @ Ws[i].T
                dz *= below > 0
        step[0] += 1
        t = step[0]
        alpha = np.float32(LEARNING_RATE * math.sqrt(1 - BETA_2**t) / (1 - BETA_1**t))
        for p, g, m, v in zip(weights, grads, ms, vs, strict=True):
            m += (g - m) * keep_m
            v += (g * g - v) * keep_v
            p -= alpha * m / (np.sqrt(v) + eps)

    def epoch() -> float:
        loss, _ = loss_and_grad(forward(x)[-1], targets, grad=False)
        order = rng.permutation(len(x))
        for lo in range(0, len(x), workload.batch):
            idx = order[lo:lo + workload.batch]
            train(x[idx], targets[idx])
        return loss

    return epoch


# PyTorch


def torch_epoch(workload: Workload, x: np.ndarray, y: np.ndarray,
                params: dict[str, np.ndarray]) -> Epoch | None:
    """The same epoch in PyTorch eager on one thread, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    layers = len(workload.hidden) + 1
    modules: list[Any] = []
    for i in range(1, layers + 1):
        W = params[f"W{i}"]
        linear = torch.nn.Linear(*W.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.T.astype(np.float32)))
            linear.bias.copy_(torch.from_numpy(params[f"b{i}"].astype(np.float32)))
        modules.append(linear)
        if i < layers:
            modules.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*modules)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, betas=(BETA_1, BETA_2),
                                 eps=EPSILON)
    inputs = torch.from_numpy(x)
    if workload.classes is None:
        targets = torch.from_numpy(y)

        def loss_of(z: Any, t: Any) -> Any:
            return torch.nn.functional.mse_loss(z[:, 0], t)
    else:
        targets = torch.from_numpy(y)

        def loss_of(z: Any, t: Any) -> Any:
            return torch.nn.functional.cross_entropy(z, t)

    rng = np.random.default_rng(SEED)

    def epoch() -> float:
        with torch.no_grad():
            loss = float(loss_of(model(inputs), targets))
        order = torch.from_numpy(rng.permutation(len(x)))
        for lo in range(0, len(x), workload.batch):
            idx = order[lo:lo + workload.batch]
            optimizer.zero_grad()
            loss_of(model(inputs[idx]), targets[idx]).backward()
            optimizer.step()
        return loss

    return epoch


# Running


def one_blas_thread() -> object:
    """One BLAS thread for everyone (PyTorch's own pool is set to one thread apart)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def measure(epochs: dict[str, Epoch], warmup: dict[str, int], repeats: int,
            clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Seconds of each epoch of each contender, interleaved across repeats, after warm-up."""
    for name, epoch in epochs.items():
        for _ in range(warmup.get(name, 2)):
            epoch()
    samples: dict[str, list[float]] = {name: [] for name in epochs}
    for _ in range(repeats):
        for name, epoch in epochs.items():
            start = clock()
            epoch()
            samples[name].append(clock() - start)
    return samples


def run(names: list[str], repeats: int, clock: Callable[[], float] = time.perf_counter) -> None:
    """Time every workload and print the table."""
    rows = []
    for name in names:
        workload = WORKLOADS[name]
        x, y = workload.data()
        params = initial(workload, x)
        epochs: dict[str, Epoch] = {"tapeline": tapeline_epoch(workload, x, y, params),
                                    "numpy": numpy_epoch(workload, x, y, params)}
        torch = torch_epoch(workload, x, y, params)
        if torch is not None:
            epochs["torch"] = torch
        # The loop runs a batch shape eagerly COMPILE_AFTER times before compiling it, and the
        # logged row's full pass comes once an epoch.
        samples = measure(epochs, {"tapeline": COMPILE_AFTER + 2}, repeats, clock)
        times = {contender: statistics.median(s) for contender, s in samples.items()}
        print(f"{name}: {workload.title}; median of {repeats} interleaved epochs")
        for contender, seconds in times.items():
            spread = ", ".join(f"{s * 1e3:.0f}" for s in sorted(samples[contender]))
            print(f"  {contender:<9}{seconds * 1e3:9.2f} ms   (ms: {spread})")
        rows.append((workload.title, times))
    print()
    print("| workload | Tapeline / PyTorch | Tapeline / NumPy | PyTorch / NumPy |")
    print("|---|---|---|---|")
    for title, times in rows:
        torch_time = times.get("torch")
        vs_torch = f"{times['tapeline'] / torch_time:.2f}x" if torch_time else "-"
        torch_numpy = f"{torch_time / times['numpy']:.2f}x" if torch_time else "-"
        print(f"| {title} | {vs_torch} | {times['tapeline'] / times['numpy']:.2f}x | "
              f"{torch_numpy} |")
    print("targets: Tapeline / PyTorch <= 0.9x and Tapeline / NumPy <= 1.0x on all three")


def memory_child(epochs: int) -> None:
    """In this process alone: train the mnist workload with the service's loop and print the
    dataset's and model's bytes, RSS before the first epoch, and peak RSS over the epochs."""
    workload = WORKLOADS["mnist"]
    one_blas_thread()
    imported = _status("VmRSS")  # the interpreter and the libraries the loop imports
    x, y = workload.data()
    # The initial params go once the model holds its own copy, as in the service's worker.
    loop = tapeline_loop(workload, x, y, initial(workload, x), epochs=COMPILE_AFTER + epochs)
    model_bytes = sum(v.numpy().nbytes for v in loop.model.variables)
    records = loop.run()
    for _ in range(COMPILE_AFTER):  # every batch shape traced
        next(records)
    before, warmup_peak = _status("VmRSS"), _status("VmHWM")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # peak RSS from here
    for _ in range(epochs):
        next(records)
    print(x.nbytes + y.nbytes, model_bytes, imported, before, _status("VmHWM"), warmup_peak)


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        found = re.search(field + r":\s+(\d+) kB", status.read())
    assert found is not None
    return int(found.group(1)) * 1024


def memory(epochs: int) -> None:
    """Run memory_child in a new process and print its figures."""
    out = subprocess.run([sys.executable, __file__, "--memory-child", str(epochs)], check=True,
                         capture_output=True, text=True).stdout
    data, model, imported, before, peak, warmup_peak = map(int, out.split())
    mib = 2**20
    print(f"memory (mnist, the service's loop, compiled): dataset {data / mib:.1f} MiB, model "
          f"{model / mib:.2f} MiB; RSS with the libraries imported {imported / mib:.1f} MiB, "
          f"before the timed epochs {before / mib:.1f} MiB; peak RSS over {epochs} epochs "
          f"{peak / mib:.1f} MiB = {peak / (data + model):.2f} x (dataset + model) (target <= "
          f"1.5); above the imports {(peak - imported) / (data + model):.2f} x; peak RSS of "
          f"the warm-up epochs (eager steps, traces) {warmup_peak / mib:.1f} MiB = "
          f"{warmup_peak / (data + model):.2f} x")


# Where the time goes

CPU = time.thread_time  # the profile's clock: this thread's CPU time (BLAS runs on it too)


def _instrumented(plan: Any, totals: dict[str, float], optimizer_step: Any) -> Callable[..., Any]:
    """plan's run() with a clock around each NumPy line, the time added to its category:
    matmuls, the optimizer's update (from the first line reading its step count on), copies,
    and the other elementwise calls and reductions of the forward and backward passes (with
    "#category" counting the lines run, for the clock's own cost)."""
    ns = plan._ns  # (a copy would hold the buffers' references the plan counts)
    ns["_clock"], ns["_totals"] = CPU, totals
    step_name = plan._objects.get(id(optimizer_step))
    lines = plan.source.split("\n")
    step_load = next((line.split(" = ")[0].strip() for line in lines
                      if step_name and line.endswith(f"= {step_name}._tensor._value")), None)
    out, counts, in_optimizer = [], dict.fromkeys(CATEGORIES, 0), False
    for line in lines:
        call = re.match(r"    (?:n\d+ = )?(\w+)(?:\(| [-+*/] )", line)
        if not call or line.startswith("    if ") or "._tensor._value" in line:
            out.append(line)
            continue
        if step_load and re.search(rf"\b{step_load}\b", line):
            in_optimizer = True
        name = getattr(ns.get(call.group(1)), "__name__", "")
        if in_optimizer:
            category = "optimizer"
        elif name in ("matmul", "_outer"):
            category = "matmul"
        elif name in ("_concatenate", "copyto", "_take"):
            category = "copies"
        else:
            category = "elementwise"
        counts[category] += 1
        out += ["    _t = _clock()", line, f"    _totals[{category!r}] += _clock() - _t"]
    tally = [f"    _totals['#{category}'] += {n}" for category, n in counts.items()]
    out.insert(1, "\n".join(tally))
    source = "\n".join(out).replace("def run(", "def profiled_run(", 1)
    exec(compile(source, "<profiled plan>", "exec"), ns)
    return ns["profiled_run"]  # type: ignore[no-any-return]


CATEGORIES = ("matmul", "elementwise", "optimizer", "copies")


def _timed(fn: Callable[..., Any], totals: dict[str, float], key: str) -> Callable[..., Any]:
    def timed(*args: Any) -> Any:
        start = CPU()
        try:
            return fn(*args)
        finally:
            totals[key] += CPU() - start

    return timed


def _clock_cost() -> float:
    """What one clocked line adds to its own reading: the clock read twice, back to back."""
    samples = []
    for _ in range(2001):
        start = CPU()
        samples.append(CPU() - start)
    return statistics.median(samples)


def profile(name: str, epochs: int) -> None:
    """Where an epoch of the service's loop spends its CPU time on a workload."""
    workload = WORKLOADS[name]
    x, y = workload.data()
    loop: Any = tapeline_loop(workload, x, y, initial(workload, x))
    records = loop.run()
    for _ in range(COMPILE_AFTER + 2):
        next(records)
    plain = []
    for _ in range(epochs):
        start = CPU()
        next(records)
        plain.append(CPU() - start)
    totals: dict[str, float] = defaultdict(float)
    row: dict[str, float] = defaultdict(float)
    for function, into in ((loop._step, totals), (loop._forward, row)):
        for entry in function.compiled._plans.values():
            entry.plan._run = _instrumented(entry.plan, into, loop.optimizer._step)
    loop._step = _timed(loop._step, totals, "steps")
    loop._forward = _timed(loop._forward, totals, "forward")
    loop._measure = _timed(loop._measure, totals, "metrics")
    start = CPU()
    for _ in range(epochs):
        next(records)
    instrumented = (CPU() - start) / epochs
    cost = _clock_cost()
    per = {k: (totals[k] - cost * totals[f"#{k}"]) / epochs for k in CATEGORIES}
    clocked = (sum(totals[f"#{k}"] for k in CATEGORIES) + sum(row[f"#{k}"] for k in CATEGORIES)
               ) * cost * 2 / epochs  # the clock's cost in and around the lines
    row_matmul = (row["matmul"] - cost * row["#matmul"]) / epochs
    forward = totals["forward"] / epochs
    if not hasattr(loop, "batch_step"):  # a loop that gathers its batches outside the step:
        from service import engine as tg  # those gathers, replayed alone

        order, train = np.random.default_rng(1).permutation(len(x)), loop.train
        start = CPU()
        for lo in range(0, len(x), workload.batch):
            idx = order[lo:lo + workload.batch]
            tg.constant(train.x[idx]), tg.constant(train.targets[idx])
        per["copies"] += CPU() - start
    epoch = statistics.median(plain)
    python = instrumented - clocked - sum(per.values()) - forward - totals["metrics"] / epochs
    print(f"{name}: epoch {epoch * 1e3:.1f} ms of CPU time (median of {epochs}), "
          f"{-(-len(x) // workload.batch)} steps")
    parts = {"matmuls of the steps": per["matmul"],
             "elementwise calls and reductions of the steps (forward, loss, backward)":
                 per["elementwise"],
             "optimizer update": per["optimizer"],
             "copies (the batches' gathers, flat gradients)": per["copies"],
             "logged row: forward pass's matmuls": row_matmul,
             "logged row: the rest of the forward pass and its loss": forward - row_matmul,
             "logged row: metrics": totals["metrics"] / epochs,
             "Python (step dispatch, the loop)": python}
    scale = epoch / (instrumented - clocked)  # shares of the epoch as timed uninstrumented
    for part, seconds in parts.items():
        print(f"  {seconds * scale * 1e3:8.2f} ms  {seconds / (instrumented - clocked):6.1%}  "
              f"{part}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS),
                        default=list(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cpu-time", action="store_true",
                        help="time epochs by the process's CPU time (steadier than wall time "
                             "when other jobs share the cores; every contender runs on one)")
    parser.add_argument("--memory", action="store_true",
                        help="measure the mnist workload's peak RSS in a new process")
    parser.add_argument("--memory-epochs", type=int, default=2)
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true",
                        help="where an epoch of the service's loop spends its time")
    args = parser.parse_args()
    if args.profile:
        one_blas_thread()
        for name in args.workloads:
            profile(name, args.repeats)
    elif args.memory_child is not None:
        memory_child(args.memory_child)
    elif args.memory:
        memory(args.memory_epochs)
    else:
        one_blas_thread()
        run(args.workloads, args.repeats,
            time.process_time if args.cpu_time else time.perf_counter)


if __name__ == "__main__":
    main()
