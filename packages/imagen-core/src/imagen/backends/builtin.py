"""imagen-core's own backend plugin, registered through the ``imagen`` entry point.

This module is imported at every start, so it imports nothing but the hook marker: the
backend itself (and Pillow) load only when a ``mock`` instance is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from imagen.plugins import hookimpl

if TYPE_CHECKING:
    from imagen.backend import Backend, BackendConfig, BackendFactory


def mock_backend(config: BackendConfig) -> Backend:
    """Offline placeholder pictures: deterministic, no network, no model."""
    from imagen.backends.mock import MockBackend

    return MockBackend(config)


@hookimpl
def imagen_backend() -> Mapping[str, BackendFactory]:
    return {"mock": mock_backend}
