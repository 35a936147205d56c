"""Registers the ``openai`` backend type without importing the openai SDK (~0.5 s)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from imagen.plugins import hookimpl

if TYPE_CHECKING:
    from imagen import Backend, BackendConfig, BackendFactory


def openai_backend(config: BackendConfig) -> Backend:
    """OpenAI Images: the gpt-image models, sized and priced per model."""
    from imagen_openai.backend import OpenAIBackend

    return OpenAIBackend(config)


@hookimpl
def imagen_backend() -> Mapping[str, BackendFactory]:
    return {"openai": openai_backend}
