"""Tapeline: a REST training microservice on its own NumPy reverse-mode autodiff engine."""

__version__ = "0.1.0"
