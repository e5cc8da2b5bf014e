"""The model-file import under fuzzing, as the upload parsers are: coverage-guided with
atheris for a bounded time from a corpus of honest exports and the bounds issue's hostile
files, and property-based with Hypothesis from the same seeds. Anything but a 415 or 422
refusal, or a model that could not be stored or sent, is a finding."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api import model_imports
from tests.conftest import ROOT
from tests.fuzz.model_files import KINDS, SETTINGS, one_import, seeds
from tests.fuzz.test_upload_fuzzing import mutated
from tests.support.ci import IN_CI

FUZZER = ROOT / "tests" / "fuzz" / "imports.py"
SECONDS = int(os.environ.get("TAPELINE_FUZZ_SECONDS", "20"))


def test_every_seed_is_imported_or_refused() -> None:
    for data in seeds().values():
        one_import(data)  # each: imported, or refused with a 4xx


def test_the_honest_exports_of_the_corpus_import() -> None:
    """The corpus's honest exports import, those whose header's size starts with the byte
    of a pickle (0x80, ``(``) included."""
    honest = {name: data for name, data in seeds().items()
              if name.split(".")[0] in (*KINDS, "header-0x80", "header-0x28")}
    assert len(honest) == 2 * len(KINDS) + 2
    for name, data in honest.items():
        assert model_imports.read(data, SETTINGS).kind.name in KINDS, name


@pytest.mark.slow
def test_coverage_guided_fuzzing_finds_nothing(tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        if IN_CI:
            pytest.fail("atheris is a dev dependency on Linux x86-64; CI must run it")
        pytest.skip("atheris does not build here; the Hypothesis test below still runs")
    result = subprocess.run(
        [sys.executable, str(FUZZER), f"-max_total_time={SECONDS}", "-rss_limit_mb=3000",
         "-timeout=10", "-max_len=131072", str(tmp_path / "corpus")],
        cwd=tmp_path, capture_output=True, text=True, timeout=SECONDS + 120,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    crashes = sorted(tmp_path.glob("crash-*")) + sorted(tmp_path.glob("timeout-*"))
    found = [f"{crash.name}: {crash.read_bytes()[:300]!r}" for crash in crashes]
    assert result.returncode == 0 and not crashes, "\n".join([*found, result.stderr[-5000:]])
    assert "Done" in result.stderr  # it ran to its time limit


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_model_files_are_imported_or_refused(data: st.DataObject) -> None:
    corpus = seeds()
    seed = data.draw(st.sampled_from(sorted(corpus)))
    one_import(data.draw(mutated(corpus[seed])))
