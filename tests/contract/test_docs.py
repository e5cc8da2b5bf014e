"""The manual is true: every ``sh`` block of README.md and of the pages in docs/ runs against a
live server as written, its Python examples run through the generated client, the curl lines
of its other blocks answer what their comments say, and its settings table matches
``Settings``.

The README's tour runs in a shell of its own. The pages' blocks run in one shell, page after
page in the order of the nav in mkdocs.yml, so that a chapter may use the ids an earlier one
made; a page that needs a server of its own (keys required) runs apart. The one change made
to a block: the documented address in its ``export TAPELINE=`` / ``export TAPELINE_URL=``
line becomes the live server's."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from pydantic import TypeAdapter

from service.config import Settings
from tests.contract.conftest import ROOT
from tests.support.servers import LiveServer, sqlite_url, start_server

pytestmark = pytest.mark.live

README = ROOT / "README.md"
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
DOCUMENTED_BASE = "http://127.0.0.1:8000"
ADDRESS = re.compile(r"^export (TAPELINE|TAPELINE_URL)=http://127\.0\.0\.1:8000$", re.M)
# What happens to a fenced block, by its language: `sh` runs here; `bash` is a command shown
# and not run (Docker, another machine, a benchmark, `make`); the rest are outputs and
# programs (`python` and `py` run in their own tests). Any other language fails, so that no
# block is skipped by a typo.
LANGUAGES = {"sh", "bash", "text", "json", "python", "py", "typescript"}
KEYED_PAGE = "tenants.md"  # runs against a server that requires keys, not in the chain


def fences(text: str) -> list[tuple[str, str]]:
    """Every fenced block of a Markdown text: (language, body), in order."""
    return FENCE.findall(text)


def blocks(text: str, language: str) -> list[str]:
    """The fenced blocks of one language, in order."""
    return [body for lang, body in fences(text) if lang == language]


def nav_pages() -> list[str]:
    """The pages of mkdocs.yml's nav, in reading order."""
    def walk(items: list[Any]) -> Iterator[str]:
        for item in items:
            value = item if isinstance(item, str) else next(iter(item.values()))
            yield from (walk(value) if isinstance(value, list) else [value])
    return list(walk(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]))


def page(name: str) -> str:
    return (DOCS / name).read_text()


CHAINED = [name for name in nav_pages() if name != KEYED_PAGE and blocks(page(name), "sh")]


def at(url: str, script: str) -> str:
    """A block with the live server's address in place of the documented one."""
    script = ADDRESS.sub(lambda m: f"export {m[1]}={url}", script)
    assert DOCUMENTED_BASE not in script, f"a block names the documented address:\n{script}"
    return script


def documents(text: str) -> list[Any]:
    """The JSON values printed one after another (curl adds no newline after a body)."""
    decoder, values, position = json.JSONDecoder(), [], 0
    while (position := len(text) - len(text[position:].lstrip())) < len(text):
        value, position = decoder.raw_decode(text, position)
        values.append(value)
    return values


@dataclass
class Shell:
    """What one shell printed for each block it ran, and how it ended."""

    scripts: dict[str, list[str]]
    cwd: Path
    outputs: dict[str, list[str]]
    stdout: str
    stderr: str

    def of(self, name: str) -> list[str]:
        """A page's blocks' outputs; fails naming the first block that did not complete."""
        done = self.outputs.get(name, [])
        if len(done) < len(self.scripts[name]):
            [(first, index), *_] = [(n, len(self.outputs.get(n, []))) for n in self.scripts
                                    if len(self.outputs.get(n, [])) < len(self.scripts[n])]
            if first != name:
                pytest.fail(f"not run: block {index} of {first} failed before it")
            pytest.fail(f"block {index} of {name} failed:\n{self.scripts[name][index]}\n"
                        f"--- stdout (tail)\n{self.stdout[-3000:]}\n--- stderr\n"
                        f"{self.stderr[-3000:]}")
        return done

    def output_of(self, name: str, command: str) -> str:
        """The output of the one block of a page that contains ``command``."""
        [index] = [i for i, body in enumerate(self.scripts[name]) if command in body]
        return self.of(name)[index]


def run_shell(scripts: dict[str, list[str]], url: str, cwd: Path, timeout: float,
              activated: bool = True) -> Shell:
    """Run the blocks of every page, in order, in one bash (stopping at the first failure).
    ``activated``: with the terminal client's `tapeline` (the one installed beside this
    Python) on the PATH, as the manual's pages assume; without it, as a fresh clone's shell
    is, where no folder of the PATH holds a `tapeline`."""
    marked = "".join(f"echo '=== begin {name} {i}'\n{at(url, body)}\necho\n"
                     f"echo '=== end {name} {i}'\n"
                     for name, bodies in scripts.items() for i, body in enumerate(bodies))
    folders = os.environ.get("PATH", "").split(os.pathsep)
    if activated:
        folders.insert(0, str(Path(sys.executable).parent))
    else:
        folders = [f for f in folders if f and not (Path(f) / "tapeline").exists()]
    path = os.pathsep.join(folders)
    result = subprocess.run(["bash", "-c", "set -euo pipefail\n" + marked], cwd=cwd,
                            capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "PATH": path})
    outputs: dict[str, list[str]] = {}
    for m in re.finditer(r"^=== begin (\S+) (\d+)\n(.*?)^=== end \1 \2$", result.stdout,
                         re.M | re.S):
        outputs.setdefault(m[1], []).append(m[3])
    if result.returncode == 0:
        assert {n: len(b) for n, b in outputs.items()} == {n: len(b) for n, b in scripts.items()}
    return Shell(scripts, cwd, outputs, result.stdout, result.stderr)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server on SQLite that may post webhooks to this machine: the Webhooks chapter
    runs its receiver on loopback."""
    folder = tmp_path_factory.mktemp("live")
    server = start_server(sqlite_url(folder), folder / "server.log",
                          TAPELINE_WEBHOOK_ALLOW_PRIVATE="true")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def chain(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Shell:
    """Every chained page's `sh` blocks, run in nav order in one shell on the live server."""
    scripts = {name: blocks(page(name), "sh") for name in CHAINED}
    return run_shell(scripts, live_server.url, tmp_path_factory.mktemp("docs"), timeout=300)


def test_every_block_is_run_or_fenced_as_not_runnable() -> None:
    """Every page is in the nav, every block's language says what happens to it, and every
    page with `sh` blocks runs: in the chain, or (Tenants) on a server of its own."""
    assert sorted(nav_pages()) == sorted(p.name for p in DOCS.glob("*.md"))
    for source in [README, *sorted(DOCS.glob("*.md"))]:
        languages = {lang for lang, _ in fences(source.read_text())}
        assert languages <= LANGUAGES, (source.name, languages - LANGUAGES)
    runnable = {name for name in nav_pages() if blocks(page(name), "sh")}
    assert runnable == {*CHAINED, KEYED_PAGE}
    assert CHAINED[0] == "tutorial.md"  # it sets TAPELINE and field for the others


@pytest.mark.parametrize("name", CHAINED)
def test_every_sh_block_of_the_page_runs(chain: Shell, name: str) -> None:
    chain.of(name)


def test_readme_tour_runs_as_written(live_server: LiveServer, tmp_path: Path) -> None:
    """The README's blocks, run in a folder laid out as the clone is (its `.venv` there), in a
    shell whose PATH has no `tapeline`, as a fresh clone's has not: the blocks name
    `.venv/bin/tapeline`."""
    text = README.read_text()
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    shell = run_shell({"README.md": blocks(text, "sh")}, live_server.url, tmp_path, timeout=180,
                      activated=False)
    terminal, history, link = shell.of("README.md")
    assert re.search(r"^epoch 50/50  final  loss \d\.\d+  rmse", terminal, re.M), terminal
    assert re.search(r"^run run_\w+ succeeded after 50 epochs$", terminal, re.M), terminal
    printed, documented_link = blocks(text.split("## A one-minute tour", 1)[1], "text")[:2]
    assert history.split() == printed.split()  # W, b and the loss of every epoch, as shown
    assert documented_link.strip() == f"{DOCUMENTED_BASE}/ui/runs/run_…"
    url = link.strip()
    assert re.fullmatch(rf"{live_server.url}/ui/runs/run_[0-9a-f]+", url)
    answer = httpx.get(url)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")


def test_tutorial(chain: Shell) -> None:
    out = partial(chain.output_of, "tutorial.md")
    [dataset] = documents(out('"true_W": [3.0]'))
    assert dataset["num_examples"] == 1000 and dataset["synthetic"]["seed"] == 42
    [run] = documents(out("RUN=$(curl"))
    assert run["status"] == "succeeded" and run["epochs_completed"] == 10
    rows, columns = documents(out("history?limit=2"))
    assert [r["epoch"] for r in rows["items"]] == [0, 1]
    assert columns["epoch"] == list(range(10))
    assert len(documents(out('{"x": [-1.0, 0.0, 1.0]}'))[0]["y"]) == 3
    sampled, sample, newest = documents(out("max_points="))
    assert sampled["epoch"][0] == 0 and sampled["epoch"][-1] == 9 and len(sampled["epoch"]) <= 4
    assert len(sample["x"]) == len(sample["y"]) == 3
    assert len(newest["items"]) == 1


def test_data(chain: Shell) -> None:
    assert documents(chain.output_of("data.md", "line.csv"))[0]["num_examples"] == 3


def test_model_kinds(chain: Shell) -> None:
    out = partial(chain.output_of, "model-kinds.md")
    [softmax] = documents(out('"kind": "blobs"'))
    assert (softmax["status"], softmax["loss"]) == ("succeeded", "cross_entropy")
    assert softmax["final"]["metrics"]["accuracy"] > 0.95 and softmax["final"]["W"] is None
    assert np.shape(softmax["final"]["params"]["W"]) == (2, 3)
    fit, final_metrics, first_row = documents(out("FIT=$(curl"))
    assert fit["status"] == "succeeded" and fit["stopped_early"] is not None
    assert fit["epochs_completed"] == fit["stopped_early"]["epoch"] < 500
    assert final_metrics["val_accuracy"] > 0.9
    assert set(first_row) == set(final_metrics) and len(first_row["val_loss"]) == 1
    mlp, pets = documents(out("pets.csv"))
    assert mlp["y"] == [0, 1, 1] and mlp["labels"] is None
    assert np.allclose(np.sum(mlp["probabilities"], axis=1), 1.0)
    assert pets["labels"] == ["cat", "dog"] and pets["y"] == [0, 1]


def test_runs_and_streams(chain: Shell) -> None:
    out = partial(chain.output_of, "runs.md")
    sse = out("text/event-stream")
    assert sse.count("event: epoch") == 30 and "event: end" in sse
    lines = [json.loads(line) for line in out("application/jsonl").splitlines() if line]
    assert [line["type"] for line in lines] == ["epoch", "epoch", "end"]
    assert documents(out("$LONG/cancel"))[0]["status"] in ("cancelling", "cancelled")
    paused, resumed = documents(out("$PAUSED/resume"))
    assert paused["status"] in ("queued", "running", "paused") and resumed["status"] == "queued"
    assert out("$PAUSED/cancel").split() == ["cancelled"]
    [thinned] = documents(out("record_params"))
    assert thinned["epoch"] == [0, 1, 2, 3, 4]
    assert [b is None for b in thinned["b"]] == [False, True, False, True, False]


def test_export_and_prediction(chain: Shell) -> None:
    out = partial(chain.output_of, "export.md")
    [imported] = documents(out("softmax.json"))
    assert imported["y"] == [1, 0] and len(imported["probabilities"][0]) == 3
    batch = out("Accept: text/csv").splitlines()
    assert batch[0] == "y,p_0,p_1,p_2" and [line.split(",")[0] for line in batch[1:3]] == \
        ["1", "0"]
    assert out("dry_run=true").split() == ["None", "[16]", "relu", "65"]
    refused = out("rows.npy")
    assert refused.startswith("413 the answer to 100000 rows") and "(JSON: 2683," in refused
    assert (chain.cwd / "softmax.onnx").stat().st_size > 0


def test_webhooks(chain: Shell) -> None:
    out = partial(chain.output_of, "webhooks.md")
    [made] = documents(out("WEBHOOK_SECRET="))
    assert made["events"] == ["run.*"] and "secret" not in made
    [ping] = documents(out("/test\""))
    assert (ping["event_type"], ping["status"]) == ("ping", "succeeded")
    assert ping["attempts"][0]["status_code"] == 204
    received = out("cat received.log").split()
    assert received[:2] == ["ping", made["id"]]
    assert received.index("run.created") < received.index("run.started") \
        < received.index("run.succeeded")
    log, redelivered = documents(out("/redeliver"))
    assert log["items"][0]["event_type"] == "run.succeeded" and redelivered["status"] == \
        "pending"
    metadata, unknown = documents(out("169.254.169.254"))
    assert metadata["status"] == unknown["status"] == 422
    assert "metadata" in metadata["detail"] and "'run.*'" in unknown["detail"]
    assert unknown["errors"][0]["loc"] == ["body", "events", 0]
    assert "succeeded" in out("tapeline webhooks deliveries")


def test_errors(chain: Shell) -> None:
    errors = chain.output_of("errors.md", "mdl_00000000000000000000")
    assert "HTTP/1.1 404" in errors and "content-type: application/problem+json" in errors
    assert '"status":422' in errors and "x has 3 examples but y has 2" in errors
    refusals = documents(chain.output_of("errors.md", "evil.example"))
    assert [r["status"] for r in refusals] == [400, 403]


def test_terminal_client(chain: Shell) -> None:
    terminal = chain.output_of("terminal.md", "tapeline train")
    assert "succeeded after 100 epochs" in terminal and "val_r2" in terminal
    assert terminal.split("wrote predictions.csv")[1].split()[0] == "y"
    assert (chain.cwd / "plane.onnx").stat().st_size > 0


def test_requeue_is_described_as_it_behaves() -> None:
    """A requeued run resumes from its last checkpoint, keeping the epochs stored up to it
    (tests/live/test_operations.py restarts a server to show it): Runs and Deployment say
    so, and no page says it trains from scratch (Runs did)."""
    for source in [README, *sorted(DOCS.glob("*.md"))]:
        assert "from scratch" not in " ".join(source.read_text().split()), source.name
    for name in ("runs.md", "deployment.md"):
        text = " ".join(page(name).split())
        assert re.search(r"`(TAPELINE_ON_INTERRUPTED=)?requeue`[^.]{0,80}resumes[^.]{0,40}"
                         r"last checkpoint", text), name


def test_experiments(chain: Shell) -> None:
    """The sweep searched, patched under If-Match (a stale one refused), compared; and the
    grammar the chapter publishes is the parser's own."""
    from service.store.search.grammar import GRAMMAR

    name = "experiments.md"
    assert chain.output_of(name, "If-Match: $ETAG").split() == [
        "{'verdict':", "'keep'}", "the", "same", "If-Match", "again:", "412"]
    assert chain.output_of(name, "sort=-params.optimizer").split() == [
        "lr-0.1", "0.1", "lr-0.03", "0.03"]
    refused = chain.output_of(name, "metrics.vall_loss")
    assert "did you mean 'metrics.val_loss'?" in refused
    assert "42 expected a value after '<' at column 42" in refused
    compared = chain.output_of(name, "runs/compare")
    assert "params.optimizer.learning_rate" in compared and "lr-0.03 0.03" in compared
    assert compared.count("4 points, first epoch 0") == 3  # 8 // 4 buckets: 4 rows kept
    assert "reviewed=yes" in chain.output_of(name, "tapeline tag")
    published = [body for body in blocks(page(name), "text") if body.startswith("?start")]
    assert published == [GRAMMAR.lstrip("\n")]


def test_studies(chain: Shell) -> None:
    """The ASHA study stopped its trials at the rungs as successive halving says, and its
    best model predicts."""
    name = "studies.md"
    assert chain.output_of(name, "field rungs").split() == ["[1,", "3,", "9]"]
    assert chain.output_of(name, "field epochs_trained").splitlines()[0] == "21"
    counts = chain.output_of(name, "field epochs_trained").splitlines()[1]
    assert "'pruned': 8" in counts and "'completed': 1" in counts
    rows = [line.split()[:3] for line in
            chain.output_of(name, "field epochs_trained").splitlines()[2:] if line.strip()]
    assert sorted(int(epochs) for _, _, epochs in rows) == [1] * 6 + [3] * 2 + [9]
    assert {status for _, status, _ in rows} == {"pruned", "completed"}
    [predicted] = documents(chain.output_of(name, "/predict"))
    assert len(predicted["y"]) == 2


def test_every_other_curl_line_runs(live_server: LiveServer) -> None:
    """The curl lines of the blocks not run as a whole that hit ``localhost:8000`` (a local
    deployment; those of a cluster name its address) each run against the live server, and
    the answer matches the JSON in its comment."""
    others = [line.strip() for source in [README, *sorted(DOCS.glob("*.md"))]
              for lang, body in fences(source.read_text()) if lang != "sh"
              for line in body.splitlines()
              if line.strip().startswith("curl ") and "localhost:8000" in line]
    assert others, "expected curl lines in the deployment chapter"
    port = live_server.url.rsplit(":", 1)[1]
    for line in others:
        command, _, comment = line.partition("#")
        args = [a.replace("localhost:8000", f"127.0.0.1:{port}") for a in shlex.split(command)]
        result = subprocess.run(args, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, (line, result.stderr)
        expected = re.search(r"\{.*?\}", comment)
        if expected:
            assert json.loads(result.stdout) == json.loads(expected[0]), line


def test_tenants_page_runs_against_a_server_that_requires_keys(tmp_path: Path) -> None:
    """The `sh` block of "Tenants and API keys" runs, as written, against a server with
    TAPELINE_AUTH=required and the block's key as its bootstrap admin key."""
    [script] = blocks(page(KEYED_PAGE), "sh")
    admin = re.search(r"^export ADMIN_KEY=(\S+)$", script, re.M)
    assert admin and script.startswith(f"export TAPELINE={DOCUMENTED_BASE}\n")
    server = start_server(sqlite_url(tmp_path), tmp_path / "server.log",
                          TAPELINE_AUTH="required", TAPELINE_BOOTSTRAP_ADMIN_KEY=admin[1])
    try:
        result = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + at(server.url, script)],
            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    assert result.returncode == 0, f"the block failed:\n{result.stdout}\n{result.stderr}"
    me, end = json.JSONDecoder().raw_decode(result.stdout)  # curl adds no newline
    assert me["tenant"] == "team-a" and me["usage"]["models"] == 1
    assert me["usage"]["stored"] == {"datasets": 0, "models": 136, "runs": 0, "checkpoints": 0}
    assert me["usage"]["stored_bytes"] == 136  # the model's params count
    foreign, forbidden, rest = result.stdout[end:].split("\n", 2)
    assert (foreign, forbidden) == ("404", "403")  # B's read key: A's model; creating
    assert rest.startswith("HTTP/1.1 401 Unauthorized")
    assert 'www-authenticate: Bearer realm="tapeline"' in rest
    quotas = documents(rest.split("\n\n", 1)[1])[-1]
    assert quotas == {"max_active_runs": 2, "max_stored_bytes": 1024**3,
                      "rate_limit": "20/second"}
    assert admin[1] not in (tmp_path / "server.log").read_text()


def run_python(example: str, python_client: Path, live_server: LiveServer) -> str:
    """What a Python block of the manual prints, run against the live server."""
    code = example.replace(DOCUMENTED_BASE, live_server.url)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(python_client)})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_readme_python_snippet_runs(python_client: Path, live_server: LiveServer) -> None:
    """The README's Python snippet, through the generated client (its install:
    test_client_packages.py), prints what the README shows."""
    every = fences(README.read_text())
    [where] = [i for i, (lang, code) in enumerate(every)
               if lang == "python" and "tapeline_client" in code]
    snippet, (language, shown) = every[where][1], every[where + 1]
    assert language == "text"
    status, weights, bias = run_python(snippet, python_client, live_server).split(" ", 2)
    expected = re.fullmatch(r"(\w+) \[(\d\.\d+)…\] (\d\.\d+)…\n", shown)
    assert expected and status == expected[1]
    assert weights.strip("[]").startswith(expected[2]) and bias.startswith(expected[3])


def test_readme_webhook_receiver_verifies_a_signed_event() -> None:
    """The README's five-line receiver, given a body signed as the server signs one, prints
    the event's type and status; a forged body makes it raise."""
    from standardwebhooks import Webhook
    from standardwebhooks.webhooks import WebhookVerificationError

    [snippet] = [code for lang, code in fences(README.read_text())
                 if lang == "python" and "standardwebhooks" in code]
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    body = json.dumps({"type": "run.succeeded", "timestamp": "2026-12-07T00:00:00Z",
                       "data": {"id": "run_1", "status": "succeeded"}})
    stamp = datetime.now(UTC)
    headers = {"webhook-id": "evt_1", "webhook-timestamp": str(int(stamp.timestamp())),
               "webhook-signature": Webhook(secret).sign("evt_1", stamp, body)}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(snippet, {"secret": secret, "body": body, "headers": headers})
    assert printed.getvalue() == "run.succeeded succeeded\n"
    with pytest.raises(WebhookVerificationError):
        exec(snippet, {"secret": secret, "body": body.replace("succeeded", "failed"),
                       "headers": headers})


def test_python_examples_run(python_client: Path, live_server: LiveServer) -> None:
    tutorial, files = blocks(page("clients.md"), "python")
    assert run_python(tutorial, python_client, live_server).startswith("succeeded ")
    # The .npy body through the generated method and the CSV body through its httpx client
    # predict the same values.
    by_npy, by_csv = run_python(files, python_client, live_server).strip().split("] [")
    assert len(by_npy.strip("[]").split(",")) == 2 and by_npy.strip("[]") == by_csv.strip("[]")


def settings_rows() -> dict[str, list[str]]:
    """The settings table of the configuration chapter: variable name -> its cells."""
    rows = {}
    for line in page("configuration.md").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`TAPELINE_[A-Z_]+`", cells[0]):
            rows[cells[0].strip("`")] = cells
    return rows


def test_settings_table_matches_the_settings() -> None:
    rows = settings_rows()
    fields = Settings.model_fields
    assert set(rows) == {f"TAPELINE_{name.upper()}" for name in fields}
    for name, field in fields.items():
        _, default, meaning = rows[f"TAPELINE_{name.upper()}"]
        expected = field.get_default(call_default_factory=True)
        assert meaning, name
        if default == "none":  # an empty list, or a default worked out at start-up
            assert expected in (None, []), (name, expected)
            continue
        value: Any = TypeAdapter(field.annotation).validate_python(default.strip("`"),
                                                                    strict=False)
        assert value == expected, (name, default, expected)


def test_quick_start_is_the_two_commands() -> None:
    """The README's quick start, the same on the manual's home page (where the README's first
    steps from the terminal and from Python, its subsections, are not), is `make run` and
    `make test`."""
    sections = [text.split("## Quick start", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
                for text in (README.read_text(), page("index.md"))]
    assert sections[0] == sections[1]
    commands = fences(sections[0])[0][1]
    assert [line.split("#")[0].strip() for line in commands.splitlines()] == [
        "make run", "make test"]
