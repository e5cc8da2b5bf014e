"""Schemathesis hooks: a check that a schema-valid request is refused only for a rule the
schema cannot express (see schemathesis.toml), each rule named by the problem it answers."""

from __future__ import annotations

import ast
import re
import sys
import threading

import schemathesis
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, Response

# Before 3.11.9 (and 3.12.3), CPython keeps ast.parse's recursion guard per interpreter, so two
# threads parsing at once can fail with "SystemError: AST constructor recursion depth mismatch"
# (python/cpython#106905). Schemathesis runs two workers as threads, and Hypothesis parses a
# lambda's source whenever it describes a strategy: one parse at a time.
if sys.version_info < (3, 12, 3):
    _parse, _parsing = ast.parse, threading.Lock()

    def _one_parse_at_a_time(*args, **kwargs):  # type: ignore[no-untyped-def]
        with _parsing:
            return _parse(*args, **kwargs)

    ast.parse = _one_parse_at_a_time


# Per operation: the problem details that may answer a schema-valid request with 422.
SEMANTIC_422 = {
    "datasets-create": r"examples but y has|ragged rows|values exceed the limit|too large"
                       r"|distinct classes exceed|reserved for studies",
    "datasets-create-synthetic": r"values exceed the limit|not finite|reserved for studies",
    "models-create": r"weights but the model has|TAPELINE_MAX_PARAMS|classification only"
                     r"|expected shape|has no param|missing: shape|give them as initial.params"
                     r"|reserved for studies",
    "models-predict": r"feature\(s\) per row|ragged rows|not finite"
                      # file bodies: CSV rows and columns, .npy headers and sizes
                      r"|extra columns? |missing \d+ columns?|^body\.line \d+|at least one row"
                      r"|\.npy|^body: its header describes|exceed the limit|^body\.\d+: values"
                      r"|^body(\.line \d+)?: (CSV|the header)",
    "runs-list-all": r"^(filter|sort|cursor): ",
    "runs-list": r"^(filter|sort|cursor): ",
    "runs-compare": r"^ids: ",
    "runs-compare-history": r"^(ids|metric): ",
    "runs-update": r"tags; at most 64|reserved for studies",
    "models-update": r"tags; at most 64|reserved for studies",
    "datasets-update": r"tags; at most 64|reserved for studies",
    "webhooks-create": r"^body\.url: |TAPELINE_MAX_WEBHOOKS",
    "webhooks-update": r"^body\.url: ",
    # The space tried at its extremes in the model and run bodies (a path that leads nowhere,
    # a value that makes an invalid model or run), the ranges' own rules, the objective a
    # run of the model reports, the model's and run's rules against the dataset (as for
    # models-create and runs-create), the trials' limit
    "studies-create": r"^body\..*"
                      r"(leads nowhere|makes an invalid trial|is above high|log scale"
                      r"|grid over a float|scheduler's job|rungs need fixed epochs"
                      r"|not a metric this model's runs report|needs validation rows"
                      r"|TAPELINE_MAX_TRIALS|TAPELINE_MAX_PARAMS|classification only"
                      r"|weights but the model has|into more than 2\^53 values"
                      r"|expected shape|has no param|missing: shape|give them as initial.params"
                      r"|feature\(s\) but the model has|labels must be class indices"
                      r"|labels are strings|fits (regression|classification)|leaves no \w+ row"
                      r"|metric; this model does|differ from those the model"
                      r"|reserved for studies)",
    "runs-create": r"feature\(s\) but the model has|labels must be class indices"
                   r"|labels are strings|fits (regression|classification)|leaves no \w+ row"
                   r"|needs validation|metric; this model does|differ from those the model"
                   r"|reserved for studies",
}


@schemathesis.check
def semantic_rejections_only(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A 415/422 to schema-valid data must come from a rule outside the schema, never from
    request validation disagreeing with the spec."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    if response.status_code not in (415, 422):
        return None
    operation = case.operation.definition.raw.get("operationId", "")
    problem = response.json()
    detail, errors = problem.get("detail", ""), problem.get("errors") or []
    if operation == "datasets-upload":
        # Content problems name the file or its target column; form validation names the body.
        if response.status_code == 415 and detail.startswith("unsupported file"):
            return None
        if response.status_code == 422 and errors and errors[0]["loc"][0] != "body":
            return None
        # the tags form field: text that must be a JSON object of tags
        if response.status_code == 422 and errors and errors[0]["loc"][:2] == ["body", "tags"] \
                and "JSON object of tags" in errors[0]["msg"]:
            return None
    elif operation == "models-import":
        # Every problem of an imported file names the file (a pickle or garbage gets 415).
        if response.status_code == 415 and detail.startswith("file:"):
            return None
        if response.status_code == 422 and errors and errors[0]["loc"][0] == "file":
            return None
    elif response.status_code == 422 and re.search(SEMANTIC_422.get(operation, "$^"), detail):
        return None
    raise AssertionError(
        f"schema-valid request to {operation} refused with {response.status_code} for a reason "
        f"the schema should have stated: {detail}"
    )


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """A well-formed CSV upload: a header of feature columns and `y`, then numeric rows."""
    features = draw(st.integers(1, 4))
    header = [f"x{i}" for i in range(features)] + ["y"]
    number = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    rows = draw(st.lists(st.lists(number, min_size=features + 1, max_size=features + 1),
                         min_size=1, max_size=20))
    lines = [",".join(header), *(",".join(repr(v) for v in row) for row in rows)]
    return ("\n".join(lines) + "\n").encode()


schemathesis.openapi.media_type("text/csv", csv_files())


@schemathesis.serializer("text/csv", "application/octet-stream")
def raw_bytes(ctx: object, value: object) -> bytes:
    """A CSV or binary body (a predict request's file) as the bytes generated, or a string's
    UTF-8."""
    return value if isinstance(value, bytes) else str(value).encode()
