"""RFC 9457 problem details: the one shape of every 4xx and 5xx answer."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from service.api.http.field_hints import BodySchema, closest_alternatives, reword
from service.api.schemas.common import BODY_KIND_TAGS, FIELD_SHAPE_TAGS, request_schema_names
from service.export import FileProblem
from service.files.errors import InvalidData, UnsupportedFile
from service.store.annotations import PreconditionFailed
from service.store.repo import Conflict, NotFound
from service.store.search.errors import QueryError
from service.training.errors import SpecError

MEDIA_TYPE = "application/problem+json"


class FieldProblem(BaseModel):
    """One invalid field: where it is and what is wrong."""

    loc: list[str | int]
    msg: str
    column: int | None = Field(None, description="Where in a query parameter's text the "
                                                 "problem is (1-based), for a search filter.")


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    type: str = Field(description="A URI naming the kind of problem.")
    title: str
    status: int
    detail: str
    instance: str = Field(description="The path of the request that failed.")
    errors: list[FieldProblem] | None = None


class ProblemError(Exception):
    """Raise to answer with a problem: ``ProblemError(409, "model is training")``."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.errors, self.headers = status, detail, errors, headers


def invalid(loc: list[str | int], msg: str) -> ProblemError:
    """A 422 naming where the problem is (``["file", "line 3", "x"]``) and what it is."""
    where = ".".join(str(p) for p in loc)
    return ProblemError(422, f"{where}: {msg}", [{"loc": loc, "msg": msg}])


def unauthorized(detail: str, error: str | None = None) -> ProblemError:
    """A 401 asking for a bearer token (RFC 6750: ``error`` says what was wrong with the one
    sent, if any). The detail never repeats the key."""
    challenge = 'Bearer realm="tapeline"' + (f', error="{error}"' if error else "")
    return ProblemError(401, detail, headers={"WWW-Authenticate": challenge})


def forbidden(detail: str) -> ProblemError:
    """A 403: the caller is known, but its scopes do not allow the operation."""
    return ProblemError(403, detail)


def over_quota(detail: str, limit: int, used: int, retry_after: int = 5) -> ProblemError:
    """A 429 for a tenant at one of its quotas, with ``Retry-After`` and ``RateLimit-*``."""
    return ProblemError(429, detail, headers={
        "Retry-After": str(retry_after),
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(max(limit - used, 0)),
        "RateLimit-Reset": str(retry_after),
    })


def unavailable(detail: str, retry_after: int = 5) -> ProblemError:
    """A 503 for a dependency that does not answer (the rate limiter's Redis): try again."""
    return ProblemError(503, detail, headers={"Retry-After": str(retry_after)})


def _slug(status: int) -> str:
    return HTTPStatus(status).phrase.lower().replace(" ", "-").replace("'", "")


def problem_body(
    status: int, detail: str, instance: str, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The problem details object for an answer with this status."""
    body: dict[str, Any] = {
        "type": f"https://tapeline.dev/problems/{_slug(status)}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors:
        body["errors"] = errors
    return body


def problem_response(
    request: Request,
    status: int,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response for this request."""
    return JSONResponse(
        problem_body(status, detail, request.url.path, errors),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def field_problems(raw: list[Any], schema: BodySchema | None = None) -> list[dict[str, Any]]:
    """Pydantic's error list reduced to ``{"loc", "msg"}`` (no echo of the input, and in the
    API's words where ``schema``, the request body's, tells what was expected), each
    ``loc`` the path of the field in the request: without the names pydantic gives the
    alternatives of a union (``["body", "initial", "W"]``, not ``[..., "InitialParams", "W"]``;
    ``["body", "y", 3]``, not ``["body", "y", "labels", 3]``),
    and a body that is a union of kinds named as a body of one kind would be
    (``["body", "hidden"]``, not ``["body", "mlp", "hidden"]``)."""
    labels = request_schema_names() | FIELD_SHAPE_TAGS
    problems = []
    for e in closest_alternatives(raw, labels):
        loc = [p if isinstance(p, int) else str(p) for p in e.get("loc", ())
               if p not in labels]
        msg = str(e.get("msg", "invalid"))
        if (better := reword(e, schema, labels)) is not None:
            loc, msg = [p if isinstance(p, int) else str(p) for p in better[0]], better[1]
        if len(loc) > 2 and loc[0] == "body" and loc[1] in BODY_KIND_TAGS:
            del loc[1]
        problems.append({"loc": loc, "msg": msg})
    # A misspelt field's suggestion first: it explains the "required" of the field it meant.
    return sorted(problems, key=lambda p: "did you mean" not in p["msg"])


def body_schema(request: Request) -> BodySchema | None:
    """The JSON schema of the body the request's operation takes, from the OpenAPI document."""
    route = request.scope.get("route")
    template = getattr(route, "path_format", None)
    if template is None:
        return None
    spec = request.app.openapi()
    operation = spec.get("paths", {}).get(template, {}).get(request.method.lower())
    return BodySchema(spec, operation) if operation else None


def _summary(errors: list[dict[str, Any]]) -> str:
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "request"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def install(app: FastAPI) -> None:
    """Make every error the app raises a problem+json answer (an unexpected one becomes a 500
    in :class:`~service.api.http.middleware.RequestContextMiddleware`, which knows the request
    id), the domain errors of the layers below included."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(request, exc.status, exc.detail, exc.errors, exc.headers)

    @app.exception_handler(FileProblem)
    async def _file(request: Request, exc: FileProblem) -> JSONResponse:
        where = ".".join(str(p) for p in exc.loc)
        errors = [{"loc": exc.loc, "msg": exc.msg}] if exc.status == 422 else None
        return problem_response(request, exc.status, f"{where}: {exc.msg}", errors)

    @app.exception_handler(InvalidData)
    async def _invalid_data(request: Request, exc: InvalidData) -> JSONResponse:
        where = ".".join(str(p) for p in exc.loc)
        errors = [{"loc": exc.loc, "msg": exc.msg}]
        return problem_response(request, 422, f"{where}: {exc.msg}", errors)

    @app.exception_handler(SpecError)
    async def _spec(request: Request, exc: SpecError) -> JSONResponse:
        error = invalid(list(exc.location), exc.message)
        return problem_response(request, 422, error.detail, error.errors)

    @app.exception_handler(UnsupportedFile)
    async def _unsupported_file(request: Request, exc: UnsupportedFile) -> JSONResponse:
        return problem_response(request, 415, exc.detail)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return problem_response(request, 404, str(exc))

    @app.exception_handler(QueryError)
    async def _query(request: Request, exc: QueryError) -> JSONResponse:
        errors = [{"loc": ["query", exc.param], "msg": exc.message, "column": exc.column}]
        return problem_response(request, 422, f"{exc.param}: {exc.message}", errors)

    @app.exception_handler(PreconditionFailed)
    async def _precondition(request: Request, exc: PreconditionFailed) -> JSONResponse:
        return problem_response(request, 412, str(exc), headers={"ETag": exc.current})

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return problem_response(request, 409, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_problems(list(exc.errors()), body_schema(request))
        return problem_response(request, 422, _summary(errors), errors)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = dict(exc.headers) if exc.headers else None
        allowed = _allowed_methods(request) if exc.status_code == 405 else None
        if allowed:
            headers = {**(headers or {}), "Allow": allowed}
        return problem_response(request, exc.status_code, detail, headers=headers)


def _allowed_methods(request: Request) -> str:
    """The methods the spec documents at this path, for ``Allow`` (Starlette's 405 names only
    those of the first route matching the path, not its siblings'). As in OpenAPI, the path
    template with the fewest parameters wins: /v1/datasets/synthetic over /v1/datasets/{id}."""
    matches = []
    for template, operations in request.app.openapi()["paths"].items():
        parts = re.split(r"(\{[^/]+\})", template)
        pattern = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
        if re.fullmatch(pattern, request.url.path):
            matches.append((template.count("{"), {method.upper() for method in operations}))
    methods = min(matches, key=lambda match: match[0])[1] if matches else set()
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of the problem answers a route can give."""
    return {
        status: {
            "model": Problem,
            "description": HTTPStatus(status).phrase,
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
