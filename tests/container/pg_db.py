#!/usr/bin/env python3
"""Create or drop a scratch PostgreSQL database for the container test.

Runs INSIDE the image (its own psycopg), so the host needs no PostgreSQL client:
  pg_db.py create URL NAME   print URL with its database replaced by NAME (created fresh);
                             exit 3 when no server answers at URL
  pg_db.py drop URL NAME     drop NAME if it exists
URL is a SQLAlchemy URL such as postgresql+psycopg://postgres@127.0.0.1:5432/test.
"""

from __future__ import annotations

import re
import sys

import psycopg
from psycopg import sql


def main() -> int:
    action, url, name = sys.argv[1:4]
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise SystemExit(f"pg_db: bad database name {name!r}")
    libpq_url = url.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        conn = psycopg.connect(libpq_url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as err:
        print(f"pg_db: no PostgreSQL at the given URL: {err}".strip(), file=sys.stderr)
        return 3
    with conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        if action == "create":
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            base, _, rest = url.rpartition("/")
            query = rest.partition("?")[2]
            print(f"{base}/{name}" + (f"?{query}" if query else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
