"""``imagen config check|show|path`` and ``imagen init``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from imagen.cli import State, fail, one_line

if TYPE_CHECKING:
    from imagen.backend import Backend


@click.group()
def config() -> None:
    """Check, show and locate the configuration."""


@config.command()
@click.option(
    "--online",
    is_flag=True,
    help="Also contact each backend (it answers, the key is accepted); nothing is billed.",
)
@click.pass_obj
def check(state: State, online: bool) -> None:
    """Build every backend instance and report each as ok or its error.

    With --online, each one's upstream is contacted too, with calls that cost nothing
    (ComfyUI's system stats and model lists, Replicate's account, OpenAI's model list).
    """
    from imagen import secrets
    from imagen.errors import ConfigError, ImagenError
    from imagen.registry import build_backend

    loaded = state.config()
    click.echo(f"config: {loaded.file or 'none (built-in defaults)'}")
    failed = 0
    for name, slice_ in loaded.backends.items():
        detail = ""
        try:
            backend = build_backend(slice_)
            try:
                if online:
                    detail = _probe(backend)
            finally:
                backend.close()
        except ImagenError as exc:
            failed += 1
            where = ""
            if isinstance(exc, ConfigError) and (exc.file or exc.key):
                at = f"{exc.file}:{exc.line}" if exc.file and exc.line else exc.file
                where = f" ({', '.join(str(part) for part in (at, exc.key) if part)})"
            message = one_line(secrets.redact(exc.message))
            click.echo(f"  FAIL  {name} ({slice_.type}): {message}{where}")
        else:
            click.echo(f"  ok    {name} ({slice_.type})" + (f": {detail}" if detail else ""))
    if failed:
        fail(f"{failed} of {len(loaded.backends)} backend instance(s) failed", 3)


def _probe(backend: Backend) -> str:
    """What the backend's upstream said, as one line; its failures raised as imagen errors."""
    from imagen import secrets
    from imagen.errors import ImagenError, PermanentBackendError

    if not backend.supports_probe:
        return "built (this backend type cannot be checked online)"
    try:
        return one_line(secrets.redact(backend.probe()))
    except ImagenError:
        raise
    except Exception as exc:  # an adapter bug: one line, like a failed check
        raise PermanentBackendError(f"unexpected {type(exc).__name__}: {exc}") from exc


@config.command()
@click.pass_obj
def show(state: State) -> None:
    """Print the resolved configuration, credentials redacted."""
    import yaml

    loaded = state.config()
    click.echo(f"# {loaded.file or 'no config file: built-in defaults'}")
    click.echo(yaml.safe_dump(loaded.to_data(), sort_keys=False, allow_unicode=True).rstrip())


@config.command()
@click.option("--all", "show_all", is_flag=True, help="Show every place searched, in order.")
@click.pass_obj
def path(state: State, show_all: bool) -> None:
    """Print the path of the config file in use (nothing, and a note on stderr, if none)."""
    from imagen.config import FILE_NAME, find_config_file, user_config_path

    found, how = find_config_file(state.config_path)
    if show_all:
        candidates = [
            ("--config", state.config_path),
            (
                "$IMAGEN_CONFIG",
                Path(os.environ["IMAGEN_CONFIG"]) if os.environ.get("IMAGEN_CONFIG") else None,
            ),
            ("current directory", Path.cwd() / FILE_NAME),
            ("user config directory", user_config_path()),
        ]
        for label, candidate in candidates:
            mark = (
                "*"
                if candidate is not None and found is not None and candidate.resolve() == found
                else " "
            )
            click.echo(f"{mark} {label + ':':<23} {candidate or '(not set)'}")
        return
    if found is None:
        # Nothing on stdout: $(imagen config path) is then empty, never a made-up path.
        click.echo(
            f"imagen: {how} (imagen init writes one; --all shows where imagen looks)", err=True
        )
        return
    click.echo(str(found))


def starter_text(installed: set[str], default_backend: str = "mock") -> str:
    """The commented starter config, with the examples of installed types switched on."""
    from importlib import resources

    text = resources.files("imagen").joinpath("starter.yaml").read_text(encoding="utf-8")

    def line(match: re.Match[str]) -> str:
        kind, rest = match.group(2), match.group(3)
        return f"{match.group(1)}{rest}" if kind in installed else f"{match.group(1)}# {rest}"

    text = re.sub(r"^( *)#@(\w+) (.*)$", line, text, flags=re.MULTILINE)
    return text.replace("{default_backend}", default_backend)


@click.command()
@click.argument("target", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--user", is_flag=True, help="Write to the user config directory instead.")
@click.option("--force", is_flag=True, help="Replace an existing file.")
def init(target: Path | None, user: bool, force: bool) -> None:
    """Write a commented starter imagen.yaml (default: ./imagen.yaml).

    The examples for ComfyUI, Replicate and OpenAI are active when their backend type is
    installed and commented out otherwise.
    """
    from imagen.config import FILE_NAME, user_config_path
    from imagen.registry import backend_types

    if target is None:
        target = user_config_path() if user else Path.cwd() / FILE_NAME
    if target.exists() and not force:
        fail(f"{target} already exists (use --force to replace it)", 2)
    text = starter_text(set(backend_types()))
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.part")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, target)
    click.echo(f"wrote {target}")
