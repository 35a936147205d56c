"""``imagen.yaml``: where it is found, what it may hold, and its validation.

Search order: ``--config``, then ``$IMAGEN_CONFIG``, then ``./imagen.yaml``, then
``$XDG_CONFIG_HOME/imagen/imagen.yaml`` (``~/.config/imagen/imagen.yaml``). With no file at
all imagen runs on built-in defaults: the offline ``mock`` backend, images saved to
``~/Pictures/imagen``.

Every error names the file, the line and the key path. A backend instance's slice is
handed to its adapter untouched except for ``type``: validating it is the adapter's job.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagen import secrets
from imagen.backend import BackendConfig
from imagen.dirs import config_dir, expand_path
from imagen.errors import ConfigError, RequestError
from imagen.sections import Section, Setting, check_keys, check_section, config_sections
from imagen.sections import section_error as _section_error
from imagen.yamlfile import Located, load

if TYPE_CHECKING:
    from imagen.output_settings import OutputSettings
    from imagen.preview import PreviewSettings
    from imagen.styles import Style

__all__ = [
    "BUILTIN_BACKEND",
    "Config",
    "Setting",
    "expand_path",
    "find_config_file",
    "load_config",
    "parse_config",
    "top_level_keys",
]

FILE_NAME = "imagen.yaml"
BUILTIN_BACKEND = "mock"
"""The instance of the built-in offline backend that exists unless a config takes the name."""

# The keys the mechanism reads itself; every other top-level key is a declared section.
OWN_KEYS: dict[str, str] = {
    "default_backend": "name of the backend instance used when --backend is not given",
    "backends": "named backend instances, each with a `type` and that type's own keys",
}


def top_level_keys() -> dict[str, str]:
    """Every top-level key the loaded plugins know, with its meaning."""
    return {**OWN_KEYS, **{name: s.doc for name, s in config_sections().items()}}


@dataclass(frozen=True)
class Config:
    """A loaded, validated ``imagen.yaml`` (or the built-in defaults)."""

    file: Path | None
    default_backend: str
    backends: Mapping[str, BackendConfig]
    sections: Mapping[str, Located] = field(default_factory=dict)
    """The sections the file holds, with the lines of their keys."""
    declared: Mapping[str, Section] = field(default_factory=dict, repr=False)
    values: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """Each declared section's keys, with the file's values or the defaults."""
    parsed: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """Each declared section's typed value (what its ``parse`` returned)."""

    @property
    def output(self) -> OutputSettings:
        """The ``output:`` section."""
        return self.section("output")  # type: ignore[no-any-return]

    @property
    def preview(self) -> PreviewSettings:
        """The ``preview:`` section."""
        return self.section("preview")  # type: ignore[no-any-return]

    @property
    def styles(self) -> Mapping[str, Style]:
        """The style presets, by name."""
        return self.section("styles")  # type: ignore[no-any-return]

    def section(self, name: str) -> Any:
        """Section ``name``, checked: what its :attr:`~imagen.sections.Section.parse` returned.

        :raises KeyError: no loaded plugin declares a section of that name.
        """
        try:
            return self.parsed[name]
        except KeyError:
            known = ", ".join(self.parsed)
            raise KeyError(
                f"no loaded plugin declares a {name!r} section (known: {known})"
            ) from None

    def backend(self, name: str | None = None) -> BackendConfig:
        """The slice of backend instance ``name`` (the default one when None)."""
        name = name or self.default_backend
        try:
            return self.backends[name]
        except KeyError:
            known = ", ".join(self.backends)
            where = f" in {self.file}" if self.file else ""
            raise ConfigError(
                f'no backend instance "{name}"{where} (configured: {known})'
            ) from None

    def section_values(self, name: str, settings: Mapping[str, Setting]) -> dict[str, Any]:
        """Section ``name`` checked against ``settings``: every setting's value or default.

        :raises ConfigError: naming the file, line and key of an unknown or mistyped key.
        """
        section = self.sections.get(name)
        if section is None:
            return {key: setting.default for key, setting in settings.items()}
        return check_keys(
            section.data,
            settings,
            lambda message, key: _section_error(section, name, message, key),
        )

    def section_error(self, name: str, message: str, key: str) -> ConfigError:
        """An error about ``key`` of section ``name``, naming its file and line.

        :param key: the key's path inside the section, such as ``api_keys.ab12``.
        """
        section = self.sections.get(name)
        if section is None:
            return ConfigError(message, key=f"{name}.{key}", file=self.file)
        return _section_error(section, name, message, key)

    def style(self, name: str) -> Style:
        """The style preset ``name``."""
        try:
            return self.styles[name]
        except KeyError:
            known = ", ".join(self.styles) or "none are configured"
            raise RequestError(f'unknown style "{name}" (known: {known})') from None

    def to_data(self) -> dict[str, Any]:
        """The resolved config as YAML-ready data, secrets redacted."""
        data: dict[str, Any] = {
            "default_backend": self.default_backend,
            "backends": {name: {"type": b.type, **b.settings} for name, b in self.backends.items()},
        }
        for name, section in self.declared.items():
            if section.show is not None:
                data[name] = section.show(self.parsed[name])
            elif name in self.sections or section.named:
                data[name] = self.values[name]
        return secrets.redact_config(data)


def user_config_path(environ: Mapping[str, str] = os.environ) -> Path:
    """The per-user config file: ``$XDG_CONFIG_HOME/imagen/imagen.yaml``."""
    return config_dir(environ) / FILE_NAME


def find_config_file(
    explicit: Path | None = None, environ: Mapping[str, str] = os.environ
) -> tuple[Path | None, str]:
    """The config file to use and how it was chosen, or (None, reason) for the defaults."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError("no such config file (given with --config)", file=explicit)
        return explicit.resolve(), "--config"
    if environ.get("IMAGEN_CONFIG"):
        path = Path(environ["IMAGEN_CONFIG"]).expanduser()
        if not path.is_file():
            raise ConfigError("no such config file (named by $IMAGEN_CONFIG)", file=path)
        return path.resolve(), "$IMAGEN_CONFIG"
    local = Path.cwd() / FILE_NAME
    if local.is_file():
        return local, "the current directory"
    user = user_config_path(environ)
    if user.is_file():
        return user, "the user config directory"
    return None, "no config file found: built-in defaults"


def load_config(explicit: Path | None = None, environ: Mapping[str, str] = os.environ) -> Config:
    """Find, read and validate the config; the built-in defaults when there is no file."""
    path, _ = find_config_file(explicit, environ)
    return parse_config(load(path) if path else Located({}), environ)


def parse_config(source: Located, environ: Mapping[str, str] = os.environ) -> Config:
    """Validate already-parsed YAML data: every section the loaded plugins declare."""
    data = source.data if source.data is not None else {}
    if not isinstance(data, dict):
        raise source.error("the file must hold a mapping of sections (output:, backends:, ...)", "")
    declared = config_sections()
    for key in data:
        if key not in OWN_KEYS and key not in declared:
            known = ", ".join([*OWN_KEYS, *declared])
            raise source.error(
                f"unknown top-level key (known: {known}; a plugin's section is known once the "
                "plugin is installed: imagen plugins lists them)",
                str(key),
            )

    backends = _backends(source, data.get("backends"), environ)
    default = data.get("default_backend")
    if default is None:
        default = next(iter(backends))
    elif not isinstance(default, str):
        raise source.error("must be the name of a backend instance", "default_backend")
    elif default not in backends:
        known = ", ".join(backends)
        raise source.error(
            f'no backend instance "{default}" (configured: {known})', "default_backend"
        )

    sections, values, parsed = {}, {}, {}
    for name, section in declared.items():
        part = Located(data.get(name), source.file, source.lines_under(name))
        if data.get(name) is not None:
            if not isinstance(data[name], dict):
                raise source.error("must be a mapping", name)
            sections[name] = part
        values[name], parsed[name] = check_section(section, part, environ)
    return Config(
        file=source.file,
        default_backend=default,
        backends=backends,
        sections=sections,
        declared=declared,
        values=values,
        parsed=parsed,
    )


def _mapping(source: Located, key: str, value: Any) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise source.error("must be a mapping", key)
    return value


def _backends(source: Located, value: Any, environ: Mapping[str, str]) -> dict[str, BackendConfig]:
    instances = {}
    for name, raw in _mapping(source, "backends", value).items():
        path = f"backends.{name}"
        if not isinstance(name, str) or not name.strip():
            raise source.error("backend instance names must be non-empty strings", "backends")
        if not isinstance(raw, dict):
            raise source.error("must be a mapping with a `type` key", path)
        kind = raw.get("type")
        if kind is None:
            raise source.error("missing `type` (the backend type, such as comfyui or mock)", path)
        if not isinstance(kind, str):
            raise source.error("must be a string naming a backend type", f"{path}.type")
        settings = {k: v for k, v in raw.items() if k != "type"}
        lines = source.lines_under(path)
        instances[name] = BackendConfig(name, kind, settings, source.file, lines, environ)
    if BUILTIN_BACKEND not in instances:
        instances[BUILTIN_BACKEND] = BackendConfig(BUILTIN_BACKEND, "mock", {}, None, {}, environ)
    return instances
