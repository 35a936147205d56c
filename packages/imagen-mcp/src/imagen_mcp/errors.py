"""imagen's errors as MCP tool errors: one sentence a model can read and act on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError

from imagen import secrets
from imagen.errors import Cancelled, ImagenError, TransientBackendError

__all__ = ["refusals"]


@contextmanager
def refusals() -> Iterator[None]:
    """Turn imagen's errors raised inside into tool errors (``is_error`` results).

    Anything else a tool raises is a bug: the SDK answers with a generic tool error and
    logs it, and the server carries on.
    """
    try:
        yield
    except Cancelled as exc:
        raise ToolError(f"the generation was cancelled ({exc})") from None
    except TransientBackendError as exc:
        message = secrets.redact(str(exc))
        raise ToolError(f"{message} (a temporary failure: trying again later may work)") from None
    except ImagenError as exc:
        raise ToolError(secrets.redact(str(exc))) from None
