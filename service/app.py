"""create_app(settings): wiring and lifespan."""

from __future__ import annotations

from fastapi import FastAPI

from service.config import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI application for the given settings (the environment's by default)."""
    settings = settings or get_settings()
    app = FastAPI(title="Tapeline", version="0.1.0")

    @app.get("/healthz", tags=["service"], operation_id="service-healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
