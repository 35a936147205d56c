"""What every route needs: the config, the settings, the database and the job watcher."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request

from imagen.config import Config
from imagen.pipeline import BackendPool
from imagen_worker import queries
from imagen_worker.fleet import Fleet
from imagen_worker.serve.settings import ServeSettings
from imagen_worker.serve.store import Store
from imagen_worker.serve.watcher import JobWatcher

__all__ = ["Services", "ServicesDep"]

_FLEET_FOR_S = 1.0  # however many requests wait, the workers are counted once a second


@dataclass
class Services:
    """One server's shared parts, kept on ``app.state.services``."""

    config: Config
    settings: ServeSettings
    store: Store
    watcher: JobWatcher
    thumbnails: Path  # where thumbnails are cached
    stopping: threading.Event = field(default_factory=threading.Event)
    """Set when the server is asked to stop: event streams and waits end at once."""
    _backends: BackendPool | None = field(default=None, repr=False)
    _check_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _fleet: tuple[float, Fleet] | None = field(default=None, repr=False)

    async def fleet(self) -> Fleet:
        """The workers running now (:mod:`imagen_worker.fleet`), read at most once a second."""
        now = time.monotonic()
        if self._fleet is None or now - self._fleet[0] >= _FLEET_FOR_S:
            row = await self.store.server_fetch_one(queries.WORKERS)
            self._fleet = (now, Fleet.from_row(row))
        return self._fleet[1]

    def check_job(
        self, fields: dict[str, Any], owner: str | None = None, inputs: tuple[Any, ...] = ()
    ) -> None:
        """The door's check of a job (:func:`~imagen_worker.submission.check_job`).

        Blocking (it may build a backend on first use): call it from a worker thread.
        """
        from imagen_worker.submission import check_job

        with self._check_lock:  # backends are built once, by one request
            check_job(
                self.config,
                fields,
                pool=self._pool(),
                max_images=self.settings.max_images,
                owner=owner,
                inputs=inputs,
            )

    def backend_options(self, backend: str | None) -> dict[str, str] | None:
        """The options backend instance ``backend`` declares.

        None when it takes any, or cannot be built here. Blocking, as :meth:`check_job` is.
        """
        from imagen.errors import ConfigError

        with self._check_lock:
            try:
                return self._pool().get(backend).options()
            except ConfigError:
                return None

    def _pool(self) -> BackendPool:
        """The backends the door judges with, built on first use (under ``_check_lock``)."""
        if self._backends is None:
            self._backends = BackendPool(self.config)
        return self._backends

    async def close(self) -> None:
        self.watcher.close()
        await self.store.close()
        if self._backends is not None:
            self._backends.close()


def _services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(_services)]
