"""Regression tests for what coverage-guided fuzzing of the upload parsers found, run
against the parsers as they were (each input is the fuzzer's own, in base64; its first
byte picks the kind of file and the target, see ``tests/fuzz/seeds.py``). Every one was a
500 then; on SQLite and PostgreSQL each is now a 422 that stores nothing."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from tests.fuzz.seeds import KINDS, TARGETS, one_upload

FINDINGS = {
    # tokenize.TokenError from numpy's .npy header parser (an unterminated string)
    "npy header that does not tokenize": (
        "AZNOVU1QWQEAdgB7J2Rlc2NyJzogJycnJycnJycnJycnJycnJycnJycnJycnJycnJycnJycnJycnJycn"
        "JycnJycnJycnJycnJycnJycnJycnJycnJycnJycnJzxmOCcsICdmb3J0cmFuX29yZGVyJzogRmFsc2Us"
        "ICdzaGFwZac6ICg0LCAzKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg"
        "ICAgICAgICAgICAgICAgICAKAAAAAAAAAAAAAAAAAADwPwAAAAAA////////////////////////////"
        "////////////////////////////////////////////////////////////////////////////////"
        "/////////////////////////////////wAAQAAAAAAgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3No"
        "YXBlpzogKDQsIDMAAAAgQAAAAAAAACJAAAAAAAAAJEAAAAAAAAAmQA=="
    ),
    # zlib.error: a deflate stream that does not decode
    "npz member with a corrupt deflate stream": (
        "AlBLAwQtAAAACAAAACEA05fRE///////////BQAUAHgubnB5AQAQAJgAAAAAAAAAVQAAAAAAAACb7Bfq"
        "GxDJyFDGUK2eklqcXKRupaBuk2mirqOgnpZfVFKUmBefX5SSChJ3S8wpTgWKF2ckFqQC+RrGOgpGmjoK"
        "tQpkAy4GIGAEYiYgZgZiFiBmBWIAUEsDBC0AAAAIAAAAIQCvRpRn//////////8FABQAeS4kcHkBABAA"
        "mAAAAAAAAABLAAAAAAAAAJvsF+obEMnIUMZQrZ6SWpxcpG6loG6TZqGuo6Cell9UUpSYF59flJIKEndL"
        "zClOBYoXZyQWpAL5GsY6mjoKtQoUAC4GMPhgj04DAFBLAQItAy0AAAAoAAAAIQDTl9ETVQAAAJgAAAAF"
        "AAAAAAAAAAAAAACAAQAAAAB4Lm5weVBLAQItAy0AAAAIAAAAIQCvRpRnSwAAAJgAAAAFAAAAAAAAAAAA"
        "AACAAYwAAAB5Lm5weVBLBQYAAAAAAgACAGYAAAAOAQAA////////////////////////////////////"
        "/////////////////////////wAA"
    ),
    # NotImplementedError: a compression method zipfile cannot read
    "npz member in an unknown compression method": (
        "AlBLAwQtAAAACAAAACEA05fRE///////////BQAUAHgubnB5AQAQAJgAAAAAAAAAVQAAAAAAAACb7Bfq"
        "GxDJyFDGUK2eklqcXKRupaBuk2mirqOgnpZfVFKUmBefX5SSChJ3S8wpTgWKF2ckFqQC6RrGOgpGmjoK"
        "tQpkAy4GIGAEYiYgZgZiFiBmBWIAUEsDBC0AAAAIAAAAIQCvRpRn//////////8FABQAeS5ucHkBABAA"
        "mAAAAAAAAABLAAAAAAAAAJvsF+obEMnIUMZQrZ6SWpxcpG6loG6TZqGuo6Cell9UUpSYF59flJIKEndL"
        "zClOBYoXZyQWpAL5GsY6mjoKtQoUAC4GMPhgj04DAFBLAQItAy0AAAAIAAAAIQDTl9ETVQAAAJgAAAAF"
        "AAAAAAAAAAAAAACAAQAAAAB4Lm5weVBLAQItAy0AAAAIAAAAIQCvRpRnSwAAAJgAAAAFAAAAAAAAAAAA"
        "AACAAYwAAAB5Lm5weVBLBQYAAAAAAgACAGYAAAAOAQAAAAA="
    ),
    # RuntimeError: a member flagged encrypted
    "npz member flagged encrypted": (
        "AlBLAwQtAAAAAAAAACEAsuVueP//////////BQAUAHgubnB5AQAQALAAAAAAAAAAsAAAAAAAAACTTlVN"
        "UFkBAHYAeydkZXNjcic6ICc8ZjgnLCAnZm9ydHJhbl9vcmRlcic6IFRydWUsICdzaGFwZSc6ICgzLCAy"
        "KSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAw"
        "ICAgCgAAAAAAAAAAAAAAAAAAAEAAAAAAAAAQQAAAAAAAAPA/AAAAAAAACEAAAAAAAAAUQFBLAwQtAAAA"
        "AAAAACEAi55FQf//////////BQAUAHkubnB5AQAAYSxiLHkKMSwtNmUzLDcKCjgsOSwxMAoBAHYAeydk"
        "ZXNjcic6ICc+ZjQnLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUnOiAoMywpLCB9ICAgICAg"
        "ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgCj+AAAA/"
        "gAAAP4AAAFBLAQItLQAAAwAAAAAAIQCy5W54sAAAALAAAAAFAAAAAAAAAAAAAACAAQAAAAB4Lm5weVBL"
        "AQItAy0AAAAAAAAAIQCLnkVBjAAAAIwAAAAFAAAAAAAAAAAAAACAAecAAAB5Lm5weVBLBQYAAAAAAgAC"
        "AGYAAACqAQAAAAA="
    ),
    # csv.Error: a carriage return alone inside a field
    "csv with a lone carriage return in a field": (
        "AGEsYix5CjEsMiwzCjQuNSwNNmUzLDcKCjgsOSwxMAoAAA=="
    ),
}


@pytest.mark.parametrize("finding", FINDINGS)
def test_each_finding_is_refused_and_stores_nothing(each_store: TestClient, finding: str) -> None:
    data = base64.b64decode(FINDINGS[finding])
    one_upload(data)  # the parsers refuse it (anything else raises here)
    name, _ = KINDS[data[0] % len(KINDS)]
    target = TARGETS[(data[0] // len(KINDS)) % len(TARGETS)]
    before = each_store.get("/v1/datasets").json()["items"]
    answer = each_store.post("/v1/datasets/upload", data={"target": target},
                             files={"file": (name, data[1:])})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert each_store.get("/v1/datasets").json()["items"] == before
