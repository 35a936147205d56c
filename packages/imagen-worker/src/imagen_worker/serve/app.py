"""The ASGI application: the routers, OpenAI-shaped errors, and the parts they share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from imagen import __version__
from imagen.config import Config
from imagen.dirs import cache_dir
from imagen_worker.notices import ProgressKey
from imagen_worker.serve import auth, edits_api, gallery, images_api, jobs_api, openai_api
from imagen_worker.serve.errors import BodyLimit, install_error_handlers
from imagen_worker.serve.services import Services
from imagen_worker.serve.settings import ServeSettings
from imagen_worker.serve.store import Store
from imagen_worker.serve.watcher import JobWatcher

__all__ = ["create_app"]


def create_app(
    config: Config, url: str, settings: ServeSettings, *, thumbnails: Path | None = None
) -> FastAPI:
    """The app for ``config``'s backends and styles, queueing into the database at ``url``.

    :param thumbnails: where to cache thumbnails (default: the user cache directory).
    """
    services = Services(
        config=config,
        settings=settings,
        store=Store(url, settings.web_role, settings.pool_size),
        watcher=JobWatcher(url),
        thumbnails=thumbnails or cache_dir() / "thumbnails",
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.store.open()
        row = await services.store.server_fetch_one(
            "SELECT value FROM imagen.server_keys WHERE name = 'progress'"
        )
        services.watcher.key = ProgressKey(bytes(row["value"])) if row is not None else None
        yield
        await services.close()

    app = FastAPI(
        title="imagen",
        version=__version__,
        summary="Images through any backend: an OpenAI-compatible API over imagen's job queue",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    uploads = {"/v1/images/edits": settings.max_upload_bytes}
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, routes=uploads)
    for module in (openai_api, edits_api, jobs_api, images_api, auth, gallery):
        app.include_router(module.router)
    app.mount("/static", gallery.static_files(), name="static")
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, without the 422 it lists by default: bad input answers 400."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        for path in document["paths"].values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        app.openapi_schema = document
    return app.openapi_schema
