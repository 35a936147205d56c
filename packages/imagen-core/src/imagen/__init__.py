"""imagen: turn a prompt into image files through any image-generation service.

The names here are what plugin authors and embedding programs use; everything else is
internal. Importing this package is cheap: no backend, no SDK, no YAML parser; each name
is imported from its module the first time it is used (``imagen --help`` needs none).
"""

import typing

if typing.TYPE_CHECKING:
    from imagen.backend import Backend, BackendConfig, BackendFactory
    from imagen.blocking import run_blocking
    from imagen.context import Context, Progress
    from imagen.errors import (
        BackendError,
        BudgetExceededError,
        Cancelled,
        ConfigError,
        CredentialRejectedError,
        DeadlineExceeded,
        ImagenError,
        OutputError,
        PermanentBackendError,
        PossiblyBilledError,
        RequestError,
        RunLostError,
        TransientBackendError,
    )
    from imagen.plugins import hookimpl
    from imagen.request import IGNORED_KEY, GeneratedImage, Request, Result
    from imagen.upstream import ModelInfo

__version__ = "0.1.0"

__all__ = [
    "IGNORED_KEY",
    "Backend",
    "BackendConfig",
    "BackendError",
    "BackendFactory",
    "BudgetExceededError",
    "Cancelled",
    "ConfigError",
    "Context",
    "CredentialRejectedError",
    "DeadlineExceeded",
    "GeneratedImage",
    "ImagenError",
    "ModelInfo",
    "OutputError",
    "PermanentBackendError",
    "PossiblyBilledError",
    "Progress",
    "Request",
    "RequestError",
    "Result",
    "RunLostError",
    "TransientBackendError",
    "__version__",
    "hookimpl",
    "run_blocking",
]

_HOMES = {
    "Backend": "imagen.backend",
    "BackendConfig": "imagen.backend",
    "BackendFactory": "imagen.backend",
    "Context": "imagen.context",
    "Progress": "imagen.context",
    "IGNORED_KEY": "imagen.request",
    "GeneratedImage": "imagen.request",
    "Request": "imagen.request",
    "Result": "imagen.request",
    "ModelInfo": "imagen.upstream",
    "hookimpl": "imagen.plugins",
    "run_blocking": "imagen.blocking",
}


def __getattr__(name: str) -> object:
    import importlib

    home = _HOMES.get(name) or ("imagen.errors" if name in __all__ else None)
    if home is None:
        raise AttributeError(f"module 'imagen' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once: later lookups find it directly
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
