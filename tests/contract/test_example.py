"""examples/tutorial.py runs the tutorial through the generated client and draws its figures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.contract.conftest import ROOT
from tests.support.servers import LiveServer

pytestmark = pytest.mark.live

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_tutorial_example_draws_both_figures(python_client: Path, live_server: LiveServer,
                                             tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, ROOT / "examples" / "tutorial.py", "--url", live_server.url,
         "--out", tmp_path / "figures"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(python_client), "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    epochs = re.findall(r"^Epoch +(\d+): W=([\d.]+) b=([\d.-]+)", result.stdout, re.M)
    assert [int(e[0]) for e in epochs] == list(range(10))
    assert (epochs[0][1], epochs[0][2]) == ("5.00", "0.00")
    final = re.search(r"^Final: +W=([\d.]+) b=([\d.-]+)", result.stdout, re.M)
    assert final and abs(float(final[1]) - 3) < 0.5 and abs(float(final[2]) - 2) < 0.5
    # The figure's last point is the final model, after the last epoch, marked final.
    drawn = re.search(r"^parameters.png: W and b at the start of epochs 0-9, then the final "
                      r"model after epoch 9 \(W=([\d.]+) b=([\d.-]+)\), marked final$",
                      result.stdout, re.M)
    assert drawn and (f"{float(drawn[1]):.2f}", f"{float(drawn[2]):.2f}") == (final[1], final[2])

    for name in ("data_and_predictions.png", "parameters.png"):
        path = tmp_path / "figures" / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE, name
        assert path.stat().st_size > 10_000, name
        with Image.open(path) as image:
            assert image.size == (800, 500), name
            pixels = np.asarray(image.convert("L"))
        assert pixels.std() > 10, f"{name} looks blank"


def test_classify_example_draws_the_decision_regions(python_client: Path,
                                                      live_server: LiveServer,
                                                      tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, ROOT / "examples" / "classify.py", "--url", live_server.url,
         "--out", tmp_path / "figures"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(python_client), "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    final = re.search(r"^Final: accuracy=([\d.]+) val_accuracy=([\d.]+)", result.stdout, re.M)
    assert final and float(final[1]) > 0.9 and float(final[2]) > 0.9, result.stdout
    assert re.search(r"^Stopped at epoch \d+, best epoch \d+", result.stdout, re.M)

    path = tmp_path / "figures" / "decision_regions.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert image.size == (800, 500)
        pixels = np.asarray(image.convert("RGB")).astype(int)
    assert pixels.std() > 10, "the figure looks blank"
    red = (pixels[..., 0] > pixels[..., 2] + 60).mean()
    blue = (pixels[..., 2] > pixels[..., 0] + 60).mean()
    assert red > 0.05 and blue > 0.05, "both classes' regions are drawn"
