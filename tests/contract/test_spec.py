"""The committed spec is worth generating from (tests/contract/test_openapi.py checks drift, tags,
operation ids and problem answers; these check the rest of issue #4's list)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from service.config import Settings
from tests.contract.conftest import SPEC

spec = json.loads(SPEC.read_text())
OPERATIONS = [(f"{method.upper()} {path}", op) for path, ops in spec["paths"].items()
              for method, op in ops.items()]


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in ``node``, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def test_every_request_body_has_an_example() -> None:
    for name, op in OPERATIONS:
        for media_type, media in op.get("requestBody", {}).get("content", {}).items():
            assert "example" in media or "examples" in media, (name, media_type)


def test_every_operation_and_parameter_is_described() -> None:
    for name, op in OPERATIONS:
        assert op.get("summary") and op.get("description"), name
        for parameter in op.get("parameters", []):
            assert parameter.get("description"), (name, parameter["name"])
        for status, answer in op["responses"].items():
            assert answer["description"] not in ("", "Successful Response"), (name, status)


def test_schemas_use_json_schema_keywords_only() -> None:
    # pydantic writes `ge` / `le` verbatim when a bound sits outside an Annotated validator.
    for node in walk(spec):
        assert not ({"ge", "le", "gt", "lt"} & node.keys() and "type" in node), node


def test_parameters_are_never_null() -> None:
    for name, op in OPERATIONS:
        for parameter in op.get("parameters", []):
            assert {"type": "null"} not in parameter["schema"].get("anyOf", []), (name, parameter)


def test_limits_are_schema_constraints() -> None:
    defaults = Settings()
    schemas = spec["components"]["schemas"]
    assert schemas["LinearSynthetic"]["properties"]["num_examples"]["maximum"] == \
        defaults.max_examples
    for kind in ("LinearModelCreate", "LogisticModelCreate", "MLPModelCreate"):
        assert schemas[kind]["properties"]["features"]["maximum"] == defaults.max_features
    assert schemas["LogisticModelCreate"]["properties"]["classes"]["maximum"] == \
        defaults.max_classes
    hidden = schemas["MLPModelCreate"]["properties"]["hidden"]
    assert hidden["maxItems"] == defaults.max_hidden_layers
    assert hidden["items"]["maximum"] == defaults.max_layer_width
    assert schemas["RunCreate"]["properties"]["epochs"]["maximum"] == defaults.max_epochs
    limits = [p["schema"].get("maximum") for _, op in OPERATIONS
              for p in op.get("parameters", []) if p["name"] == "limit"]
    assert limits and set(limits) == {defaults.max_page_size}
    # Every integer bound is exact in a double, as generators and JavaScript read it.
    for node in walk(spec):
        for key in ("maximum", "exclusiveMaximum", "minimum"):
            if isinstance(node.get(key), int | float):
                assert abs(node[key]) <= 2**53, node


def test_streams_have_item_schemas() -> None:
    answer = spec["paths"]["/v1/runs/{run_id}/events"]["get"]["responses"]["200"]["content"]
    jsonl = answer["application/jsonl"]["itemSchema"]
    assert jsonl["discriminator"]["mapping"] == {"epoch": "#/components/schemas/EpochEvent",
                                                 "end": "#/components/schemas/EndEvent",
                                                 "paused": "#/components/schemas/PausedEvent"}
    sse = answer["text/event-stream"]["itemSchema"]["properties"]["data"]["contentSchema"]
    assert sse["oneOf"] == jsonl["oneOf"]


def test_schema_names_are_unique_and_plain() -> None:
    names = list(spec["components"]["schemas"])
    assert len(names) == len(set(names))
    assert not [n for n in names if n.endswith(("-Input", "-Output", "Input", "Output"))]
    refs = {node["$ref"].rsplit("/", 1)[-1] for node in walk(spec) if "$ref" in node}
    assert refs <= set(names), refs - set(names)  # no dangling reference (DatasetData was)
