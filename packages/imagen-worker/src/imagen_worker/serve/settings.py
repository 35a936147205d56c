"""The ``serve:`` section, and API keys stored as hashes."""

from __future__ import annotations

import hashlib
import os
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imagen import secrets as imagen_secrets
from imagen.sections import Section, SectionData, Setting

if TYPE_CHECKING:
    from imagen.config import Config

__all__ = [
    "SERVE",
    "SERVE_SECTION",
    "ServeSettings",
    "hash_key",
    "new_key",
    "owner_problem",
    "read_serve",
]

SERVE: dict[str, Setting] = {
    "host": Setting(str, "127.0.0.1", "the address to listen on"),
    "port": Setting(int, 8787, "the port to listen on"),
    "wait_s": Setting(
        (int, float),
        120.0,
        "how long POST /v1/images/generations waits for its job before answering with a "
        "job reference instead",
    ),
    "max_images": Setting(int, 10, "the largest `n` a request may ask for"),
    "max_body_bytes": Setting(int, 64 * 1024, "the largest request body accepted"),
    "pool_size": Setting(int, 16, "the most database connections the server holds at once"),
    "session_days": Setting(
        int,
        30,
        "how long the gallery page stays signed in with an API key (a JWT: until it expires)",
    ),
    "jwt_secret_env": Setting(
        str,
        None,
        "the environment variable holding the HS256 secret that signs Supabase-style JWTs "
        "(their `sub` is the owner); unset: API keys only",
    ),
    "api_keys": Setting(
        dict,
        None,
        "API keys, as `SHA256-HEX: OWNER` (make one with `imagen serve-key OWNER`): the key "
        "itself is never stored",
    ),
}


# The smallest value each numeric setting may take.
_LEAST = {
    "port": 0,
    "wait_s": 0,
    "max_images": 1,
    "max_body_bytes": 1024,
    "pool_size": 1,
    "session_days": 1,
}


@dataclass(frozen=True)
class ServeSettings:
    """A checked ``serve:`` section."""

    host: str = "127.0.0.1"
    port: int = 8787
    wait_s: float = 120.0
    max_images: int = 10
    max_body_bytes: int = 64 * 1024
    pool_size: int = 16
    session_days: int = 30
    api_keys: Mapping[str, str] = field(default_factory=dict)  # sha256 hex → owner
    web_role: str = "authenticated"
    jwt_secret: str | None = field(default=None, repr=False)


def hash_key(key: str) -> str:
    """What ``serve.api_keys`` stores for ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh API key: ``imk_`` and 32 random bytes, URL-safe."""
    return "imk_" + secrets.token_urlsafe(32)


MAX_OWNER = 255


def owner_problem(owner: object) -> str | None:
    """What is wrong with ``owner`` as the owner an API key acts for; None when nothing is.

    An owner is the text row-level security compares with each job's ``owner``: it must be
    printable text on one line, without surrounding spaces (``" alice"`` would be another
    owner than ``"alice"``), so that what a user reads is what the database compares.
    """
    if not isinstance(owner, str):
        return f"must be the owner's name as text, not {owner!r}"
    if not owner.strip():
        return "must name the owner the key acts for (it is blank)"
    if owner != owner.strip():
        return f"must not start or end with spaces: {owner!r}"
    if any(unicodedata.category(char)[0] in "CZ" and char != " " for char in owner):
        return f"must be printable text on one line: {owner!r}"
    if len(owner) > MAX_OWNER:
        return f"must be at most {MAX_OWNER} characters, not {len(owner)}"
    return None


def _parse(data: SectionData) -> dict[str, Any]:
    """The checks that need no secret: made whenever the file is loaded."""
    values = data.values
    for key, least in _LEAST.items():
        if values[key] < least:
            raise data.error(f"must be at least {least}, not {values[key]}", key)
    if values["port"] > 65535:
        raise data.error(f"must be a port number (0 to 65535), not {values['port']}", "port")
    for digest, owner in (values["api_keys"] or {}).items():
        where = f"api_keys.{digest}"
        if not (isinstance(digest, str) and len(digest) == 64 and _is_hex(digest)):
            message = "each key must be the SHA-256 hex digest of an API key (imagen serve-key)"
            raise data.error(message, where)
        problem = owner_problem(owner)
        if problem is not None:
            raise data.error(problem, where)
    return values


SERVE_SECTION = Section(
    "serve", "the HTTP server, `imagen serve` (see docs/serve.md)", SERVE, parse=_parse
)


def read_serve(config: Config, environ: Mapping[str, str] = os.environ) -> ServeSettings:
    """The ``serve:`` settings, with the JWT secret read; a ConfigError names what is wrong."""
    from imagen_worker.database import web_role

    values = config.section("serve")
    jwt_secret = None
    if values["jwt_secret_env"]:
        jwt_secret = environ.get(values["jwt_secret_env"])
        if not jwt_secret:
            raise config.section_error(
                "serve",
                f"environment variable {values['jwt_secret_env']} is not set",
                "jwt_secret_env",
            )
        imagen_secrets.register(jwt_secret)
    keys = values["api_keys"] or {}
    return ServeSettings(
        host=values["host"],
        port=values["port"],
        wait_s=float(values["wait_s"]),
        max_images=values["max_images"],
        max_body_bytes=values["max_body_bytes"],
        pool_size=values["pool_size"],
        session_days=values["session_days"],
        api_keys={digest.lower(): owner for digest, owner in keys.items()},
        web_role=web_role(config),
        jwt_secret=jwt_secret,
    )


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True
