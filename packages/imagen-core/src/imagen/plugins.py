"""The plugin manager: finds plugins through the ``imagen`` entry-point group.

imagen-core's own plugins (the built-in backend, the preview step) are published through
the same entry points as third-party ones and load by the same path. A plugin that fails
to import, or whose hook implementations don't match the specs, is reported as one
warning line and left out; the rest of imagen carries on.

``IMAGEN_LOAD_PLUGINS`` (comma-separated entry-point or distribution names) restricts which
third-party plugins load; imagen-core's own always do. Set it empty to load none.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from imagen import hookspecs

__all__ = [
    "ENTRY_POINT_GROUP",
    "LoadFailure",
    "PluginInfo",
    "StepFailure",
    "call_each",
    "get_plugin_manager",
    "hookimpl",
    "load_failures",
    "plugin_infos",
]

ENTRY_POINT_GROUP = "imagen"
CORE_DISTRIBUTION = "imagen-core"
hookimpl = pluggy.HookimplMarker("imagen")
"""Decorator that marks a function of a plugin module as a hook implementation."""

log = logging.getLogger("imagen")


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin, as ``imagen plugins`` shows it."""

    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]


@dataclass(frozen=True)
class LoadFailure:
    """A plugin that could not be loaded, and why (one line)."""

    name: str
    distribution: str | None
    reason: str

    def __str__(self) -> str:
        origin = f" from {self.distribution}" if self.distribution else ""
        return f'plugin "{self.name}"{origin} failed to load: {self.reason}'


@dataclass(frozen=True)
class StepFailure:
    """A hook implementation that raised during a pipeline step."""

    plugin: str
    hook: str
    error: BaseException

    def __str__(self) -> str:
        return f"{self.plugin}: {self.error}"


_manager: pluggy.PluginManager | None = None
_failures: list[LoadFailure] = []
_origins: dict[str, tuple[str | None, str | None]] = {}


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with every installed plugin loaded."""
    global _manager
    if _manager is None:
        manager = pluggy.PluginManager("imagen")
        manager.add_hookspecs(hookspecs)
        _load_entry_points(manager)
        _manager = manager
    return _manager


def load_failures() -> list[LoadFailure]:
    """The plugins that failed to load in this process."""
    get_plugin_manager()
    return list(_failures)


def record_failure(failure: LoadFailure) -> None:
    """Report a plugin problem once, as a warning line, and remember it."""
    _failures.append(failure)
    log.warning("%s", failure)


def origin(plugin_name: str) -> tuple[str | None, str | None]:
    """The (distribution, version) a registered plugin came from, or (None, None)."""
    return _origins.get(plugin_name, (None, None))


def plugin_infos() -> list[PluginInfo]:
    """Every registered plugin, with its distribution, version and implemented hooks."""
    manager = get_plugin_manager()
    infos = []
    for name, plugin in manager.list_name_plugin():
        if plugin is None:
            continue
        callers = manager.get_hookcallers(plugin) or []
        distribution, version = origin(name)
        infos.append(
            PluginInfo(name, distribution, version, tuple(sorted(c.name for c in callers)))
        )
    return sorted(infos, key=lambda info: (info.distribution != CORE_DISTRIBUTION, info.name))


def call_each(hook_name: str, **kwargs: Any) -> list[StepFailure]:
    """Call every implementation of ``hook_name``, isolating their failures.

    pluggy stops a hook call at the first exception; a pipeline step must not keep the
    next step (preview, usage) from running, so each implementation is called on its own.
    Implementations run in pluggy's order (last registered first).
    """
    caller = getattr(get_plugin_manager().hook, hook_name)
    failures = []
    for impl in reversed(caller.get_hookimpls()):
        try:
            impl.function(*(kwargs[arg] for arg in impl.argnames))
        except Exception as exc:  # noqa: BLE001 (one failing step must not stop the next)
            failures.append(StepFailure(impl.plugin_name, hook_name, exc))
    return failures


def _wanted() -> set[str] | None:
    raw = os.environ.get("IMAGEN_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _entry_points() -> list[metadata.EntryPoint]:
    seen: set[tuple[str | None, str]] = set()
    points = []
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = point.dist.name if point.dist else None
        if (dist, point.name) not in seen:  # a distribution on sys.path twice
            seen.add((dist, point.name))
            points.append(point)
    return points


def _load_entry_points(manager: pluggy.PluginManager) -> None:
    wanted = _wanted()
    for point in _entry_points():
        dist = point.dist.name if point.dist else None
        version = point.dist.version if point.dist else None
        if (
            wanted is not None
            and dist != CORE_DISTRIBUTION
            and point.name not in wanted
            and dist not in wanted
        ):
            continue
        try:
            module = importlib.import_module(point.value)
            manager.register(module, name=point.name)
        except Exception as exc:  # noqa: BLE001 (a broken plugin must not break imagen)
            record_failure(LoadFailure(point.name, dist, _one_line(exc)))
            continue
        _origins[point.name] = (dist, version)
        try:
            manager.check_pending()
        except pluggy.PluginValidationError as exc:
            manager.unregister(name=point.name)
            record_failure(LoadFailure(point.name, dist, _one_line(exc)))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text}"
