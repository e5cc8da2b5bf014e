"""The ``tapeline`` command: ``serve`` the API, train queued runs as a ``worker``, ``migrate``
the store, manage API ``keys``, write its ``openapi`` spec, or, as a client of a server,
``train``, ``watch``, ``cancel``, ``export``, ``predict``, ``runs list|compare``, ``tag``,
manage ``webhooks`` and run ``study create|watch|best``."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import re
import resource
import signal
import socket
import sys
import traceback
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from service.config import (
    DEFAULT_DATABASE_URL,
    SettingFileError,
    Settings,
    get_settings,
    is_loopback,
)

# Open files kept for the store, the workers' pipes and logs, beyond one per connection.
RESERVED_FILES = 64
STARTUP_FAILED = 3
# The commands that serve; every other command uses a server from the terminal.
SERVING = ("serve", "worker", "migrate", "keys", "openapi")


def _description(commands: argparse._SubParsersAction) -> str:  # type: ignore[type-arg]
    """The top-level help's first paragraph, naming every command registered."""
    using = [name for name in commands.choices if name not in SERVING]
    return (f"Tapeline trains models over HTTP. Serve the API ({', '.join(SERVING)}), or use "
            f"a server from the terminal ({', '.join(using)}).")
EPILOG = "tapeline COMMAND --help shows a command's options."


def _exit_after_shutdown(signum: int, frame: object) -> None:
    raise SystemExit(0)


class CannotStart(Exception):
    """A setting keeps the service from starting; the message says which and why, in a line."""


def _settings_problem(error: ValidationError | SettingFileError) -> str:
    if isinstance(error, SettingFileError):
        return str(error)
    return "; ".join(
        f"TAPELINE_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']} (got {e['input']!r})"
        for e in error.errors()
    )


def raise_open_files() -> int:
    """Raise this process's open-file limit to its hard limit (a crowd of clients needs one
    each; the soft limit is often 1024); the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # an unlimited hard limit the kernel will not grant
        return soft
    return hard


def _preflight(args: argparse.Namespace) -> Settings:
    """The settings to serve with, the store checked and migrated; else :class:`CannotStart`."""
    try:
        settings = get_settings()
    except (ValidationError, SettingFileError) as error:
        raise CannotStart(_settings_problem(error)) from error
    if args.host:
        settings = settings.model_copy(update={"host": args.host})
    try:
        settings.hosts()
    except ValueError as error:
        raise CannotStart(str(error)) from error
    _check_port(settings.host, args.port if args.port is not None else settings.port)
    from service.store.db import StoreUnavailable, open_store

    if settings.executor == "queue" and not settings.database_url.startswith("postgresql"):
        raise CannotStart("TAPELINE_EXECUTOR: queue needs PostgreSQL (TAPELINE_DATABASE_URL="
                          "postgresql+psycopg://...)")
    try:
        engine = open_store(
            settings.database_url, create_folder=settings.database_url == DEFAULT_DATABASE_URL
        )
    except StoreUnavailable as error:
        raise CannotStart(f"TAPELINE_DATABASE_URL: {error}") from error
    try:
        _check_keys(settings, engine)
    finally:
        engine.dispose()
    return settings


def _check_port(host: str, port: int) -> None:
    """:class:`CannotStart` at once when the address is taken (another ``tapeline serve``),
    before the store is opened or anything is started. Bound as uvicorn binds it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise CannotStart(f"TAPELINE_HOST: cannot resolve {host!r} ({error})") from error
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise CannotStart(f"cannot listen on {host}:{port}: {error.strerror}") from error
            raise CannotStart(
                f"{host}:{port} is already in use (another `tapeline serve`?): stop it, or "
                "serve on another port with --port N or TAPELINE_PORT") from error


def _check_keys(settings: Settings, engine: Engine) -> None:
    """:class:`CannotStart` when the service would serve a network without keys: ``auto``, a
    non-loopback address and no key (nor a bootstrap key) to require."""
    from service.store import keys
    from service.store.keys import KEY_PATTERN

    bootstrap = settings.bootstrap_admin_key
    if bootstrap is not None and not KEY_PATTERN.fullmatch(bootstrap.get_secret_value()):
        raise CannotStart("TAPELINE_BOOTSTRAP_ADMIN_KEY: expected tl_ and at least 43 URL-safe "
                          "characters (make one with `tapeline keys generate`)")
    if settings.auth != "auto" or is_loopback(settings.host) or bootstrap is not None:
        return
    with Session(engine) as session:
        if keys.any_key(session):
            return
    raise CannotStart(
        f"bound to {settings.host}, a non-loopback address, with TAPELINE_AUTH=auto and no API "
        "key: create one (`tapeline keys create --tenant NAME --scopes admin`) or set "
        "TAPELINE_BOOTSTRAP_ADMIN_KEY, or serve without keys with TAPELINE_AUTH=off"
    )


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    try:
        settings = _preflight(args)
    except CannotStart as error:
        print(f"tapeline: cannot start: {error}", file=sys.stderr)
        if os.environ.get("TAPELINE_LOG_LEVEL", "").lower() == "debug":
            traceback.print_exc()  # the settings may be what failed: the raw variable
        return STARTUP_FAILED
    files = raise_open_files()
    connections = min(settings.max_connections, max(files - RESERVED_FILES, 1))
    from service.app import begin_shutdown, create_app

    app = create_app(settings.model_copy(update={"max_connections": connections}))
    if connections < settings.max_connections:
        logging.getLogger("tapeline.app").warning(
            "serving at most %d connections: the open-file limit is %d", connections, files
        )

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            begin_shutdown(app)
            super().handle_exit(sig, frame)

    # uvicorn shuts down gracefully on SIGTERM / SIGINT, restores the previous handlers and
    # raises the signal again; these handlers turn that into a clean exit (status 0).
    signal.signal(signal.SIGTERM, _exit_after_shutdown)
    signal.signal(signal.SIGINT, _exit_after_shutdown)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=args.port if args.port is not None else settings.port,
        log_level=settings.log_level,
        proxy_headers=True,
        forwarded_allow_ips="*",
        timeout_graceful_shutdown=5,
        access_log=False,
    )
    server = Server(config)
    server.run()
    return 0 if server.started else STARTUP_FAILED


def _worker(args: argparse.Namespace) -> int:
    try:
        settings = get_settings()
    except (ValidationError, SettingFileError) as error:
        print(f"tapeline: cannot start: {_settings_problem(error)}", file=sys.stderr)
        return STARTUP_FAILED
    from service.jobs.worker import run_worker
    from service.logs import configure_logging
    from service.store.db import StoreUnavailable

    configure_logging(settings.log_level)
    try:
        return run_worker(settings, args.concurrency)
    except (StoreUnavailable, ValueError) as error:
        print(f"tapeline: cannot start: TAPELINE_DATABASE_URL: {error}", file=sys.stderr)
        return STARTUP_FAILED


def _migrate(args: argparse.Namespace) -> int:
    try:
        settings = get_settings()
    except (ValidationError, SettingFileError) as error:
        print(f"tapeline: cannot migrate: {_settings_problem(error)}", file=sys.stderr)
        return STARTUP_FAILED
    from service.store.db import StoreUnavailable, open_store

    try:
        engine = open_store(settings.database_url,
                            create_folder=settings.database_url == DEFAULT_DATABASE_URL)
    except StoreUnavailable as error:
        print(f"tapeline: cannot migrate: TAPELINE_DATABASE_URL: {error}", file=sys.stderr)
        return STARTUP_FAILED
    if engine.dialect.name == "postgresql":
        from service.jobs.queue import ensure_queue_schema

        ensure_queue_schema(engine)
    engine.dispose()
    print("tapeline: the store is up to date")
    return 0


def _openapi(args: argparse.Namespace) -> int:
    from service.app import create_app

    spec = create_app().openapi()
    text = json.dumps(spec, indent=2, sort_keys=False) + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    return 0


def _store_sessions() -> Session:
    """A session on the configured store (migrated), for the ``keys`` commands. They never
    create a store: a SQLite file that is not there is a wrong folder or a wrong setting, and a
    key made in a new empty store would never reach the server."""
    from sqlalchemy.engine import make_url

    from service.store.db import StoreUnavailable, open_store

    settings = get_settings()
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database).resolve()
        if not path.exists():
            where = ("./var/tapeline.db, in the folder it is run from"
                     if settings.database_url == DEFAULT_DATABASE_URL else "TAPELINE_DATABASE_URL")
            raise CannotStart(
                f"no store at {path}: the keys commands work on the store of the server they "
                f"are for ({where}). Run them in the folder `tapeline serve` runs in, or set "
                "TAPELINE_DATABASE_URL to its store (`tapeline migrate` creates a new one)")
    try:
        engine = open_store(settings.database_url,
                            create_folder=settings.database_url == DEFAULT_DATABASE_URL)
    except StoreUnavailable as error:
        raise CannotStart(f"TAPELINE_DATABASE_URL: {error}") from error
    return Session(engine, expire_on_commit=False)


def _secret() -> str | None:
    secret = get_settings().secret_key
    return None if secret is None else secret.get_secret_value()


def _days(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 3650:
        raise argparse.ArgumentTypeError(f"expected a whole number of days, 1 to 3650: {text!r}")
    return int(text)


def _keys_create(args: argparse.Namespace) -> int:
    from service.store import keys

    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    unknown = [s for s in scopes if s not in keys.SCOPES]
    if unknown or not scopes:
        print(f"tapeline: scopes are {', '.join(keys.SCOPES)} (got {args.scopes!r})",
              file=sys.stderr)
        return 2
    if not re.fullmatch(keys.TENANT_PATTERN, args.tenant):
        print("tapeline: a tenant is lowercase letters, digits, - and _ (at most 64)",
              file=sys.stderr)
        return 2
    with _store_sessions() as session:
        first = not keys.any_key(session)
        row, key = keys.create_key(session, tenant=args.tenant, scopes=scopes, name=args.name,
                                   expires_at=keys.expiry(args.expires_in_days),
                                   secret=_secret())
        session.commit()
    if first and get_settings().auth == "auto":
        print(_FIRST_KEY.format(tenant=args.tenant), file=sys.stderr)
    expires = row.expires_at.isoformat() if row.expires_at else "never"
    print(f"created key {row.id} of tenant {row.tenant} (scopes {','.join(row.scopes)}, "
          f"expires {expires}); it is shown once, here:")
    print(key)
    return 0


_FIRST_KEY = (
    "tapeline: note: this is the store's first key, so the server now requires a key on every "
    "request (TAPELINE_AUTH=auto). A key sees only its tenant's data: what was made before "
    "without a key belongs to tenant 'default', not to '{tenant}' (a key of tenant 'default' "
    "reaches it). Clients pass a key with --key or TAPELINE_API_KEY; the dashboard asks "
    "for one.")


def _keys_list(args: argparse.Namespace) -> int:
    from service.store import keys

    with _store_sessions() as session:
        rows = keys.list_keys(session, args.tenant)
    print("id\ttenant\tname\tscopes\tprefix\tcreated\texpires\tlast used\trevoked")
    for row in rows:
        stamps = [row.created_at, row.expires_at, row.last_used_at, row.revoked_at]
        print("\t".join([row.id, row.tenant, row.name or "-", ",".join(row.scopes),
                         row.prefix + "...",
                         *(s.isoformat(timespec="seconds") if s else "-" for s in stamps)]))
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from service.store import keys
    from service.store.repo import NotFound

    with _store_sessions() as session:
        try:
            row = keys.revoke(session, args.key_id, None)
        except NotFound:
            print(f"tapeline: no key with id {args.key_id!r}", file=sys.stderr)
            return 1
        session.commit()
    print(f"revoked key {row.id} of tenant {row.tenant}")
    return 0


def _keys_generate(args: argparse.Namespace) -> int:
    from service.store import keys

    print(keys.generate())
    return 0


def _keys(args: argparse.Namespace) -> int:
    try:
        return int(args.keys_func(args))
    except CannotStart as error:
        print(f"tapeline: {error}", file=sys.stderr)
        return STARTUP_FAILED


class HelpText(argparse.HelpFormatter):
    """Help that names each option's default, unless it has none or says it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (action.option_strings and "default" not in text and default is not None
                and not isinstance(default, bool) and default is not argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """A parser (and its subcommands' parsers) whose help names defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpText)
        super().__init__(*args, **kwargs)


def _describe(parser: argparse.ArgumentParser) -> None:
    """Give each subcommand without a description its one-line help as one."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                if sub.description is None and helps.get(name):
                    text = str(helps[name])
                    sub.description = text[0].upper() + text[1:] + "."
                _describe(sub)


def _version() -> str:
    try:
        return version("tapeline")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tapeline`` console script."""
    parser = Parser(prog="tapeline", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"tapeline {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP service", description=(
        "Serve the API, the dashboard (/ui/) and the API docs (/docs); settings come from "
        "TAPELINE_ variables (docs/configuration.md)."))
    serve.add_argument("--host", help="bind address (default: TAPELINE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: TAPELINE_PORT or 8000)")
    serve.set_defaults(func=_serve)

    keys = commands.add_parser("keys", help="manage API keys in the configured store",
                               description="Create, list and revoke API keys in the store "
                               "of the server they are for (TAPELINE_DATABASE_URL).")
    keys.set_defaults(func=_keys)
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = key_commands.add_parser(
        "create", help="create a key; it is printed alone on the last line")
    create.add_argument("--tenant", required=True, help="the tenant the key belongs to")
    create.add_argument("--scopes", default="read,write",
                        help="comma-separated: read, write, admin")
    create.add_argument("--name", help="a label for the key")
    create.add_argument("--expires-in-days", type=_days, metavar="N",
                        help="the key stops working N days from now (1-3650)")
    create.set_defaults(keys_func=_keys_create)
    listing = key_commands.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--tenant", help="only this tenant's keys")
    listing.set_defaults(keys_func=_keys_list)
    revoke = key_commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key's id (key_…), from keys list")
    revoke.set_defaults(keys_func=_keys_revoke)
    generate = key_commands.add_parser(
        "generate", help="print a new random key without storing it (for "
        "TAPELINE_BOOTSTRAP_ADMIN_KEY)")
    generate.set_defaults(keys_func=_keys_generate)

    worker = commands.add_parser(
        "worker", help="train queued runs (TAPELINE_EXECUTOR=queue, on PostgreSQL)"
    )
    worker.add_argument(
        "--concurrency", type=int, help="runs trained at once, one process each (default: "
        "one per core)"
    )
    worker.set_defaults(func=_worker)

    migrate = commands.add_parser(
        "migrate", help="bring the store's schema up to date (once per release) and exit"
    )
    migrate.set_defaults(func=_migrate)

    openapi = commands.add_parser("openapi", help="write the OpenAPI spec without serving")
    openapi.add_argument("--output", "-o", help="file to write (default: stdout)")
    openapi.set_defaults(func=_openapi)

    from service.client import runs, studies, webhooks
    from service.client.commands import add_commands

    add_commands(commands, HelpText)
    runs.add_commands(commands, HelpText)
    webhooks.add_commands(commands, HelpText)
    studies.add_commands(commands, HelpText)

    parser.description = _description(commands)
    _describe(parser)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
