"""The errors imagen raises, and that backends raise for imagen to report.

The tree::

    ImagenError                      anything imagen reports as one line, no traceback
    ├── ConfigError                  imagen.yaml, a backend's slice or a credential is wrong
    │                                (you made a mistake; fix the file and run again)
    ├── RequestError                 the request itself is impossible (an unknown style,
    │                                a size out of bounds, a bad --from image)
    ├── OutputError                  an image could not be written where the config says
    ├── BudgetExceededError          a spending cap would be crossed: refused before the call
    ├── BackendError                 a generation failed upstream (the run failed)
    │   ├── TransientBackendError    worth retrying later (timeouts, 5xx, 429); retry_after,
    │   │                            and sent (the request may have reached the upstream)
    │   └── PermanentBackendError    retrying won't help (bad request, content policy)
    │       ├── PossiblyBilledError  a paid call failed after it was sent: not retried
    │       ├── RunLostError         resume found the upstream run gone (a restart, expiry)
    │       └── CredentialRejectedError  the service refused the credential (401, 403)
    └── Cancelled                    the caller cancelled the run
        └── DeadlineExceeded         the context's deadline passed

Every error carries its facts as attributes; ``str()`` is the sentence a user reads. Each
class has the process exit code the CLI uses for it (see ``docs/cli.md``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BackendError",
    "BudgetExceededError",
    "Cancelled",
    "ConfigError",
    "CredentialRejectedError",
    "DeadlineExceeded",
    "ImagenError",
    "OutputError",
    "PermanentBackendError",
    "PossiblyBilledError",
    "RequestError",
    "RunLostError",
    "TransientBackendError",
]


class ImagenError(Exception):
    """Base of every error imagen reports to a user as one line."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(ImagenError):
    """Configuration is wrong: a file, a key, a backend slice or a credential.

    A backend constructor raises it with ``key`` set to the key of its own slice that is
    wrong (``"base_url"``); imagen adds the backend's name, the file and the line before
    showing it, as ``backend "NAME": <reason> (imagen.yaml:12, backends.NAME.base_url)``.

    :param message: what is wrong, as a user should read it.
    :param key: dotted key path of the offending setting, if there is one.
    :param file: the config file it was read from.
    :param line: 1-based line in that file.
    :param backend: name of the backend instance whose slice is wrong.
    """

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        file: Path | str | None = None,
        line: int | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.file = Path(file) if file is not None else None
        self.line = line
        self.backend = backend

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(f"{self.file}:{self.line}" if self.line else str(self.file))
        if self.key:
            where.append(self.key)
        if self.backend is not None:
            text = f'backend "{self.backend}": {self.message}'
            return f"{text} ({', '.join(where)})" if where else text
        return f"{': '.join(where)}: {self.message}" if where else self.message


class RequestError(ImagenError):
    """The request cannot be made as asked (unknown style, size out of bounds, ...)."""

    exit_code = 2


class OutputError(ImagenError):
    """An image or its sidecar could not be written to the output directory."""

    exit_code = 7


class BackendError(ImagenError):
    """A generation failed in the backend or its upstream service.

    :param message: what went wrong, without credentials or request secrets.
    :param backend: the backend instance name (filled in by imagen when the backend
        leaves it out).
    :param upstream_id: the upstream run's id (prompt id, prediction id), if there was one.
    """

    exit_code = 4

    def __init__(
        self, message: str, *, backend: str | None = None, upstream_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.backend = backend
        self.upstream_id = upstream_id

    def __str__(self) -> str:
        if self.backend:
            return f'backend "{self.backend}": {self.message}'
        return self.message


class TransientBackendError(BackendError):
    """A failure that may go away: a timeout, a dropped connection, 5xx, 429.

    :param retry_after: seconds the upstream asked us to wait before retrying, if it said.
    :param sent: the request may have reached the upstream before it failed (a timeout or
        a dropped connection after sending): repeating a paid call could bill it twice.
    """

    exit_code = 5

    def __init__(
        self,
        message: str,
        *,
        backend: str | None = None,
        upstream_id: str | None = None,
        retry_after: float | None = None,
        sent: bool = False,
    ) -> None:
        super().__init__(message, backend=backend, upstream_id=upstream_id)
        self.retry_after = retry_after
        self.sent = sent


class PermanentBackendError(BackendError):
    """A failure that retrying won't fix: a bad request, a refused prompt, a lost run."""


class PossiblyBilledError(PermanentBackendError):
    """A paid call failed after its request was sent: it may have run (and been billed).

    Never retried automatically; the message tells the user to check before trying again.
    """


class RunLostError(PermanentBackendError):
    """The upstream run to re-attach to no longer exists (the service restarted or expired it).

    ``resume`` raises it; a caller that still wants the images must start a new run.
    """


class CredentialRejectedError(PermanentBackendError):
    """The service refused the credential (an HTTP 401 or 403): a key that is wrong or revoked.

    A generation failure, so the worker fails the job without retrying it, and also a
    configuration mistake, so the CLI exits with code 3 as for any credential: the fix is
    in the environment variable the backend's slice names, not in the request.
    """

    exit_code = 3


class BudgetExceededError(ImagenError):
    """A spending cap (``usage.budget``) would be crossed: refused before calling upstream.

    The message gives the cap, the spend so far in its period and the run's estimate.
    """

    exit_code = 8


class Cancelled(ImagenError):
    """The run was cancelled through its context before it finished."""

    exit_code = 130

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)


class DeadlineExceeded(Cancelled):
    """The run's deadline passed before it finished."""

    def __init__(self, message: str = "deadline exceeded") -> None:
        super().__init__(message)
