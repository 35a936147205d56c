"""The ``worker:`` section: which database the queue lives in, and how the worker runs.

Imported when a config is loaded (through the plugin's ``imagen_config_sections``), so it
imports no database driver.
"""

from __future__ import annotations

import re
from typing import Any

from imagen.sections import Section, SectionData, Setting

__all__ = ["WORKER", "WORKER_SECTION"]

WORKER: dict[str, Setting] = {
    "database_url": Setting(
        str,
        None,
        "the PostgreSQL URL of the queue, `postgresql://USER:PASSWORD@HOST/DB` "
        "(`--database-url` overrides it; when neither is set, `$IMAGEN_DATABASE_URL`, else the "
        "embedded PostgreSQL in `$XDG_DATA_HOME/imagen/pg`)",
    ),
    "web_role": Setting(
        str,
        "authenticated",
        "the database role web callers act as, which row-level security confines to their "
        "own jobs (Supabase's `authenticated`)",
    ),
    "concurrency": Setting(
        int, 1, "jobs one `imagen worker` process runs at once (`-c` overrides it)"
    ),
}

# What libpq accepts: a URL, or key=value pairs (``host=db dbname=imagen``).
_URL = re.compile(r"^(postgres|postgresql)://", re.IGNORECASE)
_CONNINFO = re.compile(r"^\s*\w+\s*=")
_ROLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")


def _parse(data: SectionData) -> dict[str, Any]:
    values = data.values
    url = values["database_url"]
    if url is not None and not (_URL.match(url) or _CONNINFO.match(url)):
        raise data.error(
            "must be a PostgreSQL URL (postgresql://USER:PASSWORD@HOST/DB) "
            "or libpq key=value settings",
            "database_url",
        )
    if not _ROLE.match(values["web_role"]):
        raise data.error(
            f"must be the name of a database role, not {values['web_role']!r}", "web_role"
        )
    if values["concurrency"] < 1:
        raise data.error(f"must be at least 1, not {values['concurrency']}", "concurrency")
    return values


WORKER_SECTION = Section(
    "worker", "the queue: its database, the web role, the worker daemon", WORKER, parse=_parse
)
