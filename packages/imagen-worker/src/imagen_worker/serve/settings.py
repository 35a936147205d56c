"""The ``serve:`` section, and API keys stored as hashes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from imagen.config import Config
from imagen.serve_settings import SERVE, owner_problem
from imagen.tokens import hash_key, new_key, read_credentials
from imagen_worker.database import web_role

__all__ = ["SERVE", "ServeSettings", "hash_key", "new_key", "owner_problem", "read_serve"]


@dataclass(frozen=True)
class ServeSettings:
    """A checked ``serve:`` section."""

    host: str = "127.0.0.1"
    port: int = 8787
    wait_s: float = 120.0
    max_images: int = 10
    max_body_bytes: int = 64 * 1024
    max_upload_bytes: int = 100 * 1024 * 1024
    pool_size: int = 16
    session_days: int = 30
    api_keys: Mapping[str, str] = field(default_factory=dict)  # sha256 hex → owner
    web_role: str = "authenticated"
    jwt_secret: str | None = field(default=None, repr=False)


def read_serve(config: Config, environ: Mapping[str, str] = os.environ) -> ServeSettings:
    """The ``serve:`` settings; a ConfigError names the key that is wrong.

    The bounds of each value are checked as the file is loaded (imagen-core's
    ``SERVE_SECTION``); the secrets are read here.
    """
    values = config.section_values("serve", SERVE)
    credentials = read_credentials(config, environ)  # shared with imagen mcp
    return ServeSettings(
        host=values["host"],
        port=values["port"],
        wait_s=float(values["wait_s"]),
        max_images=values["max_images"],
        max_body_bytes=values["max_body_bytes"],
        max_upload_bytes=values["max_upload_bytes"],
        pool_size=values["pool_size"],
        session_days=values["session_days"],
        api_keys=credentials.api_keys,
        web_role=web_role(config),
        jwt_secret=credentials.jwt_secret,
    )
