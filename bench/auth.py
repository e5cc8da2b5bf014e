"""What authentication costs a request: the same requests to a server with API keys and to one
without (``TAPELINE_AUTH=off``), interleaved, in the same run.

    .venv/bin/python bench/auth.py [--pairs 4] [--rounds 40] [--batch 20] [--control]

Starts ``--pairs`` pairs of ``tapeline serve`` processes from this checkout, one pair after
another, each on fresh SQLite stores: one with ``TAPELINE_AUTH=required`` (each request
carries a key: its record kept by the server, the scope check and the tenant's rate limit,
in memory) and one with ``TAPELINE_AUTH=off``; which of the two starts first alternates.
Each gets a model to read. Rounds alternate between the servers; a round is ``--batch``
requests of one kind on one keep-alive connection, and each request's time is recorded.
Several fresh pairs, not one long-lived pair, because a process's own luck (where it runs,
what shares its core) moves its medians by tenths of a millisecond on a shared machine.
Reported per request kind: the median with and without a key over every pair, their
difference (the cost of authentication; the target is at most 0.2 ms) and ratio, and the
median of the per-round differences (each round's keyed median minus the keyless median
of the same round: the load they saw was the same). ``--control`` makes both servers
keyless (both are sent the header): its differences are the bench's own noise. Last, the
in-process time of what authentication runs on the event loop for a keyed request whose key
record is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.servers import LiveServer, sqlite_url, start_server  # noqa: E402

KEY = "tl_" + "b" * 43


def serve(folder: Path, **env: str) -> LiveServer:
    """``tapeline serve`` on a fresh store in ``folder`` with these extra settings."""
    return start_server(sqlite_url(folder), folder / "server.log", TAPELINE_LOG_LEVEL="warning",
                        TAPELINE_WORKERS="1", **env)


def in_process(calls: int = 5000) -> float:
    """The median time, in µs, of what authentication runs on the event loop for a keyed
    request whose key record is kept: the key's shape and digest, the record's expiry and
    revocation, and the rate count (in memory)."""
    from datetime import UTC, datetime

    from service.api.http.access import Access
    from service.config import Settings
    from service.store import keys

    access = Access(Settings(auth="required", tenant_rate_limit="1000000/second"))
    record = keys.KeyRecord("key_bench", "admin", frozenset(keys.SCOPES), None, False,
                            datetime.now(UTC), None)
    access.cache.seconds = math.inf
    access.cache.put(keys.digest(KEY, None), record, time.monotonic(), access.cache.generation)

    async def run() -> float:
        samples = []
        for _ in range(calls):
            start = time.perf_counter()
            await access.admit(None, KEY, "1000000/second")  # type: ignore[arg-type]
            samples.append((time.perf_counter() - start) * 1e6)
            await asyncio.sleep(0)  # let the limiter's expiry task run, as between requests
        return statistics.median(samples)

    return asyncio.run(run())


def measure(scratch: Path, pair: int, rounds: int, batch: int,
            times: dict[tuple[str, str], list[float]],
            paired: dict[str, list[float]], control: bool) -> None:
    """One pair of fresh servers: ``rounds`` interleaved rounds of every request kind."""
    settings = {
        "key": {"TAPELINE_AUTH": "required", "TAPELINE_BOOTSTRAP_ADMIN_KEY": KEY,
                "TAPELINE_TENANT_RATE_LIMIT": "1000000/second"},
        "off": {"TAPELINE_AUTH": "off"},
    }
    if control:  # two keyless servers, both sent the header: the bench's own noise
        settings["key"] = settings["off"]
    order = ["key", "off"] if pair % 2 == 0 else ["off", "key"]
    servers: dict[str, LiveServer] = {}
    clients: dict[str, httpx.Client] = {}
    try:
        for name in order:
            folder = Path(scratch, f"{name}-{pair}")
            folder.mkdir()
            servers[name] = serve(folder, **settings[name])
        for name in order:
            headers = {"Authorization": f"Bearer {KEY}"} if name == "key" or control else {}
            clients[name] = httpx.Client(base_url=servers[name].url, headers=headers, timeout=30)
        models = {name: c.post("/v1/models").json()["id"] for name, c in clients.items()}
        kinds = {"GET /v1/models/{id}": lambda n: f"/v1/models/{models[n]}",
                 "GET /v1/me": lambda n: "/v1/me"}
        for name in order:  # warm up: first requests, the key's record read and kept
            for path_of in kinds.values():
                for _ in range(20):
                    clients[name].get(path_of(name))
        for _ in range(rounds):
            for kind, path_of in kinds.items():
                medians = {}
                for name in order:
                    client, path = clients[name], path_of(name)
                    samples = []
                    for _ in range(batch):
                        start = time.perf_counter()
                        answer = client.get(path)
                        samples.append((time.perf_counter() - start) * 1000)
                        assert answer.status_code == 200, answer.text
                    times.setdefault((kind, name), []).extend(samples)
                    medians[name] = statistics.median(samples)
                paired.setdefault(kind, []).append(medians["key"] - medians["off"])
    finally:
        for client in clients.values():
            client.close()
        for server in servers.values():
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4, help="fresh pairs of servers")
    parser.add_argument("--rounds", type=int, default=40, help="rounds per pair")
    parser.add_argument("--batch", type=int, default=20, help="requests per round")
    parser.add_argument("--control", action="store_true",
                        help="both servers keyless (both sent the header): the noise floor")
    args = parser.parse_args()
    times: dict[tuple[str, str], list[float]] = {}
    paired: dict[str, list[float]] = {}
    per_pair: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for pair in range(args.pairs):
            mine: dict[tuple[str, str], list[float]] = {}
            measure(Path(scratch), pair, args.rounds, args.batch, mine, paired, args.control)
            per_pair.append({kind: statistics.median(mine[(kind, "key")])
                             - statistics.median(mine[(kind, "off")]) for kind in paired})
            for series, samples in mine.items():
                times.setdefault(series, []).extend(samples)
    print(f"{args.pairs} pairs x {args.rounds} rounds x {args.batch} requests per kind and "
          "server, interleaved; medians in ms")
    print("| request | with a key | TAPELINE_AUTH=off | difference | ratio | "
          "median per-round difference | each pair's difference |")
    print("|---|---|---|---|---|---|---|")
    for kind in paired:
        keyed = statistics.median(times[(kind, "key")])
        bare = statistics.median(times[(kind, "off")])
        pairs = ", ".join(f"{p[kind]:+.3f}" for p in per_pair)
        print(f"| `{kind}` | {keyed:.3f} | {bare:.3f} | {keyed - bare:+.3f} | "
              f"{keyed / bare:.2f} | {statistics.median(paired[kind]):+.3f} | {pairs} |")
    if args.control:
        print("control run: both servers keyless; the differences are the bench's noise")
    print(f"in-process: authentication's work on the loop for a keyed request whose record is "
          f"kept (shape, digest, expiry, revocation, rate count): {in_process():.1f} µs median")


if __name__ == "__main__":
    main()
