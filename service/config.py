"""Settings read from ``TAPELINE_*`` environment variables (the secret ones also from files,
``TAPELINE_<NAME>_FILE``, as container platforms mount secrets)."""

from __future__ import annotations

import os
from functools import lru_cache
from ipaddress import ip_address
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

LOOPBACK_NAMES = ["localhost", "127.0.0.1", "::1"]
# The embedded store: the one database whose folder start-up creates when it is missing.
DEFAULT_DATABASE_URL = "sqlite:///./var/tapeline.db"

# A list setting is written as comma-separated names: TAPELINE_CORS_ORIGINS=https://a,https://b
Names = Annotated[list[str], NoDecode]
# Settings that may instead be read from a file named by TAPELINE_<NAME>_FILE (a mounted secret).
FILE_SETTINGS = ("database_url", "bootstrap_admin_key", "redis_url", "secret_key",
                 "secret_key_previous")


class SettingFileError(ValueError):
    """A ``TAPELINE_<NAME>_FILE`` variable that cannot be used; the message says which and why."""


class SettingFiles(PydanticBaseSettingsSource):
    """The :data:`FILE_SETTINGS` whose ``TAPELINE_<NAME>_FILE`` variable is set: each read from
    that file (surrounding whitespace and the final newline dropped) when the settings are
    made, i.e. once at start. A ``_FILE`` variant wins over its plain variable, which an image
    may set as its default (the container's ``TAPELINE_DATABASE_URL``)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything happens in __call__

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in FILE_SETTINGS:
            variable = f"TAPELINE_{name.upper()}"
            path = os.environ.get(f"{variable}_FILE")
            if not path:
                continue
            try:
                values[name] = Path(path).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as error:
                raise SettingFileError(f"{variable}_FILE: cannot read {path}: "
                                       f"{getattr(error, 'strerror', None) or error}") from error
            if not values[name]:
                raise SettingFileError(f"{variable}_FILE: {path} is empty")
        return values


class Settings(BaseSettings):
    """Every knob of the service; each one is an environment variable ``TAPELINE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="TAPELINE_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then the ``_FILE`` variants, then the environment."""
        return (init_settings, SettingFiles(settings_cls), env_settings, dotenv_settings,
                file_secret_settings)

    host: str = Field("127.0.0.1", description="Address `tapeline serve` binds to.")
    port: int = Field(8000, ge=0, le=65535, description="Port `tapeline serve` binds to.")
    database_url: str = Field(
        DEFAULT_DATABASE_URL,
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
    max_trials: int = Field(10_000, ge=1, description="Most trials in one study.")
    max_classes: int = Field(1000, ge=2, description="Most classes of a classifier or dataset.")
    max_hidden_layers: int = Field(16, ge=1, description="Most hidden layers of an MLP.")
    max_layer_width: int = Field(4096, ge=1, description="Most units in one hidden layer.")
    history_params_max: int = Field(
        4096,
        ge=0,
        description="Models with at most this many parameters keep them in history rows (every "
        "row up to 512 parameters, every ceil(count / 512)-th above, or as `record_params` "
        "says); larger ones in none.",
    )
    compile: bool = Field(
        True,
        description="Training compiles its step with tg.function (bit-identical to eager); "
        "false runs every step eagerly, for debugging.",
    )
    max_page_size: int = Field(1000, ge=1, description="Largest `limit` of a page.")
    max_answer_bytes: int = Field(
        64 * 1024 * 1024,
        ge=64 * 1024,
        description="Largest answer a prediction or a page of history may take, judged before "
        "it is built: a prediction beyond is refused (413), a page of history is cut short.",
    )
    max_queued_runs: int = Field(1000, ge=1, description="Most runs waiting in the queue.")
    max_wait_seconds: float = Field(
        60.0, ge=0, description="Longest `Prefer: wait=N` a run request honours."
    )
    sse_ping_seconds: float = Field(15.0, gt=0, description="Keep-alive interval of SSE streams.")
    on_interrupted: Literal["fail", "requeue"] = Field(
        "fail",
        description="What start-up does with runs a crash left queued or running.",
    )
    executor: Literal["local", "queue"] = Field(
        "local",
        description="Where runs train: `local` (processes of this server) or `queue` (jobs "
        "on PostgreSQL that `tapeline worker` processes on any machine take; the API then "
        "trains nothing).",
    )
    worker_timeout: float = Field(
        30.0, gt=0, description="Seconds a silent worker keeps its runs before another takes "
        "them over."
    )
    max_attempts: int = Field(
        3, ge=1, description="Attempts a run gets before it fails with reason `worker_lost`."
    )
    checkpoint_seconds: float = Field(
        5.0, gt=0, description="Longest time between checkpoints of a run whose history keeps "
        "params in fewer than every row (the others checkpoint at every stored epoch boundary)."
    )
    worker_metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Port where `tapeline worker` serves its metrics "
        "(none by default)."
    )
    worker_liveness_seconds: float = Field(
        300.0, gt=0, description="Longest a `tapeline worker` process may go without a sign of "
        "life (its event loop's beat and, while it trains a run, an epoch boundary) before "
        "/healthz on the metrics port answers 503: keep it above the longest epoch trained."
    )
    body_timeout_seconds: float = Field(
        30.0, gt=0, description="Time a request body has to arrive whole (408 beyond)."
    )
    max_connections: int = Field(
        2048, ge=1, description="Most requests served at once (503 beyond)."
    )
    allowed_hosts: Names | None = Field(
        None,
        description="Host names the service answers to (400 otherwise); `*` for any. By "
        "default the loopback names when bound to loopback, else required.",
    )
    cors_origins: Names = Field(
        default_factory=list,
        description="Origins whose browser pages may call the service (CORS); none by default.",
    )

    auth: Literal["auto", "required", "off"] = Field(
        "auto",
        description="API keys: `auto` serves without keys (tenant `default`) only while bound "
        "to loopback and no key exists; `required` always asks for one; `off` never does.",
    )
    secret_key: SecretStr | None = Field(
        None, description="When set, API keys are stored as an HMAC-SHA256 under this secret."
    )
    secret_key_previous: SecretStr | None = Field(
        None, description="The secret before the last rotation: webhook signing secrets "
        "encrypted under it stay readable, and are encrypted again under TAPELINE_SECRET_KEY at "
        "start-up."
    )
    bootstrap_admin_key: SecretStr | None = Field(
        None,
        description="A key (`tl_` and 43+ URL-safe characters) registered at start-up as an "
        "`admin` key of tenant `admin`.",
    )
    key_cache_seconds: float = Field(
        1.0,
        ge=0,
        le=60,
        description="How long a server trusts a key's record (tenant, scopes, expiry, "
        "revocation) read from the store before reading it again: a key revoked by another "
        "process (another replica, `tapeline keys revoke`) is refused within this long; one "
        "revoked through this server's API at once. 0 reads the store on every request.",
    )
    metrics_public: bool = Field(False, description="Serve /metrics without an admin key.")
    tenant_max_active_runs: int = Field(
        8, ge=0, description="Most queued or running runs of one tenant (its quota may differ)."
    )
    tenant_max_stored_bytes: int = Field(
        1024**3, ge=0, description="Most bytes one tenant stores: datasets, models' params, "
        "runs' histories and checkpoints (its quota may differ)."
    )
    tenant_rate_limit: str = Field(
        "50/second", description="Requests one tenant may make, e.g. `50/second`, `1000/minute`."
    )
    redis_url: str | None = Field(
        None, description="Redis for rate limits shared by every replica (memory otherwise)."
    )

    max_webhooks: int = Field(20, ge=0, description="Most webhook endpoints of one tenant.")
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="How long one webhook delivery attempt may take."
    )
    webhook_retry_scale: float = Field(
        1.0, gt=0, description="Multiplies the webhook retry delays (about 5 s, 30 s, 2 min, "
        "10 min, 1 h, then every 6 h) and the 3 days after which a failing endpoint is disabled."
    )
    webhook_retention_days: float = Field(
        30.0, gt=0, description="Webhook deliveries older than this are pruned from the log."
    )
    webhook_allow_private: bool = Field(
        False, description="Deliver webhooks to loopback, private, link-local and other "
        "non-public addresses too (tests, a single machine)."
    )
    webhook_concurrency: int = Field(
        8, ge=1, le=256, description="Webhook delivery attempts one process makes at once."
    )
    webhook_hosts_file: Path | None = Field(
        None, description="For tests only: a hosts file (`address name` lines) read before DNS "
        "whenever a webhook's host is resolved."
    )

    @field_validator("tenant_rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        from limits import parse

        parse(value)  # ValueError for anything but "N/second" and its kin
        return value

    @field_validator("allowed_hosts", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    def hosts(self) -> list[str]:
        """The Host names to answer to: the setting, or the loopback names when the service is
        bound to loopback; :class:`ValueError` when it is bound elsewhere without the setting."""
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        if is_loopback(self.host):
            return LOOPBACK_NAMES
        raise ValueError(
            f"TAPELINE_ALLOWED_HOSTS is required when TAPELINE_HOST ({self.host}) is not a "
            "loopback address: list the host names clients use, or * for any"
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
