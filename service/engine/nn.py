"""The activations under their tf.nn names."""

from service.engine.ops import relu, sigmoid, softplus, tanh

__all__ = ["relu", "sigmoid", "softplus", "tanh"]
