#!/usr/bin/env python3
"""Print a SHA-256 of everything an image build reads: the build context as .dockerignore
filters it (names, exec bits and contents), plus any extra strings given (Dockerfile path's
content is part of the context walk only if .dockerignore lets it in, so run.sh passes the
Dockerfile, base image id and build arguments as extras).

run.sh labels the image with it and skips `buildah bud` when the image already carries the
same hash, since even a fully cached build costs a minute on vfs storage.

Usage: context_hash.py CONTEXT_DIR [EXTRA ...]     (stdlib only)
"""

from __future__ import annotations

import hashlib
import os
import re
import sys


def _regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append({"*": "[^/]*", "?": "[^/]"}.get(ch, re.escape(ch)))
        i += 1
    return re.compile("".join(out) + r"\Z")


def _rules(context: str) -> list[tuple[bool, str, re.Pattern[str]]]:
    path = os.path.join(context, ".dockerignore")
    rules = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            for raw in fh:
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                negate = line.startswith("!")
                pat = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
                rules.append((negate, pat, _regex(pat)))
    return rules


def _excluded(rel: str, rules) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negate, _, rx in rules:
        if any(rx.match(p) for p in prefixes):
            result = not negate
    return result


def _may_reinclude(rel_dir: str, rules) -> bool:
    for negate, pat, _ in rules:
        if negate and (pat.startswith(rel_dir + "/") or "*" in pat.split("/")[0]):
            return True
    return False


def main() -> int:
    context = os.path.abspath(sys.argv[1])
    rules = _rules(context)
    digest = hashlib.sha256()
    for extra in sys.argv[2:]:
        digest.update(b"extra\0" + extra.encode() + b"\0")
    for dirpath, dirnames, filenames in os.walk(context):
        rel_dir = os.path.relpath(dirpath, context)
        rel_dir = "" if rel_dir == "." else rel_dir
        keep = []
        for d in sorted(dirnames):
            rel = f"{rel_dir}/{d}" if rel_dir else d
            if not _excluded(rel, rules) or _may_reinclude(rel, rules):
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            full = os.path.join(dirpath, name)
            if _excluded(rel, rules) or not os.path.isfile(full):
                continue
            executable = os.access(full, os.X_OK)
            digest.update(f"file\0{rel}\0{int(executable)}\0".encode())
            with open(full, "rb") as fh:
                digest.update(hashlib.sha256(fh.read()).digest())
    print(digest.hexdigest())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
