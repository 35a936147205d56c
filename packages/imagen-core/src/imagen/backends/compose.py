"""The built-in backend's edits: its placeholder picture over the request's input images.

Visible and deterministic, so a test can tell each input arrived and did what its role
says:

- the ``image`` input is the base: resized to the output size, and the placeholder blended
  over it by ``strength`` (0 keeps the input, 1 is the placeholder alone; 0.6 by default);
- a ``mask`` limits the blend to where it is white (or transparent): elsewhere the input
  image stays exactly as it was;
- each ``reference`` is drawn as a small swatch along the bottom edge, left to right.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageOps

from imagen.inputs import InputImage

__all__ = ["DEFAULT_STRENGTH", "compose"]

DEFAULT_STRENGTH = 0.6
_SWATCH = 8  # a reference swatch's side: this fraction of the shorter side


def compose(
    placeholder: Image.Image,
    image: InputImage | None,
    mask: InputImage | None,
    references: Sequence[InputImage],
    strength: float | None,
) -> Image.Image:
    """The placeholder with the inputs applied; same size as the placeholder."""
    size = placeholder.size
    result = placeholder.convert("RGB")
    if image is not None:
        base = _load(image, size)
        alpha = DEFAULT_STRENGTH if strength is None else strength
        blended = Image.blend(base, result, alpha)
        if mask is not None:
            # Where the mask says "repaint", the blend; elsewhere the input untouched.
            result = Image.composite(blended, base, _repaint_area(mask, size))
        else:
            result = blended
    side = max(1, min(size) // _SWATCH)
    for n, reference in enumerate(references):
        swatch = _load(reference, (side, side))
        result.paste(swatch, (n * side, size[1] - side))
    return result


def _load(item: InputImage, size: tuple[int, int]) -> Image.Image:
    # One decoded copy of a large input at most: resized in its own mode (converting or
    # transposing it first would copy it whole), converted once small.
    with item.open() as stream, Image.open(stream) as picture:
        picture.draft("RGB", size)  # a JPEG decodes at a fraction of its size
        picture.load()
        ImageOps.exif_transpose(picture, in_place=True)
        if picture.mode not in ("RGB", "RGBA", "L", "LA"):  # palette, CMYK, 16-bit: small
            picture = picture.convert("RGBA" if "transparency" in picture.info else "RGB")
        return picture.resize(size, Image.Resampling.LANCZOS).convert("RGB")


def _repaint_area(mask: InputImage, size: tuple[int, int]) -> Image.Image:
    """The mask as "L": 255 where to repaint (transparent, or white), 0 where to keep."""
    with mask.open() as stream, Image.open(stream) as picture:
        picture = picture.resize(size, Image.Resampling.NEAREST)
        if "A" in picture.getbands() and picture.getextrema()[-1][0] < 255:
            return ImageOps.invert(picture.getchannel("A"))  # OpenAI's convention
        return picture.convert("L")
