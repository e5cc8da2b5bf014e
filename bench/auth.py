"""What authentication costs a request: the same requests to a server with API keys and to one
without (``TAPELINE_AUTH=off``), interleaved, in the same run.

    .venv/bin/python bench/auth.py [--rounds 40] [--batch 50]

Starts two ``tapeline serve`` processes on fresh SQLite stores from this checkout: one with
``TAPELINE_AUTH=required`` (each request carries a key: a hashed lookup in the store, the
scope check and the tenant's rate limit, in memory) and one with ``TAPELINE_AUTH=off``. Each
gets a model to read. Rounds alternate between the servers; a round is ``--batch`` requests
of one kind on one keep-alive connection, and each request's time is recorded. Reported:
the median per request kind with and without a key, their difference (the cost of
authentication; the target is at most 0.2 ms) and ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import free_port  # noqa: E402

KEY = "tl_" + "b" * 43


def serve(folder: Path, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    """``tapeline serve`` on a fresh store in ``folder`` with these extra settings."""
    port = free_port()
    environment = {**os.environ, "TAPELINE_DATABASE_URL": f"sqlite:///{folder}/tapeline.db",
                   "TAPELINE_PORT": str(port), "TAPELINE_HOST": "127.0.0.1",
                   "TAPELINE_LOG_LEVEL": "warning", "TAPELINE_WORKERS": "1",
                   "PYTHONPATH": str(ROOT), **env}
    process = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], cwd=ROOT,
                               env=environment, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("a server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        keyed_dir, open_dir = Path(scratch, "keys"), Path(scratch, "off")
        keyed_dir.mkdir()
        open_dir.mkdir()
        servers = {
            "key": serve(keyed_dir, TAPELINE_AUTH="required", TAPELINE_BOOTSTRAP_ADMIN_KEY=KEY,
                         TAPELINE_TENANT_RATE_LIMIT="1000000/second"),
            "off": serve(open_dir, TAPELINE_AUTH="off"),
        }
        try:
            clients = {}
            for name, (_, url) in servers.items():
                headers = {"Authorization": f"Bearer {KEY}"} if name == "key" else {}
                clients[name] = httpx.Client(base_url=url, headers=headers, timeout=30)
            models = {name: c.post("/v1/models").json()["id"] for name, c in clients.items()}
            kinds = {"GET /v1/models/{id}": lambda n: f"/v1/models/{models[n]}",
                     "GET /v1/me": lambda n: "/v1/me"}
            times: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.rounds):
                for kind, path_of in kinds.items():
                    for name, client in clients.items():
                        path = path_of(name)
                        samples = times.setdefault((kind, name), [])
                        for _ in range(args.batch):
                            start = time.perf_counter()
                            answer = client.get(path)
                            samples.append((time.perf_counter() - start) * 1000)
                            assert answer.status_code == 200, answer.text
            print(f"{args.rounds} rounds x {args.batch} requests per kind and server, "
                  "interleaved; medians in ms")
            print("| request | with a key | TAPELINE_AUTH=off | difference | ratio |")
            print("|---|---|---|---|---|")
            for kind in kinds:
                keyed = statistics.median(times[(kind, "key")])
                bare = statistics.median(times[(kind, "off")])
                print(f"| `{kind}` | {keyed:.3f} | {bare:.3f} | {keyed - bare:+.3f} | "
                      f"{keyed / bare:.2f} |")
        finally:
            for client in clients.values():
                client.close()
            for process, _ in servers.values():
                process.terminate()
                process.wait(15)


if __name__ == "__main__":
    main()
