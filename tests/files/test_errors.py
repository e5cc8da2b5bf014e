"""The parsers' refusals carry what the API answers: a status, and for invalid data where and
what."""

from __future__ import annotations

from service.files.errors import InvalidData, Refused, UnsupportedFile


def test_invalid_data_names_where_and_what() -> None:
    error = InvalidData(["file", "line 3", "x"], "'a' is not a number")
    assert isinstance(error, Refused) and error.status == 422
    assert error.loc == ["file", "line 3", "x"] and error.msg == "'a' is not a number"
    assert str(error) == "file.line 3.x: 'a' is not a number"


def test_an_unsupported_file_is_a_415() -> None:
    error = UnsupportedFile("upload a .csv")
    assert isinstance(error, Refused) and error.status == 415
    assert error.detail == str(error) == "upload a .csv"


def test_a_refusal_is_no_value_error() -> None:
    # Parsers catch ValueError around numpy and zipfile; their own refusals must pass through.
    assert not issubclass(Refused, ValueError)
