"""Settings read from ``TAPELINE_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service; each one is an environment variable ``TAPELINE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="TAPELINE_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address `tapeline serve` binds to.")
    port: int = Field(8000, ge=0, le=65535, description="Port `tapeline serve` binds to.")
    database_url: str = Field(
        "sqlite:///./var/tapeline.db",
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host/db.",
    )
    workers: int = Field(
        2, ge=1, le=64, description="Training processes, i.e. runs that train at once."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_body_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 beyond)."
    )
    max_examples: int = Field(2_000_000, ge=1, description="Most examples in one dataset.")
    max_features: int = Field(1024, ge=1, description="Most features of a dataset or model.")
    max_values: int = Field(
        16 * 1024 * 1024, ge=1, description="Most numbers (examples x features) in one dataset."
    )
    max_epochs: int = Field(100_000, ge=1, description="Most epochs in one run.")
    max_params: int = Field(1_000_000, ge=1, description="Most parameters of one model.")
    max_classes: int = Field(1000, ge=2, description="Most classes of a classifier or dataset.")
    max_hidden_layers: int = Field(16, ge=1, description="Most hidden layers of an MLP.")
    max_layer_width: int = Field(4096, ge=1, description="Most units in one hidden layer.")
    history_params_max: int = Field(
        4096,
        ge=0,
        description="Models with at most this many parameters log them in every history row.",
    )
    max_page_size: int = Field(1000, ge=1, description="Largest `limit` of a page.")
    max_queued_runs: int = Field(1000, ge=1, description="Most runs waiting in the queue.")
    max_wait_seconds: float = Field(
        60.0, ge=0, description="Longest `Prefer: wait=N` a run request honours."
    )
    sse_ping_seconds: float = Field(15.0, gt=0, description="Keep-alive interval of SSE streams.")
    on_interrupted: Literal["fail", "requeue"] = Field(
        "fail",
        description="What start-up does with runs a crash left queued or running.",
    )


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
