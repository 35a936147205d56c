"""``imagen completion bash|zsh|fish``: shell completion, and what it offers beyond flags.

The script a shell sources calls ``imagen`` back with ``_IMAGEN_COMPLETE`` set for every
completion (click's protocol); the completers here add the names only a config or the
history knows: backend instances, styles, recent image ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from imagen.config import Config

__all__ = ["complete_backend", "complete_image", "complete_style", "completion"]

SHELLS = ("bash", "zsh", "fish")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL; source it to complete imagen's commands.

    \b
    bash:  imagen completion bash > ~/.local/share/bash-completion/completions/imagen
    zsh:   imagen completion zsh > "${fpath[1]}/_imagen"   (then start a new shell)
    fish:  imagen completion fish > ~/.config/fish/completions/imagen.fish

    It completes commands, flags, backend and style names from imagen.yaml, and the ids
    of recent images (imagen open).
    """  # noqa: D301 (click reads \b as "keep these lines as they are")
    from click.shell_completion import get_completion_class

    root = ctx.find_root()
    script = get_completion_class(shell)
    assert script is not None  # click knows the three shells
    name = root.info_name or "imagen"
    var = f"_{name}_COMPLETE".replace("-", "_").upper()
    click.echo(script(root.command, {}, name, var).source())


def _config(ctx: click.Context) -> Config | None:
    """The config the command line names, or None when it can't be read (never an error)."""
    from imagen.config import load_config
    from imagen.errors import ImagenError

    try:
        return load_config(ctx.find_root().params.get("config_path"))
    except (ImagenError, OSError):
        return None


def complete_backend(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The configured backend instances whose names start with ``incomplete``."""
    from click.shell_completion import CompletionItem

    config = _config(ctx)
    if config is None:
        return []
    return [
        CompletionItem(name, help=slice_.type)
        for name, slice_ in config.backends.items()
        if name.startswith(incomplete)
    ]


def complete_style(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The style presets whose names start with ``incomplete``."""
    from click.shell_completion import CompletionItem

    config = _config(ctx)
    if config is None:
        return []
    return [
        CompletionItem(name, help=style.description or style.suffix)
        for name, style in config.styles.items()
        if name.startswith(incomplete)
    ]


def complete_image(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """``last`` and the ids of the most recent images in the history, with their prompts."""
    from click.shell_completion import CompletionItem

    from imagen.history.index import HistoryIndex

    items = [CompletionItem("last", help="the most recent image")]
    try:
        entries = HistoryIndex.default().search(limit=20)
    except Exception:  # noqa: BLE001 (completion must never fail: offer what is known)
        entries = []
    items += [CompletionItem(str(entry.id), help=entry.prompt[:60]) for entry in entries]
    return [item for item in items if str(item.value).startswith(incomplete)]
