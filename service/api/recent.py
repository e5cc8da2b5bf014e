"""Small in-process memories of answers about things that never change again (a finished
run's downsampled history, a dataset's seeded sample): reopening a long run's page should not
scan 100,000 history rows or decode a 1,000,000-row dataset each time. Each entry is keyed by
the app's session factory too (one process may serve several apps, as tests do); the caller
still checks that the resource exists (and is the caller's) before using one."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

Value = TypeVar("Value")


class Recent(Generic[Value]):
    """The last ``size`` values put, least recently used dropped first; thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.values: OrderedDict[tuple[object, ...], Value] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[object, ...]) -> Value | None:
        with self.lock:
            found = self.values.get(key)
            if found is not None:
                self.values.move_to_end(key)
            return found

    def put(self, key: tuple[object, ...], value: Value) -> None:
        with self.lock:
            self.values[key] = value
            self.values.move_to_end(key)
            while len(self.values) > self.size:
                self.values.popitem(last=False)
