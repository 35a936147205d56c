"""Backend types offered by plugins, and building backend instances from config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from imagen.backend import Backend, BackendConfig, BackendFactory
from imagen.errors import ConfigError
from imagen.plugins import LoadFailure, get_plugin_manager, origin, record_failure

__all__ = ["BackendType", "backend_types", "build_backend"]


@dataclass(frozen=True)
class BackendType:
    """A backend type a plugin offers through the ``imagen_backend`` hook."""

    name: str
    factory: BackendFactory
    plugin: str
    distribution: str | None
    version: str | None

    @property
    def summary(self) -> str:
        """The first line of the factory's docstring, or ""."""
        doc = (self.factory.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


_types: dict[str, BackendType] | None = None


def backend_types() -> dict[str, BackendType]:
    """Every installed backend type, by name."""
    global _types
    if _types is None:
        _types = _collect()
    return _types


def reset() -> None:
    """Forget the collected types (after a plugin was registered or removed at runtime)."""
    global _types
    _types = None


def _collect() -> dict[str, BackendType]:
    manager = get_plugin_manager()
    types: dict[str, BackendType] = {}
    # pluggy calls the last registered first; walk in registration order so the first
    # plugin registered keeps a clashing name.
    for impl in manager.hook.imagen_backend.get_hookimpls():
        distribution, version = origin(impl.plugin_name)
        try:
            offered = impl.function()
        except Exception as exc:  # noqa: BLE001 (a broken plugin must not break imagen)
            record_failure(LoadFailure(impl.plugin_name, distribution, f"imagen_backend: {exc}"))
            continue
        if not isinstance(offered, Mapping):
            reason = "imagen_backend must return a mapping of type name to factory"
            record_failure(LoadFailure(impl.plugin_name, distribution, reason))
            continue
        for name, factory in offered.items():
            if name in types:
                reason = f'backend type "{name}" is already offered by {types[name].plugin}'
                record_failure(LoadFailure(impl.plugin_name, distribution, reason))
                continue
            types[name] = BackendType(name, factory, impl.plugin_name, distribution, version)
    return types


def build_backend(config: BackendConfig) -> Backend:
    """Build the backend instance ``config`` describes, with its type's factory.

    :raises ConfigError: the type is unknown (the message lists the installed ones) or the
        factory rejected the slice.
    """
    types = backend_types()
    kind = types.get(config.type)
    if kind is None:
        installed = ", ".join(sorted(types)) or "none"
        raise config.error(f'unknown backend type "{config.type}" (installed: {installed})', "type")
    try:
        backend = kind.factory(config)
    except ConfigError as exc:
        if exc.backend is None:  # a bare ConfigError from the adapter: locate it
            raise config.error(exc.message, exc.key) from exc
        raise
    except ImportError as exc:
        raise config.error(f"cannot load backend type {config.type!r}: {exc}") from exc
    if not isinstance(backend, Backend):
        raise config.error(
            f"the {config.type!r} factory returned {type(backend).__name__}, not a Backend"
        )
    return backend
