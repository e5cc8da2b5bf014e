"""Model imports judged from the header, on SQLite and PostgreSQL: every dtype safetensors
defines is read or refused by name, hostile numbers and text are 422s (they were 500s), class
names obey a dataset label's limits, a model appears only with an answer that can be sent,
and every export imports again, whatever its header's length (a safetensors header of 0x80
or 0x28 bytes mod 256 was taken for a pickle)."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.support.hostile import json_model, linear_metadata, safetensors_file

# safetensors' dtypes: those a param is read from (with the values 1.5 and -2 written in
# them), and those refused.
READ = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
        "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1"}
REFUSED = ("BOOL", "F8_E5M2", "F8_E4M3", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F8_E8M0", "F6_E2M3",
           "F6_E3M2", "F4", "C64")


def models(client: TestClient) -> list[dict[str, Any]]:
    answer = client.get("/v1/models", params={"limit": 1000})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


def imported(client: TestClient, content: bytes, status: int, **form: str) -> dict[str, Any]:
    """Import ``content``; a refusal must store nothing and leave the list readable."""
    before = models(client)
    answer = client.post("/v1/models/import", files={"file": ("model.bin", content)}, data=form)
    assert answer.status_code == status, answer.text
    if status != 201:
        assert answer.headers["content-type"] == "application/problem+json"
        assert models(client) == before
    else:
        assert answer.headers["location"] == f"/v1/models/{answer.json()['id']}"
    return dict(answer.json())


def linear_file(dtype: str, W: bytes, b: bytes) -> bytes:
    return safetensors_file({"W": (dtype, [1], W), "b": (dtype, [], b)}, linear_metadata())


@pytest.mark.parametrize("dtype", list(READ))
def test_every_numeric_dtype_is_read(each_store: TestClient, dtype: str) -> None:
    numbers = np.array([1.5, -2.0]) if dtype[0] == "F" else np.array([1, 2])
    raw = numbers.astype(READ[dtype]).tobytes()
    size = len(raw) // 2
    model = imported(each_store, linear_file(dtype, raw[:size], raw[size:]), 201)
    assert model["params"] == {"W": [numbers[0]], "b": numbers[1]}


def test_bfloat16_is_read_as_the_upper_half_of_float32(each_store: TestClient) -> None:
    words = (np.array([1.5, -2.0], "<f4").view("<u4") >> 16).astype("<u2").tobytes()
    model = imported(each_store, linear_file("BF16", words[:2], words[2:]), 201)  # was a 500
    assert model["params"] == {"W": [1.5], "b": -2.0}


@pytest.mark.parametrize("dtype", [*REFUSED, "Q4_K", "f64"])
def test_other_dtypes_are_refused_by_name(each_store: TestClient, dtype: str) -> None:
    problem = imported(each_store, linear_file(dtype, b"\x01", b"\x01"), 422)  # F8: was a 500
    assert problem["errors"][0]["loc"] == ["file", "params", "W"]
    assert dtype in problem["detail"] and "dtype" in problem["detail"]


NUMBERS = {
    "an integer above float64's range": (json_model({"W": [int("9" * 400)], "b": 0}),
                                         "beyond the range of float64"),
    "an integer of 5,000 digits": (json_model({"W": [1], "b": 0}).replace(
        b'"b": 0', b'"b": ' + b"7" * 5000), "5000 digits"),
    "a float of 5,000 digits": (json_model({"W": [1], "b": 0}).replace(
        b'"b": 0', b'"b": 0.' + b"7" * 5000), "5002 characters"),
    "an integer beyond float64 in the config": (json_model(
        {"W": [1], "b": 0}, config={"features": 10**309}), "beyond the range of float64"),
    "an integer beyond float64 in the provenance": (json_model(
        {"W": [1], "b": 0}, provenance={"epochs_trained": 10**309}),
        "beyond the range of float64"),
}


@pytest.mark.parametrize("case", list(NUMBERS))
def test_hostile_numbers_are_refused(each_store: TestClient, case: str) -> None:
    content, words = NUMBERS[case]
    assert words in imported(each_store, content, 422)["detail"]  # were 500s


def test_a_lone_surrogate_in_a_file_is_refused(each_store: TestClient) -> None:
    for provenance, loc in (({"name": "\ud800"}, ["file", "provenance", "name"]),
                            ({"run_id": "r\udfff"}, ["file", "provenance", "run_id"]),
                            ({"\udc80": 1}, ["file", "provenance"])):
        problem = imported(each_store, json_model({"W": [1], "b": 0}, provenance=provenance),
                           422)  # the first was a 500
        assert problem["errors"][0]["loc"] == loc and "surrogate" in problem["detail"]
    metadata = linear_metadata(name="\ud800")
    problem = imported(each_store, safetensors_file(
        {"W": ("F64", [1], bytes(8)), "b": ("F64", [], bytes(8))}, metadata), 422)
    assert problem["errors"][0]["loc"] == ["file", "__metadata__", "provenance", "name"]


def logistic_file(class_names: list[str]) -> bytes:
    return json_model({"W": [[0.0, 1.0, 2.0]], "b": [0.0, 0.0, 0.0]}, kind="logistic",
                      config={"features": 1, "classes": 3},
                      provenance={"class_names": class_names})


def test_class_names_that_cannot_be_sent_never_break_the_model_list(
        each_store: TestClient) -> None:
    # Was: committed, a 500 without Location, then every page of /v1/models a 500.
    problem = imported(each_store, logistic_file(["\ud800", "b", "c"]), 422)
    assert problem["errors"][0]["loc"] == ["file", "provenance", "class_names", 0]
    assert each_store.get("/v1/models").status_code == 200


@pytest.mark.parametrize("names", [["x" * 10_000_000, "b", "c"], ["x" * 201, "b", "c"],
                                   ["", "b", "c"], ["a\x00", "b", "c"], ["a", "b"]])
def test_class_names_obey_a_dataset_labels_limits(each_store: TestClient,
                                                  names: list[str]) -> None:
    problem = imported(each_store, logistic_file(names), 422)  # a 10 MB name was accepted
    assert problem["errors"][0]["loc"][:3] == ["file", "provenance", "class_names"]


def test_class_names_of_200_characters_import(each_store: TestClient) -> None:
    names = ["é" * 200, "=1+1", "c"]
    model = imported(each_store, logistic_file(names), 201)
    assert model["class_names"] == names


def header_size(content: bytes) -> int:
    return int(struct.unpack("<Q", content[:8])[0])


def test_every_export_imports_again(each_store: TestClient) -> None:
    """Names of 1 to 40 characters move the safetensors header's length through every
    residue the pickle sniff took (0x80 and 0x28 mod 256); 8 of these 40 failed."""
    sizes = set()
    for length in range(1, 41):
        made = each_store.post("/v1/models", json={"name": "n" * length})
        assert made.status_code == 201, made.text
        model = made.json()
        for fmt in ("safetensors", "json"):
            content = each_store.get(f"/v1/models/{model['id']}/export",
                                     params={"format": fmt}).content
            if fmt == "safetensors":
                sizes.add(header_size(content) % 256)
            again = imported(each_store, content, 201)
            assert again["params"] == model["params"] and again["name"] == model["name"]
    assert sizes & {0x80, 0x28}, sizes


def test_a_header_larger_than_any_export_is_refused_before_it_is_parsed(
        each_store: TestClient) -> None:
    big = safetensors_file({"W": ("F64", [1], bytes(8)), "b": ("F64", [], bytes(8))},
                           linear_metadata(pad="x" * 4_000_000))
    assert "header takes" in imported(each_store, big, 422)["detail"]


def test_too_many_tensors_are_refused(each_store: TestClient) -> None:
    tensors = {f"t{i}": ("F64", [0], b"") for i in range(100)}
    problem = imported(each_store, safetensors_file(tensors, linear_metadata()), 422)
    assert "100 tensors" in problem["detail"]


def test_a_json_file_of_more_values_than_a_model_holds_is_refused(
        each_store: TestClient) -> None:
    content = json.dumps({"format": "tapeline.model/1", "kind": "linear",
                          "config": {"features": 1}, "params": {"W": [1], "b": 0},
                          "provenance": {"pad": ["ab"] * 1_100_000}}).encode()
    assert "values" in imported(each_store, content, 422)["detail"]
