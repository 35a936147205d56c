"""The SQL the worker runs, in one place."""

from __future__ import annotations

# Claim up to %(limit)s runnable jobs, by priority then age; SKIP LOCKED lets any number of
# workers claim at once without waiting on each other or taking a job twice. The function
# (migration 0002) holds the UPDATE and the planner setting that keeps it O(1).
CLAIM = "SELECT * FROM imagen.claim_jobs(%(worker)s, %(lease)s, %(limit)s)"

# Renew the leases of the jobs running here; the rows returned are the ones still held.
HEARTBEAT = """
UPDATE imagen.jobs SET lease_expires_at = now() + make_interval(secs => %(lease)s)
 WHERE id = ANY(%(ids)s) AND lease_owner = %(worker)s AND status = 'running'
RETURNING id
"""

# Which of the jobs running here someone allowed to has asked to cancel. A notification
# only says "look": this row state decides.
CANCEL_REQUESTED = """
SELECT id FROM imagen.jobs
 WHERE id = ANY(%(ids)s) AND lease_owner = %(worker)s AND status = 'running' AND cancel_requested
"""

# Jobs whose worker died: back to pending (their next claim resumes the upstream run), or
# failed once they have used up their attempts.
RECOVER = """
UPDATE imagen.jobs
   SET status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END,
       error = CASE WHEN attempts >= max_attempts
                    THEN 'its worker stopped responding on the last of ' || max_attempts || ' attempts'
                    ELSE 'recovered: its worker stopped responding' END,
       error_kind = CASE WHEN attempts >= max_attempts THEN 'lost' END,
       finished_at = CASE WHEN attempts >= max_attempts THEN now() END,
       lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
 WHERE status = 'running' AND lease_expires_at < now()
RETURNING id, status
"""

CANCEL_PENDING = """
UPDATE imagen.jobs SET status = 'cancelled', error = NULL, error_kind = NULL,
       finished_at = now(), updated_at = now()
 WHERE status = 'pending' AND cancel_requested
RETURNING id
"""

SET_RUN_ID = "UPDATE imagen.jobs SET upstream_run_id = %s, updated_at = now() WHERE id = %s"

SET_PROGRESS = """
UPDATE imagen.jobs SET progress = coalesce(progress, '{}'::jsonb) || %s::jsonb, updated_at = now()
 WHERE id = %s
"""

# How a job ended. Each is a list of CTEs ending in ``ended (id, status)``, the job row it
# changed (none when this worker no longer holds the lease), so that it can run alone or
# together with the claim of this thread's next job: one statement, one commit.

# The images and the job's "done", atomically: nothing is written unless this worker still
# holds the lease, and the job's image link is its first image.
DONE = """
job AS (
    SELECT id, owner FROM imagen.jobs
     WHERE id = %(id)s AND lease_owner = %(worker)s AND status = 'running'
       FOR UPDATE
), inserted AS (
    INSERT INTO imagen.images (owner, job_id, local_path, storage_bucket, storage_location,
                               prompt, backend, seed, width, height, mime_type, metadata)
    SELECT job.owner, job.id, i.local_path, i.storage_bucket, i.storage_location, i.prompt,
           i.backend, i.seed, i.width, i.height, i.mime_type, coalesce(i.metadata, '{}')
      FROM job, ROWS FROM (jsonb_to_recordset(%(images)s) AS (
               local_path text, storage_bucket text, storage_location text, prompt text,
               backend text, seed bigint, width integer, height integer, mime_type text,
               metadata jsonb
           )) WITH ORDINALITY AS i(local_path, storage_bucket, storage_location, prompt, backend,
                                   seed, width, height, mime_type, metadata, n)
     ORDER BY i.n
    RETURNING id
), ended AS (
    UPDATE imagen.jobs AS j
       SET status = 'done', image_id = (SELECT min(id) FROM inserted), finished_at = now(),
           lease_owner = NULL, lease_expires_at = NULL, error = NULL, error_kind = NULL,
           updated_at = now()
      FROM job WHERE j.id = job.id
    RETURNING j.id, j.status
)"""

# A transient failure: pending again once the backoff has passed.
RETRY = """
ended AS (
    UPDATE imagen.jobs SET status = 'pending', error = %(error)s, error_kind = 'transient',
           run_after = now() + make_interval(secs => %(delay)s),
           lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
     WHERE id = %(id)s AND lease_owner = %(worker)s
    RETURNING id, status
)"""

# Failed or cancelled, for good.
FINISH = """
ended AS (
    UPDATE imagen.jobs SET status = %(status)s, error = %(error)s, error_kind = %(kind)s,
           finished_at = now(),
           lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
     WHERE id = %(id)s AND lease_owner = %(worker)s
    RETURNING id, status
)"""


def recording(ending: str) -> str:
    """The statement that records ``ending``; its rows are the jobs it changed."""
    return f"WITH {ending}\nSELECT id FROM ended"


def recording_then_claiming(ending: str) -> str:
    """Record ``ending`` and claim up to %(limit)s next jobs in one statement.

    One row without a job (``id`` NULL) when nothing was claimed; ``recorded`` counts the
    jobs the ending changed.
    """
    return (
        f"WITH {ending}, claimed AS ({CLAIM})\n"
        "SELECT (SELECT count(*) FROM ended) AS recorded, claimed.*\n"
        "  FROM (SELECT 1) AS one LEFT JOIN claimed ON true"
    )


# On shutdown: back to pending without counting the attempt it was on, announced so that
# another worker with a free slot takes it at once.
RELEASE = """
WITH job AS (
    UPDATE imagen.jobs SET status = 'pending', attempts = greatest(attempts - 1, 0),
           lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
     WHERE id = ANY(%(ids)s) AND lease_owner = %(worker)s AND status = 'running'
    RETURNING id
)
SELECT id, pg_notify('imagen_jobs', '{"event": "released"}') FROM job
"""

# `imagen jobs retry`: a failed or cancelled job queued again, announced to the workers.
REQUEUE = """
WITH job AS (
    UPDATE imagen.jobs SET status = 'pending', attempts = 0, error = NULL, error_kind = NULL,
           cancel_requested = false, run_after = now(), finished_at = NULL, updated_at = now()
     WHERE id = %s AND status IN ('failed', 'cancelled')
    RETURNING id
)
SELECT id, pg_notify('imagen_jobs', '{"event": "requeued"}') FROM job
"""

# A worker's presence in imagen.workers: written when it starts listening and renewed with
# its heartbeat, so that imagen serve and imagen jobs can tell a user when no worker would
# run their job. Rows of workers that died without removing theirs go a day later (the
# table holds one row per worker: this costs nothing).
PRESENT = """
WITH forgotten AS (
    DELETE FROM imagen.workers WHERE lease_expires_at < now() - interval '1 day'
)
INSERT INTO imagen.workers AS w (id, concurrency, lease_expires_at)
VALUES (%(worker)s, %(concurrency)s, now() + make_interval(secs => %(lease)s))
ON CONFLICT (id) DO UPDATE SET lease_expires_at = excluded.lease_expires_at
"""

GONE = "DELETE FROM imagen.workers WHERE id = %(worker)s"

# The workers there now, and how many jobs they run at once between them.
WORKERS = """
SELECT count(*) AS workers, coalesce(sum(concurrency), 0)::integer AS slots
  FROM imagen.workers WHERE lease_expires_at > now()
"""

# A pending job's place in the queue (1: the next one claimed), in the order the claim takes
# them; no row when the job is not pending. It counts every owner's jobs.
QUEUE_POSITION = """
SELECT 1 + (SELECT count(*) FROM imagen.jobs AS q
             WHERE q.status = 'pending' AND NOT q.cancel_requested
               AND (q.priority > j.priority
                    OR (q.priority = j.priority AND (q.run_after, q.id) < (j.run_after, j.id))))
       AS position
  FROM imagen.jobs AS j
 WHERE j.id = %(id)s AND j.status = 'pending'
"""
