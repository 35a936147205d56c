"""The bounds on what a job may ask for, and JSON that every reader can hold.

A web user writes job rows: these bounds are checked at the door (``imagen jobs submit``,
``imagen serve``), by the database itself (``migrations/0003_hostile_input.sql``, kept in
step by a test) and again where a row is read (:func:`loads`), so no row can wedge or
crash whoever reads it.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_BIGINT",
    "MAX_COUNT",
    "MAX_JSON_NUMBER",
    "MAX_NAME",
    "MAX_OPTIONS_BYTES",
    "MAX_OPTIONS_DEPTH",
    "MAX_PROMPT",
    "MAX_SEED",
    "MAX_SIDE",
    "MAX_STEPS",
    "Unreadable",
    "json_problem",
    "loads",
]

MAX_BIGINT = 2**63 - 1
"""The largest value of a bigint column (every id): a larger number names no row."""
MAX_PROMPT = 32_000
"""Characters in a prompt or a negative prompt."""
MAX_NAME = 200
"""Characters in a backend or style name."""
MAX_SIDE = 16_384
"""Pixels a side: no backend makes larger images (each checks its own bounds too)."""
MAX_STEPS = 1_000
MAX_COUNT = 64
"""Images in one job."""
MAX_SEED = 2**53 - 1
"""The largest seed of any image of a job: JavaScript's largest safe integer, so the seed
reaches every client exactly (the gallery's "make again" included)."""
MAX_ATTEMPTS = 100
MAX_OPTIONS_BYTES = 16_384
"""The options object, as JSON text (the database bounds its own stored size alike)."""
MAX_OPTIONS_DEPTH = 8
"""Levels of nesting below the options object itself."""
MAX_JSON_NUMBER = 2**53 - 1
"""The largest magnitude of a number in options."""


class Unreadable(dict[str, Any]):
    """What :func:`loads` gives for JSON that cannot be read safely: an empty mapping.

    It is a ``dict`` so that code expecting a JSON object goes on working; code that must
    not act on a row it could not read checks ``isinstance(value, Unreadable)`` and reports
    :attr:`reason`.
    """

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unreadable({self.reason!r})"

    def __str__(self) -> str:
        return f"<unreadable: {self.reason}>"


def loads(data: str | bytes) -> Any:
    """Decode JSON from the database, never raising: :class:`Unreadable` when it can't.

    Deep nesting (a RecursionError in Python's decoder), numbers too long for Python's int
    conversion and anything nested deeper than a reader can walk safely are what a hostile
    row holds to crash a reader; each becomes :class:`Unreadable` with the reason.
    """
    try:
        value = json.loads(data)
    except RecursionError:
        return Unreadable("nested too deeply")
    except ValueError as exc:
        if "digits" in str(exc):  # Python's guard against quadratic int conversion
            return Unreadable("holds a number with too many digits to read")
        return Unreadable("not valid JSON")
    problem = _too_deep(value, limit=64)
    return Unreadable(problem) if problem else value


def json_problem(value: Any, *, depth: int = MAX_OPTIONS_DEPTH) -> tuple[str, str] | None:
    """Where ``value`` is unfit for a job's options and why (``("a.b", "…")``), or None.

    Checked: nesting deeper than ``depth`` below the top, numbers beyond
    :data:`MAX_JSON_NUMBER`, NaN and infinities, NUL characters (PostgreSQL text can't
    hold them), keys that are not strings, and values that are not JSON at all. The place
    is a dotted path from the top ("" for the top itself).
    """
    problem = _too_deep(value, limit=depth)
    if problem:
        return "", problem
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return where, f"has a key that is not a string ({key!r})"
                if "\x00" in key:
                    return where, "has a key holding a NUL character"
                stack.append((child, f"{where}.{key}" if where else key))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{n}]") for n, child in enumerate(item))
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int | float):
            if isinstance(item, float) and not math.isfinite(item):
                return where, "must be a finite number"
            if abs(item) > MAX_JSON_NUMBER:
                return where, f"must be within ±{MAX_JSON_NUMBER}"
        elif isinstance(item, str):
            if "\x00" in item:
                return where, "must not contain NUL (\\u0000) characters"
        else:
            return where, f"is not JSON ({type(item).__name__})"
    return None


def _too_deep(value: Any, *, limit: int) -> str | None:
    """Walked without recursion: the value may be as deep as the decoder allowed."""
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if level > limit:
            return f"nested more than {limit} levels deep"
        if isinstance(item, dict | list):
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return None
