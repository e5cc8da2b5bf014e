"""Pydantic request and response models of the HTTP API, one module per resource; the shared
building blocks are in :mod:`~service.api.schemas.common`. Every "kind of thing" is a
discriminated union: model kinds, synthetic datasets, optimizers, stream items.

Importing the package imports every module, so that
:func:`~service.api.schemas.common.request_schema_names` sees every request schema."""

from service.api.schemas import datasets, health, history, keys, models, runs

__all__ = ["datasets", "health", "history", "keys", "models", "runs"]
