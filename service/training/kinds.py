"""Model kinds: a registry of classes (:data:`KINDS`), each holding its config, the names,
shapes and default values of its parameters, its forward pass, its task and its default loss,
its request fields (:attr:`Kind.schema`, from which the API derives its create, resource and
preview schemas) and its ONNX graph. Adding a kind is adding one class here.

A kind is pure description (a frozen dataclass of its config); :class:`Model` gives a kind's
parameters life as engine Variables. Regression outputs are one number per example;
classification outputs are logits: one per example for two classes under a sigmoid (logistic),
K per example under a softmax otherwise.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from service import engine as tg
from service.training.errors import SpecError
from service.training.fields import Classes, ConfigField, Features, KindSchema, Widths
from service.training.onnx_graph import Graph

Task = Literal["regression", "classification"]
Shape = tuple[int, ...]

ACTIVATIONS = {"relu": tg.relu, "tanh": tg.tanh, "sigmoid": tg.sigmoid}
Activation: Any = Literal.__getitem__(tuple(ACTIVATIONS))  # type: ignore[attr-defined]
# The ONNX operator of each activation.
ONNX_ACTIVATIONS = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}
# The kind of a create request that names none.
DEFAULT_KIND = "linear"


class Kind:
    """What every kind has (each kind is a frozen dataclass of its config fields)."""

    name: ClassVar[str]
    # Its request fields and how the API describes it.
    schema: ClassVar[KindSchema]
    # The config field whose growth makes the model large (named when it is too large).
    size_field: ClassVar[str] = "features"
    # Whether a model with no initial values starts from seeded random ones.
    random_default: ClassVar[bool] = False

    features: int

    @classmethod
    def from_request(cls, fields: Mapping[str, Any]) -> Kind:
        """The kind a create request's config fields (those of :attr:`schema`) describe; a
        :class:`SpecError` names a field that does not fit the others."""
        return cls(**fields)

    @property
    def task(self) -> Task:
        """``regression`` or ``classification``."""
        return "regression"

    @property
    def num_classes(self) -> int | None:
        """How many classes a classifier tells apart (None for regression)."""
        return None

    @property
    def outputs(self) -> int:
        """Outputs per example: 1 (a plain number, or one sigmoid logit) or K softmax logits."""
        return 1

    @property
    def default_loss(self) -> str:
        """The loss a run uses unless it names one."""
        return "cross_entropy" if self.task == "classification" else "mse"

    @property
    def kernels(self) -> tuple[str, ...]:
        """The parameters regularization applies to (weights, not biases)."""
        return tuple(name for name in self.shapes() if name.startswith("W"))

    def shapes(self) -> dict[str, Shape]:
        """Every parameter's name and shape, in the order optimizers see them."""
        raise NotImplementedError

    def initial(self, seed: int | None) -> dict[str, np.ndarray]:
        """Default starting values, or seeded random ones when ``seed`` is given."""
        raise NotImplementedError

    def forward(self, params: Mapping[str, Any], x: tg.Tensor) -> tg.Tensor:
        """Outputs for ``x`` (examples, features) from parameters named as in :meth:`shapes`."""
        raise NotImplementedError

    def onnx(self, graph: Graph, x: str) -> str:
        """:meth:`forward` as ONNX nodes appended to ``graph``, from ``x`` (float64, [N, F])
        and the params as initializers named as in :meth:`shapes`: the name of the outputs (a
        value per row, or logits)."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The kind's config as JSON-ready data (the fields of its API schema)."""
        return asdict(self)  # type: ignore[call-overload]

    def param_count(self) -> int:
        """How many numbers the parameters hold."""
        return sum(math.prod(shape) for shape in self.shapes().values())

    def targets(self, y: np.ndarray, dtype: str) -> np.ndarray:
        """Labels or values ``y`` as the loss compares outputs with them: values, 0/1 for a
        sigmoid, one-hot rows for a softmax."""
        if self.outputs > 1:
            return np.eye(self.outputs, dtype=dtype)[y.astype(np.int64)]
        return np.asarray(y, dtype=dtype)


def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Keras' default kernel initializer: uniform in ±sqrt(6 / (fan_in + fan_out))."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out))


@dataclass(frozen=True)
class Linear(Kind):
    """``x @ W + b``: the tutorial's model, one weight per feature."""

    name: ClassVar[str] = "linear"
    schema: ClassVar[KindSchema] = KindSchema(
        noun="A linear model",
        doc="A linear model ``x @ W + b``; with no ``initial`` it starts at the tutorial's "
            "W = 5,\nb = 0.",
        fields=(ConfigField("features", Features, 1),),
        examples=({"kind": "linear", "features": 1, "initial": {"W": [5.0], "b": 0.0},
                   "name": "tutorial"},),
    )

    features: int = 1

    def shapes(self) -> dict[str, Shape]:
        """W (features,) and b ()."""
        return {"W": (self.features,), "b": ()}

    def initial(self, seed: int | None) -> dict[str, np.ndarray]:
        """The tutorial's W = 5, b = 0; seeded: W ~ N(0, 1) in float32, b = 0."""
        if seed is None:
            return {"W": np.full(self.features, 5.0), "b": np.array(0.0)}
        rng = np.random.default_rng(seed)
        weights = rng.standard_normal(self.features, dtype=np.float32)
        return {"W": weights.astype(np.float64), "b": np.array(0.0)}

    def forward(self, params: Mapping[str, Any], x: tg.Tensor) -> tg.Tensor:
        """One number per example."""
        return tg.matmul(x, params["W"]) + params["b"]

    def onnx(self, graph: Graph, x: str) -> str:
        """``x @ W + b``."""
        return graph.dense(x, "W", "b")


@dataclass(frozen=True)
class Logistic(Kind):
    """Logistic regression: a sigmoid over ``x @ W + b`` for two classes, a softmax over K
    logits ``x @ W + b`` (W of shape (features, K)) for more."""

    name: ClassVar[str] = "logistic"
    schema: ClassVar[KindSchema] = KindSchema(
        noun="A logistic regression model",
        doc="Logistic regression: a sigmoid over ``x @ W + b`` for 2 classes, a softmax over\n"
            "``x @ W + b`` with W of shape (features, classes) for more; starts at zeros.",
        fields=(ConfigField("features", Features, 1), ConfigField("classes", Classes, 2)),
    )
    size_field: ClassVar[str] = "classes"

    features: int = 1
    classes: int = 2

    @property
    def task(self) -> Task:
        """Always classification."""
        return "classification"

    @property
    def num_classes(self) -> int:
        """K."""
        return self.classes

    @property
    def outputs(self) -> int:
        """One logit for two classes, K otherwise."""
        return 1 if self.classes == 2 else self.classes

    def shapes(self) -> dict[str, Shape]:
        """W (F,) and b () for two classes; W (F, K) and b (K,) for more."""
        if self.outputs == 1:
            return {"W": (self.features,), "b": ()}
        return {"W": (self.features, self.classes), "b": (self.classes,)}

    def initial(self, seed: int | None) -> dict[str, np.ndarray]:
        """Zeros; seeded: a Glorot-uniform W and a zero b."""
        shapes = self.shapes()
        if seed is None:
            return {name: np.zeros(shape) for name, shape in shapes.items()}
        W = glorot_uniform(np.random.default_rng(seed), self.features, self.outputs)
        return {"W": W.reshape(shapes["W"]), "b": np.zeros(shapes["b"])}

    def forward(self, params: Mapping[str, Any], x: tg.Tensor) -> tg.Tensor:
        """Logits: one per example, or K."""
        return tg.matmul(x, params["W"]) + params["b"]

    def onnx(self, graph: Graph, x: str) -> str:
        """Logits ``x @ W + b``."""
        return graph.dense(x, "W", "b")


@dataclass(frozen=True)
class MLP(Kind):
    """A multi-layer perceptron: dense layers with an activation between them, and a last
    dense layer of 1 output (regression) or K logits under a softmax (classification)."""

    name: ClassVar[str] = "mlp"
    schema: ClassVar[KindSchema] = KindSchema(
        noun="A multi-layer perceptron",
        doc="A multi-layer perceptron: dense layers of the ``hidden`` widths with "
            "``activation``\nbetween them, then 1 output (regression) or ``classes`` logits "
            "under a softmax\n(classification). Starts from Glorot-uniform kernels and zero "
            "biases, seeded by\n``initial.random_seed`` (random when left out, reported back).",
        fields=(
            ConfigField("features", Features, 1),
            ConfigField("hidden", Widths, default_factory=lambda: [16]),
            ConfigField("activation", Activation, "relu"),
            ConfigField("task", Task, "regression"),
            ConfigField("classes", Classes | None, None,
                        description="K, for classification only (2 if left out)."),
        ),
        examples=({"kind": "mlp", "features": 2, "hidden": [16, 16], "activation": "relu",
                   "task": "classification", "classes": 2},),
    )
    size_field: ClassVar[str] = "hidden"
    random_default: ClassVar[bool] = True

    features: int = 1
    hidden: tuple[int, ...] = (16,)
    activation: Literal["relu", "tanh", "sigmoid"] = "relu"
    task: Task = "regression"  # type: ignore[assignment]  # a field where others compute it
    classes: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))

    @classmethod
    def from_request(cls, fields: Mapping[str, Any]) -> MLP:
        """``classes`` only for classification (2 when left out)."""
        if fields.get("task", "regression") == "regression" and fields.get("classes") is not None:
            raise SpecError(("body", "classes"), "applies to classification only")
        return cls(**{**fields, "classes": fields.get("classes") or 2})

    @property
    def num_classes(self) -> int | None:
        """K for classification."""
        return self.classes if self.task == "classification" else None

    @property
    def outputs(self) -> int:
        """1 for regression, K for classification."""
        return self.num_classes or 1

    def _widths(self) -> list[int]:
        return [self.features, *self.hidden, self.outputs]

    def shapes(self) -> dict[str, Shape]:
        """W1 (F, H1), b1 (H1,), ..., Wn (H_last, O), bn (O,)."""
        widths = self._widths()
        shapes: dict[str, Shape] = {}
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths), start=1):
            shapes[f"W{i}"] = (fan_in, fan_out)
            shapes[f"b{i}"] = (fan_out,)
        return shapes

    def initial(self, seed: int | None) -> dict[str, np.ndarray]:
        """Glorot-uniform kernels (one generator seeded with ``seed``, layer by layer) and zero
        biases, as Keras' Dense layers start."""
        rng = np.random.default_rng(seed)
        widths = self._widths()
        params: dict[str, np.ndarray] = {}
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths), start=1):
            params[f"W{i}"] = glorot_uniform(rng, fan_in, fan_out)
            params[f"b{i}"] = np.zeros(fan_out)
        return params

    def forward(self, params: Mapping[str, Any], x: tg.Tensor) -> tg.Tensor:
        """Dense layers (``h @ W + b``), the activation after every one but the last."""
        activation = ACTIVATIONS[self.activation]
        layers = len(self.hidden) + 1
        h = x
        for i in range(1, layers + 1):
            h = tg.matmul(h, params[f"W{i}"]) + params[f"b{i}"]
            if i < layers:
                h = activation(h)
        return tg.reshape(h, (-1,)) if self.outputs == 1 else h

    def onnx(self, graph: Graph, x: str) -> str:
        """Dense layers, the activation after every one but the last; a regression's one
        column squeezed to a vector."""
        layers = len(self.hidden) + 1
        h = x
        for i in range(1, layers + 1):
            h = graph.dense(h, f"W{i}", f"b{i}")
            if i < layers:
                h = graph.add(ONNX_ACTIVATIONS[self.activation], [h])
        if self.outputs == 1:
            return graph.add("Squeeze", [h, graph.constant("squeeze_axes", np.array([1]))])
        return h

    def config(self) -> dict[str, Any]:
        """features, hidden, activation, task and (classification) classes."""
        config: dict[str, Any] = {
            "features": self.features,
            "hidden": list(self.hidden),
            "activation": self.activation,
            "task": self.task,
        }
        if self.task == "classification":
            config["classes"] = self.classes
        return config


KINDS: dict[str, type[Kind]] = {"linear": Linear, "logistic": Logistic, "mlp": MLP}


def make_kind(name: str, config: Mapping[str, Any]) -> Kind:
    """A kind from its name and its config as :meth:`Kind.config` writes it."""
    return KINDS[name](**config)


class Model:
    """A kind's parameters as engine Variables: what the epoch loop trains and predict runs."""

    def __init__(self, kind: Kind, params: Mapping[str, Any], dtype: str = "float32") -> None:
        self.kind = kind
        self.dtype = dtype
        self.named = {
            name: tg.Variable(np.asarray(params[name], dtype=dtype).reshape(shape), name=name,
                              dtype=dtype)
            for name, shape in kind.shapes().items()
        }
        self.variables = list(self.named.values())

    def __call__(self, x: tg.Tensor) -> tg.Tensor:
        return self.kind.forward(self.named, x)

    def params(self) -> dict[str, np.ndarray]:
        """Every parameter's current value, as float64 copies (what records and storage keep)."""
        return {name: var.numpy().astype(np.float64) for name, var in self.named.items()}

    def assign(self, params: Mapping[str, np.ndarray]) -> None:
        """Set every parameter (restoring a snapshot)."""
        for name, var in self.named.items():
            var.assign(np.asarray(params[name], dtype=self.dtype))


def probabilities(logits: tg.Tensor) -> tg.Tensor:
    """Class probabilities (examples, K) from a classifier's logits: a sigmoid's two columns,
    or a softmax (computed from the logits minus their row maximum, so it never overflows)."""
    if logits.ndim == 1:
        p = tg.sigmoid(logits)
        return tg.stack([1 - p, p], axis=1)
    e = tg.exp(logits - tg.reduce_max(logits, axis=1, keepdims=True))
    return e / tg.reduce_sum(e, axis=1, keepdims=True)
