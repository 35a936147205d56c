"""Style presets: a prompt suffix, a negative-prompt suffix and default size and steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imagen.request import Request
from imagen.sections import Section, SectionData, Setting

__all__ = ["STYLE", "STYLES_SECTION", "Style", "apply_style", "parse_size"]

STYLE: dict[str, Setting] = {
    "suffix": Setting(str, "", "appended to the prompt"),
    "negative_suffix": Setting(str, "", "appended to the negative prompt"),
    "size": Setting(str, None, "default size, `WIDTHxHEIGHT`"),
    "steps": Setting(int, None, "default sampling steps"),
    "description": Setting(str, "", "one line shown by `imagen styles`"),
}


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


def _parse(data: SectionData) -> dict[str, Style]:
    styles = {}
    for name, values in data.values.items():
        values = dict(values)
        width = height = None
        size = values.pop("size")
        if size is not None:
            try:
                width, height = parse_size(size)
            except ValueError as exc:
                raise data.error(str(exc), f"{name}.size") from None
        if values["steps"] is not None and values["steps"] < 1:
            raise data.error("must be 1 or more", f"{name}.steps")
        styles[name] = Style(name, width=width, height=height, **values)
    return styles


def _show(styles: dict[str, Style]) -> dict[str, Any]:
    return {
        name: {
            "suffix": s.suffix,
            "negative_suffix": s.negative_suffix,
            "size": f"{s.width}x{s.height}" if s.width and s.height else None,
            "steps": s.steps,
            "description": s.description,
        }
        for name, s in styles.items()
    }


STYLES_SECTION = Section(
    "styles", "named style presets", STYLE, named=True, parse=_parse, show=_show
)
