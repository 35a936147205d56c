"""What every route needs: the config, the settings, the database and the job watcher."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from imagen.config import Config
from imagen_worker.serve.settings import ServeSettings
from imagen_worker.serve.store import Store
from imagen_worker.serve.watcher import JobWatcher

__all__ = ["Services", "ServicesDep"]


@dataclass
class Services:
    """One server's shared parts, kept on ``app.state.services``."""

    config: Config
    settings: ServeSettings
    store: Store
    watcher: JobWatcher
    thumbnails: Path  # where thumbnails are cached

    async def close(self) -> None:
        self.watcher.close()
        await self.store.close()


def _services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(_services)]
