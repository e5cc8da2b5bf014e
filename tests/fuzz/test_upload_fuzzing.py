"""The upload parsers under fuzzing: coverage-guided with atheris for a bounded time (CI runs
it), and property-based with Hypothesis from the same honest seeds (everywhere, also where
atheris does not build). Anything but a 4xx refusal is a finding; each one found becomes a
regression test in ``tests/api/test_upload_fuzz_findings.py``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from tests.fuzz.seeds import one_upload, seeds
from tests.support.ci import IN_CI

FUZZER = ROOT / "tests" / "fuzz" / "uploads.py"
SECONDS = int(os.environ.get("TAPELINE_FUZZ_SECONDS", "20"))


@pytest.mark.slow
def test_coverage_guided_fuzzing_finds_nothing(tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        if IN_CI:
            pytest.fail("atheris is a dev dependency on Linux x86-64; CI must run it")
        pytest.skip("atheris does not build here; the Hypothesis test below still runs")
    result = subprocess.run(
        [sys.executable, str(FUZZER), f"-max_total_time={SECONDS}", "-rss_limit_mb=3000",
         "-timeout=10", "-max_len=65536", str(tmp_path / "corpus")],
        cwd=tmp_path, capture_output=True, text=True, timeout=SECONDS + 120,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    crashes = sorted(tmp_path.glob("crash-*")) + sorted(tmp_path.glob("timeout-*"))
    found = [f"{crash.name}: {crash.read_bytes()[:300]!r}" for crash in crashes]
    assert result.returncode == 0 and not crashes, "\n".join([*found, result.stderr[-5000:]])
    assert "Done" in result.stderr  # it ran to its time limit


def mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    """``seed`` with a slice replaced by random bytes, cut short, or grown."""
    return st.tuples(st.integers(0, len(seed)), st.integers(0, 64), st.binary(max_size=64),
                     st.booleans()).map(
        lambda t: (seed[: t[0]] + t[2] + seed[t[0] + t[1]:]) if t[3] else seed[: t[0]])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_uploads_are_parsed_or_refused(data: st.DataObject) -> None:
    corpus = seeds()
    seed = data.draw(st.sampled_from(sorted(corpus)))
    one_upload(data.draw(mutated(corpus[seed])))
