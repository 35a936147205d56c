"""What the schema's design lets each role do: the reference ``imagen db check`` audits against.

Migrations 0001 and 0003 to 0006 grant exactly this; keep the two in step (the Supabase tests run
the audit on a freshly migrated project and expect no finding).
"""

from __future__ import annotations

__all__ = [
    "ALL",
    "INPUTS_POLICY",
    "POLICIES",
    "REQUEST_COLUMNS",
    "SERVICE_ROLE_FUNCTIONS",
    "SERVICE_ROLE_TABLES",
    "STORAGE_POLICY",
    "TABLE_PRIVILEGES",
    "WEB_FUNCTIONS",
    "WEB_NEEDS_FUNCTIONS",
    "WEB_ROLE_TABLES",
]

TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
ALL = "*"  # every column: the table-level privilege is allowed
REQUEST_COLUMNS = (
    "prompt", "negative_prompt", "width", "height", "steps", "seed", "style", "count",
    "backend", "options", "inputs", "strength",
)  # fmt: skip

# What the web role may do to each table: privilege -> ALL or the columns.
WEB_ROLE_TABLES: dict[str, dict[str, str | tuple[str, ...]]] = {
    "imagen.jobs": {"SELECT": ALL, "INSERT": REQUEST_COLUMNS, "UPDATE": ("cancel_requested",)},
    "imagen.images": {"SELECT": ALL, "DELETE": ALL},  # its own rows: the policies below
    "mai.imagen_usage": {"SELECT": ALL},
    "imagen.schema_migrations": {},
    "imagen.server_keys": {},
    "imagen.workers": {},
}
# What the service role needs, for the worker and for cloud sync.
SERVICE_ROLE_TABLES = {
    "imagen.jobs": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "imagen.images": ("SELECT", "INSERT"),
    "mai.imagen_usage": ("SELECT", "INSERT", "UPDATE"),
    "imagen.schema_migrations": ("SELECT",),
    "imagen.server_keys": ("SELECT",),  # the progress key: workers announce, serve follows
    "imagen.workers": ("SELECT", "INSERT", "UPDATE", "DELETE"),  # each worker's presence
}
SERVICE_ROLE_FUNCTIONS = (
    "imagen.current_owner()",
    "imagen.claim_jobs(text, double precision, integer)",
    (
        "imagen.record_synced_image(text, text, text, text, text, text, text, bigint, integer, "
        "integer, jsonb)"
    ),
)
# The imagen functions a web caller may run (the policies call current_owner; the gallery's
# search calls search_images, which applies the owner rule itself).
WEB_NEEDS_FUNCTIONS = (
    "imagen.current_owner()",
    "imagen.search_images(tsquery, bigint, bigint, integer)",
)
WEB_FUNCTIONS = ("current_owner", "search_images")

_OWN = "owner = imagen.current_owner()"
POLICIES = {  # (table, name) -> the statement that creates it, for the web role {role}
    ("imagen.jobs", "jobs_insert_own"): "CREATE POLICY jobs_insert_own ON imagen.jobs "
    f"FOR INSERT TO {{role}} WITH CHECK ({_OWN});",
    ("imagen.jobs", "jobs_read_own"): "CREATE POLICY jobs_read_own ON imagen.jobs "
    f"FOR SELECT TO {{role}} USING ({_OWN});",
    ("imagen.jobs", "jobs_cancel_own"): "CREATE POLICY jobs_cancel_own ON imagen.jobs "
    f"FOR UPDATE TO {{role}} USING ({_OWN} AND status IN ('pending', 'running')) "
    f"WITH CHECK ({_OWN});",
    ("imagen.images", "images_read_own"): "CREATE POLICY images_read_own ON imagen.images "
    f"FOR SELECT TO {{role}} USING ({_OWN});",
    ("imagen.images", "images_delete_own"): "CREATE POLICY images_delete_own ON imagen.images "
    f"FOR DELETE TO {{role}} USING ({_OWN});",
    ("mai.imagen_usage", "usage_read_own"): "CREATE POLICY usage_read_own ON mai.imagen_usage "
    f"FOR SELECT TO {{role}} USING ({_OWN});",
}
STORAGE_POLICY = (
    "CREATE POLICY imagen_owner_reads ON storage.objects FOR SELECT TO {role} "
    "USING (EXISTS (SELECT FROM imagen.images AS i WHERE i.storage_bucket = objects.bucket_id "
    "AND i.storage_location = objects.name AND i.owner = imagen.current_owner()));"
)
_INPUT_FOLDER = (
    "strpos(imagen.current_owner(), '/') = 0 "
    "AND starts_with(name, 'imagen-inputs/' || imagen.current_owner() || '/')"
)
INPUTS_POLICY = (
    "CREATE POLICY imagen_owner_inputs ON storage.objects FOR ALL TO {role} "
    f"USING ({_INPUT_FOLDER}) WITH CHECK ({_INPUT_FOLDER});"
)
