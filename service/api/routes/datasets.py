"""/v1/datasets: create (inline, synthetic, upload), read, download and delete datasets."""

from __future__ import annotations

import io
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, File, Form, Query, Request, Response, UploadFile
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from service.api import list_answers, views
from service.api.http import dryrun
from service.api.http.auth import AUTH_ERRORS, Authorized
from service.api.http.data_answers import csv_data, json_data
from service.api.http.large_bodies import OffLoopJsonRoute
from service.api.http.listing import FiltersDep, IfMatch, locked
from service.api.http.negotiation import choose
from service.api.http.paging import PageDep, encode_cursor
from service.api.http.problems import ProblemError, invalid, responses
from service.api.http.request_checks import JsonBody, check_file_name
from service.api.http.runtime import Runtime, RuntimeDep
from service.api.http.tenant_store import StoreDep, TenantStore, check_stored_bytes
from service.api.recent import Recent
from service.api.schemas.annotations import ETAG_HEADER, Tags
from service.api.schemas.common import NO_NUL, SAFE_INT_END, Examples, QueryInteger
from service.api.schemas.datasets import (
    BlobsSynthetic,
    Dataset,
    DatasetCreate,
    DatasetData,
    DatasetPage,
    DatasetPreview,
    LinearSynthetic,
    SyntheticCreate,
)
from service.config import Settings
from service.files.arrays import check_dataset, matrix
from service.files.csv_table import TargetType
from service.files.labels import encode
from service.files.uploads import parse_upload
from service.store.annotations import MAX_DESCRIPTION
from service.store.sampling import sample_rows
from service.store.tables import DatasetRow
from service.training.data import SYNTHETIC

# A create request's fields that annotate the dataset rather than describe its data.
ANNOTATIONS = frozenset({"name", "description", "tags"})

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], route_class=OffLoopJsonRoute,
                   dependencies=[Authorized],
                   responses=AUTH_ERRORS)


def _store(
    store: TenantStore,
    response: Response,
    x: np.ndarray,
    y: np.ndarray,
    source: str,
    name: str | None,
    synthetic: dict[str, object] | None = None,
    classes: list[str] | None = None,
    dry_run: bool = False,
    description: str | None = None,
    tags: dict[str, str] | None = None,
) -> Any:
    with store.write(dry_run) as repo:
        quotas = store.quotas(repo)
        if quotas is not None:
            repo.lock_tenant()
        row = repo.create_dataset(x=x, y=y, source=source, name=name, synthetic=synthetic,
                                  classes=classes, description=description, tags=tags)
        if quotas is not None:  # counted with the new row; raising undoes it
            check_stored_bytes(repo, quotas, f"this dataset ({row.stored_bytes} bytes)")
        view = views.dataset(row)
    if dry_run:
        return dryrun.preview(view)
    response.headers["Location"] = f"/v1/datasets/{view.id}"
    return view


@router.post(
    "",
    status_code=201,
    summary="Create a dataset from inline JSON",
    dependencies=[JsonBody],
    responses={**dryrun.responses(DatasetPreview), **responses(400, 413, 415, 422)},
)
def create(body: DatasetCreate, runtime: RuntimeDep, store: StoreDep, response: Response,
           dry_run: dryrun.DryRun = False) -> Dataset:
    """Store `x` (a list of numbers for one feature, or a list of rows) and `y`: numbers, or
    class names (stored as indices into the sorted names, reported as `classes`)."""
    x = matrix(body.x, ["body", "x"])
    y, classes = _targets(body.y, ["body", "y"], runtime.settings)
    x, y = check_dataset(x, y, runtime.settings, (["body", "x"], ["body", "y"]))
    return _store(store, response, x, y, "inline", body.name,  # type: ignore[no-any-return]
                  classes=classes, dry_run=dry_run, description=body.description,
                  tags=body.tags)


def _targets(y: list[float] | list[str] | np.ndarray, loc: list[str | int],
             settings: Settings) -> tuple[np.ndarray, list[str] | None]:
    """y as numbers, and the class names when it held strings."""
    array = np.asarray(y)
    if array.dtype.kind in "UO":
        return encode(array, loc, settings)
    return array.astype(np.float64, copy=False), None


@router.post(
    "/synthetic",
    status_code=201,
    summary="Synthesize a dataset: the tutorial's line, blobs, moons or circles",
    dependencies=[JsonBody],
    responses={**dryrun.responses(DatasetPreview), **responses(400, 413, 415, 422)},
)
def create_synthetic(
    runtime: RuntimeDep,
    store: StoreDep,
    response: Response,
    body: Annotated[SyntheticCreate | None, Body()] = None,
    dry_run: dryrun.DryRun = False,
) -> Dataset:
    """Seeded synthetic data of a `kind`: `linear` (the default: `y = x @ true_W + true_b +
    noise`; with no body, the tutorial's 1000 points), or for classification `blobs`,
    `moons` and `circles` (labels 0, 1, ...)."""
    spec = body or LinearSynthetic()
    features = len(spec.true_W) if isinstance(spec, LinearSynthetic) else (
        spec.features if isinstance(spec, BlobsSynthetic) else 2)
    if spec.num_examples * features > runtime.settings.max_values:
        raise ProblemError(
            422,
            f"body.num_examples: {spec.num_examples} x {features} values "
            f"exceed the limit of {runtime.settings.max_values}",
        )
    seed = spec.seed if spec.seed is not None else secrets.randbits(53)
    x, y = SYNTHETIC[spec.kind](**spec.model_dump(exclude={"kind", "seed", *ANNOTATIONS}),
                                seed=seed)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ProblemError(422, "body: these parameters give values that are not finite")
    params = {**spec.model_dump(exclude=set(ANNOTATIONS)), "seed": seed}
    if isinstance(spec, LinearSynthetic):
        del params["kind"]  # v1 stored the line's parameters alone; absent kind means linear
    return _store(store, response, x, y, "synthetic", spec.name,  # type: ignore[no-any-return]
                  params, dry_run=dry_run, description=spec.description, tags=spec.tags)


@router.post(
    "/upload",
    status_code=201,
    summary="Upload a .csv, .npy or .npz file",
    responses={**dryrun.responses(DatasetPreview), **responses(400, 413, 415, 422)},
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "example": {"file": "x,y\n0.0,2.1\n1.0,4.9\n2.0,8.2\n", "target": "y"},
                    # A text/csv part is read as CSV whatever its name; any other needs a
                    # file name ending in .csv, .npy or .npz.
                    "encoding": {"file": {"contentType": "text/csv, application/octet-stream"}},
                }
            }
        }
    },
)
async def upload(
    runtime: RuntimeDep,
    store: StoreDep,
    response: Response,
    file: Annotated[
        UploadFile,
        File(
            description=".csv with a header row, .npy (last column "
            "is y) or .npz (arrays x and the target)",
            json_schema_extra={"format": "binary"},
        ),
    ],
    target: Annotated[str, Form(max_length=200, description="CSV column or npz key of y")] = "y",
    target_type: Annotated[
        TargetType,
        Form(description="How y is read: `numeric` (numbers), `categorical` (class names, "
                         "even when they look like numbers), or `auto`: class names only when "
                         "no value is a number, so a column of numbers with a typo in it is "
                         "refused, naming the line."),
    ] = "auto",
    name: Annotated[
        str | None,
        Form(max_length=200, pattern=NO_NUL, description="A label; the file's name by default."),
    ] = None,
    description: Annotated[
        str | None, Form(max_length=MAX_DESCRIPTION, pattern=NO_NUL, description="Notes.")
    ] = None,
    tags: Annotated[
        str | None,
        Form(max_length=64 * 400, description="Tags as a JSON object of strings, e.g. "
                                              '`{"team": "cv"}`.'),
    ] = None,
    dry_run: dryrun.DryRun = False,
) -> Dataset:
    """Store a dataset from a file; every other CSV column (or the npz `x`) is a feature."""
    check_file_name(file)
    notes = Notes(description, _form_tags(tags))
    return await run_in_threadpool(  # type: ignore[no-any-return]
        _store_upload, runtime, store, response, file, target, target_type, name, dry_run, notes)


@dataclass(frozen=True)
class Notes:
    """An upload's description and tags."""

    description: str | None
    tags: dict[str, str] | None


_tags: TypeAdapter[dict[str, str] | None] = TypeAdapter(Tags)


def _form_tags(text: str | None) -> dict[str, str] | None:
    """The ``tags`` form field (a JSON object), checked as a JSON body's tags are."""
    if text is None:
        return None
    try:
        return _tags.validate_json(text)
    except ValidationError as error:
        first = error.errors()[0]
        where = ["body", "tags", *first["loc"]]
        raise invalid(where, "expected a JSON object of tags: " + first["msg"]) from None


def _store_upload(
    runtime: Runtime, store: TenantStore, response: Response, file: UploadFile, target: str,
    target_type: TargetType, name: str | None, dry_run: bool, notes: Notes,
) -> Any:
    """Parse, check and store an upload (in a worker thread: parsing is CPU work); a target
    column of class names becomes class indices."""
    filename = file.filename or ""
    x, y = parse_upload(filename, file.content_type, file.file, target, runtime.settings,
                        target_type)
    y, classes = _targets(y, ["file", target], runtime.settings)
    x, y = check_dataset(x, y, runtime.settings, (["file"], ["file", target]))
    label = name or filename.replace("\x00", "")[:200] or None
    return _store(store, response, x, y, "upload", label, classes=classes, dry_run=dry_run,
                  description=notes.description, tags=notes.tags)


@router.get("", summary="List datasets", response_model=DatasetPage, responses=responses(422))
def list_(runtime: RuntimeDep, store: StoreDep, page: PageDep, found: FiltersDep) -> Response:
    """The tenant's datasets in creation order, a page at a time; `tag` and `name_prefix`
    keep those with the tags and name asked for. A page holds fewer datasets than `limit`
    when their bytes would pass TAPELINE_MAX_ANSWER_BYTES (its `next_cursor` continues it)."""
    written: dict[str, bytes] = {}

    def fitting(rows: Sequence[DatasetRow]) -> int:
        """Each dataset's JSON (its metadata and summary: no arrays) made and measured."""
        for row in rows:
            written[row.id] = views.dataset(row).model_dump_json().encode()
        return list_answers.fitting((len(written[row.id]) for row in rows),
                                    runtime.settings.max_answer_bytes)

    with store.read() as repo:
        rows, after = repo.page(
            DatasetRow, page.limit, page.after_seq,
            *found.conditions(DatasetRow, repo.dialect), newest_first=page.newest_first,
            fitting=fitting)
    return list_answers.answer(list_answers.page(([written[row.id]] for row in rows),
                                                 encode_cursor(after)),
                               sum(len(written[row.id]) for row in rows))


@router.get("/{dataset_id}", summary="Get a dataset's metadata",
            responses={200: {"headers": ETAG_HEADER}, **responses(404)})
def get(dataset_id: str, store: StoreDep, response: Response) -> Dataset:
    """Size, features, dtype, summary statistics and, if synthetic, its parameters; `ETag`
    is that of its name, description and tags."""
    with store.read() as repo:
        view = views.dataset(repo.get_dataset(dataset_id))
    response.headers["ETag"] = view.etag
    return view


DATA_TYPES = ("application/json", "text/csv", "application/octet-stream")
# Seeded samples of datasets (a dataset's rows never change): a chart's 1,000 rows of a
# 1,000,000-row dataset without decoding all of it again.
samples: Recent[tuple[np.ndarray, np.ndarray]] = Recent(32)
SAMPLES_KEPT_ROWS = 10_000  # larger samples are not kept


@router.get(
    "/{dataset_id}/data",
    summary="Download a dataset's arrays",
    responses={
        200: {
            "model": DatasetData,
            "description": "The arrays as JSON `{x, y}`, CSV (`x0..,y` header; text cells safe "
                           "for spreadsheets) or `.npz`, streamed.",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/DatasetData"}},
                "text/csv": {"schema": {"type": "string"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        **responses(404, 406),
    },
    response_class=Response,
)
def download(
    dataset_id: str,
    store: StoreDep,
    request: Request,
    sample: Annotated[
        Examples | None,
        Query(
            description="Only this many rows, drawn without replacement with `seed` (the same "
            "rows every time), in the dataset's order; every row when it has no more.",
        ),
        QueryInteger,
    ] = None,
    seed: Annotated[int, Query(ge=0, lt=SAFE_INT_END, description="Seeds `sample`."),
                    QueryInteger] = 0,
) -> Response:
    """The data in the format the `Accept` header asks for (JSON by default), or a seeded
    sample of its rows (`sample`)."""
    media_type = choose(request.headers.get("accept"), DATA_TYPES)
    if media_type is None:
        raise ProblemError(406, f"can send only {', '.join(DATA_TYPES)}")
    # Looked up only once the dataset is found the caller's, and kept per tenant besides.
    key = (id(store.sessions), store.caller.tenant, dataset_id, sample, seed)
    with store.read() as repo:
        classes = repo.get_dataset(dataset_id).classes
        kept = samples.get(key) if sample is not None and sample <= SAMPLES_KEPT_ROWS else None
        x, y = kept if kept is not None else repo.load_arrays(dataset_id)
    if sample is not None and kept is None:
        rows = sample_rows(len(y), sample, seed)
        x, y = x[rows], y[rows]
        if sample <= SAMPLES_KEPT_ROWS:
            samples.put(key, (x, y))
    if media_type == "application/json":
        return json_data(x, y, classes)
    if media_type == "text/csv":
        return csv_data(dataset_id, x, y, classes)
    buffer = io.BytesIO()
    arrays = {"x": x, "y": y} | ({"classes": np.asarray(classes)} if classes else {})
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return Response(
        buffer.getvalue(),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{dataset_id}.npz"'},
    )


@router.delete(
    "/{dataset_id}", status_code=204, summary="Delete a dataset",
    responses=responses(404, 409, 412)
)
def delete(dataset_id: str, store: StoreDep, if_match: IfMatch = None) -> Response:
    """Delete a dataset no active run uses (409 otherwise). Finished runs keep its id. With
    `If-Match`, only the version with that ETag (412 otherwise)."""
    with store.write() as repo:
        # The queue's lock first, then the row's: a run's creation takes them in this order
        # (its insert locks the dataset's row for its key), so taking the row first deadlocks.
        repo.lock_queue()
        locked(repo, DatasetRow, "dataset", dataset_id, if_match)
        repo.delete_dataset(dataset_id)
    return Response(status_code=204)
