"""The bytes of a history answer, judged from the rows' stored params' sizes: a page is cut
where the next row would pass the bound, a downsampled answer keeps fewer, wider buckets that
still span the history, and rows that cannot pass it are not looked at."""

from __future__ import annotations

import numpy as np

from service.store.budget import RowBudget, sizes


def test_a_page_stops_before_the_row_that_would_pass_the_bound() -> None:
    budget = RowBudget(max_bytes=1000, base=100, per_param_byte=2.0, param_bytes=200)
    params = sizes([200, None, 200, None, None, 200])  # costs 500, 100, 500, ...
    assert budget.fitting(params) == 2
    assert budget.fitting(sizes([None] * 20)) == 10
    assert budget.fitting(sizes([5000])) == 1  # one row at least
    assert not budget.holds(3) and budget.holds(2)


def test_a_sample_keeps_fewer_points_spanning_the_history() -> None:
    rng = np.random.default_rng(0)
    losses = rng.normal(size=10_000)
    params = np.full(10_000, 800.0)
    budget = RowBudget(max_bytes=100_000, base=100, per_param_byte=1.0, param_bytes=800)
    kept = budget.sample(losses, params, 1000)
    assert budget.costs(params[kept]).sum() <= 100_000
    assert 4 <= len(kept) <= 111 and kept[0] == 0 and kept[-1] == 9_999
    thinned = np.where(np.arange(10_000) % 8 == 0, 800.0, 0.0)
    assert len(budget.sample(losses, thinned, 1000)) > len(kept)  # rows without params are cheap


def test_even_the_fewest_buckets_are_cut_to_the_bound() -> None:
    budget = RowBudget(max_bytes=1000, base=100, per_param_byte=1.0, param_bytes=800)
    kept = budget.sample(np.arange(100.0), np.full(100, 800.0), 100)
    assert list(kept) == [0]
