"""The gpt-image models: which sizes each takes, what each costs.

Size rule, by family (from the openai 3.51 SDK's own parameter docs):

- the 1.x family (``gpt-image-1.5``, ``gpt-image-1-mini``, ``chatgpt-image-latest``) takes
  three fixed sizes: 1024x1024, 1536x1024 and 1024x1536;
- the 2.x family (``gpt-image-2*``) takes any WIDTHxHEIGHT whose sides are multiples of 16,
  with an aspect ratio between 1:3 and 3:1, at most 3840 on the long side and 2160 on the
  short side.

A size a model can't take is an error that says what it can take; no size at all leaves
the choice to the model (``auto``). A compatible server's own model (a name outside
OpenAI's, at a ``base_url``) is sent the size as asked, and is priced only by
``price_per_image``.
"""

from __future__ import annotations

from dataclasses import dataclass

from imagen import PermanentBackendError

__all__ = [
    "FIXED_SIZES",
    "PRICES",
    "RETIRED",
    "TokenPrices",
    "cost_from_table",
    "cost_from_usage",
    "is_openai_model",
    "size_for",
]

FIXED_SIZES = ("1024x1024", "1536x1024", "1024x1536")
MAX_IMAGES = 10  # images one call may ask for (n)
RETIRED = {
    "gpt-image-1": "was shut down on 2026-10-23",
    "dall-e-3": "was retired on 2026-05-12",
    "dall-e-2": "was retired on 2026-05-12",
}
DEFAULT_MODEL = "gpt-image-1.5"


def is_openai_model(model: str) -> bool:
    """Whether ``model`` is in OpenAI's own namespace (not a compatible server's own name)."""
    return model.startswith(("gpt-", "chatgpt-", "dall-e"))


def is_free_size_model(model: str) -> bool:
    return model.startswith("gpt-image-2")


def size_for(model: str, width: int | None, height: int | None) -> str | None:
    """The ``size`` to send for a request, or None to let the model choose.

    A compatible server's own model gets the size as asked: that server knows what it makes.
    """
    if not width and not height:
        return None
    width, height = width or height, height or width
    assert width is not None
    assert height is not None
    size = f"{width}x{height}"
    if not is_openai_model(model):
        return size
    if not is_free_size_model(model):
        if size not in FIXED_SIZES:
            raise PermanentBackendError(f"{model} makes {', '.join(FIXED_SIZES)} only, not {size}")
        return size
    problems = []
    if width % 16 or height % 16:
        problems.append("both sides multiples of 16")
    if max(width, height) > 3840 or min(width, height) > 2160:
        problems.append("at most 3840x2160")
    if max(width, height) > 3 * min(width, height):
        problems.append("an aspect ratio between 1:3 and 3:1")
    if problems:
        raise PermanentBackendError(
            f"{model} takes sizes with {', '.join(problems)}; {size} is not one "
            f"(for example {', '.join(FIXED_SIZES)}, 1536x864 or 3840x2160)"
        )
    return size


@dataclass(frozen=True)
class TokenPrices:
    """USD per million tokens."""

    text_in: float
    image_in: float
    image_out: float


# Official per-token and per-image prices (USD). gpt-image-1.5's per-image figures come
# from third-party tables and its input-token price is disputed, so it is priced per image.
PRICES: dict[str, tuple[TokenPrices | None, dict[str, tuple[float, float]]]] = {
    "gpt-image-1": (
        TokenPrices(5.0, 10.0, 40.0),
        {"low": (0.011, 0.016), "medium": (0.042, 0.063), "high": (0.167, 0.25)},
    ),
    "gpt-image-1-mini": (
        TokenPrices(2.0, 2.5, 8.0),
        {"low": (0.005, 0.006), "medium": (0.011, 0.015), "high": (0.036, 0.052)},
    ),
    "gpt-image-1.5": (None, {"low": (0.009, 0.013), "medium": (0.034, 0.05), "high": (0.133, 0.2)}),
}


def cost_from_usage(model: str, usage: dict | None) -> float | None:
    """The cost of a call from the token counts it reports, when the model has token prices."""
    prices = PRICES.get(model, (None, {}))[0]
    if prices is None or not usage:
        return None
    details = usage.get("input_tokens_details") or {}
    text_in = details.get("text_tokens", usage.get("input_tokens", 0))
    image_in = details.get("image_tokens", 0)
    image_out = usage.get("output_tokens", 0)
    total = text_in * prices.text_in + image_in * prices.image_in + image_out * prices.image_out
    return round(total / 1_000_000, 6)


def cost_from_table(model: str, quality: str | None, size: str | None, images: int) -> float | None:
    """The per-image price by quality and size; None when either is not known (``auto``)."""
    table = PRICES.get(model, (None, {}))[1]
    if quality not in table or size not in FIXED_SIZES:
        return None
    square, other = table[quality]
    return round((square if size == "1024x1024" else other) * images, 6)
