"""Checkpoints: a run's model params and loop state (optimizer slots and step, shuffling RNG,
early stopping's memory, next epoch) as one safetensors blob, exactly as they were.

Arrays keep their own dtype (float32 slots stay float32, the step stays int64), so a run
resumed from a checkpoint computes bit for bit what it would have computed uninterrupted.
Plain values (the RNG's state, early stopping's scalars) ride in the blob's metadata as JSON;
JSON writes a float as its shortest round-tripping repr, so they come back exact too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from safetensors.numpy import load, save

from service.training.records import Best, LoopState, Params

FORMAT = "tapeline-checkpoint-1"


@dataclass(frozen=True)
class Checkpoint:
    """The model's params and the loop's state at the start of epoch ``state.epoch``."""

    params: Params
    state: LoopState


def _arrays(prefix: str, params: Params) -> dict[str, np.ndarray]:
    return {f"{prefix}/{name}": np.array(value, order="C", copy=True)
            for name, value in params.items()}


def _take(arrays: dict[str, np.ndarray], prefix: str) -> Params:
    cut = len(prefix) + 1
    return {name[cut:]: value for name, value in arrays.items() if name.startswith(prefix + "/")}


def pack_checkpoint(params: Params, state: LoopState) -> bytes:
    """The blob of a checkpoint."""
    arrays = _arrays("params", params) | _arrays("optimizer", state.optimizer)
    meta: dict[str, Any] = {"format": FORMAT, "epoch": state.epoch, "rng": state.rng,
                            "best": None, "optimizer": sorted(state.optimizer)}
    if state.best is not None:
        best = state.best
        arrays |= _arrays("best", best.params)
        meta["best"] = {"value": best.value, "epoch": best.epoch, "loss": best.loss,
                        "metrics": best.metrics, "wait": best.wait}
    # 0-d arrays keep their shape (np.ascontiguousarray would make them 1-d); a blob always
    # holds one array at least.
    arrays["format/version"] = np.array(1, dtype=np.int64)
    return save(arrays, metadata={"tapeline": json.dumps(meta)})


def unpack_checkpoint(blob: bytes) -> Checkpoint:
    """Read back a blob written by :func:`pack_checkpoint`."""
    data = bytes(blob)
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_size])
    meta = json.loads(header["__metadata__"]["tapeline"])
    if meta.get("format") != FORMAT:
        raise ValueError("not a Tapeline checkpoint")
    arrays = load(data)
    best = None
    if meta["best"] is not None:
        b = meta["best"]
        best = Best(b["value"], b["epoch"], _take(arrays, "best"), b["loss"], b["metrics"],
                    b["wait"])
    state = LoopState(epoch=meta["epoch"], optimizer=_take(arrays, "optimizer"),
                      rng=meta["rng"], best=best)
    return Checkpoint(_take(arrays, "params"), state)
