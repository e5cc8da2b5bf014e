"""Peak memory of a compiled training step on 1,000,000 x 8 float32, measured in a new process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent.parent

CHILD = r"""
import re, sys
import numpy as np
sys.path.insert(0, {root!r})
from service import engine as tg

def status(field):
    text = open("/proc/self/status").read()
    return int(re.search(field + r":\s+(\d+) kB", text).group(1)) * 1024

n, d = 1_000_000, 8
rng = np.random.default_rng(0)
inputs = tg.constant(rng.standard_normal((n, d), dtype=np.float32))
outputs = tg.matmul(inputs, tg.constant(np.arange(1, d + 1, dtype=np.float32))) + 2.0
W, b = tg.Variable(np.zeros(d, np.float32)), tg.Variable(0.0)

@tg.function
def step(x, y):
    with tg.GradientTape() as tape:
        loss = tg.reduce_mean(tg.square(y - (tg.matmul(x, W) + b)))
    dW, db = tape.gradient(loss, [W, b])
    W.assign_sub(0.1 * dW)
    b.assign_sub(0.1 * db)
    return loss

before = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # peak RSS from here (not the set-up's copies)
for _ in range({steps}):
    step(inputs, outputs)
data = inputs.numpy().nbytes + outputs.numpy().nbytes
print(data, before, status("VmHWM"), step.trace_count)
"""


class Memory(NamedTuple):
    """Bytes of the dataset, RSS before the first step, peak RSS over the steps; traces made."""

    data: int
    before: int
    peak: int
    traces: int


def measure(steps: int = 10) -> Memory:
    """Run `steps` compiled full-batch steps of a linear model in a new Python process."""
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), steps=steps)],
                         check=True, capture_output=True, text=True).stdout
    return Memory(*map(int, out.split()))
