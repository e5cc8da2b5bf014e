"""The OpenAPI document: the app's title, description and tags, operation ids
``<tag>-<name>``, and what FastAPI's own spec is rewritten to say (problem+json error answers,
security and scopes, request examples, parameters that are never null, answer descriptions)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from service.api.http import problems
from service.api.http.auth import BEARER, authorize
from service.api.routes.health import metrics_access
from service.api.schemas.limits import bound

DESCRIPTION = """Train models over HTTP on Tapeline's own NumPy autodiff engine — linear and
logistic regression, softmax classifiers, small neural networks — and read or stream the
per-epoch parameters, loss and metrics. With its defaults it reproduces TensorFlow's
"Custom training: basics" tutorial: 1000 noisy points around W = 3, b = 2, a linear model
starting at W = 5, b = 0, ten epochs of gradient descent at learning rate 0.1.

Every error is `application/problem+json` (RFC 9457). Requests carry an API key,
`Authorization: Bearer tl_...`; each key belongs to one tenant, which sees only its own
datasets, models and runs."""


TAGS = [
    {"name": "datasets", "description": "Data to train on: inline, synthetic, uploaded."},
    {"name": "models", "description": "Models and their current parameters."},
    {"name": "runs", "description": "Training runs: start, watch, cancel, pause, resume."},
    {"name": "history", "description": "Per-epoch params, loss and metrics, as rows or "
                                       "columns."},
    {"name": "events", "description": "Live streams of a run's epochs."},
    {"name": "studies", "description": "Hyperparameter searches whose trials are runs: grid, "
                                        "random, TPE or QMC sampling, successive halving."},
    {"name": "webhooks", "description": "Events posted to your endpoints, signed (Standard "
                                        "Webhooks), with a delivery log."},
    {"name": "keys", "description": "API keys: create, list, revoke (admin)."},
    {"name": "tenants", "description": "The caller, and tenants' quotas."},
    {"name": "service", "description": "Health, readiness and metrics."},
]


def operation_id(route: APIRoute) -> str:
    """``<tag>-<name>``, e.g. ``datasets-create-synthetic``."""
    return f"{route.tags[0]}-{route.name.rstrip('_').replace('_', '-')}"


def _not_null(schema: dict[str, Any]) -> None:
    """Drop the ``null`` branch of an optional parameter: a query or header value is absent or
    a string, never JSON null (generators would otherwise type it ``T | None`` or send "null")."""
    options = [s for s in schema.get("anyOf", []) if s != {"type": "null"}]
    if len(options) == 1 and len(schema["anyOf"]) == 2:
        del schema["anyOf"]
        schema.update(options[0])


def _describe(answer: dict[str, Any], schemas: dict[str, Any]) -> str:
    """A success answer's description: its schema's (FastAPI writes "Successful Response")."""
    schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
    names = [ref["$ref"].rsplit("/", 1)[-1] for ref in [schema, *schema.get("anyOf", [])]
             if "$ref" in ref]
    texts = [schemas[name].get("description", name).rstrip(".") for name in names]
    return "; or ".join(texts) + "." if texts else "Done; no content."


def _alternatives(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """A schema and the alternatives of its unions, depth first (the first one first)."""
    found = [schema]
    for key in ("anyOf", "oneOf"):
        for option in schema.get(key, []):
            found.extend(_alternatives(option))
    return found


def secured_operations(app: FastAPI) -> set[tuple[str, str]]:
    """The (path, method) of every operation that checks the caller's key: those depending on
    :func:`~service.api.http.auth.authorize` or the metrics' own check. They are found from the
    routes' dependencies (no ``Security`` dependency runs on each request just for the spec)."""
    checks = (authorize, metrics_access)

    def checked(dependant: Dependant) -> bool:
        return dependant.call in checks or any(checked(d) for d in dependant.dependencies)

    found = set()
    for route in iter_route_contexts(app.routes):  # each with its routers' dependencies
        if isinstance(route.original_route, APIRoute) and route.include_in_schema and \
                route.path_format is not None and checked(route.dependant):
            found |= {(route.path_format, method.lower()) for method in route.methods or ()}
    return found


def document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's spec, with error answers described only as problem+json and each request body
    showing its schema's example (what `/docs` pre-fills and generated docs display)."""
    if app.openapi_schema:
        return app.openapi_schema
    with bound(app.state.settings):  # limits show as this app's constraints
        spec = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
            separate_input_output_schemas=False,
        )
    problem = {problems.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    schemas = spec["components"]["schemas"]
    secured = secured_operations(app)
    if secured:
        spec["components"]["securitySchemes"] = {
            BEARER.scheme_name:
                BEARER.model.model_dump(mode="json", by_alias=True, exclude_none=True)}
    for route_path, path in spec.get("paths", {}).items():
        for method, operation in list(path.items()):
            if (route_path, method) in secured:  # where FastAPI's own would be
                items = list(operation.items())
                keys_ = [key for key, _ in items]
                at = keys_.index("parameters") if "parameters" in keys_ else \
                    keys_.index("responses") + 1
                path[method] = operation = dict(
                    [*items[:at], ("security", [{BEARER.scheme_name: []}]), *items[at:]])
            if "security" in operation:  # the scope a key needs (service.api.http.auth)
                operation.setdefault("x-scope", "read" if method in ("get", "head") else "write")
            for media in operation.get("requestBody", {}).get("content", {}).values():
                refs = _alternatives(media["schema"])
                examples = [
                    example
                    for ref in refs
                    if "$ref" in ref
                    for example in schemas[ref["$ref"].rsplit("/", 1)[-1]].get("examples", [])
                ]
                if examples and "example" not in media:
                    media["example"] = examples[0]
            for parameter in operation.get("parameters", []):
                _not_null(parameter["schema"])
                if parameter["in"] == "path" and parameter["name"].endswith("_id"):
                    parameter.setdefault("description", f"Id of the {parameter['name'][:-3]}.")
            for status, answer in operation.get("responses", {}).items():
                for media in answer.get("content", {}).values():
                    if "itemSchema" in media:  # a stream is described item by item
                        media.pop("schema", None)
                if answer.get("description") == "Successful Response":
                    answer["description"] = _describe(answer, schemas)
                if status[0] in "45":
                    answer["content"] = problem
                    if status == "422":
                        answer["description"] = "Invalid input"
    for unused in ("HTTPValidationError", "ValidationError"):
        spec["components"]["schemas"].pop(unused, None)
    app.openapi_schema = spec
    return spec


def install(app: FastAPI) -> None:
    """Have ``app`` serve :func:`document` as its spec."""
    app.openapi = lambda: document(app)  # type: ignore[method-assign]
