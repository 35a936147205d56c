"""Config sections: how a module declares the keys of its part of ``imagen.yaml``.

Each top-level section (``output:``, ``usage:``, a plugin's ``worker:``) is declared by the
module that reads it, as a :class:`Section` offered through the ``imagen_config_sections``
hook; :mod:`imagen.config` holds only the mechanism and checks every section the same way.
This module imports nothing heavy: plugin modules, which load at every start, use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from imagen.errors import ConfigError

if TYPE_CHECKING:
    from imagen.yamlfile import Located

__all__ = [
    "Section",
    "SectionData",
    "Setting",
    "check_keys",
    "config_sections",
    "declared_sections",
]


# NamedTuples, not dataclasses: plugin modules load these at every start, and a frozen
# dataclass costs ~0.9 ms to create (its methods are generated and compiled).


class Setting(NamedTuple):
    """One key of a config section: its type, default and meaning."""

    kind: type | tuple[type, ...]
    default: Any
    doc: str


class SectionData(NamedTuple):
    """A section as written, checked key by key, handed to its :attr:`Section.parse`."""

    name: str
    values: dict[str, Any]
    """Every key's value, or its default where the file leaves it out. For a section of
    named entries (:attr:`Section.named`), a mapping of entry name to such values."""
    source: Located
    """The section's data and the lines of its keys (relative to the section)."""
    environ: Mapping[str, str] = MappingProxyType({})

    @property
    def present(self) -> bool:
        """Whether the file holds the section at all (``parse`` also runs when it does not)."""
        return self.source.data is not None

    def error(self, message: str, key: str) -> ConfigError:
        """A :class:`ConfigError` about ``key`` (a path inside the section), with its line."""
        return section_error(self.source, self.name, message, key)


class Section(NamedTuple):
    """A top-level section of ``imagen.yaml``, declared where it is read.

    :param name: the top-level key.
    :param doc: one line saying what the section is for (the docs' top-level table).
    :param keys: every key the section may hold; any other key is an error naming these.
    :param named: the section maps names of the user's choosing to entries that hold
        ``keys`` (``styles.NAME``), rather than holding ``keys`` itself.
    :param parse: checks beyond each key's type (ranges, formats, what keys need each
        other), run whenever the file is loaded, so ``imagen config check`` and every command
        report them; it raises :meth:`SectionData.error` and returns the section's typed
        value (:meth:`imagen.config.Config.section`). It must not need credentials: a
        variable a key names is looked up by the code that uses it.
    :param show: what ``imagen config show`` prints for the value ``parse`` returned
        (default: every key's value as written, or its default).
    """

    name: str
    doc: str
    keys: Mapping[str, Setting]
    named: bool = False
    parse: Callable[[SectionData], Any] | None = None
    show: Callable[[Any], Any] | None = None


_KINDS = {
    str: "a string",
    bool: "true or false",
    int: "a whole number",
    dict: "a mapping",
    list: "a list",
    (int, float): "a number",
}


def check_keys(
    raw: Any, settings: Mapping[str, Setting], error: Callable[[str, str], ConfigError]
) -> dict[str, Any]:
    """Check a mapping against ``settings``; return every setting's value or default.

    :param error: makes the error for one key (``error(message, key)``); ``key`` is ``""``
        when ``raw`` itself is not a mapping.
    :raises ConfigError: for an unknown key (naming the known ones) or a mistyped value.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise error("must be a mapping", "")
    for name in raw:
        if name not in settings:
            known = ", ".join(settings) or "none: leave the section out"
            raise error(f"unknown key (known: {known})", str(name))
    values = {}
    for name, setting in settings.items():
        item = raw.get(name)
        if item is None:
            values[name] = setting.default
            continue
        kinds = setting.kind if isinstance(setting.kind, tuple) else (setting.kind,)
        if not isinstance(item, setting.kind) or (isinstance(item, bool) and bool not in kinds):
            want = _KINDS.get(setting.kind, str(setting.kind))  # type: ignore[call-overload]
            raise error(f"must be {want}, not {item!r}", name)
        values[name] = item
    return values


def section_error(source: Located, name: str, message: str, key: str) -> ConfigError:
    """An error about ``key`` of section ``name``, whose lines ``source`` holds."""
    line = source.line(key) or source.lines.get("")  # a missing key: the section's line
    path = f"{name}.{key}" if key else name
    return ConfigError(message, key=path, file=source.file, line=line)


def check_section(
    section: Section, source: Located, environ: Mapping[str, str]
) -> tuple[dict[str, Any], Any]:
    """Check ``source`` (the section's data and lines) against ``section``.

    :return: every key's value (or default), and the section's typed value.
    """

    def error(message: str, key: str) -> ConfigError:
        return section_error(source, section.name, message, key)

    if section.named:
        entries = source.data if source.data is not None else {}
        if not isinstance(entries, dict):
            raise error("must be a mapping of names to entries", "")
        values: dict[str, Any] = {}
        for entry, raw in entries.items():
            if not isinstance(entry, str) or not entry.strip():
                raise error("names must be non-empty strings", "")
            values[entry] = check_keys(
                raw, section.keys, lambda message, key, e=entry: error(message, _join(e, key))
            )
    else:
        values = check_keys(source.data, section.keys, error)
    data = SectionData(section.name, values, source, environ)
    return values, section.parse(data) if section.parse is not None else values


def _join(entry: str, key: str) -> str:
    return f"{entry}.{key}" if key else entry


def config_sections() -> dict[str, Section]:
    """Every section the loaded plugins declare (imagen-core's own first), by name."""
    return {section.name: section for section, _ in declared_sections()}


def declared_sections() -> list[tuple[Section, str | None]]:
    """Every declared section, with the distribution that declares it.

    imagen-core's own come first, then each other distribution's, by name; a plugin that
    declares a name already taken is reported and left out.
    """
    from imagen.plugins import (
        CORE_DISTRIBUTION,
        LoadFailure,
        get_plugin_manager,
        origin,
        record_failure,
    )

    hook = get_plugin_manager().hook.imagen_config_sections

    def order(impl: Any) -> tuple[bool, str]:
        distribution = origin(impl.plugin_name)[0] or ""
        return distribution != CORE_DISTRIBUTION, distribution

    found: list[tuple[Section, str | None]] = []
    owners: dict[str, str] = {}
    for impl in sorted(hook.get_hookimpls(), key=order):  # stable: registration order within
        distribution, _ = origin(impl.plugin_name)
        try:
            offered = list(impl.function())
        except Exception as exc:  # noqa: BLE001 (a broken plugin must not break imagen)
            reason = f"imagen_config_sections: {type(exc).__name__}: {exc}"
            record_failure(LoadFailure(impl.plugin_name, distribution, reason))
            continue
        for section in offered:
            if not isinstance(section, Section):
                reason = "imagen_config_sections must return imagen.sections.Section objects"
                record_failure(LoadFailure(impl.plugin_name, distribution, reason))
                continue
            if section.name in owners or section.name in ("backends", "default_backend"):
                taken = owners.get(section.name, "imagen-core")
                reason = f'config section "{section.name}" is already declared by {taken}'
                record_failure(LoadFailure(impl.plugin_name, distribution, reason))
                continue
            found.append((section, distribution))
            owners[section.name] = impl.plugin_name
    return found
