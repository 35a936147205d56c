"""What Replicate predictions cost: a documented price table, overridable per instance.

Official models are billed per output image; community models per second of predict time
(``metrics.predict_time``), at a rate that depends on the hardware the model runs on. Only
prices we can stand behind are listed: a model with no known price gets no cost, never a
guessed one. Set ``price_per_image`` or ``price_per_second`` in the slice for the others.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PRICES", "Price", "price_for"]


@dataclass(frozen=True)
class Price:
    """USD per output image, or per second of predict time."""

    per_image: float | None = None
    per_second: float | None = None

    def cost(self, images: int, predict_time_s: float | None) -> float | None:
        if self.per_image is not None:
            return round(self.per_image * images, 6)
        if self.per_second is not None and predict_time_s is not None:
            return round(self.per_second * predict_time_s, 6)
        return None


# Replicate's published per-image prices for the official Flux models (USD, 2026).
PRICES: dict[str, Price] = {
    "black-forest-labs/flux-schnell": Price(per_image=0.003),
    "black-forest-labs/flux-dev": Price(per_image=0.025),
    "black-forest-labs/flux-1.1-pro": Price(per_image=0.04),
}


def price_for(model: str, per_image: float | None, per_second: float | None) -> Price | None:
    """The slice's own price when it sets one, else the table's, else None (unknown)."""
    if per_image is not None or per_second is not None:
        return Price(per_image, per_second)
    return PRICES.get(model.split(":")[0])
