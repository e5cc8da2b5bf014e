"""A run's create request made into the run spec the training side takes (shared by the runs'
route and studies' trials)."""

from __future__ import annotations

from service.api.schemas.runs import RunCreate, ValidationFraction
from service.training import specs


def run_spec(body: RunCreate, record_params: int) -> specs.RunSpec:
    """The run a request asks for, as the training specs take it (a draft: its loss and early
    stopping's monitor are resolved by :func:`~service.training.specs.validate_run`)."""
    validation = body.validation
    stopping = body.early_stopping
    return specs.RunSpec(
        epochs=body.epochs,
        optimizer=body.optimizer.model_dump(),
        batch_size=body.batch_size,
        shuffle_seed=body.shuffle_seed,
        dtype=body.dtype,
        loss=body.loss,
        huber_delta=body.huber_delta,
        regularization=specs.Regularization(**body.regularization.model_dump()),
        validation=None if validation is None
        else specs.ValidationFraction(validation.fraction)
        if isinstance(validation, ValidationFraction)
        else specs.ValidationDataset(validation.dataset_id),
        early_stopping=None if stopping is None
        else specs.EarlyStoppingSpec(**stopping.model_dump()),
        shuffle=body.shuffle,
        record_params=record_params,
    )
