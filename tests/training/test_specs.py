"""Typed specs: every check of a run against its model and dataset raises a SpecError naming
the field with the exact words clients read today; defaults resolve as documented (early
stopping monitors val_loss when validation is set); the codec writes and reads the exact
columns and JSON the store keeps (rows written before this codec included); the loop gets the
FitSpec it always got; a model's kind is rebuilt from its stored row, and its starting params
are checked by name and shape."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from service.training.kinds import KINDS, MLP, Kind, Linear, Logistic, make_kind
from service.training.records import EarlyStopping, FitSpec
from service.training.specs import (
    DatasetMeta,
    EarlyStoppingSpec,
    ModelSpec,
    Regularization,
    RunSpec,
    SpecError,
    ValidationDataset,
    ValidationFraction,
    named_params,
    record_params,
    tutorial_params,
    validate_model,
    validate_run,
)

# The datasets and models of the API's own test of bad runs, as their metadata.
DATASETS = {
    "line": DatasetMeta(4, 1, None, False, 2.0, 8.0),  # x 1..4, y 2, 4, 6.5, 8
    "named": DatasetMeta(3, 1, ["a", "b"], True, 0.0, 1.0),  # y "a", "b", "a"
    "three": DatasetMeta(3, 1, None, True, 0.0, 2.0),  # y 0, 1, 2
    "halves": DatasetMeta(2, 1, None, False, 0.5, 1.0),  # y 0.5, 1
    "wide": DatasetMeta(1, 2, None, True, 1.0, 1.0),  # two features
}
MODELS = {
    "regression": ModelSpec.of(Linear(1)),
    "binary": ModelSpec.of(Logistic(1)),
    "mlp": ModelSpec.of(MLP(1, task="classification", classes=3)),
}
RUN = ("body",)
STOPPING = ("body", "early_stopping", "monitor")

BAD_RUNS: list[tuple[str, str, RunSpec, tuple[str, ...], str]] = [
    ("binary", "line", RunSpec(), ("body", "dataset_id"),
     "labels must be class indices in [0, 2) for the model's 2 classes; the dataset's y spans "
     "[2, 8] with fractions"),
    ("binary", "three", RunSpec(), ("body", "dataset_id"),
     "labels must be class indices in [0, 2) for the model's 2 classes; the dataset's y spans "
     "[0, 2]"),
    ("mlp", "halves", RunSpec(), ("body", "dataset_id"),
     "labels must be class indices in [0, 3) for the model's 3 classes; the dataset's y spans "
     "[0.5, 1] with fractions"),
    ("regression", "named", RunSpec(), ("body", "dataset_id"),
     "the dataset's labels are strings but the model does regression (use a logistic or "
     "classification model)"),
    ("regression", "wide", RunSpec(), ("body", "dataset_id"),
     "the dataset has 2 feature(s) but the model has 1"),
    ("regression", "line", RunSpec(loss="cross_entropy"), ("body", "loss"),
     "cross_entropy fits classification; this model does regression (mse fits it)"),
    ("binary", "named", RunSpec(loss="mse"), ("body", "loss"),
     "mse fits regression; this model does classification (cross_entropy fits it)"),
    ("regression", "line", RunSpec(validation=ValidationFraction(0.1)),
     ("body", "validation", "fraction"), "leaves no validation row of the dataset's 4"),
    ("regression", "line", RunSpec(validation=ValidationFraction(1.0)),
     ("body", "validation", "fraction"), "leaves no training row of the dataset's 4"),
    ("regression", "line", RunSpec(early_stopping=EarlyStoppingSpec("val_loss")), STOPPING,
     "val_loss needs validation (set `validation`)"),
    ("regression", "line", RunSpec(early_stopping=EarlyStoppingSpec("accuracy")), STOPPING,
     "accuracy is a classification metric; this model does regression (mse, rmse, mae, r2)"),
    ("binary", "named", RunSpec(early_stopping=EarlyStoppingSpec("r2")), STOPPING,
     "r2 is a regression metric; this model does classification (accuracy, log_loss)"),
    ("binary", "named", RunSpec(early_stopping=EarlyStoppingSpec("val_r2"),
                                validation=ValidationFraction(0.5)), STOPPING,
     "r2 is a regression metric; this model does classification (accuracy, log_loss)"),
    ("regression", "line", RunSpec(validation=ValidationDataset("wide")),
     ("body", "validation", "dataset_id"), "the dataset has 2 feature(s) but the model has 1"),
    ("binary", "named", RunSpec(validation=ValidationDataset("three")),
     ("body", "validation", "dataset_id"),
     "labels must be class indices in [0, 2) for the model's 2 classes; the dataset's y spans "
     "[0, 2]"),
]


@pytest.mark.parametrize(("model", "dataset", "run", "location", "message"), BAD_RUNS,
                         ids=[str(i) for i in range(len(BAD_RUNS))])
def test_each_bad_run_names_its_field_in_todays_words(model: str, dataset: str, run: RunSpec,
                                                      location: tuple[str, ...],
                                                      message: str) -> None:
    with pytest.raises(SpecError) as raised:
        validate_run(MODELS[model], run, DATASETS[dataset], datasets=DATASETS.__getitem__)
    assert (raised.value.location, raised.value.message) == (location, message)
    assert str(raised.value) == f"{'.'.join(location)}: {message}"


def test_a_classifier_keeps_the_class_names_it_was_trained_on() -> None:
    other = DatasetMeta(2, 1, ["b", "c"], True, 0.0, 1.0)
    with pytest.raises(SpecError) as raised:
        validate_run(MODELS["binary"], RunSpec(), other, class_names=["a", "b"])
    assert raised.value.location == ("body", "dataset_id")
    assert raised.value.message == ("the dataset's classes ['b', 'c'] differ from those the "
                                    "model was trained on ['a', 'b']")
    validate_run(MODELS["binary"], RunSpec(), DATASETS["named"], class_names=["a", "b"])


def test_checks_come_in_the_order_the_api_answers_them() -> None:
    """The dataset first, then the validation dataset (found only then: a missing one is the
    finder's error), the loss, the fraction, the monitor."""
    looked_up: list[str] = []

    def missing(dataset_id: str) -> DatasetMeta:
        looked_up.append(dataset_id)
        raise LookupError(dataset_id)

    everything_wrong = RunSpec(loss="cross_entropy", validation=ValidationDataset("gone"),
                               early_stopping=EarlyStoppingSpec("accuracy"))
    with pytest.raises(SpecError, match=r"^body\.dataset_id: the dataset has 2"):
        validate_run(MODELS["regression"], everything_wrong, DATASETS["wide"], datasets=missing)
    assert looked_up == []
    with pytest.raises(LookupError):
        validate_run(MODELS["regression"], everything_wrong, DATASETS["line"], datasets=missing)
    assert looked_up == ["gone"]
    both = RunSpec(loss="cross_entropy", validation=ValidationFraction(0.1))
    with pytest.raises(SpecError, match=r"^body\.loss:"):
        validate_run(MODELS["regression"], both, DATASETS["line"])
    with pytest.raises(SpecError, match=r"^body\.validation\.fraction:"):
        validate_run(MODELS["regression"], RunSpec(validation=ValidationFraction(0.1),
                                                   early_stopping=EarlyStoppingSpec("r3")),
                     DATASETS["line"])


def test_defaults_resolve_loss_from_the_kind_and_monitor_from_validation() -> None:
    plain = validate_run(MODELS["regression"], RunSpec(early_stopping=EarlyStoppingSpec()),
                         DATASETS["line"])
    assert plain.loss == "mse"
    assert plain.early_stopping == EarlyStoppingSpec("loss")
    validated = validate_run(MODELS["binary"],
                             RunSpec(validation=ValidationFraction(0.5),
                                     early_stopping=EarlyStoppingSpec(patience=2)),
                             DATASETS["named"])
    assert validated.loss == "cross_entropy"
    assert validated.early_stopping == EarlyStoppingSpec("val_loss", patience=2)
    by_dataset = validate_run(MODELS["regression"],
                              RunSpec(validation=ValidationDataset("line"), loss="huber",
                                      early_stopping=EarlyStoppingSpec()),
                              DATASETS["line"], datasets=DATASETS.__getitem__)
    assert (by_dataset.loss, by_dataset.early_stopping) == ("huber", EarlyStoppingSpec("val_loss"))
    assert validate_run(MODELS["mlp"], RunSpec(), DATASETS["three"]).early_stopping is None


def test_a_run_validated_on_a_dataset_needs_a_way_to_find_it() -> None:
    with pytest.raises(ValueError, match="datasets"):
        validate_run(MODELS["regression"], RunSpec(validation=ValidationDataset("x")),
                     DATASETS["line"])


def test_the_codec_writes_the_columns_the_store_keeps() -> None:
    spec = validate_run(
        MODELS["binary"],
        RunSpec(epochs=3, optimizer={"kind": "adam", "learning_rate": 0.001, "beta_1": 0.9,
                                     "beta_2": 0.999, "epsilon": 1e-07},
                batch_size=2, shuffle_seed=4, dtype="float64", huber_delta=2.0,
                regularization=Regularization(1.0, 0.5), validation=ValidationDataset("ds_v"),
                early_stopping=EarlyStoppingSpec(min_delta=1.0, restore_best=False),
                shuffle=False, record_params=0),
        DATASETS["named"], datasets=lambda _: DATASETS["named"])
    columns = spec.columns()
    assert columns == {
        "epochs": 3,
        "optimizer": {"kind": "adam", "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999,
                      "epsilon": 1e-07},
        "batch_size": 2,
        "shuffle_seed": 4,
        "dtype": "float64",
        "options": {
            "loss": "cross_entropy",
            "huber_delta": 2.0,
            "regularization": {"l1": 1.0, "l2": 0.5},
            "validation": {"dataset_id": "ds_v"},
            "early_stopping": {"monitor": "val_loss", "patience": 5, "min_delta": 1.0,
                               "restore_best": False},
            "shuffle": False,
        },
        "record_params": False,
        "validation_dataset_id": "ds_v",
    }
    # Key order too: the JSON text the store writes is today's.
    assert list(columns["options"]) == ["loss", "huber_delta", "regularization", "validation",
                                        "early_stopping", "shuffle"]
    assert list(columns["options"]["early_stopping"]) == ["monitor", "patience", "min_delta",
                                                          "restore_best"]
    assert RunSpec.from_columns(SimpleNamespace(**columns)) == spec


# Rows as the store holds them: the tutorial's run, one with every option, and a run written
# by migration 0002 from a v1 database (its options are v1's only choice).
STORED: list[dict[str, Any]] = [
    {"epochs": 10, "optimizer": {"kind": "sgd", "learning_rate": 0.1}, "batch_size": None,
     "shuffle_seed": None, "dtype": "float32", "record_params": True,
     "options": {"loss": "mse", "huber_delta": 1.0, "regularization": {"l1": 0.0, "l2": 0.0},
                 "validation": None, "early_stopping": None, "shuffle": True}},
    {"epochs": 40, "optimizer": {"kind": "momentum", "learning_rate": 0.05, "momentum": 0.9,
                                 "nesterov": True},
     "batch_size": 16, "shuffle_seed": 7, "dtype": "float64", "record_params": False,
     "options": {"loss": "huber", "huber_delta": 0.5, "regularization": {"l1": 0.01, "l2": 0.0},
                 "validation": {"fraction": 0.25},
                 "early_stopping": {"monitor": "val_r2", "patience": 3, "min_delta": 0.001,
                                    "restore_best": True},
                 "shuffle": False}},
    {"epochs": 5, "optimizer": {"kind": "sgd", "learning_rate": 0.01}, "batch_size": 100,
     "shuffle_seed": 3, "dtype": "float32", "record_params": True,
     "options": {"loss": "mse", "huber_delta": 1.0, "regularization": {"l1": 0.0, "l2": 0.0},
                 "validation": None, "early_stopping": None, "shuffle": True}},
]


@pytest.mark.parametrize("row", STORED, ids=["tutorial", "every-option", "from-v1"])
def test_stored_rows_decode_and_encode_unchanged(row: dict[str, Any]) -> None:
    spec = RunSpec.from_columns(SimpleNamespace(**row))
    columns = spec.columns()
    validation = row["options"]["validation"]
    expected_id = validation.get("dataset_id") if validation else None
    assert columns == {**row, "validation_dataset_id": expected_id}
    assert [list(columns["options"]), str(columns["options"])] == \
        [list(row["options"]), str(row["options"])]


def test_record_params_every_k_rows_is_in_the_options() -> None:
    """Every row (1) and none (0) are the boolean column, as before the option; every k-th
    row is in the options' JSON too, and reads back."""
    spec = RunSpec(loss="mse", record_params=8)
    columns = spec.columns()
    assert columns["record_params"] is True and columns["options"]["record_params"] == 8
    assert RunSpec.from_columns(SimpleNamespace(**columns)) == spec
    assert spec.fit().record_params == 8
    assert [e for e in range(20) if spec.fit().records_params(e)] == [0, 8, 16]
    for k in (0, 1):
        columns = RunSpec(loss="mse", record_params=k).columns()
        assert "record_params" not in columns["options"] and columns["record_params"] == (k == 1)
        assert RunSpec.from_columns(SimpleNamespace(**columns)).record_params == k


def test_record_params_by_default_thins_large_models() -> None:
    assert [record_params(None, n, 4096) for n in (2, 512, 513, 4096, 4097)] == [1, 1, 2, 8, 0]
    assert record_params(3, 4096, 4096) == 3 and record_params(0, 5000, 4096) == 0
    with pytest.raises(SpecError) as refused:
        record_params(1, 5000, 4096)
    assert refused.value.location == ("body", "record_params")


def test_the_loop_gets_the_fit_spec_the_runner_built() -> None:
    every = RunSpec.from_columns(SimpleNamespace(**STORED[1]))
    assert every.fit() == FitSpec(
        epochs=40,
        optimizer={"kind": "momentum", "learning_rate": 0.05, "momentum": 0.9,
                   "nesterov": True},
        loss="huber",
        huber_delta=0.5,
        l1=0.01,
        l2=0.0,
        batch_size=16,
        shuffle=False,
        shuffle_seed=7,
        early_stopping=EarlyStopping("val_r2", 3, 0.001, True),
        record_params=0,
    )
    assert RunSpec.from_columns(SimpleNamespace(**STORED[0])).fit() == FitSpec(
        epochs=10, optimizer={"kind": "sgd", "learning_rate": 0.1}, loss="mse")


def test_a_draft_does_not_reach_the_loop() -> None:
    with pytest.raises(ValueError, match="loss"):
        RunSpec().fit()
    with pytest.raises(ValueError, match="monitor"):
        RunSpec(loss="mse", early_stopping=EarlyStoppingSpec()).fit()


def test_the_default_run_is_the_tutorials() -> None:
    spec = validate_run(MODELS["regression"], RunSpec(), DATASETS["line"])
    assert spec.fit() == FitSpec(epochs=10, optimizer={"kind": "sgd", "learning_rate": 0.1},
                                 loss="mse")
    assert spec.columns()["options"] == STORED[0]["options"]


KIND_CASES: list[Kind] = [Linear(3), Logistic(2, 4), MLP(2, (3, 4), "tanh"),
                          MLP(2, (5,), "sigmoid", "classification", 3)]


@pytest.mark.parametrize("kind", KIND_CASES, ids=lambda k: k.name)
def test_a_model_spec_rebuilds_its_kind_from_the_stored_row(kind: Kind) -> None:
    spec = ModelSpec.of(kind)
    columns = spec.columns()
    assert columns == {"kind": kind.name, "config": kind.config()}
    rebuilt = ModelSpec.from_row(SimpleNamespace(**columns)).build()
    assert rebuilt == kind == make_kind(kind.name, kind.config())


def test_validate_model_checks_what_a_create_request_cannot_say_alone() -> None:
    assert validate_model("linear", {"features": 2}, 100) == ModelSpec("linear", {"features": 2})
    assert validate_model("mlp", {"features": 1, "hidden": [4], "activation": "relu",
                                  "task": "classification", "classes": None}, 100) == \
        ModelSpec.of(MLP(1, (4,), "relu", "classification", 2))
    assert validate_model("mlp", {"features": 1, "hidden": [4], "activation": "relu",
                                  "task": "regression", "classes": None}, 100).config == {
        "features": 1, "hidden": [4], "activation": "relu", "task": "regression"}
    with pytest.raises(SpecError) as raised:
        validate_model("mlp", {"features": 1, "hidden": [4], "activation": "relu",
                               "task": "regression", "classes": 3}, 100)
    assert (raised.value.location, raised.value.message) == (("body", "classes"),
                                                             "applies to classification only")
    with pytest.raises(SpecError) as raised:
        validate_model("logistic", {"features": 1024, "classes": 999}, 1_000_000)
    assert raised.value.location == ("body", "classes")
    assert raised.value.message == ("the model would have 1023975 parameters, more than the "
                                    "limit of 1000000 (TAPELINE_MAX_PARAMS)")
    for name, kind in KINDS.items():
        with pytest.raises(SpecError) as raised:
            validate_model(name, {"features": 5}, 1)
        assert raised.value.location == ("body", kind.size_field)


def test_tutorial_params_fit_only_the_kinds_that_have_w_and_b() -> None:
    params = tutorial_params(Linear(2), [1, 2], 0.5)
    assert params["W"].dtype == params["b"].dtype == np.float64
    assert (params["W"].tolist(), params["b"].shape, float(params["b"])) == ([1.0, 2.0], (), 0.5)
    assert set(tutorial_params(Logistic(1), [1.0], 0.0)) == {"W", "b"}
    bad = [
        (Logistic(1, 3), [1.0], "a logistic model with these settings has params W, b: give "
                                "them as initial.params"),
        (MLP(1), [1.0], "a mlp model with these settings has params W1, b1, W2, b2: give them "
                        "as initial.params"),
        (Logistic(2), [1.0], "has 1 weights but the model has 2 feature(s)"),
    ]
    for kind, weights, message in bad:
        with pytest.raises(SpecError) as raised:
            tutorial_params(kind, weights, 0.0)
        assert (raised.value.location, raised.value.message) == (("body", "initial", "W"),
                                                                 message)


def test_named_params_name_the_param_at_fault() -> None:
    mlp = MLP(1, (2,))
    good = {"W1": [[1, 2]], "b1": [0, 0], "W2": [[1], [2]], "b2": [0]}
    params = named_params(mlp, good)
    assert {name: value.shape for name, value in params.items()} == mlp.shapes()
    assert named_params(Linear(1), {"W": [3], "b": 2})["b"].shape == ()
    bad = [
        ({**good, "W3": [1]}, "W3", "the model has no param 'W3' (it has W1, b1, W2, b2)"),
        ({"W1": [[1, 2]], "b1": [0, 0], "W2": [[1], [2]]}, "b2", "missing: shape [1]"),
        ({**good, "W2": [[1], [1, 2]]}, "W2", "expected shape [2, 1], got ragged lists"),
        ({**good, "b1": [0, 0, 0]}, "b1", "expected shape [2], got [3]"),
        ({**good, "b2": 0}, "b2", "expected shape [1], got []"),
    ]
    for given, name, message in bad:
        for location in (("body", "initial", "params"), ("file", "params")):
            with pytest.raises(SpecError) as raised:
                named_params(mlp, given, location)
            assert (raised.value.location, raised.value.message) == ((*location, name),
                                                                     message)
