"""The architecture's import contracts (pyproject.toml's ``[tool.importlinter]``) hold, and
they can fail: a copy of the code with one upward import, one web import in the engine and
one cycle breaks exactly those contracts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` run on the code under ``root`` with the project's contracts."""
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(root), "PATH": ""})


def test_every_contract_is_kept() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_broken_layer_a_web_import_and_a_cycle_are_caught(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "service", tmp_path / "service",
                    ignore=shutil.ignore_patterns("__pycache__", "ui"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "service" / "ui").mkdir()
    (tmp_path / "service" / "ui" / "__init__.py").write_text("")

    def append(module: str, line: str) -> None:
        path = tmp_path / "service" / module
        path.write_text(path.read_text() + f"\n{line}\n")

    append("training/losses.py", "import service.store.repo  # noqa")
    append("engine/nn.py", "import fastapi  # noqa")
    append("store/codec.py", "import service.store.repo  # noqa")
    append("store/repo.py", "import service.store.codec  # noqa")
    result = lint(tmp_path)
    assert result.returncode != 0
    out = result.stdout
    broken = {line.removesuffix(" BROKEN") for line in out.splitlines()
              if line.endswith(" BROKEN")}
    assert broken == {
        "Layers: each imports only the layers below it",
        "engine and training import no web and no database package",
        "no import cycle among the modules of any package of service",
    }, out
    assert "service.training.losses -> service.store.repo" in out
    assert "service.engine.nn -> fastapi" in out
