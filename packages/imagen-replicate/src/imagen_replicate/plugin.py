"""Registers the ``replicate`` backend type without importing the replicate SDK (~170 ms)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from imagen.plugins import hookimpl

if TYPE_CHECKING:
    from imagen import Backend, BackendConfig, BackendFactory


def replicate_backend(config: BackendConfig) -> Backend:
    """Replicate: Flux, SDXL and other hosted models, billed per image or per second."""
    from imagen_replicate.backend import ReplicateBackend

    return ReplicateBackend(config)


@hookimpl
def imagen_backend() -> Mapping[str, BackendFactory]:
    return {"replicate": replicate_backend}
