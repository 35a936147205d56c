"""The history index: one SQLite file, one row per image, searchable by prompt text.

Why SQLite: it is in the standard library, one file the user can copy, and it serves a
search over many thousands of rows from indexes instead of reading every sidecar. Several
processes write at once (an ``imagen generate`` beside a worker's threads): the file is in
WAL mode, so readers never block a writer, and each write is one short transaction that
waits (``busy_timeout``) for another writer instead of failing.

Prompts are searched with FTS5's trigram tokenizer: any part of a word matches (``light``
finds "lighthouse"), in any script (``日本`` finds "日本語", which a word tokenizer would
not split), case-insensitively, from the index. A term shorter than three characters
cannot use trigrams and is matched with ``LIKE`` among the rows the other filters leave.

Ids come from ``AUTOINCREMENT``: never reused, so ``imagen open 42`` never names another
image after 42 is forgotten.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagen.errors import OutputError

if TYPE_CHECKING:
    from imagen.config import Config
    from imagen.history.entry import Entry

__all__ = ["COLUMNS", "HistoryIndex", "default_history_path"]

_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,          -- ISO 8601, UTC: sorts as time does
    path TEXT NOT NULL,
    sidecar TEXT,
    mime_type TEXT NOT NULL,
    prompt TEXT NOT NULL,
    final_prompt TEXT NOT NULL,
    negative_prompt TEXT NOT NULL DEFAULT '',
    style TEXT,
    backend TEXT NOT NULL,
    backend_type TEXT NOT NULL,
    model TEXT,
    seed TEXT,                      -- text: ComfyUI's seeds go past SQLite's integers
    width INTEGER,
    height INTEGER,
    cost_usd REAL,
    entry TEXT NOT NULL,            -- cli, worker
    job_id INTEGER,
    owner TEXT,
    run TEXT NOT NULL               -- the images of one run share it
);
CREATE INDEX IF NOT EXISTS images_created ON images (created);
CREATE INDEX IF NOT EXISTS images_backend ON images (backend, created);
CREATE INDEX IF NOT EXISTS images_path ON images (path);
CREATE INDEX IF NOT EXISTS images_run ON images (run);
CREATE VIRTUAL TABLE IF NOT EXISTS images_text USING fts5(
    prompt, final_prompt, content='images', content_rowid='id', tokenize='trigram'
);
CREATE TRIGGER IF NOT EXISTS images_text_add AFTER INSERT ON images BEGIN
    INSERT INTO images_text (rowid, prompt, final_prompt)
    VALUES (new.id, new.prompt, new.final_prompt);
END;
CREATE TRIGGER IF NOT EXISTS images_text_remove AFTER DELETE ON images BEGIN
    INSERT INTO images_text (images_text, rowid, prompt, final_prompt)
    VALUES ('delete', old.id, old.prompt, old.final_prompt);
END;
"""
COLUMNS = (
    "id", "created", "path", "sidecar", "mime_type", "prompt", "final_prompt",
    "negative_prompt", "style", "backend", "backend_type", "model", "seed", "width", "height",
    "cost_usd", "entry", "job_id", "owner", "run",
)  # fmt: skip
_TRIGRAM = 3


def default_history_path(config: Config | None = None) -> Path:
    """``history.path`` of ``config``, else ``history.sqlite3`` in the user data directory."""
    from imagen.dirs import data_dir, expand_path

    if config is not None:
        from imagen.history.settings import HISTORY

        path = config.section_values("history", HISTORY)["path"]
        if path:
            return expand_path(path)
    return data_dir() / "history.sqlite3"


def _wal(conn: sqlite3.Connection) -> None:
    """Put the file in WAL mode, unless another connection is doing it right now.

    Switching the journal mode needs the file to itself, and SQLite answers "database is
    locked" at once, without waiting, while another connection uses it: that connection
    is making the same switch (the mode is kept in the file), so the failure is harmless.
    """
    if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    with suppress(sqlite3.OperationalError):
        conn.execute("PRAGMA journal_mode = WAL")


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class HistoryIndex:
    """The index in the SQLite file at ``path`` (created on first write)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def default(cls, config: Config | None = None) -> HistoryIndex:
        """The index ``config`` names (the user data directory's by default)."""
        return cls(default_history_path(config))

    @contextmanager
    def _connect(self, *, writing: bool) -> Iterator[sqlite3.Connection]:
        try:
            if writing:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise OutputError(f"cannot open the history index {self.path}: {exc}") from exc
        with closing(conn):
            try:
                conn.execute("PRAGMA busy_timeout = 30000")
                if conn.execute("PRAGMA user_version").fetchone()[0] != _VERSION:
                    _wal(conn)
                    # One transaction: a process starting at the same time waits, then
                    # finds every IF NOT EXISTS satisfied.
                    conn.executescript(
                        f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {_VERSION}; COMMIT;"
                    )
                yield conn
            except sqlite3.Error as exc:
                raise OutputError(f"the history index {self.path} failed: {exc}") from exc

    def add(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Index ``rows`` (each every column but ``id``) in one transaction; their new ids."""
        names = [name for name in COLUMNS if name != "id"]
        with self._connect(writing=True) as conn:
            conn.execute("BEGIN IMMEDIATE")
            ids = [
                int(
                    conn.execute(
                        f"INSERT INTO images ({', '.join(names)}) "
                        f"VALUES ({', '.join('?' * len(names))})",
                        [row.get(name) for name in names],
                    ).lastrowid
                    or 0
                )
                for row in rows
            ]
            conn.execute("COMMIT")
        return ids

    def forget_paths(self, paths: Sequence[str]) -> None:
        """Remove the entries of images at ``paths`` (removed again by their run)."""
        if not paths or not self.path.exists():
            return
        with self._connect(writing=True) as conn:
            conn.execute(
                f"DELETE FROM images WHERE path IN ({', '.join('?' * len(paths))})", list(paths)
            )

    def search(
        self,
        text: str | None = None,
        *,
        backend: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 50,
        oldest_first: bool = False,
    ) -> list[Entry]:
        """The entries matching every filter, the newest first (or the oldest first).

        :param text: words that must all appear in the prompt (or the prompt its style
            made), each as any part of a word, case-insensitively.
        """
        if not self.path.exists():
            return []
        where, params = [], []
        terms = (text or "").split()
        long_terms = [term for term in terms if len(term) >= _TRIGRAM]
        if long_terms:
            # Each term a quoted phrase: the user's quotes and operators are only text.
            match = " AND ".join('"' + term.replace('"', '""') + '"' for term in long_terms)
            where.append("id IN (SELECT rowid FROM images_text WHERE images_text MATCH ?)")
            params.append(match)
        for term in terms:
            if len(term) < _TRIGRAM:
                where.append("(prompt LIKE ? ESCAPE '\\' OR final_prompt LIKE ? ESCAPE '\\')")
                params += [_like(term), _like(term)]
        if backend is not None:
            where.append("backend = ?")
            params.append(backend)
        if since is not None:
            where.append("created >= ?")
            params.append(_iso(since))
        if until is not None:
            where.append("created < ?")
            params.append(_iso(until))
        query = f"SELECT {', '.join(COLUMNS)} FROM images"
        if where:
            query += " WHERE " + " AND ".join(where)
        order = "ASC" if oldest_first else "DESC"
        query += f" ORDER BY created {order}, id {order}"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        with self._connect(writing=False) as conn:
            rows = conn.execute(query, params).fetchall()
        return [_entry(row) for row in rows]

    def get(self, image_id: int) -> Entry | None:
        """The entry with id ``image_id``, if the history has it."""
        if not self.path.exists():
            return None
        with self._connect(writing=False) as conn:
            row = conn.execute(
                f"SELECT {', '.join(COLUMNS)} FROM images WHERE id = ?", (image_id,)
            ).fetchone()
        return _entry(row) if row is not None else None


def _entry(row: Sequence[Any]) -> Entry:
    from imagen.history.entry import Entry

    data = dict(zip(COLUMNS, row, strict=True))
    data["created"] = datetime.fromisoformat(data["created"])
    return Entry(**data)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()
