"""A compiled step's memory: peak RSS under three times the bytes of the data it trains on."""

from __future__ import annotations

import sys

import pytest

from tests.engine.compiled_memory import measure


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_compiled_step_on_a_million_rows_keeps_peak_rss_under_three_times_the_data() -> None:
    memory = measure(steps=10)
    assert memory.traces == 1
    assert memory.peak < 3 * memory.data, (
        f"peak RSS {memory.peak / 2**20:.1f} MiB for {memory.data / 2**20:.1f} MiB of data")
    assert memory.peak - memory.before < memory.data / 2  # the steps add little to the data
