"""The vendored web files are exactly the pinned npm packages' files, with their licences."""

from __future__ import annotations

import json
import re

from tests.support.node import node_modules
from tests.support.servers import ROOT

PACKAGE = json.loads((ROOT / "package.json").read_text())
LOCK = json.loads((ROOT / "package-lock.json").read_text())


def test_versions_are_pinned_exactly_and_locked() -> None:
    for name, version in PACKAGE["devDependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} {version} is not exact"
        assert LOCK["packages"][f"node_modules/{name}"]["version"] == version, name


def test_vendored_files_equal_the_pinned_packages_files() -> None:
    modules = node_modules("the vendored-files check")
    for target, source in PACKAGE["vendor"].items():
        package = source.split("/")[0]
        installed = json.loads((modules / package / "package.json").read_text())["version"]
        assert installed == PACKAGE["devDependencies"][package], package
        assert (ROOT / target).read_bytes() == (modules / source).read_bytes(), (
            f"{target} differs from {source}: run `npm ci && npm run vendor`")


def test_every_vendored_package_ships_its_licence() -> None:
    folders = {(ROOT / target).parent for target in PACKAGE["vendor"]}
    for folder in folders:
        assert (folder / "LICENSE").is_file(), folder
    vendored = ROOT / "service" / "ui" / "assets" / "vendor"
    assert {p.parent for p in vendored.rglob("*") if p.is_file()} == folders
