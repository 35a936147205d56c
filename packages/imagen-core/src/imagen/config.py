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
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagen import secrets
from imagen.backend import BackendConfig
from imagen.dirs import config_dir
from imagen.errors import ConfigError, RequestError
from imagen.naming import NamingTemplate
from imagen.styles import Style, parse_size
from imagen.yamlfile import Located, load

__all__ = [
    "BUILTIN_BACKEND",
    "Config",
    "OutputSettings",
    "PreviewSettings",
    "Setting",
    "find_config_file",
    "load_config",
]

FILE_NAME = "imagen.yaml"
BUILTIN_BACKEND = "mock"
"""The instance of the built-in offline backend that exists unless a config takes the name."""


@dataclass(frozen=True)
class Setting:
    """One key of a config section: its type, default and meaning."""

    kind: type | tuple[type, ...]
    default: Any
    doc: str


TOP_LEVEL: dict[str, str] = {
    "default_backend": "name of the backend instance used when --backend is not given",
    "backends": "named backend instances, each with a `type` and that type's own keys",
    "styles": "named style presets",
    "output": "where and how images are saved",
    "preview": "showing each new image in a tmux window",
    "cloud": "uploading images to Supabase Storage (read by the cloud sync step)",
    "usage": "usage and cost records (read by the usage step)",
    "worker": "the queue worker daemon (read by imagen-worker)",
    "serve": "the HTTP server, `imagen serve` (read by imagen-worker)",
    "mcp": "the MCP server for AI agents, `imagen mcp` (read by imagen-mcp)",
}
PLUGIN_SECTIONS = ("cloud", "usage", "worker", "serve", "mcp")

OUTPUT: dict[str, Setting] = {
    "directory": Setting(
        str,
        "~/Pictures/imagen",
        "where images are saved; `~` and `$VARS` are expanded; created on demand",
    ),
    "naming": Setting(
        str,
        "{date}-{slug}-{seed}.{ext}",
        "file name template, relative to the directory; may contain `/` for subdirectories",
    ),
    "write_metadata_json": Setting(bool, True, "write a sidecar JSON beside each image"),
    "embed_metadata": Setting(
        bool,
        True,
        "write the parameters into the image file itself "
        "(PNG text chunks; EXIF UserComment for JPEG and WebP)",
    ),
}
PREVIEW: dict[str, Setting] = {
    "enabled": Setting(
        bool,
        False,
        "open each new image in a tmux window (`--preview` and `--no-preview` override)",
    ),
    "viewer": Setting(
        str, None, "command that shows `{path}`; default: the first found of tmux-img, timg, chafa"
    ),
    "hold": Setting(bool, True, "keep the window open after the viewer exits, until Enter"),
}
USAGE: dict[str, Setting] = {
    "record": Setting(bool, True, "keep a usage record of every generation"),
    "path": Setting(
        str,
        None,
        "the local SQLite file records go to when no plugin offers another sink; "
        "default `$XDG_DATA_HOME/imagen/usage.sqlite3`",
    ),
    "budget": Setting(
        dict,
        None,
        "spending caps in USD: `daily_usd`, `monthly_usd`, and the same under "
        "`backends.NAME` and `per_owner` (each web user, in the worker); see docs/usage.md",
    ),
}
STYLE: dict[str, Setting] = {
    "suffix": Setting(str, "", "appended to the prompt"),
    "negative_suffix": Setting(str, "", "appended to the negative prompt"),
    "size": Setting(str, None, "default size, `WIDTHxHEIGHT`"),
    "steps": Setting(int, None, "default sampling steps"),
    "description": Setting(str, "", "one line shown by `imagen styles`"),
}


@dataclass(frozen=True)
class OutputSettings:
    """The ``output:`` section."""

    directory: Path
    naming: NamingTemplate
    write_metadata_json: bool = True
    embed_metadata: bool = True


@dataclass(frozen=True)
class PreviewSettings:
    """The ``preview:`` section."""

    enabled: bool = False
    viewer: str | None = None
    hold: bool = True


@dataclass(frozen=True)
class Config:
    """A loaded, validated ``imagen.yaml`` (or the built-in defaults)."""

    file: Path | None
    default_backend: str
    backends: Mapping[str, BackendConfig]
    styles: Mapping[str, Style]
    output: OutputSettings
    preview: PreviewSettings
    sections: Mapping[str, Located] = field(default_factory=dict)
    """Sections read by later pipeline steps and plugins (``cloud``, ``usage``, ``worker``,
    ``serve``, ``mcp``)."""

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
        """Plugin section ``name`` checked against ``settings``: every setting's value or default.

        :raises ConfigError: naming the file, line and key of an unknown or mistyped key.
        """
        section = self.sections.get(name)
        if section is None:
            return {key: setting.default for key, setting in settings.items()}

        return _section(section, name, section.data, settings, _located(section, name))

    def section_error(self, name: str, message: str, key: str) -> ConfigError:
        """An error about ``key`` of plugin section ``name``, naming its file and line.

        :param key: the key's path inside the section, such as ``api_keys.ab12``.
        """
        section = self.sections.get(name)
        if section is None:
            return ConfigError(message, key=f"{name}.{key}", file=self.file)
        return _located(section, name)(message, key)

    def style(self, name: str) -> Style:
        """The style preset ``name``."""
        try:
            return self.styles[name]
        except KeyError:
            known = ", ".join(self.styles) or "none are configured"
            raise RequestError(f'unknown style "{name}" (known: {known})') from None

    def to_data(self) -> dict[str, Any]:
        """The resolved config as YAML-ready data, credentials redacted."""
        return {
            "default_backend": self.default_backend,
            "backends": {
                name: _redact({"type": b.type, **b.settings}) for name, b in self.backends.items()
            },
            "styles": {
                name: {
                    "suffix": s.suffix,
                    "negative_suffix": s.negative_suffix,
                    "size": f"{s.width}x{s.height}" if s.width and s.height else None,
                    "steps": s.steps,
                    "description": s.description,
                }
                for name, s in self.styles.items()
            },
            "output": {
                "directory": str(self.output.directory),
                "naming": self.output.naming.template,
                "write_metadata_json": self.output.write_metadata_json,
                "embed_metadata": self.output.embed_metadata,
            },
            "preview": {
                "enabled": self.preview.enabled,
                "viewer": self.preview.viewer,
                "hold": self.preview.hold,
            },
            **{name: _redact(section.data) for name, section in self.sections.items()},
        }


def _redact(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            key: secrets.REDACTED if secrets.is_secret_key(str(key)) and value else _redact(value)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [_redact(item) for item in data]
    return data


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
    """Validate already-parsed YAML data."""
    data = source.data if source.data is not None else {}
    if not isinstance(data, dict):
        raise source.error("the file must hold a mapping of sections (output:, backends:, ...)", "")
    for key in data:
        if key not in TOP_LEVEL:
            raise source.error(f"unknown top-level key (known: {', '.join(TOP_LEVEL)})", str(key))

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

    _section(source, "usage", data.get("usage"), USAGE)  # read by the usage step; checked now
    sections = {}
    for name in PLUGIN_SECTIONS:
        if data.get(name) is not None:
            if not isinstance(data[name], dict):
                raise source.error("must be a mapping", name)
            sections[name] = Located(data[name], source.file, source.lines_under(name))
    # Checked here, from modules that import this one: a mistake shows before any run.
    if "usage" in sections:
        from imagen.usage.budget import parse_budget

        parse_budget(sections["usage"])
    if "cloud" in sections:
        from imagen.cloud.settings import CLOUD

        _section(
            sections["cloud"],
            "cloud",
            sections["cloud"].data,
            CLOUD,
            _located(sections["cloud"], "cloud"),
        )

    return Config(
        file=source.file,
        default_backend=default,
        backends=backends,
        styles=_styles(source, data.get("styles")),
        output=_output(source, data.get("output"), environ),
        preview=PreviewSettings(**_section(source, "preview", data.get("preview"), PREVIEW)),
        sections=sections,
    )


def _located(section: Located, name: str) -> Callable[[str, str], ConfigError]:
    """Errors for keys of plugin section ``name``, whose lines ``section`` holds."""

    def error(message: str, key: str) -> ConfigError:
        line = section.line(key) or section.line("")
        return ConfigError(message, key=f"{name}.{key}", file=section.file, line=line)

    return error


def _mapping(source: Located, key: str, value: Any) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise source.error("must be a mapping", key)
    return value


def _section(
    source: Located,
    key: str,
    value: Any,
    settings: Mapping[str, Setting],
    error: Callable[[str, str], ConfigError] | None = None,
) -> dict[str, Any]:
    """Check a section against its settings; return every setting's value or default.

    ``error(message, name)`` makes the error for the section's key ``name``; by default
    ``source`` locates ``key.name``.
    """
    error = error or (lambda message, name: source.error(message, f"{key}.{name}"))
    raw = _mapping(source, key, value)
    for name in raw:
        if name not in settings:
            raise error(f"unknown key (known: {', '.join(settings)})", name)
    values = {}
    for name, setting in settings.items():
        item = raw.get(name)
        if item is None:
            values[name] = setting.default
            continue
        if not isinstance(item, setting.kind) or (isinstance(item, bool) and setting.kind is int):
            expected = {
                str: "a string",
                bool: "true or false",
                int: "a whole number",
                dict: "a mapping",
                (int, float): "a number",
            }
            want = expected.get(setting.kind, str(setting.kind))  # type: ignore[call-overload]
            raise error(f"must be {want}, not {item!r}", name)
        values[name] = item
    return values


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


def _styles(source: Located, value: Any) -> dict[str, Style]:
    styles = {}
    for name, raw in _mapping(source, "styles", value).items():
        key = f"styles.{name}"
        values = _section(source, key, raw, STYLE)
        width = height = None
        if values.pop("size") is not None:
            try:
                width, height = parse_size(raw["size"])
            except ValueError as exc:
                raise source.error(str(exc), f"{key}.size") from None
        if values["steps"] is not None and values["steps"] < 1:
            raise source.error("must be 1 or more", f"{key}.steps")
        styles[str(name)] = Style(str(name), width=width, height=height, **values)
    return styles


_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def expand_path(text: str, environ: Mapping[str, str]) -> Path:
    """Expand ``~`` and ``$VAR`` / ``${VAR}`` in ``text``; an unset variable is an error."""

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in environ:
            raise ValueError(f"environment variable {name} is not set")
        return environ[name]

    expanded = _VAR.sub(variable, text)
    if expanded.startswith("~"):
        home = environ.get("HOME") or os.path.expanduser("~")
        expanded = (
            home + expanded[1:] if expanded[:2] in ("~", "~/") else os.path.expanduser(expanded)
        )
    return Path(expanded)


def _output(source: Located, value: Any, environ: Mapping[str, str]) -> OutputSettings:
    values = _section(source, "output", value, OUTPUT)
    try:
        directory = expand_path(values["directory"], environ)
    except ValueError as exc:
        raise source.error(str(exc), "output.directory") from None
    if not directory.is_absolute() and source.file is not None:
        directory = source.file.parent / directory
    try:
        naming = NamingTemplate(values["naming"])
    except ValueError as exc:
        raise source.error(str(exc), "output.naming") from None
    return OutputSettings(
        directory=directory,
        naming=naming,
        write_metadata_json=values["write_metadata_json"],
        embed_metadata=values["embed_metadata"],
    )
