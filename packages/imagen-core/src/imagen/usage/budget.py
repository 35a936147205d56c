"""Spending caps (``usage.budget``): daily and monthly, overall, per backend, per owner."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from imagen.errors import BudgetExceededError, ConfigError

if TYPE_CHECKING:
    from imagen.config import Config
    from imagen.yamlfile import Located

__all__ = ["RESERVATION_TTL", "Budget", "Cap", "check_caps", "read_budget"]

RESERVATION_TTL = timedelta(hours=6)
"""A reservation older than this no longer counts: its process died without settling it."""

Period = Literal["day", "month"]
_LIMITS: dict[str, Period] = {"daily_usd": "day", "monthly_usd": "month"}
_KEYS = (*_LIMITS, "backends", "per_owner")


@dataclass(frozen=True)
class Cap:
    """One limit: at most ``limit_usd`` per UTC ``period``.

    Over ``backend`` (None: every backend) and, when ``per_owner``, for each owner
    separately.
    """

    period: Period
    limit_usd: float
    backend: str | None = None
    per_owner: bool = False

    def start(self, now: datetime) -> datetime:
        """When the period that holds ``now`` began (UTC midnight, or the 1st of the month)."""
        now = now.astimezone(UTC)
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return day if self.period == "day" else day.replace(day=1)

    def describe(self, owner: str | None) -> str:
        """``the daily cap of $5.00 for backend flux`` and the like."""
        text = f"the {'daily' if self.period == 'day' else 'monthly'} cap of ${self.limit_usd:.2f}"
        if self.backend is not None:
            text += f" for backend {self.backend}"
        if self.per_owner:
            text += f" per owner ({owner})"
        return text


@dataclass(frozen=True)
class Budget:
    """Every cap ``usage.budget`` sets."""

    caps: tuple[Cap, ...]

    def caps_for(self, backend: str, owner: str | None) -> list[Cap]:
        """The caps a run on ``backend`` for ``owner`` counts against."""
        return [
            cap
            for cap in self.caps
            if cap.backend in (None, backend) and (not cap.per_owner or owner is not None)
        ]


def check_caps(
    caps: Sequence[Cap], owner: str | None, estimate: float, spent: Callable[[Cap], float]
) -> None:
    """Raise :class:`BudgetExceededError` if ``estimate`` on top of ``spent(cap)`` crosses a cap.

    ``spent`` counts what runs have cost in the cap's period and what running ones hold.
    """
    for cap in caps:
        so_far = spent(cap)
        if so_far + estimate > cap.limit_usd + 1e-9:
            period = "today (UTC)" if cap.period == "day" else "this month (UTC)"
            raise BudgetExceededError(
                f"refused before calling the backend: {cap.describe(owner)} would be crossed: "
                f"${so_far:.4f} spent or held {period}, and this run is estimated at "
                f"${estimate:.4f}"
            )


def read_budget(config: Config) -> Budget | None:
    """The ``usage.budget`` of ``config``; None when it sets no cap.

    :raises ConfigError: naming the file, line and key that is wrong.
    """
    section = config.sections.get("usage")
    if section is None or section.data.get("budget") is None:
        return None
    return parse_budget(section)


def parse_budget(usage: Located) -> Budget | None:
    """Check ``usage.budget`` in the ``usage`` section ``usage``."""
    raw = _mapping(usage, usage.data.get("budget"), "budget")
    caps = _limits(usage, raw, "budget")
    for backend, limits in _mapping(usage, raw.get("backends"), "budget.backends").items():
        key = f"budget.backends.{backend}"
        caps += _limits(
            usage, _mapping(usage, limits, key), key, backend=str(backend), nested=False
        )
    owner = _mapping(usage, raw.get("per_owner"), "budget.per_owner")
    caps += _limits(usage, owner, "budget.per_owner", per_owner=True, nested=False)
    return Budget(tuple(caps)) if caps else None


def _error(usage: Located, message: str, key: str) -> ConfigError:
    return ConfigError(message, key=f"usage.{key}", file=usage.file, line=usage.line(key))


def _mapping(usage: Located, value: Any, key: str) -> Mapping[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _error(usage, "must be a mapping", key)
    return value


def _limits(
    usage: Located, raw: Mapping[Any, Any], key: str, *, nested: bool = True, **scope: Any
) -> list[Cap]:
    allowed = _KEYS if nested else tuple(_LIMITS)
    caps = []
    for name, value in raw.items():
        if name not in allowed:
            raise _error(usage, f"unknown key (known: {', '.join(allowed)})", f"{key}.{name}")
        if name not in _LIMITS:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise _error(usage, f"must be a number of US dollars, not {value!r}", f"{key}.{name}")
        caps.append(Cap(_LIMITS[name], float(value), **scope))
    return caps
