"""The SQL the worker runs, in one place."""

from __future__ import annotations

# Claim up to %(limit)s runnable jobs, by priority then age; SKIP LOCKED lets any number of
# workers claim at once without waiting on each other or taking a job twice.
CLAIM = """
UPDATE imagen.jobs AS j
   SET status = 'running', attempts = j.attempts + 1, lease_owner = %(worker)s,
       lease_expires_at = now() + make_interval(secs => %(lease)s),
       started_at = coalesce(j.started_at, now()), updated_at = now(), error = NULL
 WHERE j.id IN (
       SELECT id FROM imagen.jobs
        WHERE status = 'pending' AND run_after <= now() AND NOT cancel_requested
        ORDER BY priority DESC, run_after, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED)
RETURNING j.*
"""

HEARTBEAT = """
UPDATE imagen.jobs SET lease_expires_at = now() + make_interval(secs => %(lease)s)
 WHERE id = ANY(%(ids)s) AND lease_owner = %(worker)s AND status = 'running'
"""

# Jobs whose worker died: back to pending (their next claim resumes the upstream run), or
# failed once they have used up their attempts.
RECOVER = """
UPDATE imagen.jobs
   SET status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END,
       error = CASE WHEN attempts >= max_attempts
                    THEN 'its worker stopped responding on the last of ' || max_attempts || ' attempts'
                    ELSE 'recovered: its worker stopped responding' END,
       finished_at = CASE WHEN attempts >= max_attempts THEN now() END,
       lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
 WHERE status = 'running' AND lease_expires_at < now()
RETURNING id, status
"""

CANCEL_PENDING = """
UPDATE imagen.jobs SET status = 'cancelled', finished_at = now(), updated_at = now()
 WHERE status = 'pending' AND cancel_requested
RETURNING id
"""

SET_RUN_ID = "UPDATE imagen.jobs SET upstream_run_id = %s, updated_at = now() WHERE id = %s"

SET_PROGRESS = """
UPDATE imagen.jobs SET progress = coalesce(progress, '{}'::jsonb) || %s::jsonb, updated_at = now()
 WHERE id = %s
"""

INSERT_IMAGE = """
INSERT INTO imagen.images (owner, job_id, local_path, storage_location, prompt, backend, seed,
                           width, height, mime_type, metadata)
VALUES (%(owner)s, %(job_id)s, %(local_path)s, %(storage_location)s, %(prompt)s, %(backend)s,
        %(seed)s, %(width)s, %(height)s, %(mime_type)s, %(metadata)s)
RETURNING id
"""

DONE = """
UPDATE imagen.jobs SET status = 'done', image_id = %(image_id)s, finished_at = now(),
       lease_owner = NULL, lease_expires_at = NULL, error = NULL, updated_at = now()
 WHERE id = %(id)s AND lease_owner = %(worker)s
"""

RETRY = """
UPDATE imagen.jobs SET status = 'pending', error = %(error)s,
       run_after = now() + make_interval(secs => %(delay)s),
       lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
 WHERE id = %(id)s AND lease_owner = %(worker)s
"""

FINISH = """
UPDATE imagen.jobs SET status = %(status)s, error = %(error)s, finished_at = now(),
       lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
 WHERE id = %(id)s AND lease_owner = %(worker)s
"""

# On shutdown: back to pending without counting the attempt it was on.
RELEASE = """
UPDATE imagen.jobs SET status = 'pending', attempts = greatest(attempts - 1, 0),
       lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
 WHERE id = ANY(%(ids)s) AND lease_owner = %(worker)s AND status = 'running'
"""
