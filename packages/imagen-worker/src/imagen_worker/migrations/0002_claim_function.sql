-- The workers' claim, as a function so that it can carry its own planner setting.
--
-- Right after a burst of inserts the table's statistics still describe the queue as it was
-- (often empty), and the planner then reads every pending row through a bitmap scan and
-- sorts them all to take the first: each claim costs O(backlog), and draining a backlog of
-- n jobs O(n²). Without bitmap scans it walks jobs_claimable in order and stops at the first
-- row it can lock, whatever the statistics say. A function's SET clause is the one place
-- such a setting survives connection poolers, which drop startup options.
CREATE FUNCTION imagen.claim_jobs(worker text, lease_s double precision, n integer)
RETURNS SETOF imagen.jobs
LANGUAGE sql
VOLATILE
SET enable_bitmapscan = off
AS $$
UPDATE imagen.jobs AS j
   SET status = 'running', attempts = j.attempts + 1, lease_owner = worker,
       lease_expires_at = now() + make_interval(secs => lease_s),
       started_at = coalesce(j.started_at, now()), updated_at = now(), error = NULL
 WHERE j.id IN (
       SELECT id FROM imagen.jobs
        WHERE status = 'pending' AND run_after <= now() AND NOT cancel_requested
        ORDER BY priority DESC, run_after, id
        LIMIT n
        FOR UPDATE SKIP LOCKED)
RETURNING j.*
$$;

-- Functions are executable by PUBLIC by default; claiming is the workers' alone.
REVOKE EXECUTE ON FUNCTION imagen.claim_jobs(text, double precision, integer) FROM PUBLIC;
