"""The queue's notifications: hints that something changed, never commands.

``NOTIFY`` needs no privilege and ``LISTEN`` needs none either: any role that can connect
may send anything on these channels and hear everything sent on them. So a payload is only
ever a reason to look at the rows again (what to do is read from a row, under that row's
own state), a payload that is not one of ours is logged once and ignored, and no payload
names a job:

- ``imagen_jobs`` carries ``{"event": "inserted" | "cancel" | "released" | "requeued"}``
  to the workers.
- ``imagen_progress`` carries a job's *token*, a keyed hash of its id, to ``imagen serve``:
  the workers and the server hold the key (``imagen.server_keys``, readable by neither the
  web role nor PUBLIC), so a listener without it learns nothing about whose job moved.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

__all__ = [
    "JOBS_CHANNEL",
    "JOB_EVENTS",
    "PROGRESS_CHANNEL",
    "ProgressKey",
    "job_event",
    "read_progress_key",
]

log = logging.getLogger("imagen")

JOBS_CHANNEL = "imagen_jobs"
PROGRESS_CHANNEL = "imagen_progress"
JOB_EVENTS = frozenset({"inserted", "cancel", "released", "requeued"})
_TOKEN_BYTES = 12  # 96 bits: no collisions among any queue's jobs, short on the wire


def job_event(payload: str) -> str | None:
    """The event an ``imagen_jobs`` payload announces, or None when it is not one of ours.

    Older schemas also sent the job's id; it is accepted and never used.
    """
    if len(payload) > 200:  # ours are under 40 bytes: don't even decode the rest
        return None
    try:
        value: Any = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    kind = value.get("event")
    return kind if isinstance(kind, str) and kind in JOB_EVENTS else None


class ProgressKey:
    """Turns job ids into the opaque tokens ``imagen_progress`` carries."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def token(self, job_id: int) -> str:
        """The token announcements about job ``job_id`` carry."""
        digest = hmac.new(self._key, str(job_id).encode(), hashlib.sha256).digest()
        return digest[:_TOKEN_BYTES].hex()


def read_progress_key(conn: Any) -> ProgressKey:
    """The database's progress key (``imagen.server_keys``), read with ``conn``'s rights."""
    row = conn.execute("SELECT value FROM imagen.server_keys WHERE name = 'progress'").fetchone()
    if row is None:
        raise LookupError("imagen.server_keys has no progress key: run imagen db migrate")
    value = row["value"] if isinstance(row, dict) else row[0]
    return ProgressKey(bytes(value))
