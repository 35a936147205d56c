"""The error cloud sync raises."""

from __future__ import annotations

from imagen import secrets
from imagen.errors import ImagenError

__all__ = ["CloudError"]


class CloudError(ImagenError):
    """An upload or an ``imagen.images`` insert failed; the local image and sidecar stay.

    ``transient`` says whether trying again later may succeed (a timeout, a 5xx, a refused
    connection) or not (a missing bucket, a refused key, different bytes at the path).
    """

    exit_code = 6

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(secrets.redact(message))
        self.transient = transient
