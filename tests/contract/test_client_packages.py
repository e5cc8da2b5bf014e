"""The generated clients are packages a user installs: ``make client`` writes a Python project
(the generator's own package metadata) that ``pip install ./clients/python`` installs, and
``make client-ts`` an npm package of the TypeScript types that a project installs and
imports by name. Each is generated here by the Makefile's and package.json's own commands,
into a temporary folder."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.contract.conftest import BIN, ROOT, SPEC
from tests.support.node import node_modules

pytestmark = pytest.mark.live


def run(command: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result


def makefile_command(target: str) -> list[str]:
    """The generator command of a Makefile target's recipe, its variables filled in."""
    recipe = run(["make", "-n", "-s", "-C", str(ROOT), target]).stdout
    lines = recipe.replace("\\\n", " ").splitlines()
    [line] = [line for line in lines if "openapi-python-client generate" in line]
    return shlex.split(line.split(" ", 1)[1] if line.startswith("PATH=") else line)


def test_make_client_writes_a_package_pip_installs(tmp_path: Path) -> None:
    command = makefile_command("client")
    assert "--meta" in command and command[command.index("--meta") + 1] != "none"
    where = command.index("--output-path") + 1
    assert command[where] == "clients/python"  # what the README installs
    command[where] = str(tmp_path / "python")
    run(command, cwd=ROOT, env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
         tmp_path / "site", tmp_path / "python"])
    found = run([sys.executable, "-c", (
        "import importlib.metadata as m, tapeline_client; "
        "from tapeline_client.api.runs import runs_create; "
        "print(m.version('tapeline-client'), tapeline_client.__file__)")],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path / "site")}).stdout
    version = json.loads(SPEC.read_text())["info"]["version"]
    assert re.fullmatch(rf"{re.escape(version)} {re.escape(str(tmp_path / 'site'))}\S+\n", found)


def test_make_client_ts_writes_an_npm_package_of_the_types(tmp_path: Path) -> None:
    tools = node_modules("the TypeScript package test") / ".bin"
    script = json.loads((ROOT / "package.json").read_text())["scripts"]["types"]
    package = tmp_path / "types"
    package.mkdir()
    for step in script.split("&&"):
        words = shlex.split(step.replace("clients/typescript", str(package)))
        program = tools / words[0] if (tools / words[0]).exists() else words[0]
        run([program, *words[1:]], cwd=ROOT)
    manifest = json.loads((package / "package.json").read_text())
    assert manifest["name"] == "tapeline-client-types" and manifest["types"] == "tapeline.d.ts"
    assert (package / manifest["types"]).exists()

    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text('{"name": "app", "private": true}\n')
    run(["npm", "install", "--offline", "--no-audit", "--no-fund", str(package)], cwd=app)
    (app / "main.ts").write_text(
        'import type { components } from "tapeline-client-types";\n'
        'type RunCreate = components["schemas"]["RunCreate"];\n'
        'export const body: RunCreate = { dataset_id: "ds_0", epochs: 3,\n'
        '  optimizer: { kind: "adam", learning_rate: 0.01 } };\n')
    run([tools / "tsc", "--strict", "--noEmit", "--module", "nodenext", "--moduleResolution",
         "nodenext", "main.ts"], cwd=app)
    (app / "wrong.ts").write_text(
        'import type { components } from "tapeline-client-types";\n'
        'export const body: components["schemas"]["RunCreate"] = { epochs: 3 };\n')
    refused = subprocess.run([tools / "tsc", "--strict", "--noEmit", "--module", "nodenext",
                              "--moduleResolution", "nodenext", "wrong.ts"], cwd=app,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "dataset_id" in refused.stdout  # the types are real
