"""The Backend contract: what an adapter implements and what it is built from.

An adapter subclasses :class:`Backend`. imagen builds one instance per named entry under
``backends:`` in ``imagen.yaml``, handing it a :class:`BackendConfig`: the entry's own keys
(never ``type``, never another section) plus the helpers that turn a bad value into a
:class:`~imagen.errors.ConfigError` naming the key.

``generate`` is a plain blocking call. Callers get concurrency by running it in a thread,
and stop it by cancelling its :class:`~imagen.context.Context`.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar, overload

from imagen import secrets
from imagen.context import Context
from imagen.errors import ConfigError
from imagen.inputs import InputSupport
from imagen.request import Request, Result
from imagen.upstream import ModelInfo

__all__ = ["Backend", "BackendConfig", "BackendFactory"]

T = TypeVar("T")
_MISSING: Any = object()


@dataclass(frozen=True)
class BackendConfig:
    """One backend instance's slice of ``imagen.yaml``, with typed accessors.

    Every accessor raises :class:`~imagen.errors.ConfigError` naming the key, the file and
    the line, so an adapter never has to format a location itself.

    :param name: the instance's name (the key under ``backends:``).
    :param type: the backend type it was built for.
    :param settings: the slice's keys, ``type`` removed.
    :param file: the config file it came from, or None for built-in defaults.
    :param lines: the 1-based line of each key in ``file``; ``""`` is the instance itself.
    :param environ: where credentials are looked up (``os.environ`` unless a test says).
    """

    name: str
    type: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    file: Path | None = None
    lines: Mapping[str, int] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @property
    def base_dir(self) -> Path:
        """The directory relative paths in the slice are resolved against."""
        return self.file.parent if self.file is not None else Path.cwd()

    def error(self, message: str, key: str | None = None) -> ConfigError:
        """A :class:`ConfigError` about ``key`` of this slice (or the slice as a whole)."""
        line = self.lines.get(key or "") or self.lines.get("")
        path = f"backends.{self.name}" + (f".{key}" if key else "")
        return ConfigError(message, key=path, file=self.file, line=line, backend=self.name)

    @overload
    def get(self, key: str, kind: type[T]) -> T | None: ...
    @overload
    def get(self, key: str, kind: type[T], default: T) -> T: ...

    def get(self, key: str, kind: type[T], default: Any = None) -> Any:
        """The value of ``key`` if it is a ``kind``, ``default`` when absent.

        ``float`` accepts whole numbers too; ``bool`` is never taken for ``int``.
        """
        if key not in self.settings or self.settings[key] is None:
            return default
        return self._typed(key, self.settings[key], kind)

    def require(self, key: str, kind: type[T]) -> T:
        """The value of ``key``, which must be present and a ``kind``."""
        if key not in self.settings or self.settings[key] is None:
            raise self.error(f'"{key}" is required', key)
        return self._typed(key, self.settings[key], kind)

    def choice(self, key: str, choices: Iterable[str], default: str | None = None) -> str | None:
        """The value of ``key``, which must be one of ``choices``."""
        allowed = list(choices)
        value = self.get(key, str, default)
        if value is not None and value not in allowed:
            raise self.error(f"must be one of {', '.join(allowed)}, not {value!r}", key)
        return value

    def path(self, key: str, *, must_exist: bool = True) -> Path | None:
        """The path in ``key``, ``~`` expanded, relative to the config file's directory."""
        raw = self.get(key, str)
        if raw is None:
            return None
        path = (self.base_dir / os.path.expanduser(raw)).resolve()
        if must_exist and not path.exists():
            raise self.error(f"{path} does not exist", key)
        return path

    def credential(self, key: str, default_env: str | None = None) -> str:
        """The credential in the environment variable that ``key`` names; it must be set.

        ``key`` holds the variable's *name* (``api_key_env: OPENAI_API_KEY``), never the
        secret itself; ``default_env`` is the variable read when the slice leaves ``key``
        out. The value is registered so imagen scrubs it (and its base64 form) from every
        message, sidecar and log line.

        :raises ConfigError: about ``key``: no variable is named, or the variable is unset
            or empty (the message names the variable, never its value).
        """
        var = self._credential_var(key, default_env)
        if var is None:
            raise self.error(f'"{key}" must name the environment variable holding it', key)
        value = self.environ.get(var)
        if not value:
            raise self.error(f"environment variable {var} is not set", key)
        secrets.register(value)
        return value

    def optional_credential(self, key: str, default_env: str | None = None) -> str | None:
        """Like :meth:`credential`, for a credential the upstream may do without.

        None when the slice leaves ``key`` out and ``default_env`` is None or unset (a
        ComfyUI on the local network needs no token). A variable the user *named* in the
        slice must be set, though: asking for a credential and getting none is a mistake,
        so it is the same :class:`ConfigError` as :meth:`credential` raises.
        """
        if key in self.settings and self.settings[key] is not None:
            return self.credential(key)
        if default_env is None or not self.environ.get(default_env):
            return None
        return self.credential(key, default_env)

    def has_credential(self, key: str, default_env: str | None = None) -> bool:
        """Whether a credential is configured: ``key`` (or ``default_env``) names a set variable.

        Reads no value and raises nothing for an unset variable: use it to choose between
        ways of signing in before calling :meth:`credential`.
        """
        var = self._credential_var(key, default_env, strict=False)
        return bool(var and self.environ.get(var))

    def secret(
        self, key: str, default_var: str | None = None, *, required: bool = True
    ) -> str | None:
        """Deprecated: use :meth:`credential` or :meth:`optional_credential`.

        ``secret(key, var)`` is ``credential(key, var)``; ``secret(key, var,
        required=False)`` returns None where the variable is unset, even one named in the
        slice, which hides a typo: :meth:`optional_credential` refuses that.
        """
        if required:
            return self.credential(key, default_var)
        if not self.has_credential(key, default_var):
            return None
        return self.credential(key, default_var)

    def _credential_var(
        self, key: str, default_env: str | None, *, strict: bool = True
    ) -> str | None:
        raw = self.settings.get(key)
        if raw is None:
            return default_env
        if not isinstance(raw, str) or not raw:
            if strict:
                raise self.error(
                    f"must be the name of an environment variable, not {_describe(raw)}", key
                )
            return None
        return raw

    def check_keys(self, known: Iterable[str]) -> None:
        """Reject keys of the slice that are not in ``known``, naming them."""
        allowed = set(known)
        for key in self.settings:
            if key not in allowed:
                raise self.error(f'unknown key "{key}" (known: {", ".join(sorted(allowed))})', key)

    def _typed(self, key: str, value: Any, kind: type[T]) -> T:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)  # type: ignore[return-value]
        if isinstance(value, bool) and kind is not bool:
            raise self.error(f"must be {_article(kind)}, not a boolean", key)
        if not isinstance(value, kind):
            raise self.error(f"must be {_article(kind)}, not {_describe(value)}", key)
        return value


def _article(kind: type) -> str:
    names = {
        str: "a string",
        int: "a whole number",
        float: "a number",
        bool: "true or false",
        dict: "a mapping",
        list: "a list",
    }
    return names.get(kind, f"a {kind.__name__}")


def _describe(value: Any) -> str:
    return (
        f"{_article(type(value))} ({value!r})"
        if not isinstance(value, dict | list)
        else _article(type(value))
    )


class Backend(abc.ABC):
    """Base class of every backend.

    Subclasses implement :meth:`generate`, and :meth:`resume` when their upstream keeps
    runs that can be re-attached to. Construction validates the slice and raises
    :class:`~imagen.errors.ConfigError` (through ``config.error``) for anything wrong;
    it should not call the network.

    :cvar reproducible: True when the same request and seed give the same pixels again
        (the built-in backend does; most hosted models don't). Recorded in every sidecar,
        so ``imagen info`` can say what a replay will give.
    """

    reproducible: ClassVar[bool] = False

    def __init__(self, config: BackendConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        """The instance's name in ``imagen.yaml``."""
        return self.config.name

    @abc.abstractmethod
    def generate(self, request: Request, context: Context) -> Result:
        """Make ``request.count`` images for ``request``; block until they are ready.

        Check ``context`` between steps (``context.check()``) and stop promptly when it is
        cancelled, raising :class:`~imagen.errors.Cancelled`; report progress with
        ``context.progress(...)`` and the upstream run's id with
        ``context.report_run_id(...)`` as soon as it is known. Raise
        :class:`~imagen.errors.TransientBackendError` or
        :class:`~imagen.errors.PermanentBackendError` for upstream failures.
        """

    def check(self, request: Request) -> None:  # noqa: B027 (optional: most accept all)
        """Refuse ``request`` now if this backend can never make it; the default accepts all.

        Raise :class:`~imagen.errors.RequestError` naming the field (``"width 13 is below
        the smallest, 64"``) for what no retry would fix: sizes out of bounds, option values
        of the wrong kind. imagen calls it before :meth:`generate` and before queueing a job,
        so a bad request costs nothing and leaves no job behind. It must not call the
        network, nor raise for what only the upstream can judge.
        """

    def options(self) -> Mapping[str, str] | None:
        """The options (``--opt KEY=VALUE``) this instance knows, each with what it does.

        imagen refuses a request carrying any other option before calling :meth:`check` or
        :meth:`generate`, naming the closest known one, so a misspelt option never runs a
        paid request without it. Return ``{}`` when the backend takes no options. The
        default, None, accepts any option: for an upstream whose inputs cannot be listed
        without the network (an arbitrary hosted model), where options go through as they
        are. It may depend on the instance's configuration; it must not call the network.
        """
        return None

    def input_support(self) -> InputSupport:
        """What input images this instance accepts (by default none).

        imagen refuses a request with inputs this does not accept before calling
        :meth:`generate`, naming the backend; a request's ``strength`` that this does not
        honour is listed as ignored. It may depend on the instance's configuration (a
        Replicate model, a ComfyUI workflow's nodes); it must not call the network.
        """
        return InputSupport()

    def probe(self) -> str:
        """Contact the upstream, without generating anything billable; say what answered.

        ``imagen config check --online`` calls it for every instance: check that the
        service answers and accepts the credential (and, where cheap, that the configured
        model exists) with calls that cost nothing, such as listing models. Return one line
        ("ComfyUI 0.3.64 answers; checkpoint sdxl.safetensors is there"); raise
        :class:`~imagen.errors.CredentialRejectedError`,
        :class:`~imagen.errors.TransientBackendError` or
        :class:`~imagen.errors.PermanentBackendError` for what is wrong. Optional.
        """
        raise NotImplementedError(f"backend type {self.config.type!r} cannot be checked online")

    def models(self) -> list[ModelInfo]:
        """What this instance can use, as the upstream lists it (``imagen models``).

        ComfyUI's checkpoints and LoRAs, a Replicate model's versions, OpenAI's image
        models; mark the configured one ``current``. It calls the network; it must start
        nothing billable. Optional.
        """
        raise NotImplementedError(f"backend type {self.config.type!r} cannot list models")

    @property
    def supports_probe(self) -> bool:
        """True when this backend implements :meth:`probe`."""
        return type(self).probe is not Backend.probe

    @property
    def supports_models(self) -> bool:
        """True when this backend implements :meth:`models`."""
        return type(self).models is not Backend.models

    def resume(self, run_id: str, request: Request, context: Context) -> Result:
        """Re-attach to the upstream run ``run_id`` that :meth:`generate` started.

        Follow it to its end and return its images, exactly as ``generate`` would have, so a
        caller that lost track of a run (a crash, a restart) never pays for it twice. Raise
        :class:`~imagen.errors.RunLostError` when the run is gone upstream.
        Backends whose upstream keeps no runs leave this unimplemented.
        """
        raise NotImplementedError(f"backend type {self.config.type!r} cannot resume runs")

    def estimate_cost(self, request: Request) -> float | None:
        """What ``request`` would cost in USD, from the adapter's price table; None if unknown.

        Called before :meth:`generate` when spending caps are configured: a run whose
        estimate would cross a cap is refused without calling the upstream. Must not call
        the network. Estimate on the high side when the price depends on what the run does.
        """
        return None

    @property
    def supports_resume(self) -> bool:
        """True when this backend implements :meth:`resume`."""
        return type(self).resume is not Backend.resume

    def close(self) -> None:  # noqa: B027 (optional: most backends hold nothing to release)
        """Release connections and other resources. Called once, when imagen is done."""


BackendFactory = Callable[[BackendConfig], Backend]
"""What the ``imagen_backend`` hook maps each type name to: a callable taking the slice.

Import the upstream SDK inside it (or in the module it imports), never at plugin import.
"""
