"""The worker's log: one logfmt line per event (``event=done job=12 images=2``)."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

__all__ = ["event", "first_line"]

log = logging.getLogger("imagen")
_WARNINGS = frozenset(
    {
        "db_lost",
        "db_wait",
        "db_error",
        "heartbeat_failed",
        "recovered",
        "notify_missed",
        "notify_ignored",
        "lease_lost",
        "not_recorded",
        "release_failed",
    }
)
_ERRORS = frozenset({"slot_failed", "stopped"})
_BARE = re.compile(r"[\w.:/@-]+")  # logfmt values that need no quotes


def event(name: str, **fields: Any) -> None:
    """Log one worker event as one logfmt line; None fields are left out."""
    level = (
        logging.ERROR if name in _ERRORS else logging.WARNING if name in _WARNINGS else logging.INFO
    )
    if not log.isEnabledFor(level):
        return
    parts = [f"event={name}"]
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, str) and _BARE.fullmatch(value):
            text = value
        elif isinstance(value, bool | int | float):
            text = json.dumps(value)
        else:
            text = json.dumps(value, separators=(",", ":"), default=str)
        parts.append(f"{key}={text}")
    log.log(level, "%s", " ".join(parts))


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
