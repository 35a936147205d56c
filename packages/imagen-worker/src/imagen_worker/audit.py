"""``imagen db check``: what the live database lets web callers do, against the design.

The design (migrations 0001, 0004 and 0005): the web role may insert a job's request
columns, read its own jobs, images and usage, set ``cancel_requested`` on its own jobs,
delete its own images and search them; ``anon`` and PUBLIC get nothing; row-level security is on for every table; the claim and cloud sync's
record are the worker's and the service role's. Anything more is reported with the
statements that take it back, and anything the worker, cloud sync or the web role need but
lack is reported with the statements that grant it. The generic Supabase recipe
(``GRANT ALL ON ALL TABLES IN SCHEMA imagen TO anon, authenticated, service_role``) is the
case this was written for.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imagen_worker.grants import (
    ALL,
    INPUTS_POLICY,
    POLICIES,
    SERVICE_ROLE_FUNCTIONS,
    SERVICE_ROLE_TABLES,
    STORAGE_POLICY,
    TABLE_PRIVILEGES,
    WEB_FUNCTIONS,
    WEB_NEEDS_FUNCTIONS,
    WEB_ROLE_TABLES,
)
from imagen_worker.schema import applied, available

if TYPE_CHECKING:
    import psycopg

    from imagen.config import Config

__all__ = ["Finding", "audit", "warn_at_start"]

log = logging.getLogger("imagen")
_COLUMN_PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "REFERENCES"})
_EVERYONES = ("current_owner", "inputs_ok")  # imagen functions anyone may run
_OWN_POLICIES = ("imagen_owner_reads", "imagen_owner_inputs")  # checked by name below


@dataclass(frozen=True)
class Finding:
    """One thing the database allows (``kind`` "excess") or lacks ("missing"), and its fix."""

    kind: str
    problem: str
    fix: tuple[str, ...]


def audit(conn: psycopg.Connection, web_role: str = "authenticated") -> list[Finding]:
    """Compare the live grants, policies and roles with the design; empty when they agree."""
    pending = [m for m in available() if m.version not in applied(conn)]
    if pending:
        return [
            Finding(
                "missing",
                f"{len(pending)} migration(s) not applied, the first {pending[0].version:04d}",
                ("-- run: imagen db migrate",),
            )
        ]
    return _Auditor(conn, web_role).run()


class _Auditor:
    def __init__(self, conn: psycopg.Connection, web_role: str) -> None:
        self.conn = conn
        self.web_role = web_role
        existing = {r for (r,) in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
        self.web_facing = [r for r in dict.fromkeys((web_role, "anon", "authenticated"))
                           if r in existing]  # fmt: skip
        self.service_role = "service_role" if "service_role" in existing else None
        self.findings: list[Finding] = []

    def run(self) -> list[Finding]:
        self._roles()
        for table, allowed in WEB_ROLE_TABLES.items():
            self._row_security(table)
            for role in [*self.web_facing, "public"]:
                self._table(table, role, allowed if role == self.web_role else {})
        self._web_role_needs()
        self._sequences()
        self._functions()
        self._schemas()
        self._policies()
        self._guard()
        self._service_role()
        self._storage()
        return self.findings

    def _add(self, kind: str, problem: str, *fix: str) -> None:
        self.findings.append(Finding(kind, problem, fix))

    def _q(self, name: str) -> str:
        """``name`` as SQL: quoted only where it must be, as pg_dump writes it."""
        if name == "public":
            return "PUBLIC"
        return str(self._one("SELECT quote_ident(%s)", [name]))

    def _one(self, query: str, params: Iterable[object] = ()) -> object:
        row = self.conn.execute(query, tuple(params)).fetchone()
        return None if row is None else row[0]

    # -- roles ------------------------------------------------------------------------------

    def _roles(self) -> None:
        for role in self.web_facing:
            super_, bypass = self.conn.execute(
                "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", (role,)
            ).fetchone()
            if super_ or bypass:
                self._add(
                    "excess",
                    f"{role} bypasses row-level security: every caller sees every row",
                    f"ALTER ROLE {self._q(role)} NOSUPERUSER NOBYPASSRLS;",
                )
            parents = self.conn.execute(
                """
                SELECT p.rolname FROM pg_auth_members m
                  JOIN pg_roles p ON p.oid = m.roleid JOIN pg_roles r ON r.oid = m.member
                 WHERE r.rolname = %s
                   AND (p.rolbypassrls OR p.rolsuper
                        OR p.oid = (SELECT relowner FROM pg_class WHERE oid = 'imagen.jobs'::regclass))
                """,
                (role,),
            ).fetchall()
            for (parent,) in parents:
                self._add(
                    "excess",
                    f"{role} is a member of {parent}, which row-level security does not restrict",
                    f"REVOKE {self._q(parent)} FROM {self._q(role)};",
                )

    # -- tables -----------------------------------------------------------------------------

    def _row_security(self, table: str) -> None:
        if not self._one("SELECT relrowsecurity FROM pg_class WHERE oid = %s::regclass", [table]):
            self._add(
                "missing",
                f"row-level security is off on {table}: any grant there reaches every row",
                f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;",
            )

    def _granted(self, table: str, role: str) -> set[str]:
        """The table-level privileges granted to ``role`` itself (or PUBLIC) on ``table``."""
        rows = self.conn.execute(
            """
            SELECT a.privilege_type FROM pg_class c,
                   aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) AS a
             WHERE c.oid = %s::regclass
               AND a.grantee = %s
            """,
            (table, self._oid(role)),
        ).fetchall()
        return {p for (p,) in rows}

    def _oid(self, role: str) -> int:
        """The grantee in an ACL: 0 for PUBLIC."""
        if role == "public":
            return 0
        return int(self._one("SELECT oid FROM pg_roles WHERE rolname = %s", [role]))

    def _column_grants(self, table: str, role: str) -> dict[str, list[str]]:
        rows = self.conn.execute(
            """
            SELECT a.privilege_type, att.attname FROM pg_attribute att,
                   aclexplode(att.attacl) AS a
             WHERE att.attrelid = %s::regclass AND att.attnum > 0 AND NOT att.attisdropped
               AND a.grantee = %s
             ORDER BY att.attnum
            """,
            (table, self._oid(role)),
        ).fetchall()
        grants: dict[str, list[str]] = {}
        for privilege, column in rows:
            grants.setdefault(privilege, []).append(column)
        return grants

    def _table(self, table: str, role: str, allowed: dict[str, str | tuple[str, ...]]) -> None:
        name = self._q(role)
        excess = [p for p in TABLE_PRIVILEGES if p in self._granted(table, role)
                  and allowed.get(p) != ALL]  # fmt: skip
        if excess:
            fix = [f"REVOKE {', '.join(excess)} ON {table} FROM {name};"]
            for privilege in excess:  # a table-level REVOKE takes the column grants with it
                columns = allowed.get(privilege)
                if columns and columns != ALL:
                    fix.append(f"GRANT {privilege} ({', '.join(columns)}) ON {table} TO {name};")
            self._add(
                "excess",
                f"{'PUBLIC' if role == 'public' else role} may {', '.join(excess)} on {table}"
                + (" (every column)" if {"INSERT", "UPDATE"} & set(excess) else ""),
                *fix,
            )
        for privilege, columns in self._column_grants(table, role).items():
            permitted = allowed.get(privilege)
            if permitted == ALL:
                continue
            extra = [c for c in columns if c not in (permitted or ())]
            if extra:
                self._add(
                    "excess",
                    f"{'PUBLIC' if role == 'public' else role} may {privilege} "
                    f"{table} ({', '.join(extra)})",
                    f"REVOKE {privilege} ({', '.join(extra)}) ON {table} FROM {name};",
                )

    def _web_role_needs(self) -> None:
        role = self.web_role
        for table, allowed in WEB_ROLE_TABLES.items():
            for privilege, columns in allowed.items():
                if privilege not in _COLUMN_PRIVILEGES:  # DELETE: the table's alone
                    lacking = [] if self._one(
                        "SELECT has_table_privilege(%s, %s, %s)", [role, table, privilege]
                    ) else ["*"]  # fmt: skip
                else:
                    wanted = self._columns(table) if columns == ALL else list(columns)
                    lacking = [
                        c for c in wanted
                        if not self._one("SELECT has_column_privilege(%s, %s, %s, %s)",
                                         [role, table, c, privilege])
                    ]  # fmt: skip
                if not lacking:
                    continue
                target = "" if columns == ALL else f" ({', '.join(lacking)})"
                self._add(
                    "missing",
                    f"{role} cannot {privilege} {table}{target}: web callers would fail",
                    f"GRANT {privilege}{target} ON {table} TO {self._q(role)};",
                )
        for function in WEB_NEEDS_FUNCTIONS:
            if not self._one("SELECT has_function_privilege(%s, %s, 'EXECUTE')", [role, function]):
                self._add(
                    "missing",
                    f"{role} cannot run {function}: web callers would fail",
                    f"GRANT EXECUTE ON FUNCTION {function} TO {self._q(role)};",
                )

    def _columns(self, table: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
            " AND NOT attisdropped ORDER BY attnum",
            (table,),
        ).fetchall()
        return [c for (c,) in rows]

    def _sequences(self) -> None:
        rows = self.conn.execute(
            """
            SELECT c.oid::regclass::text, a.privilege_type,
                   CASE WHEN a.grantee = 0 THEN 'public' ELSE a.grantee::regrole::text END
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
                   aclexplode(coalesce(c.relacl, acldefault('s', c.relowner))) AS a
             WHERE c.relkind = 'S' AND n.nspname IN ('imagen', 'mai')
               AND (a.grantee = 0 OR a.grantee::regrole::text = ANY(%s))
             ORDER BY 1, 2
            """,
            (self.web_facing,),
        ).fetchall()
        grouped: dict[tuple[str, str], list[str]] = {}
        for sequence, privilege, role in rows:
            grouped.setdefault((sequence, role), []).append(privilege)
        for (sequence, role), privileges in grouped.items():
            self._add(
                "excess",
                f"{'PUBLIC' if role == 'public' else role} may {', '.join(privileges)} on "
                f"{sequence} (setval there breaks the ids of new rows)",
                f"REVOKE ALL ON SEQUENCE {sequence} FROM {self._q(role)};",
            )

    def _functions(self) -> None:
        rows = self.conn.execute(
            """
            SELECT p.oid::regprocedure::text, p.proname,
                   CASE WHEN a.grantee = 0 THEN 'public' ELSE a.grantee::regrole::text END
              FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
                   aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
             WHERE n.nspname = 'imagen' AND p.prorettype <> 'trigger'::regtype
               AND a.privilege_type = 'EXECUTE'
               AND (a.grantee = 0 OR a.grantee::regrole::text = ANY(%s))
             ORDER BY 1, 3
            """,
            (self.web_facing,),
        ).fetchall()
        for signature, name, role in rows:
            # current_owner() is everyone's (it only reads the caller's own claims), and so is
            # inputs_ok() (it only reads its arguments, for whoever inserts a job); the other
            # web functions are the web role's.
            if name in _EVERYONES or (name in WEB_FUNCTIONS and role == self.web_role):
                continue
            whose = "the web role's" if name in WEB_FUNCTIONS else "the worker's and cloud sync's"
            self._add(
                "excess",
                f"{'PUBLIC' if role == 'public' else role} may run {signature} ({whose} alone)",
                f"REVOKE EXECUTE ON FUNCTION {signature} FROM {self._q(role)};",
            )

    def _schemas(self) -> None:
        for schema in ("imagen", "mai"):
            for role in [*self.web_facing, "public"]:
                if self._one("SELECT has_schema_privilege(%s, %s, 'CREATE')", [role, schema]):
                    self._add(
                        "excess",
                        f"{'PUBLIC' if role == 'public' else role} may CREATE in schema {schema}",
                        f"REVOKE CREATE ON SCHEMA {schema} FROM {self._q(role)};",
                    )

    def _policies(self) -> None:
        rows = self.conn.execute(
            """
            SELECT schemaname || '.' || tablename, policyname, roles::text[]
              FROM pg_policies
             WHERE (schemaname, tablename) IN (('imagen', 'jobs'), ('imagen', 'images'),
                                               ('mai', 'imagen_usage'),
                                               ('imagen', 'schema_migrations'),
                                               ('imagen', 'workers'))
            """
        ).fetchall()
        present = set()
        for table, name, roles in rows:
            present.add((table, name))
            if (table, name) in POLICIES:
                continue
            if {"public", *self.web_facing} & set(roles):
                self._add(
                    "excess",
                    f"policy {name} on {table} is not imagen's and applies to "
                    f"{', '.join(roles)}: it may show or change other owners' rows",
                    f"DROP POLICY {self._q(name)} ON {table};",
                )
        for (table, name), statement in POLICIES.items():
            if (table, name) not in present:
                self._add(
                    "missing",
                    f"policy {name} on {table} is missing: web callers lose their own rows",
                    statement.format(role=self._q(self.web_role)),
                )

    def _guard(self) -> None:
        enabled = self._one(
            "SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'imagen.jobs'::regclass"
            " AND tgname = 'jobs_web_columns'"
        )
        if enabled in (None, "D"):
            self._add(
                "missing",
                "trigger jobs_web_columns is off: a widened grant would let callers write "
                "the worker's columns",
                "ALTER TABLE imagen.jobs ENABLE TRIGGER jobs_web_columns;",
            )

    def _service_role(self) -> None:
        if self.service_role is None:
            return
        for schema in ("imagen", "mai"):
            if not self._one("SELECT has_schema_privilege('service_role', %s, 'USAGE')", [schema]):
                self._add(
                    "missing",
                    f"service_role has no USAGE on schema {schema}: the worker and cloud sync fail",
                    f"GRANT USAGE ON SCHEMA {schema} TO service_role;",
                )
        for table, privileges in SERVICE_ROLE_TABLES.items():
            lacking = [
                p for p in privileges
                if not self._one("SELECT has_table_privilege('service_role', %s, %s)", [table, p])
            ]  # fmt: skip
            if lacking:
                self._add(
                    "missing",
                    f"service_role cannot {', '.join(lacking)} on {table}: the worker or cloud "
                    "sync fails",
                    f"GRANT {', '.join(lacking)} ON {table} TO service_role;",
                )
        for function in SERVICE_ROLE_FUNCTIONS:
            if not self._one(
                "SELECT has_function_privilege('service_role', %s, 'EXECUTE')", [function]
            ):
                self._add(
                    "missing",
                    f"service_role cannot run {function}",
                    f"GRANT EXECUTE ON FUNCTION {function} TO service_role;",
                )

    def _storage(self) -> None:
        if self._one("SELECT to_regclass('storage.objects')") is None:
            return
        rows = self.conn.execute(
            """
            SELECT policyname, roles::text[], cmd, coalesce(qual, with_check, 'true')
              FROM pg_policies WHERE schemaname = 'storage' AND tablename = 'objects'
            """
        ).fetchall()
        buckets = {b for (b,) in self.conn.execute(
            "SELECT DISTINCT storage_bucket FROM imagen.images WHERE storage_bucket IS NOT NULL"
        ).fetchall()}  # fmt: skip
        names = set()
        for name, roles, command, condition in rows:
            names.add(name)
            if not ({"public", *self.web_facing} & set(roles)) or name in _OWN_POLICIES:
                continue
            text = condition.strip().strip("()")
            everyone = text == "true" or any(
                text == f"bucket_id = '{bucket}'::text" for bucket in buckets
            )
            if everyone:
                self._add(
                    "excess",
                    f"Storage policy {name!r} lets {', '.join(roles)} {command} every object "
                    f"of {'every bucket' if text == 'true' else 'imagen' + chr(39) + 's bucket'}, "
                    "every owner's images included",
                    f"DROP POLICY {self._q(name)} ON storage.objects;",
                )
        if "imagen_owner_reads" not in names:
            self._add(
                "missing",
                "Storage policy imagen_owner_reads is missing: users cannot download their own "
                "images (run the statement as the owner of storage.objects, e.g. in the "
                "Supabase SQL editor)",
                STORAGE_POLICY.format(role=self._q(self.web_role)),
            )
        if "imagen_owner_inputs" not in names:
            self._add(
                "missing",
                "Storage policy imagen_owner_inputs is missing: users cannot upload input "
                "images to their own folder imagen-inputs/<owner>/ (run the statement as the "
                "owner of storage.objects, e.g. in the Supabase SQL editor)",
                INPUTS_POLICY.format(role=self._q(self.web_role)),
            )


def warn_at_start(url: str, config: Config) -> None:
    """Log a warning per finding, for ``imagen serve`` and ``imagen worker`` at start.

    Never raises: an audit that cannot run (no rights to read a catalog, a lost
    connection) is logged at debug level and the command goes on.
    """
    from imagen_worker.database import connect, web_role

    try:
        with connect(url) as conn:
            findings = audit(conn, web_role(config))
    except Exception:  # a check at start must never stop the start
        log.debug("imagen db check could not run", exc_info=True)
        return
    for finding in findings:
        log.warning("database: %s", finding.problem)
    if findings:
        log.warning("imagen db check prints the statements that fix the database")
