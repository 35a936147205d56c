"""The built-in backend's placeholder pictures, drawn with Pillow.

A picture is a function of (prompt, seed, width, height) alone: a gradient sky, a field of
translucent shapes whose colours and layout come from a hash of the prompt and the seed,
and a caption with the prompt and seed so nobody mistakes it for a real render.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
import random

from PIL import Image, ImageDraw

from imagen.backends.fonts import FontChain, font_chain

__all__ = ["FORMATS", "encode", "picture", "render"]

FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_SAVE_OPTIONS = {"png": {"compress_level": 6}, "jpeg": {"quality": 90}, "webp": {"quality": 90}}


def _colour(
    hue: float, saturation: float, value: float, alpha: int | None = None
) -> tuple[int, ...]:
    rgb = tuple(round(c * 255) for c in colorsys.hsv_to_rgb(hue % 1.0, saturation, value))
    return rgb if alpha is None else (*rgb, alpha)


def _gradient(size: tuple[int, int], top: tuple[int, ...], bottom: tuple[int, ...]) -> Image.Image:
    ramp = Image.linear_gradient("L").resize(size)
    bands = [
        ramp.point(lambda v, a=a, b=b: a + (b - a) * v // 255)
        for a, b in zip(top, bottom, strict=True)
    ]
    return Image.merge("RGB", bands)


def _shapes(
    draw: ImageDraw.ImageDraw, rng: random.Random, size: tuple[int, int], hue: float
) -> None:
    width, height = size
    scale = min(width, height)
    for _ in range(rng.randint(14, 28)):
        kind = rng.choice(("ellipse", "ellipse", "polygon", "rectangle", "ring"))
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.04, 0.28) * scale
        fill = _colour(
            hue + rng.uniform(-0.18, 0.18),
            rng.uniform(0.4, 0.9),
            rng.uniform(0.5, 1.0),
            rng.randint(70, 170),
        )
        if kind == "ellipse":
            draw.ellipse((x - r, y - r * rng.uniform(0.5, 1.5), x + r, y + r), fill=fill)
        elif kind == "ring":
            draw.ellipse((x - r, y - r, x + r, y + r), outline=fill, width=max(1, int(r / 6)))
        elif kind == "rectangle":
            draw.rounded_rectangle((x - r, y - r / 2, x + r, y + r / 2), radius=r / 5, fill=fill)
        else:
            sides = rng.randint(3, 7)
            points = []
            for i in range(sides):
                angle = 2 * math.pi * i / sides + rng.uniform(-0.2, 0.2)
                reach = r * rng.uniform(0.6, 1.2)
                points.append((x + reach * math.cos(angle), y + reach * math.sin(angle)))
            draw.polygon(points, fill=fill)


def _wrap(text: str, font: FontChain, width: float, lines: int) -> list[str]:
    words = text.split()
    wrapped: list[str] = []
    current = ""
    for word in words:
        attempt = f"{current} {word}".strip()
        if font.getlength(attempt) <= width or not current:
            current = attempt
        else:
            wrapped.append(current)
            current = word
    if current:
        wrapped.append(current)
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        last = wrapped[-1]
        while last and font.getlength(last + "…") > width:
            last = last[:-1]
        wrapped[-1] = last.rstrip() + "…"
    return wrapped


def _caption(image: Image.Image, prompt: str, seed: int) -> None:
    width, height = image.size
    if width < 64 or height < 48:
        return  # too small for legible text
    size = max(9, min(width, height * 2) // 26)
    font = font_chain(size)
    small = font_chain(max(8, size * 3 // 4))
    margin = max(4, size // 2)
    lines = _wrap(prompt, font, width - 2 * margin, max(1, min(4, height // (size * 4))))
    footer = f"seed {seed} · {width}x{height} · imagen offline placeholder"
    footer_lines = _wrap(footer, small, width - 2 * margin, 2)
    line_height = int(size * 1.25)
    small_height = int(small.size * 1.3)
    box_height = margin * 2 + line_height * len(lines) + small_height * len(footer_lines)
    draw = ImageDraw.Draw(image, "RGBA")
    draw.rectangle((0, height - box_height, width, height), fill=(12, 12, 18, 190))
    y = height - box_height + margin
    for line in lines:
        font.draw(draw, (margin, y), line, fill=(255, 255, 255))
        y += line_height
    for line in footer_lines:
        small.draw(draw, (margin, y), line, fill=(200, 205, 215))
        y += small_height


def render(prompt: str, seed: int, width: int, height: int, fmt: str = "png") -> bytes:
    """The placeholder picture for ``prompt`` and ``seed``, encoded as ``fmt``."""
    return encode(picture(prompt, seed, width, height), fmt)


def encode(image: Image.Image, fmt: str) -> bytes:
    """``image`` encoded as ``fmt`` (one of :data:`FORMATS`)."""
    out = io.BytesIO()
    image.save(out, format=fmt.upper(), **_SAVE_OPTIONS[fmt])
    return out.getvalue()


def picture(prompt: str, seed: int, width: int, height: int) -> Image.Image:
    """The placeholder picture for ``prompt`` and ``seed``."""
    digest = hashlib.sha256(f"{prompt}\0{seed}".encode()).digest()
    rng = random.Random(digest)
    hue = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big") / 2**32
    hue = (hue + (seed % 997) / 997 * 0.35) % 1.0
    top = _colour(hue, rng.uniform(0.5, 0.8), rng.uniform(0.25, 0.45))
    bottom = _colour(hue + rng.uniform(0.2, 0.5), rng.uniform(0.4, 0.7), rng.uniform(0.75, 0.95))
    image = _gradient((width, height), top, bottom)
    _shapes(ImageDraw.Draw(image, "RGBA"), rng, (width, height), hue)
    _caption(image, prompt, seed)
    return image
