"""Style presets: a prompt suffix, a negative-prompt suffix and default size and steps."""

from __future__ import annotations

from dataclasses import dataclass

from imagen.request import Request

__all__ = ["Style", "apply_style", "parse_size"]


@dataclass(frozen=True)
class Style:
    """A named preset from the ``styles:`` section of ``imagen.yaml``."""

    name: str
    suffix: str = ""
    negative_suffix: str = ""
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    description: str = ""


def _join(text: str, suffix: str) -> str:
    if not suffix:
        return text
    if not text:
        return suffix.lstrip(", ")
    # A suffix written as ", cinematic" already carries its separator.
    return text + suffix if suffix[0] in ",;. " else f"{text}, {suffix}"


def apply_style(request: Request, style: Style | None) -> Request:
    """``request`` with ``style``'s suffixes appended and its defaults filling the gaps.

    Values the request already has (from flags) win over the style's defaults.
    """
    if style is None:
        return request
    return request.replace(
        prompt=_join(request.prompt, style.suffix),
        negative_prompt=_join(request.negative_prompt, style.negative_suffix),
        width=request.width or style.width,
        height=request.height or style.height,
        steps=request.steps or style.steps,
        style=style.name,
    )


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"1024x768"`` (or ``1024X768``, ``1024*768``) into (width, height).

    :raises ValueError: with a message saying what the text should look like.
    """
    parts = text.strip().lower().replace("*", "x").split("x")
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
        raise ValueError(f"size must look like 1024x768, not {text!r}")
    width, height = (int(part) for part in parts)
    if width < 1 or height < 1:
        raise ValueError(f"size must be positive, not {text!r}")
    return width, height
