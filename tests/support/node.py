"""The project's pinned npm packages (package.json / package-lock.json), installed with
``npm ci`` when node_modules is missing or older than the lock file."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

from tests.support.ci import unavailable

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "node_modules"


def node_modules(needed: str) -> Path:
    """node_modules, installed from the lock file if needed; skips (fails in CI) without npm."""
    if not (shutil.which("node") and shutil.which("npm")):
        unavailable(f"node and npm are not installed ({needed})")
    installed = NODE_MODULES / ".package-lock.json"
    lock = ROOT / "package-lock.json"
    # One installer at a time: two pytest-xdist workers that both found node_modules missing
    # ran `npm ci` in the same folder at once, and each removed the other's files (ENOENT).
    with open(ROOT / ".npm-ci.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not (installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime):
            result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=ROOT,
                                    capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"
    return NODE_MODULES
