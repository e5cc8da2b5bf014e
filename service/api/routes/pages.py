"""Pages for people: the dashboard at /ui/ (its deep links too), the API docs at /docs and
/redoc, and `/` sending browsers to the dashboard. Every file comes from the package
(`service/ui/`), so the pages work with no internet; none is part of the OpenAPI spec."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from service.api.http.negotiation import choose
from service.api.http.problems import ProblemError

UI = Path(str(files("service.ui")))
# Nothing but this origin: no inline script or style, no CDN, no framing by other sites.
CSP = "default-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
# Swagger UI and ReDoc draw their icons as data: images.
DOCS_CSP = f"{CSP}; img-src 'self' data:"
# ReDoc's styled-components creates EMPTY <style> elements and fills them through the CSSOM,
# and it injects perfect-scrollbar's fixed stylesheet: exactly those two inline styles (by
# hash: the empty string's and that stylesheet's) are allowed, nothing else. A new ReDoc
# version with other text fails the browser test (tests/ui/test_docs.py) until updated here.
REDOC_CSP = (
    f"{DOCS_CSP}; style-src 'self' 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=' "
    "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(tags=["pages"], include_in_schema=False)


def _page(name: str, csp: str = CSP) -> FileResponse:
    headers = {**HEADERS, "Content-Security-Policy": csp, "Cache-Control": "no-cache"}
    return FileResponse(UI / name, media_type="text/html; charset=utf-8", headers=headers)


@router.get("/")
def root(request: Request) -> Response:
    """Browsers (asking for HTML) go to the dashboard; API clients get a 404 problem."""
    if choose(request.headers.get("accept"), ("application/json", "text/html")) == "text/html":
        return RedirectResponse("/ui/", status_code=303)
    raise ProblemError(404, "nothing here: the dashboard is at /ui/, the API under /v1/ and "
                            "its docs at /docs")


@router.get("/ui")
def ui_slash() -> RedirectResponse:
    """`/ui` is `/ui/`."""
    return RedirectResponse("/ui/", status_code=308)


@router.get("/ui/")
@router.get("/ui/start")
@router.get("/ui/webhooks")
@router.get("/ui/runs/{run_id}")
@router.get("/ui/models/{model_id}")
@router.get("/ui/datasets")
@router.get("/ui/compare")
@router.get("/ui/studies")
@router.get("/ui/studies/{study_id}")
def dashboard() -> FileResponse:
    """The dashboard's one page; its script reads the path and shows that view."""
    return _page("index.html")


@router.get("/docs")
def swagger_ui() -> FileResponse:
    """Swagger UI over `/openapi.json`, from the vendored swagger-ui-dist."""
    return _page("docs.html", DOCS_CSP)


@router.get("/redoc")
def redoc() -> FileResponse:
    """ReDoc over `/openapi.json`, from the vendored redoc bundle."""
    return _page("redoc.html", REDOC_CSP)


class Assets(StaticFiles):
    """The dashboard's and docs' static files, with the pages' security headers."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(HEADERS)
        return response


def assets() -> Assets:
    """The ASGI app serving `service/ui/assets/` (mounted at `/ui/assets`)."""
    return Assets(directory=UI / "assets")
