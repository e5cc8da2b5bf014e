"""Real servers for tests and benchmarks: ``tapeline serve`` on a free loopback port."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def sqlite_url(folder: Path) -> str:
    """A fresh SQLite database file in ``folder``."""
    return f"sqlite:///{folder / 'tapeline.db'}"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def terminate(process: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM ``process`` and wait ``timeout`` seconds for it (then SIGKILL); its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)


@dataclass
class LiveServer:
    """A real ``tapeline serve`` process on a loopback port."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM the server and wait for it; return its exit code."""
        return terminate(self.process, timeout)


def start_server(database_url: str, log: Path, open_files: int | None = None,
                 cwd: Path = ROOT, cpus: set[int] | None = None, **env: str) -> LiveServer:
    """Start ``tapeline serve`` (in ``cwd``) on a free port and wait until ``/healthz``
    answers; with ``open_files``, it starts with that soft limit of open files (a common
    default is 1024); with ``cpus``, it and its workers run on those CPUs only."""
    port = free_port()
    environment = {**os.environ, "TAPELINE_DATABASE_URL": database_url,
                   "TAPELINE_PORT": str(port), "TAPELINE_HOST": "127.0.0.1",
                   "PYTHONPATH": str(ROOT), **env}
    handle = log.open("wb")

    def limit_files() -> None:
        if open_files is not None:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, hard))
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    process = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], cwd=cwd,
                               env=environment, stdout=handle, stderr=subprocess.STDOUT,
                               preexec_fn=limit_files)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return LiveServer(url, process, log)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not become ready:\n{log.read_text()}")


def memory(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory (``VmRSS``) or its peak (``VmHWM``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


class PeakMemory:
    """How far a process's resident memory rose above where it was, over a ``with`` block
    (Linux: the kernel's peak is reset on entry)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.growth = pid, 0

    def __enter__(self) -> PeakMemory:
        self._start = memory(self.pid)
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # reset VmHWM to VmRSS
        return self

    def __exit__(self, *exc: object) -> None:
        self.growth = memory(self.pid, "VmHWM") - self._start


@dataclass
class LiveWorker:
    """A real ``tapeline worker`` process (a supervisor and its worker processes)."""

    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM the worker (it drains) and wait for it; return its exit code."""
        return terminate(self.process, timeout)


def start_worker(database_url: str, log: Path, concurrency: int = 1,
                 **env: str) -> LiveWorker:
    """Start ``tapeline worker --concurrency N`` on the queue of ``database_url``."""
    environment = {**os.environ, "TAPELINE_DATABASE_URL": database_url,
                   "TAPELINE_EXECUTOR": "queue", "PYTHONPATH": str(ROOT), **env}
    handle = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker", "--concurrency", str(concurrency)],
        cwd=ROOT, env=environment, stdout=handle, stderr=subprocess.STDOUT)
    return LiveWorker(process, log)
