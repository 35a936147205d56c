"""Registers the ``comfyui`` backend type.

Imported at every imagen start: it imports neither httpx nor websocket-client; those come
with :mod:`imagen_comfyui.backend`, when a ``comfyui`` instance is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from imagen.plugins import hookimpl

if TYPE_CHECKING:
    from imagen import Backend, BackendConfig, BackendFactory


def comfyui_backend(config: BackendConfig) -> Backend:
    """ComfyUI: built-in graphs or your own API workflows, with live progress."""
    from imagen_comfyui.backend import ComfyUIBackend

    return ComfyUIBackend(config)


@hookimpl
def imagen_backend() -> Mapping[str, BackendFactory]:
    return {"comfyui": comfyui_backend}
