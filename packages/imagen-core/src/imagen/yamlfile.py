"""Read a YAML file and remember the line of every key, for error messages."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from imagen.errors import ConfigError

try:  # the C loader is several times faster and reports the same marks
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader

__all__ = ["Located", "load"]


@dataclass(frozen=True)
class Located:
    """Data read from a file, with the line of each dotted key path."""

    data: Any
    file: Path | None = None
    lines: dict[str, int] = field(default_factory=dict)

    def line(self, key: str) -> int | None:
        """The line of ``key``, or of its nearest ancestor that has one."""
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key.rpartition(".")[0]
        return None

    def error(self, message: str, key: str) -> ConfigError:
        """A :class:`ConfigError` located at ``key``."""
        return ConfigError(message, key=key or None, file=self.file, line=self.line(key))

    def lines_under(self, key: str) -> dict[str, int]:
        """The lines of the keys below ``key``, relative to it (``""`` is ``key`` itself)."""
        prefix = key + "."
        found = {"": self.lines[key]} if key in self.lines else {}
        for path, line in self.lines.items():
            if path.startswith(prefix):
                found[path[len(prefix) :]] = line
        return found


def load(path: Path) -> Located:
    """Parse ``path``; a syntax error becomes a :class:`ConfigError` with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=path) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("is not UTF-8 text", file=path) from exc
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(filter(None, [exc.context, exc.problem]))
        raise ConfigError(
            f"YAML syntax error: {problem}", file=path, line=mark.line + 1 if mark else None
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", file=path) from exc
    finally:
        loader.dispose()
    lines = dict(_key_lines(node, "")) if node is not None else {}
    return Located(data, path, lines)


def _key_lines(node: Any, prefix: str) -> Iterator[tuple[str, int]]:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            path = f"{prefix}.{key_node.value}" if prefix else key_node.value
            yield path, key_node.start_mark.line + 1
            yield from _key_lines(value_node, path)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            path = f"{prefix}.{index}"
            yield path, item.start_mark.line + 1
            yield from _key_lines(item, path)
