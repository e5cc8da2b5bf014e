"""The routers, one module per resource: datasets, models (with predictions and model files),
runs, history (with the live event streams), webhooks, keys (with tenants), health (with
metrics), and the pages for people. :data:`ROUTERS` is the order the app includes them in,
which is the order of the OpenAPI document's paths and the order requests are matched in."""

from fastapi import APIRouter

from service.api.routes import (
    datasets,
    experiments,
    health,
    history,
    keys,
    model_files,
    models,
    pages,
    predict,
    runs,
    studies,
    webhooks,
)

ROUTERS: tuple[APIRouter, ...] = (
    datasets.router,
    models.router,
    predict.router,
    model_files.router,
    experiments.runs_router,  # before runs': /v1/runs/compare is not a run's id
    experiments.models_router,
    experiments.datasets_router,
    runs.router,
    history.router,
    studies.router,
    webhooks.router,
    keys.keys_router,
    keys.tenants_router,
    history.jsonl_router,  # before the event stream's own: it matches only when asked for
    history.events_router,
    studies.jsonl_router,
    studies.events_router,
    health.router,
    pages.router,
)
