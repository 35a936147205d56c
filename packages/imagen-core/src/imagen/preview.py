"""Preview: show each new image, in a tmux window or in the terminal (a pipeline step plugin).

Enabled by ``preview.enabled`` or ``--preview``. Inside tmux, each image gets a window
named after it, running the viewer command from ``preview.viewer`` (``{path}`` is replaced
by the quoted path) or, by default, the first found of ``tmux-img``, ``timg``, ``chafa``.
Outside tmux, on a terminal that draws images (kitty, iTerm2, sixel: :mod:`imagen.inline`),
each image is drawn on it, through standard error. Otherwise it says so once and the
generation still succeeds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from imagen.plugins import hookimpl
from imagen.sections import Section, SectionData, Setting

if TYPE_CHECKING:
    from imagen.pipeline import Outcome, Run

__all__ = [
    "DEFAULT_VIEWERS",
    "PREVIEW",
    "PREVIEW_SECTION",
    "PreviewSettings",
    "inline_protocol",
    "preview_command",
    "viewer_template",
]

log = logging.getLogger("imagen")
DEFAULT_VIEWERS = ("tmux-img", "timg", "chafa")
_HOLD = "; printf '\\n[imagen] press Enter to close '; read -r _"

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
    "inline": Setting(
        str,
        "auto",
        "outside tmux, draw images in the terminal: auto (the protocol the terminal "
        "announces), kitty, iterm2, sixel, or off",
    ),
}
_INLINE = ("auto", "kitty", "iterm2", "sixel", "off")


class PreviewSettings(NamedTuple):  # not a dataclass: this module loads at every start
    """The ``preview:`` section."""

    enabled: bool = False
    viewer: str | None = None
    hold: bool = True
    inline: str = "auto"


def _parse(data: SectionData) -> PreviewSettings:
    if data.values["inline"] not in _INLINE:
        raise data.error(
            f"must be one of {', '.join(_INLINE)}, not {data.values['inline']!r}", "inline"
        )
    return PreviewSettings(**data.values)


PREVIEW_SECTION = Section(
    "preview",
    "showing each new image in a tmux window, or in the terminal",
    PREVIEW,
    parse=_parse,
    show=lambda settings: {
        "enabled": settings.enabled,
        "viewer": settings.viewer,
        "hold": settings.hold,
        "inline": settings.inline,
    },
)


def viewer_template(settings: PreviewSettings) -> str | None:
    """The viewer command template to use, or None when none is configured or found."""
    import shlex  # here, not at the top: this plugin module loads at every start
    import shutil

    if settings.viewer:
        return settings.viewer if "{path}" in settings.viewer else settings.viewer + " {path}"
    for name in DEFAULT_VIEWERS:
        found = shutil.which(name)
        if found:
            # Absolute: the window's shell gets the tmux server's PATH, not ours.
            return f"{shlex.quote(found)} {{path}}"
    return None


def preview_command(template: str, path: Path, *, hold: bool) -> str:
    """The shell command a preview window runs for ``path``."""
    import shlex

    command = template.replace("{path}", shlex.quote(str(path)))
    return command + _HOLD if hold else command


def _window_name(path: Path) -> str:
    return path.stem[:60] or "imagen"


@hookimpl
def imagen_run_finished(run: Run, outcome: Outcome | None) -> None:
    if outcome is None or not run.preview or not outcome.images:
        return
    import subprocess

    if not os.environ.get("TMUX"):
        _inline(run, outcome)
        return
    template = viewer_template(run.config.preview)
    if template is None:
        log.warning(
            "preview: no viewer found (install one of %s, or set preview.viewer)",
            ", ".join(DEFAULT_VIEWERS),
        )
        return
    for image in outcome.images:
        command = preview_command(template, image.path, hold=run.config.preview.hold)
        argv = ["tmux", "new-window", "-d", "-n", _window_name(image.path), command]
        try:
            subprocess.run(argv, check=True, capture_output=True, timeout=10, text=True)
        except FileNotFoundError:
            log.warning("preview: tmux is not installed; no preview window opened")
            return
        except subprocess.CalledProcessError as exc:
            log.warning("preview: tmux refused the window: %s", exc.stderr.strip() or exc)
            return
        except subprocess.TimeoutExpired:
            log.warning("preview: tmux did not answer within 10 s")
            return


def inline_protocol(settings: PreviewSettings, environ: Mapping[str, str]) -> str | None:
    """The protocol to draw images with outside tmux (None: off, or none known)."""
    from imagen.inline import detect

    if settings.inline == "off":
        return None
    return detect(environ) if settings.inline == "auto" else settings.inline


def _inline(run: Run, outcome: Outcome) -> None:
    import sys

    from imagen.inline import encode

    protocol = inline_protocol(run.config.preview, os.environ)
    terminal = sys.stderr
    if protocol is None or not terminal.isatty():
        log.warning(
            "preview: not inside tmux, and this terminal draws no images (kitty, iTerm2, "
            "sixel: set preview.inline if it does); no preview shown"
        )
        return
    from imagen.cli.progress import ProgressLine

    if ProgressLine.shown is not None:
        ProgressLine.shown.clear()
    for image in outcome.images:
        terminal.flush()
        terminal.buffer.write(encode(image.path, protocol))
        terminal.buffer.flush()
