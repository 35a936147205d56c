"""The ``mcp:`` section of ``imagen.yaml``: limits for agents, and where HTTP listens."""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from imagen.config import Config, Setting
from imagen.inputs import MAX_INPUT_BYTES
from imagen.sections import Section, SectionData

__all__ = ["MCP", "MCP_SECTION", "McpSettings", "read_mcp"]

MCP: dict[str, Setting] = {
    "max_count": Setting(int, 4, "the most images one `generate_image` call may ask for"),
    "max_session_images": Setting(
        int,
        50,
        "the most images one MCP session may make, so that an agent caught in a loop stops "
        "(0: no limit); over stdio the session is the process",
    ),
    "inline_max_bytes": Setting(
        int,
        700_000,
        "the most image bytes one tool result carries inline (base64 adds a third; Claude "
        "Desktop refuses results over 1 MiB); beyond it an image comes as a preview and a "
        "link to its resource",
    ),
    "previews": Setting(
        bool,
        True,
        "send a smaller JPEG preview of an image too large to send whole, beside its link",
    ),
    "recent_images": Setting(int, 20, "how many recent images `resources/list` offers"),
    "input_roots": Setting(
        list,
        None,
        "absolute directories whose image files stdio callers may give `generate_image` "
        "and `edit_image` by path, besides the output directory (symlinks are resolved "
        "first); HTTP callers give only images made for them",
    ),
    "input_max_bytes": Setting(
        int,
        20 * 1024 * 1024,
        f"the largest input image a tool call may carry or name, in bytes (at most "
        f"{MAX_INPUT_BYTES:,}); base64 `data` longer than this takes is refused before "
        "decoding",
    ),
    "owner": Setting(
        str,
        None,
        "the owner that stdio callers' queue jobs belong to (default: the login name); HTTP "
        "callers act for the owner of their token",
    ),
    "host": Setting(str, "127.0.0.1", "the address `imagen mcp --http` listens on"),
    "port": Setting(int, 8788, "the port `imagen mcp --http` listens on"),
    "path": Setting(str, "/mcp", "the URL path of the streamable HTTP endpoint"),
}

# The smallest value each numeric setting may take.
_LEAST = {
    "max_count": 1,
    "max_session_images": 0,
    "inline_max_bytes": 0,
    "recent_images": 0,
    "port": 0,
    "input_max_bytes": 1,
}


@dataclass(frozen=True)
class McpSettings:
    """A checked ``mcp:`` section."""

    max_count: int = 4
    max_session_images: int = 50
    inline_max_bytes: int = 700_000
    previews: bool = True
    recent_images: int = 20
    input_roots: tuple[Path, ...] = ()
    input_max_bytes: int = 20 * 1024 * 1024
    owner: str = "local"
    host: str = "127.0.0.1"
    port: int = 8788
    path: str = "/mcp"


def read_mcp(config: Config, environ: Mapping[str, str] = os.environ) -> McpSettings:
    """The ``mcp:`` settings; a ConfigError names the file, line and key that is wrong."""
    values = config.section_values("mcp", MCP)
    for key, least in _LEAST.items():
        if values[key] < least:
            raise config.section_error("mcp", f"must be at least {least}, not {values[key]}", key)
    if values["port"] > 65535:
        message = f"must be a port number (0 to 65535), not {values['port']}"
        raise config.section_error("mcp", message, "port")
    if not values["path"].startswith("/"):
        raise config.section_error("mcp", f"must start with /, not {values['path']!r}", "path")
    if values["owner"] is not None and not values["owner"].strip():
        raise config.section_error("mcp", "must name an owner", "owner")
    problem = _input_problem(values)
    if problem is not None:
        raise config.section_error("mcp", *problem)
    roots = tuple(Path(root).expanduser() for root in values["input_roots"] or ())
    return McpSettings(
        **{**values, "input_roots": roots, "owner": values["owner"] or _login(environ)}
    )


def _input_problem(values: dict) -> tuple[str, str] | None:
    """What is wrong with the input keys, as (message, key), or None."""
    if values["input_max_bytes"] > MAX_INPUT_BYTES:
        message = f"must be at most {MAX_INPUT_BYTES:,}, not {values['input_max_bytes']:,}"
        return message, "input_max_bytes"
    for index, root in enumerate(values["input_roots"] or ()):
        if not isinstance(root, str) or not root.strip():
            return f"must be a directory's path, not {root!r}", f"input_roots[{index}]"
        if not Path(root).expanduser().is_absolute():
            return f"must be an absolute path, not {root!r}", f"input_roots[{index}]"
    return None


def _login(environ: Mapping[str, str]) -> str:
    """Who runs this process, as ``imagen jobs submit`` names the owner."""
    name = environ.get("USER") or environ.get("USERNAME")
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"


def _parse(data: SectionData) -> dict:
    """The section's checks, made whenever the file is loaded (``imagen config check``)."""
    values = data.values
    for key, least in _LEAST.items():
        if values[key] < least:
            raise data.error(f"must be at least {least}, not {values[key]}", key)
    if values["port"] > 65535:
        raise data.error(f"must be a port number (0 to 65535), not {values['port']}", "port")
    if not values["path"].startswith("/"):
        raise data.error(f"must start with /, not {values['path']!r}", "path")
    if values["owner"] is not None and not values["owner"].strip():
        raise data.error("must name an owner", "owner")
    problem = _input_problem(values)
    if problem is not None:
        raise data.error(*problem)
    return values


MCP_SECTION = Section("mcp", "the MCP server for AI agents, `imagen mcp`", MCP, parse=_parse)
