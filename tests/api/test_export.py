"""Models in and out: every kind exported as ONNX predicts in onnxruntime as Tapeline does;
exported as safetensors or JSON and imported again, it predicts bit for bit as before and
trains on; hostile model files are refused with nothing stored."""

from __future__ import annotations

import io
import json
import pickle
import struct
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import save

WAIT = {"prefer": "wait=120"}

KINDS: dict[str, dict[str, Any]] = {
    "linear": {"kind": "linear", "features": 3, "initial": {"random_seed": 1}},
    "logistic-2": {"kind": "logistic", "features": 3, "initial": {"random_seed": 2}},
    "logistic-4": {"kind": "logistic", "features": 3, "classes": 4,
                   "initial": {"random_seed": 3}},
    **{f"mlp-regression-{a}": {"kind": "mlp", "features": 3, "hidden": [8, 5],
                               "activation": a, "initial": {"random_seed": 4}}
       for a in ("relu", "tanh", "sigmoid")},
    **{f"mlp-classification-{a}": {"kind": "mlp", "features": 3, "hidden": [6],
                                   "activation": a, "task": "classification", "classes": 3,
                                   "initial": {"random_seed": 5}}
       for a in ("relu", "tanh", "sigmoid")},
}


def created(answer: Any, status: int = 201) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    return dict(answer.json())


def rows(count: int = 1000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 2, (count, 3)).astype(np.float32)


def trained(client: TestClient, spec: dict[str, Any]) -> dict[str, Any]:
    """A model of ``spec`` after a short run, so its params are not its initial ones."""
    model = created(client.post("/v1/models", json=spec))
    x = rows(64, seed=9).astype(np.float64)
    classifier = spec["kind"] == "logistic" or spec.get("task") == "classification"
    classes = spec.get("classes", 2) if classifier else 1
    y = (x @ [1.0, -2.0, 0.5]).tolist() if classes == 1 else \
        (np.arange(64) % classes).tolist()
    data = created(client.post("/v1/datasets", json={"x": x.tolist(), "y": y}))
    run = client.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
        "dataset_id": data["id"], "epochs": 3, "optimizer": {"kind": "adam",
                                                             "learning_rate": 0.05}})
    assert run.status_code == 200 and run.json()["status"] == "succeeded", run.text
    model = client.get(f"/v1/models/{model['id']}").json()
    model["run_id"], model["dataset_id"] = run.json()["id"], data["id"]
    return model


def predict(client: TestClient, model_id: str, x: np.ndarray) -> dict[str, Any]:
    answer = client.post(f"/v1/models/{model_id}/predict", json={"x": x.tolist()})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@pytest.mark.parametrize("name", list(KINDS))
def test_onnx_predicts_as_tapeline(app_client: TestClient, name: str) -> None:
    model = trained(app_client, KINDS[name])
    answer = app_client.get(f"/v1/models/{model['id']}/export", params={"format": "onnx"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-disposition"] == \
        f'attachment; filename="{model["id"]}.onnx"'
    proto = onnx.load_from_string(answer.content)
    onnx.checker.check_model(proto, full_check=True)
    assert (proto.ir_version, proto.opset_import[0].version) == (8, 17)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["kind"] == model["kind"] and meta["run_id"] == model["run_id"]
    assert meta["tapeline_version"] and meta["model_id"] == model["id"]
    session = ort.InferenceSession(answer.content, providers=["CPUExecutionProvider"])
    x = rows()
    expected = predict(app_client, model["id"], x)
    outputs = {o.name: v for o, v in zip(session.get_outputs(), session.run(None, {"x": x}),
                                         strict=True)}
    if "probabilities" in expected:
        assert set(outputs) == {"probabilities", "label"}
        assert outputs["label"].dtype == np.int64 and outputs["label"].shape == (1000,)
        np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"],
                                   rtol=1e-5, atol=1e-7)
        assert outputs["label"].tolist() == expected["y"]
    else:
        assert set(outputs) == {"y"} and outputs["y"].shape == (1000,)
        np.testing.assert_allclose(outputs["y"], expected["y"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("fmt", ["safetensors", "json"])
@pytest.mark.parametrize("name", ["linear", "logistic-4", "mlp-classification-tanh",
                                  "mlp-regression-relu"])
def test_export_import_round_trip(app_client: TestClient, name: str, fmt: str) -> None:
    model = trained(app_client, KINDS[name])
    exported = app_client.get(f"/v1/models/{model['id']}/export", params={"format": fmt})
    assert exported.status_code == 200, exported.text
    assert f'filename="{model["id"]}.{fmt}"' in exported.headers["content-disposition"]
    imported = created(app_client.post("/v1/models/import", files={
        "file": (f"m.{fmt}", exported.content)}))
    assert imported["id"] != model["id"] and imported["params"] == model["params"]
    assert imported["name"] == model["name"]
    for field in ("kind", "features", "hidden", "activation", "task", "classes"):
        assert imported.get(field) == model.get(field)
    x = rows(200, seed=3)
    assert predict(app_client, imported["id"], x) == predict(app_client, model["id"], x)
    again = app_client.post(f"/v1/models/{imported['id']}/runs", headers=WAIT, json={
        "dataset_id": model["dataset_id"], "epochs": 2})
    assert again.status_code == 200 and again.json()["status"] == "succeeded", again.text
    assert app_client.get(f"/v1/models/{imported['id']}").json()["epochs_trained"] == 2


def test_json_and_safetensors_say_what_the_issue_asks(app_client: TestClient) -> None:
    model = trained(app_client, KINDS["logistic-2"])
    document = app_client.get(f"/v1/models/{model['id']}/export",
                              params={"format": "json"}).json()
    assert set(document) == {"format", "kind", "config", "params", "provenance"}
    assert document["format"] == "tapeline.model/1" and document["kind"] == "logistic"
    assert document["config"] == {"features": 3, "classes": 2}
    assert document["provenance"]["run_id"] == model["run_id"]
    blob = app_client.get(f"/v1/models/{model['id']}/export",
                          params={"format": "safetensors"}).content
    (size,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + size])
    assert header["W"]["shape"] == [3] and header["W"]["dtype"] == "F64"
    assert header["__metadata__"]["kind"] == "logistic"
    assert json.loads(header["__metadata__"]["provenance"])["model_id"] == model["id"]


def _provenance(client: TestClient, model_id: str, fmt: str) -> dict[str, Any]:
    answer = client.get(f"/v1/models/{model_id}/export", params={"format": fmt})
    assert answer.status_code == 200, answer.text
    if fmt == "json":
        return dict(answer.json()["provenance"])
    if fmt == "onnx":
        meta = {p.key: p.value for p in onnx.load_from_string(answer.content).metadata_props}
        assert meta["run_id"] == json.loads(meta["provenance"])["run_id"]
        return dict(json.loads(meta["provenance"]))
    (size,) = struct.unpack("<Q", answer.content[:8])
    return dict(json.loads(json.loads(answer.content[8 : 8 + size])["__metadata__"]
                           ["provenance"]))


@pytest.mark.parametrize("fmt", ["safetensors", "json"])
def test_an_imported_model_exports_the_provenance_it_was_imported_with(
        app_client: TestClient, fmt: str) -> None:
    model = trained(app_client, KINDS["logistic-4"])
    first = _provenance(app_client, model["id"], fmt)
    assert first["run_id"] == model["run_id"] and "imported_from" not in first

    def imported(provenance_of: str) -> dict[str, Any]:
        content = app_client.get(f"/v1/models/{provenance_of}/export",
                                 params={"format": fmt}).content
        return created(app_client.post("/v1/models/import",
                                       files={"file": (f"m.{fmt}", content)}))

    copy = imported(model["id"])
    origin = {"model_id": model["id"], "run_id": model["run_id"], "epochs_trained": 3,
              "tapeline_version": first["tapeline_version"], "format": fmt}
    for each in ("json", "safetensors", "onnx"):
        again = _provenance(app_client, copy["id"], each)
        assert again["run_id"] == model["run_id"], each  # the run that made these params
        assert again["model_id"] == copy["id"] and again["epochs_trained"] == 0
        assert again["imported_from"] == origin, each
    # An import of the import: the same run, and each hop it came through.
    copy_of_copy = imported(copy["id"])
    twice = _provenance(app_client, copy_of_copy["id"], fmt)
    assert twice["run_id"] == model["run_id"]
    assert twice["imported_from"] == {"model_id": copy["id"], "run_id": model["run_id"],
                                      "epochs_trained": 0, "format": fmt,
                                      "tapeline_version": first["tapeline_version"],
                                      "imported_from": origin}
    # Trained here, its params come from the new run; where it came from stays.
    run = app_client.post(f"/v1/models/{copy['id']}/runs", headers=WAIT, json={
        "dataset_id": model["dataset_id"], "epochs": 1})
    assert run.status_code == 200 and run.json()["status"] == "succeeded", run.text
    trained_here = _provenance(app_client, copy["id"], fmt)
    assert trained_here["run_id"] == run.json()["id"] and trained_here["epochs_trained"] == 1
    assert trained_here["imported_from"] == origin


def test_a_file_without_provenance_imports_as_imported(app_client: TestClient) -> None:
    document = {"format": "tapeline.model/1", "kind": "linear", "config": {"features": 1},
                "params": {"W": [3.0], "b": 2.0},
                "provenance": {"run_id": 7, "model_id": "x" * 500, "secret": "left out"}}
    model = created(app_client.post("/v1/models/import", files={
        "file": ("m.json", json.dumps(document).encode())}))
    provenance = _provenance(app_client, model["id"], "json")
    assert provenance["run_id"] is None  # a number is no run id: not kept
    assert provenance["imported_from"] == {"format": "json"}


# ------------------------------------------------------------------ hostile imports


def _document(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"format": "tapeline.model/1", "kind": "logistic",
                            "config": {"features": 2, "classes": 3},
                            "params": {"W": [[1, 2, 3], [4, 5, 6]], "b": [0, 0, 0]},
                            "provenance": {}}
    return base | changes


def _safetensors(params: dict[str, np.ndarray], **metadata: str) -> bytes:
    meta = {"format": "tapeline.model/1", "kind": "logistic",
            "config": json.dumps({"features": 2, "classes": 3}), "provenance": "{}"}
    return bytes(save(params, metadata=meta | metadata))


class Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("unpickled!",))


GOOD_W = np.arange(6.0).reshape(2, 3)
HOSTILE: dict[str, tuple[bytes, int, str]] = {
    "unknown kind": (json.dumps(_document(kind="forest")).encode(), 422, "unknown model kind"),
    "config too big": (json.dumps(_document(config={"features": 10**6, "classes": 3})).encode(),
                       422, "file.config.features"),
    "config typo": (json.dumps(_document(config={"features": 2, "clases": 3})).encode(), 422,
                    "file.config.clases"),
    "missing param": (json.dumps(_document(params={"W": [[1, 2, 3], [4, 5, 6]]})).encode(), 422,
                      "file.params.b: missing"),
    "extra param": (json.dumps(_document(params={"W": [[1, 2, 3]] * 2, "b": [0] * 3,
                                                 "W9": 1})).encode(), 422, "file.params.W9"),
    "misshapen param": (json.dumps(_document(params={"W": [[1, 2], [3, 4]], "b": [0] * 3}))
                        .encode(), 422, "expected shape [2, 3]"),
    "ragged param": (json.dumps(_document(params={"W": [[1, 2, 3], [4]], "b": [0] * 3}))
                     .encode(), 422, "file.params.W"),
    "text in a param": (json.dumps(_document(params={"W": [["1", 2, 3]] * 2, "b": [0] * 3}))
                        .encode(), 422, "file.params.W"),
    "NaN in JSON": (json.dumps(_document(params={"W": [[float("nan"), 2, 3]] * 2,
                                                 "b": [0] * 3})).encode(), 422, "NaN"),
    "huge number in JSON": (json.dumps(_document()).replace("[0, 0, 0]", "[1e999, 0, 0]")
                            .encode(), 422, "not finite"),
    "wrong format tag": (json.dumps(_document(format="keras")).encode(), 422, "file.format"),
    "infinity in safetensors": (_safetensors({"W": GOOD_W, "b": np.array([np.inf, 0, 0])}),
                                422, "file.params.b"),
    "safetensors misshapen": (_safetensors({"W": GOOD_W.T.copy(), "b": np.zeros(3)}), 422,
                              "file.params.W"),
    "safetensors unknown kind": (_safetensors({"W": GOOD_W, "b": np.zeros(3)}, kind="svm"),
                                 422, "unknown model kind"),
    "safetensors without metadata": (bytes(save({"W": GOOD_W, "b": np.zeros(3)})), 422,
                                     "__metadata__"),
    "safetensors truncated": (_safetensors({"W": GOOD_W, "b": np.zeros(3)})[:-5], 422,
                              "not readable safetensors"),
    "pickle": (pickle.dumps(Evil()), 415, "pickle"),
    "numpy pickle": (pickle.dumps({"W": GOOD_W}, protocol=2), 415, "pickle"),
    "garbage": (bytes(range(256)) * 4, 415, "neither"),
    "empty": (b"", 415, "neither"),
    "json list": (b"[1, 2, 3]", 415, "neither"),
    "not UTF-8 JSON": (b"{\xff\xfe}", 422, "not valid JSON"),
    "deep JSON": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, 422, "not valid JSON"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_model_files_store_nothing(each_store: TestClient, case: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    content, status, words = HOSTILE[case]
    before = each_store.get("/v1/models", params={"limit": 1000}).json()["items"]
    answer = each_store.post("/v1/models/import", files={"file": ("model.bin", content)})
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert words.lower() in answer.json()["detail"].lower(), answer.json()
    assert each_store.get("/v1/models", params={"limit": 1000}).json()["items"] == before
    assert "unpickled!" not in capsys.readouterr().out


def test_an_import_over_the_body_limit_is_413(app_client: TestClient) -> None:
    big = io.BytesIO(b'{"format": "tapeline.model/1", "pad": "' + b"x" * 1_100_000 + b'"}')
    answer = app_client.post("/v1/models/import", files={"file": ("m.json", big)})
    assert answer.status_code == 413, answer.text
