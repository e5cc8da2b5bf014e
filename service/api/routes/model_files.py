"""Models in and out: export a model as an ONNX, safetensors or JSON file, and import one."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from service import __version__, export
from service.api import views
from service.api.http.auth import AUTH_ERRORS, Authorized
from service.api.http.problems import ProblemError, field_problems, invalid, responses
from service.api.http.runtime import Runtime, RuntimeDep
from service.api.http.tenant_store import StoreDep, TenantStore
from service.api.model_requests import kind_of
from service.api.schemas.common import NO_NUL
from service.api.schemas.limits import bound
from service.api.schemas.models import Model, ModelCreate
from service.export import FORMATS, Bundle, Parsed
from service.store.codec import unpack_params
from service.training.kinds import KINDS
from service.training.specs import named_params, stored_kind

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[Authorized],
                   responses=AUTH_ERRORS)

FormatName = Literal["onnx", "safetensors", "json"]
_create = TypeAdapter[Any](ModelCreate)


# What an imported model keeps of its file's provenance, and the short text or count each is.
ORIGIN_TEXT = ("model_id", "run_id", "tapeline_version", "format")
ORIGIN_COUNTS = ("epochs_trained",)
# Imports of imports remembered (each hop's origin nests the one before).
ORIGIN_HOPS = 16


def _bundle(store: TenantStore, model_id: str) -> Bundle:
    """The model as its files hold it. Its provenance names the run that produced its params:
    its latest succeeded run here, else (an imported model not trained since) the run its
    file named; an imported model adds ``imported_from``, what that file said of itself."""
    with store.read() as repo:
        row = repo.get_model(model_id)
        kind = stored_kind(row)
        origin = row.imported_from
        run_id = repo.producing_run_id(row.id)
        provenance = {
            "model_id": row.id,
            "name": row.name,
            "run_id": run_id if run_id is not None or origin is None else origin.get("run_id"),
            "epochs_trained": row.epochs_trained,
            "class_names": row.class_names,
            "tapeline_version": __version__,
        }
        if origin is not None:
            provenance["imported_from"] = origin
        return Bundle(kind, unpack_params(row.params), provenance)


def origin_of(provenance: dict[str, Any], hops: int = ORIGIN_HOPS) -> dict[str, Any]:
    """What an imported model keeps of its file's provenance: the model, run and version that
    produced it, the epochs it had trained, and (nested) where that model came from; anything
    else, or of another type, is left out."""
    origin: dict[str, Any] = {
        key: value for key, value in provenance.items()
        if (key in ORIGIN_TEXT and isinstance(value, str) and len(value) <= 200
            and "\x00" not in value)
        or (key in ORIGIN_COUNTS and isinstance(value, int) and not isinstance(value, bool)
            and value >= 0)
    }
    earlier = provenance.get("imported_from")
    if isinstance(earlier, dict) and hops > 1:
        origin["imported_from"] = origin_of(earlier, hops - 1)
    return origin


@router.get(
    "/{model_id}/export",
    name="export",
    summary="Export a model as a file",
    response_class=Response,
    responses={
        200: {
            "description": "The model file; `Content-Disposition` names it.",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": {"type": "object"}},
            },
        },
        **responses(404, 422),
    },
)
def export_model(
    model_id: str,
    store: StoreDep,
    format: Annotated[
        FormatName,
        Query(description="`onnx` (opset 17, input `x` float32 [N, F]; outputs `y`, or "
                          "`probabilities` and `label`), `safetensors` or `json`."),
    ] = "onnx",
) -> Response:
    """The model's params in a file: ONNX to serve it anywhere, safetensors or JSON (with its
    kind, config and provenance) to import it again."""
    fmt = FORMATS[format]
    bundle = _bundle(store, model_id)
    return Response(
        fmt.write(bundle),
        media_type=fmt.media_type,
        headers={"Content-Disposition":
                 f'attachment; filename="{model_id}.{fmt.extension}"'},
    )


def _config_problem(error: ValidationError) -> ProblemError:
    """A 422 naming the config fields at fault, as a create request's would name its body's
    (``field_problems`` drops the kind's tag from each location)."""
    raw = [{"loc": ("body", *e["loc"]), "msg": e["msg"]} for e in error.errors(include_url=False)]
    errors = [{"loc": ["file", "config", *p["loc"][1:]], "msg": p["msg"]}
              for p in field_problems(raw)]
    where = ".".join(str(part) for part in errors[0]["loc"])
    return ProblemError(422, f"{where}: {errors[0]['msg']}", errors)


def checked(parsed: Parsed, runtime: Runtime) -> tuple[Any, dict[str, Any]]:
    """The kind and params of an imported file, checked exactly as a create request's."""
    if parsed.kind not in KINDS:
        raise invalid(["file", "kind"], f"unknown model kind {parsed.kind!r} (known: "
                                        f"{', '.join(KINDS)})")
    reserved = {"kind", "initial", "name"} & set(parsed.config)
    if reserved:
        raise invalid(["file", "config", sorted(reserved)[0]], "is not a config field")
    try:
        with bound(runtime.settings):
            spec = _create.validate_python({"kind": parsed.kind, **parsed.config})
    except ValidationError as error:
        raise _config_problem(error) from error
    kind = kind_of(spec, runtime.settings)
    params = named_params(kind, parsed.params, ("file", "params"))
    return kind, params


def _class_names(parsed: Parsed, classes: int | None) -> list[str] | None:
    names = parsed.provenance.get("class_names")
    if names is None:
        return None
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)
            and len(names) == classes):
        raise invalid(["file", "provenance", "class_names"],
                      f"must be {classes} class names" if classes else "a regression model "
                      "has no class names")
    return names


def _import(runtime: Runtime, store: TenantStore, response: Response, file: UploadFile,
            name: str | None) -> Any:
    file.file.seek(0)
    data = file.file.read()
    parsed = export.read_bundle(data)
    kind, params = checked(parsed, runtime)
    names = _class_names(parsed, kind.num_classes)
    given = parsed.provenance.get("name")
    label = name or (given if isinstance(given, str) and "\x00" not in given else None)
    with store.write() as repo:
        row = repo.create_model(kind=kind.name, config=kind.config(), params=params,
                                name=label[:200] if label else None, class_names=names,
                                imported_from={**origin_of(parsed.provenance),
                                               "format": parsed.format})
        view = views.model(row, training=False)
    response.headers["Location"] = f"/v1/models/{view.id}"
    return view


@router.post(
    "/import",
    name="import",
    status_code=201,
    summary="Import a model from a safetensors or JSON file",
    responses=responses(400, 413, 415, 422),
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "example": {"file": '{"format": "tapeline.model/1", "kind": "linear", '
                                        '"config": {"features": 1}, '
                                        '"params": {"W": [3.0], "b": 2.0}}'},
                    "encoding": {"file": {"contentType":
                                          "application/octet-stream, application/json"}},
                }
            }
        }
    },
)
async def import_model(
    runtime: RuntimeDep,
    store: StoreDep,
    response: Response,
    file: Annotated[
        UploadFile,
        File(description="A model file exported as `safetensors` or `json`.",
             json_schema_extra={"format": "binary"}),
    ],
    name: Annotated[
        str | None,
        Form(max_length=200, pattern=NO_NUL, description="A label; the file's by default."),
    ] = None,
) -> Model:
    """A new model with the file's kind, config and params, checked as a create request's
    (415 for a file of no known format, pickles included; 422 for a bad kind, config, param
    name, shape or number). It predicts exactly as the exported model did and trains on."""
    return await run_in_threadpool(_import, runtime, store, response, file, name)  # type: ignore[no-any-return]
