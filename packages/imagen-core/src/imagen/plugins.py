"""The plugin manager: finds plugins through the ``imagen`` entry-point group.

imagen-core's own plugins (the built-in backend, the preview step) are published through
the same entry points as third-party ones and load by the same path. A plugin that fails
to import, or whose hook implementations don't match the specs, is reported as one
warning line and left out; the rest of imagen carries on.

``IMAGEN_LOAD_PLUGINS`` (comma-separated entry-point or distribution names) restricts which
third-party plugins load; imagen-core's own always do. Set it empty to load none.

Finding the entry points means importing ``importlib.metadata`` (and with it the email
package) and reading every installed distribution's files: about a fifth of a bare
``imagen --help``. So the list is cached in the user cache directory, keyed by the
``entry_points.txt`` files on ``sys.path`` and their modification times; installing,
removing or upgrading any distribution changes the key, and the next start reads afresh.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import pluggy

from imagen import hookspecs
from imagen.dirs import cache_dir

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

# The record types below are NamedTuples, not dataclasses: this module loads at every start,
# and a frozen dataclass costs ~0.9 ms to create (its methods are generated and compiled).


class PluginInfo(NamedTuple):
    """A loaded plugin, as ``imagen plugins`` shows it."""

    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]


class LoadFailure(NamedTuple):
    """A plugin that could not be loaded, and why (one line)."""

    name: str
    distribution: str | None
    reason: str

    def __str__(self) -> str:
        origin = f" from {self.distribution}" if self.distribution else ""
        return f'plugin "{self.name}"{origin} failed to load: {self.reason}'


class StepFailure(NamedTuple):
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


class _EntryPoint(NamedTuple):
    name: str
    module: str
    distribution: str | None
    version: str | None


def _entry_points() -> list[_EntryPoint]:
    """The installed ``imagen`` entry points: from the cache while nothing has changed."""
    key = _environment_key()
    cache = _cache_file()
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached["key"] == key:
            return [_EntryPoint(*point) for point in cached["points"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache yet, or one from another time: read the environment itself
    points = _read_entry_points()
    _write_cache(cache, {"key": key, "points": [list(p) for p in points]})
    return points


def _read_entry_points() -> list[_EntryPoint]:
    from importlib import metadata

    points = []
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = point.dist
        found = _EntryPoint(
            point.name, point.value, dist.name if dist else None, dist.version if dist else None
        )
        if found not in points:  # a distribution on sys.path twice
            points.append(found)
    return points


def _environment_key() -> list[list[Any]]:
    """Every ``entry_points.txt`` on ``sys.path``, with its modification time."""
    key: list[list[Any]] = [[sys.version]]
    for entry in sys.path:
        try:
            listing = os.scandir(entry or ".")
        except OSError:
            continue
        with listing:
            for item in listing:
                if item.name.endswith((".dist-info", ".egg-info")):
                    path = os.path.join(item.path, "entry_points.txt")
                    try:
                        key.append([path, os.stat(path).st_mtime_ns])
                    except OSError:
                        continue  # a distribution without entry points
    return key


def _cache_file() -> Path:
    environment = f"{zlib.crc32(sys.prefix.encode()):08x}"  # one file a venv (hashlib: 2 ms)
    return cache_dir() / f"entry-points-{environment}.json"


def _write_cache(path: Path, data: dict[str, Any]) -> None:
    """Write the cache atomically; a cache that can't be written is only a slower start."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        import tempfile  # here: it pulls in shutil, random, bz2 and lzma (~5 ms a start)

        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out)
        os.replace(temporary, path)
    except OSError as exc:
        log.debug("could not cache the plugin list in %s: %s", path, exc)


def _load_entry_points(manager: pluggy.PluginManager) -> None:
    wanted = _wanted()
    for point in _entry_points():
        # imagen-core's own plugins are its own modules, and always load.
        own = point.module.partition(".")[0] == "imagen"
        if (
            wanted is not None
            and not own
            and point.name not in wanted
            and point.distribution not in wanted
        ):
            continue
        try:
            module = importlib.import_module(point.module)
            manager.register(module, name=point.name)
        except Exception as exc:  # noqa: BLE001 (a broken plugin must not break imagen)
            record_failure(LoadFailure(point.name, point.distribution, _one_line(exc)))
            continue
        _origins[point.name] = (point.distribution, point.version)
        try:
            manager.check_pending()
        except pluggy.PluginValidationError as exc:
            manager.unregister(name=point.name)
            record_failure(LoadFailure(point.name, point.distribution, _one_line(exc)))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text}"
