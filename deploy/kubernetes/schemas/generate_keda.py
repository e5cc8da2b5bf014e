"""Writes keda.sh-v1alpha1-*.json: JSON Schemas of KEDA's ScaledObject and TriggerAuthentication,
made from the models of the PyPI package cloudcoil-models-keda (generated from KEDA's published
CRDs of the same version) and made strict the way the Kubernetes API server is with
`kubectl apply --validate=strict`: an object takes no field its CRD does not declare.

    python3 -m venv /tmp/keda-models
    /tmp/keda-models/bin/pip install cloudcoil-models-keda==2.16.1.0
    /tmp/keda-models/bin/python deploy/kubernetes/schemas/generate_keda.py
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication

HERE = Path(__file__).resolve().parent
DROP = ("title", "default", "description")


def strict(node: Any) -> Any:
    """The schema without pydantic's titles and defaults, nullable fields as plain optional
    ones, and every object with declared properties closed to others."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    options = node.get("anyOf")
    if options and len(options) == 2 and {"type": "null"} in options:
        kept = next(option for option in options if option != {"type": "null"})
        rest = {key: value for key, value in node.items() if key != "anyOf"}
        return strict({**rest, **kept})
    out = {key: strict(value) for key, value in node.items()
           if not (key in DROP and isinstance(value, (str, int, float, bool, type(None))))}
    if out.get("type") == "object" and "properties" in out:
        out.setdefault("additionalProperties", False)
    return out


def main() -> None:
    package = version("cloudcoil.models.keda")
    for model in (ScaledObject, TriggerAuthentication):
        schema = strict(model.model_json_schema(by_alias=True))
        schema["properties"]["apiVersion"] = {"const": "keda.sh/v1alpha1"}
        schema["properties"]["kind"] = {"const": model.__name__}
        schema["required"] = sorted({"apiVersion", "kind", "metadata",
                                     *schema.get("required", [])})
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$comment": f"KEDA {model.__name__} (keda.sh/v1alpha1) from cloudcoil-models-keda "
                        f"{package} (PyPI), generated from KEDA's CRD; made strict by "
                        "deploy/kubernetes/schemas/generate_keda.py",
            **schema,
        }
        target = HERE / f"keda.sh-v1alpha1-{model.__name__.lower()}.json"
        target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        print(f"wrote {target.name}")


if __name__ == "__main__":
    main()
