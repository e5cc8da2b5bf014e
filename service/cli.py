"""The ``tapeline`` command: ``serve`` the API, or write its ``openapi`` spec."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from types import FrameType

from service.config import get_settings


def _exit_after_shutdown(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import begin_shutdown, create_app

    settings = get_settings()
    app = create_app(settings)

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
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
        log_level=settings.log_level,
        proxy_headers=True,
        forwarded_allow_ips="*",
        timeout_graceful_shutdown=5,
        access_log=False,
    )
    Server(config).run()
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tapeline`` console script."""
    parser = argparse.ArgumentParser(prog="tapeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="bind address (default: TAPELINE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: TAPELINE_PORT or 8000)")
    serve.set_defaults(func=_serve)

    openapi = commands.add_parser("openapi", help="write the OpenAPI spec without serving")
    openapi.add_argument("--output", "-o", help="file to write (default: stdout)")
    openapi.set_defaults(func=_openapi)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
