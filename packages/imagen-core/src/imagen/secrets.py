"""Keep credentials out of everything imagen writes or prints.

Backends read credentials through :meth:`imagen.BackendConfig.secret`, which registers the
value here. Before imagen prints an error or writes a sidecar, it passes the text through
:func:`redact`, so a secret an upstream echoes back in an error body never reaches a log.
"""

from __future__ import annotations

import re
import threading
from typing import Any

__all__ = [
    "REDACTED",
    "is_secret_key",
    "redact",
    "redact_config",
    "redact_data",
    "redact_inline",
    "register",
]

REDACTED = "***"
_MIN_LENGTH = 6  # shorter values would redact ordinary words
_lock = threading.Lock()
_values: set[str] = set()
_SECRET_KEY = re.compile(
    r"(token|secret|password|passwd|api_?key|authorization|cookie)$", re.IGNORECASE
)


def register(value: str) -> None:
    """Remember ``value`` as a secret to scrub from output."""
    if value and len(value) >= _MIN_LENGTH:
        with _lock:
            _values.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    with _lock:
        values = sorted(_values, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_data(data: Any) -> Any:
    """A copy of JSON-like ``data`` with registered secrets scrubbed from every string."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {key: redact_data(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(value) for value in data]
    return data


def is_secret_key(key: str) -> bool:
    """True for config keys whose value is a credential itself (``api_key``, ``token``).

    Keys that *name* a variable (``api_key_env``) are not secrets.
    """
    return bool(_SECRET_KEY.search(key)) and not key.endswith("_env")


# A password inside a value: ``scheme://user:PASSWORD@host`` and libpq's ``password=PASSWORD``.
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)(?P<secret>[^\s@/]+)(?=@)", re.IGNORECASE
)
_CONNINFO_PASSWORD = re.compile(
    r"(?P<head>\bpassword\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE
)


def redact_inline(text: str) -> str:
    """``text`` with the passwords it carries itself redacted, and every registered secret.

    A URL's password (``postgresql://user:PASSWORD@host/db``) and a connection string's
    ``password=...`` are credentials whatever the key that holds them is called.
    """
    text = _URL_PASSWORD.sub(lambda m: m["head"] + REDACTED, text)
    text = _CONNINFO_PASSWORD.sub(lambda m: m["head"] + REDACTED, text)
    return redact(text)


def redact_config(data: Any) -> Any:
    """A copy of config ``data`` safe to print: secret keys' values and passwords in values.

    A key named like a credential (``api_key``, ``token``, ``Authorization``) has its whole
    value replaced; every other string is passed through :func:`redact_inline`.
    """
    if isinstance(data, dict):
        return {
            key: REDACTED if is_secret_key(str(key)) and value else redact_config(value)
            for key, value in data.items()
        }
    if isinstance(data, list | tuple):
        return [redact_config(item) for item in data]
    if isinstance(data, str):
        return redact_inline(data)
    return data
