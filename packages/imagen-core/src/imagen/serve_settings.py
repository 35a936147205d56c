"""The ``serve:`` section: sign-in and limits of imagen's HTTP servers.

Declared in imagen-core because two packages read it: ``imagen serve`` (imagen-worker) its
address and limits, and both it and ``imagen mcp --http`` (imagen-mcp) who may call them
(``api_keys``, ``jwt_secret_env``: :mod:`imagen.tokens`). A config holding ``serve:`` is
thus checked whichever of them is installed.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from imagen.sections import Section, SectionData, Setting

__all__ = ["MAX_OWNER", "SERVE", "SERVE_SECTION", "owner_problem", "yaml_scalar"]

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
    "max_upload_bytes": Setting(
        int,
        100 * 1024 * 1024,
        "the largest body of POST /v1/images/edits (its images together; each is at most 50 MB)",
    ),
    "inputs_dir": Setting(
        str,
        None,
        "where images sent to POST /v1/images/edits are kept for the workers (default: "
        "imagen's data directory, inputs/); a worker on another host needs the same directory",
    ),
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
    "max_upload_bytes": 1024,
    "pool_size": 1,
    "session_days": 1,
}
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


def yaml_scalar(text: str) -> str:
    """``text`` as a YAML scalar that reads back as the same string (quoted when needed)."""
    import json

    import yaml

    try:
        plain = yaml.safe_load(f"key: {text}") == {"key": text}
    except yaml.YAMLError:
        plain = False
    return text if plain else json.dumps(text, ensure_ascii=False)  # JSON strings are YAML


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


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
    "serve",
    "the HTTP servers, `imagen serve` and `imagen mcp --http`: who may call them, limits",
    SERVE,
    parse=_parse,
)
