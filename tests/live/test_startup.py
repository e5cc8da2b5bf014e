"""Bad start-up settings: one clear line naming the setting and the cause, exit status 3, and a
traceback only at the debug log level. Each was a 53-161-line traceback before."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service.store.db import open_store
from tests.support.servers import ROOT, free_port, sqlite_url, start_server


def serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``tapeline serve`` with ``env``, expected to give up at once."""
    environment = {**os.environ, "TAPELINE_PORT": str(free_port()),
                   "TAPELINE_HOST": "127.0.0.1", "TAPELINE_LOG_LEVEL": "info", **env}
    return subprocess.run([sys.executable, "-m", "service.cli", "serve"], cwd=tmp_path,
                          env={**environment, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=60)


def read_only_database(tmp_path: Path) -> str:
    """A migrated database opened read-only (chmod would not stop root, who runs CI here)."""
    open_store(sqlite_url(tmp_path)).dispose()
    return f"sqlite:///file:{tmp_path / 'tapeline.db'}?mode=ro&uri=true"


CASES = {
    "read-only database": ("DATABASE_URL", read_only_database,
                           "attempt to write a readonly database"),
    "unwritable folder": ("DATABASE_URL", lambda _: "sqlite:////proc/tapeline.db",
                          "unable to open database file"),
    "PostgreSQL down": ("DATABASE_URL",
                        lambda _: "postgresql+psycopg://tapeline:secret@127.0.0.1:1/db",
                        "cannot use PostgreSQL at 127.0.0.1:1/db: connection failed"),
    "bad URL": ("DATABASE_URL", lambda _: "postgres//nowhere", "not a database URL"),
    "other database": ("DATABASE_URL", lambda _: "mysql://user@host/db",
                       "unsupported database 'mysql'"),
    "missing folder": ("DATABASE_URL", lambda tmp: sqlite_url(tmp / "no" / "such"),
                       "folder"),
    "bad port": ("PORT", lambda _: "70000", "less than or equal to 65535"),
    "no allowed hosts": ("HOST", lambda _: "0.0.0.0", "TAPELINE_ALLOWED_HOSTS is required"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_setting_is_one_line(tmp_path: Path, case: str) -> None:
    name, value, cause = CASES[case]
    result = serve(tmp_path, **{f"TAPELINE_{name}": value(tmp_path)})
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tapeline: cannot start: TAPELINE_"), lines[0]
    assert cause in lines[0] and (name in lines[0] or name == "HOST"), lines[0]
    assert "secret" not in lines[0]
    assert not (tmp_path / "no").exists()  # a missing folder is not made


def test_the_traceback_is_there_at_debug(tmp_path: Path) -> None:
    result = serve(tmp_path, TAPELINE_DATABASE_URL="sqlite:////proc/tapeline.db",
                   TAPELINE_LOG_LEVEL="debug")
    assert result.returncode == 3
    assert result.stderr.startswith("tapeline: cannot start: TAPELINE_DATABASE_URL")
    assert "Traceback" in result.stderr


def test_the_default_folder_is_made(tmp_path: Path) -> None:
    environment = {"TAPELINE_DATABASE_URL": "sqlite:///./var/tapeline.db"}
    server = start_server(environment["TAPELINE_DATABASE_URL"], tmp_path / "server.log",
                          cwd=tmp_path)
    try:
        assert httpx.get(f"{server.url}/readyz").json() == {"status": "ok"}
        assert (tmp_path / "var" / "tapeline.db").is_file()
    finally:
        server.stop()
