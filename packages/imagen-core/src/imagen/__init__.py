"""imagen: turn a prompt into image files through any image-generation service.

The names here are what plugin authors and embedding programs use; everything else is
internal. Importing this package is cheap: no backend, no SDK, no YAML parser.
"""

from imagen.backend import Backend, BackendConfig, BackendFactory
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
]
