#!/usr/bin/env python3
"""Print the Debian mirror this machine's apt already uses for its own release.

Reads /etc/apt/sources.list and /etc/apt/sources.list.d/*.list / *.sources (one-line
and deb822 formats) and prints the first ``deb`` URI that serves ``<codename>`` with
the ``main`` component, so the container scripts never carry a host name of their own.
Usage: apt_mirror.py [codename]   (default: VERSION_CODENAME from /etc/os-release)
"""

from __future__ import annotations

import glob
import os
import sys


def _codename() -> str:
    with open("/etc/os-release", encoding="utf-8") as fh:
        for line in fh:
            key, _, value = line.strip().partition("=")
            if key == "VERSION_CODENAME":
                return value.strip('"')
    raise SystemExit("apt_mirror: no VERSION_CODENAME in /etc/os-release")


def _one_line(path: str):
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            line = raw.split("#", 1)[0].strip()
            if not line.startswith("deb "):
                continue
            words = line.split()[1:]
            if words and words[0].startswith("["):  # options: [arch=amd64 signed-by=...]
                while words and not words[0].endswith("]"):
                    words.pop(0)
                words = words[1:]
            if len(words) >= 3:
                yield words[0], [words[1]], words[2:]


def _deb822(path: str):
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for raw in block.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0] in " \t" and key:  # continuation line
                fields[key] += " " + raw.strip()
                continue
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            yield uri, fields.get("suites", "").split(), fields.get("components", "").split()


def main() -> int:
    codename = sys.argv[1] if len(sys.argv) > 1 else _codename()
    paths = ["/etc/apt/sources.list"]
    paths += sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    paths += sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
    for path in paths:
        if not os.path.isfile(path):
            continue
        entries = _deb822(path) if path.endswith(".sources") else _one_line(path)
        for uri, suites, components in entries:
            if codename in suites and "main" in components and uri.startswith(("http", "file")):
                print(uri.rstrip("/"))
                return 0
    print(f"apt_mirror: no apt source serves {codename} main", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
