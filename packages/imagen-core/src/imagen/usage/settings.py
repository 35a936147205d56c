"""The ``usage:`` section: whether usage is recorded, where, and the spending caps."""

from __future__ import annotations

from typing import Any

from imagen.sections import Section, SectionData, Setting

__all__ = ["USAGE", "USAGE_SECTION"]

USAGE: dict[str, Setting] = {
    "record": Setting(bool, True, "keep a usage record of every generation"),
    "path": Setting(
        str,
        None,
        "the local SQLite file records go to when no plugin offers another sink; "
        "default `$XDG_DATA_HOME/imagen/usage.sqlite3`",
    ),
    "confirm_over": Setting(
        int,
        4,
        "`imagen generate` asks before a paid run of more images than this (`--yes` skips "
        "the question; where nothing can answer it, the run is refused); -1: never ask",
    ),
    "budget": Setting(
        dict,
        None,
        "spending caps in USD: `daily_usd`, `monthly_usd`, and the same under "
        "`backends.NAME` and `per_owner` (each web user, in the worker); see docs/usage.md",
    ),
}


def _parse(data: SectionData) -> dict[str, Any]:
    if data.values["confirm_over"] < -1:
        raise data.error(
            f"must be -1 (never ask) or more, not {data.values['confirm_over']}", "confirm_over"
        )
    if data.values["budget"] is not None:
        from imagen.usage.budget import parse_budget

        parse_budget(data.source)
    return data.values


USAGE_SECTION = Section("usage", "usage and cost records, and spending caps", USAGE, parse=_parse)
