"""Lists newest first, a page at a time, the next page starting below the last id seen."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Path, Query
from psycopg import sql

from imagen_worker.limits import MAX_BIGINT

__all__ = [
    "Before",
    "ImageId",
    "JobFilter",
    "JobId",
    "Limit",
    "newest_first",
    "next_page",
]

Limit = Annotated[int, Query(ge=1, le=100, description="how many, at most")]
# Ids past bigint are refused at the door: the search function's bigint parameters would
# answer them with an error rather than find nothing.
Before = Annotated[
    int | None, Query(ge=1, le=MAX_BIGINT, description="the id to list from, exclusive")
]
JobFilter = Annotated[int | None, Query(ge=1, le=MAX_BIGINT, description="only this job's images")]
JobId = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="the job's id")]
ImageId = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="the image's id")]


def newest_first(columns: sql.Composable, source: str, key: str, where: list[str]) -> sql.Composed:
    """``SELECT columns FROM source [WHERE …] ORDER BY key DESC LIMIT %(limit)s``.

    :param where: the conditions the request's filters ask for, joined with AND.
    """
    conditions = sql.SQL(" AND ").join(sql.SQL(condition) for condition in where)
    return sql.SQL("SELECT {} FROM {} {} ORDER BY {} DESC LIMIT %(limit)s").format(
        columns,
        sql.SQL(source),
        sql.SQL("WHERE ") + conditions if where else sql.SQL(""),
        sql.SQL(key),
    )


def next_page(path: str, rows: list[dict[str, Any]], limit: int, **filters: Any) -> str | None:
    """The link to the page after ``rows``, or None when ``rows`` was the last one."""
    if len(rows) < limit:
        return None
    given = {name: value for name, value in filters.items() if value is not None}
    return f"{path}?{urlencode({'limit': limit, 'before': rows[-1]['id'], **given}, doseq=True)}"
