"""Adding a model kind is adding one class to the registry (service/training/kinds.py) and
nothing else: a kind unknown to the rest of the code, registered in a process of its own
before the app is imported, is created (its request fields from its own schema, a bad one
refused naming the field), previewed by a dry run, trained, predicted with and exported to
ONNX through the HTTP API. The worker processes are spawned, so they import the script and
register the kind too."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.servers import sqlite_url

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent('''
    from dataclasses import dataclass
    from typing import ClassVar

    import numpy as np

    from service import engine as tg
    from service.training.fields import ConfigField, Features, KindSchema
    from service.training.kinds import KINDS, Kind


    @dataclass(frozen=True)
    class Doubled(Kind):
        """``2 (x @ W) + b``."""

        name: ClassVar[str] = "doubled"
        schema: ClassVar[KindSchema] = KindSchema(
            noun="A doubled linear model", doc="``2 (x @ W) + b``.",
            fields=(ConfigField("features", Features, 1),))

        features: int = 1

        def shapes(self):
            return {"W": (self.features,), "b": ()}

        def initial(self, seed):
            return {"W": np.ones(self.features), "b": np.array(0.0)}

        def forward(self, params, x):
            return tg.matmul(x, params["W"]) * 2.0 + params["b"]

        def onnx(self, graph, x):
            product = graph.add("MatMul", [x, "W"])
            two = graph.constant("two", np.array(2.0))
            return graph.add("Add", [graph.add("Mul", [product, two]), "b"])


    KINDS["doubled"] = Doubled

    if __name__ == "__main__":
        import json
        import sys

        import onnxruntime as ort
        from fastapi.testclient import TestClient

        from service.app import create_app
        from service.config import Settings

        seen = {}
        settings = Settings(database_url=sys.argv[1], workers=1)
        with TestClient(create_app(settings), base_url="http://localhost") as client:
            bad = client.post("/v1/models", json={"kind": "doubled", "features": 0})
            seen["refused"] = [bad.status_code, [e["loc"] for e in bad.json()["errors"]]]
            preview = client.post("/v1/models?dry_run=true",
                                  json={"kind": "doubled", "features": 2})
            seen["preview"] = [preview.status_code, preview.json()["id"],
                               preview.json()["params"]]
            model = client.post("/v1/models", json={"kind": "doubled", "features": 2}).json()
            x = np.random.default_rng(0).normal(size=(64, 2))
            y = 2 * (x @ [1.5, -0.5]) + 0.25
            data = client.post("/v1/datasets", json={"x": x.tolist(), "y": y.tolist()}).json()
            run = client.post(f"/v1/models/{model['id']}/runs", headers={"prefer": "wait=120"},
                              json={"dataset_id": data["id"], "epochs": 200,
                                    "optimizer": {"kind": "sgd", "learning_rate": 0.05}})
            seen["run"] = [run.json()["status"], run.json()["final"]["loss"]]
            trained = client.get(f"/v1/models/{model['id']}").json()
            seen["params"] = trained["params"]
            seen["predicted"] = client.post(f"/v1/models/{model['id']}/predict",
                                            json={"x": x[:3].tolist()}).json()["y"]
            exported = client.get(f"/v1/models/{model['id']}/export", params={"format": "onnx"})
            session = ort.InferenceSession(exported.content, providers=["CPUExecutionProvider"])
            seen["onnx"] = session.run(None, {"x": x[:3].astype(np.float32)})[0].tolist()
            seen["expected"] = (2 * (x[:3] @ [1.5, -0.5]) + 0.25).tolist()
        print(json.dumps(seen))
''')


@pytest.mark.slow
def test_a_kind_added_as_one_class_is_served_end_to_end(tmp_path: Path) -> None:
    script = tmp_path / "doubled_kind.py"
    script.write_text(SCRIPT)
    result = subprocess.run([sys.executable, str(script), sqlite_url(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["refused"] == [422, [["body", "features"]]]
    assert seen["preview"] == [200, None, {"W": [1.0, 1.0], "b": 0.0}]
    status, loss = seen["run"]
    assert status == "succeeded" and loss < 1e-4, seen["run"]
    assert abs(seen["params"]["W"][0] - 1.5) < 0.01 and abs(seen["params"]["b"] - 0.25) < 0.01
    for ours, onnx, truth in zip(seen["predicted"], seen["onnx"], seen["expected"], strict=True):
        assert abs(ours - onnx) < 1e-5 and abs(ours - truth) < 0.05
