"""Models in and out: export a model as an ONNX, safetensors or JSON file, and import one."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from service import __version__
from service.api import model_imports, views
from service.api.http.auth import AUTH_ERRORS, Authorized
from service.api.http.problems import responses
from service.api.http.request_checks import check_file_name
from service.api.http.runtime import Runtime, RuntimeDep
from service.api.http.tenant_store import StoreDep, TenantStore, check_stored_bytes
from service.api.schemas.common import NO_NUL
from service.api.schemas.models import Model
from service.export import FORMATS, Bundle
from service.store.codec import unpack_params
from service.training.specs import stored_kind

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[Authorized],
                   responses=AUTH_ERRORS)

FormatName = Literal["onnx", "safetensors", "json"]


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


def _import(runtime: Runtime, store: TenantStore, file: UploadFile,
            name: str | None) -> Response:
    file.file.seek(0)
    imported = model_imports.read(file.file.read(), runtime.settings, name)
    with store.write() as repo:
        quotas = store.quotas(repo)
        if quotas is not None:
            repo.lock_tenant()
        row = repo.create_model(kind=imported.kind.name, config=imported.kind.config(),
                                params=imported.params, name=imported.name,
                                class_names=imported.class_names, imported_from=imported.origin)
        if quotas is not None:
            check_stored_bytes(repo, quotas, f"this model ({len(row.params)} bytes of params)")
        # Rendered before the commit: a model whose answer cannot be sent is never stored.
        answer = views.rendered(views.model(row, training=False), status_code=201)
    answer.headers["Location"] = f"/v1/models/{row.id}"
    return answer


@router.post(
    "/import",
    name="import",
    status_code=201,
    summary="Import a model from a safetensors or JSON file",
    responses=responses(400, 413, 415, 422, 429),
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
    name, dtype, shape or number, or class names that a dataset's labels could not be),
    judged from the file's header before its data are read. It predicts exactly as the
    exported model did and trains on."""
    check_file_name(file)
    return await run_in_threadpool(_import, runtime, store, file, name)  # type: ignore[return-value]
