-- Who is there to run jobs, a pending job cancelled at once whoever asks, and the gallery's
-- delete and search.
-- __WEB_ROLE__ is replaced by the configured web role's quoted name (default authenticated).

-- The workers running now, each renewing its row with its heartbeat (imagen_worker.leases)
-- and removing it when it stops: imagen serve and imagen jobs tell a user when no worker
-- would run their job. A worker that died stops counting once its lease has expired.
CREATE TABLE imagen.workers (
    id text PRIMARY KEY,                      -- host:pid:random, as in jobs.lease_owner
    concurrency integer NOT NULL CHECK (concurrency >= 1),
    started_at timestamptz NOT NULL DEFAULT now(),
    lease_expires_at timestamptz NOT NULL
);
REVOKE ALL ON imagen.workers FROM PUBLIC;
ALTER TABLE imagen.workers ENABLE ROW LEVEL SECURITY;  -- and no policy: no web role reads it

-- A pending job is cancelled the moment someone allowed to sets its cancel_requested (its
-- owner through imagen serve or PostgREST, the CLI as the tables' owner), with no worker
-- needed: the web role may only set the flag, so the status is changed here, with the
-- rights of this function's owner and only for that one row, still pending. A running job
-- is its worker's to stop.
CREATE FUNCTION imagen.cancel_pending_job() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE imagen.jobs
       SET status = 'cancelled', error = NULL, error_kind = NULL, finished_at = now(),
           updated_at = now()
     WHERE id = NEW.id AND status = 'pending' AND cancel_requested;
    RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION imagen.cancel_pending_job() FROM PUBLIC;

CREATE TRIGGER jobs_cancel_pending AFTER UPDATE OF cancel_requested ON imagen.jobs
    FOR EACH ROW WHEN (NEW.cancel_requested AND NOT OLD.cancel_requested AND NEW.status = 'pending')
    EXECUTE FUNCTION imagen.cancel_pending_job();

-- Owners delete their own images (the gallery's Delete): imagen serve removes the file once
-- the row is gone. A job keeps its row; its image_id is cleared with the image it named.
GRANT DELETE ON imagen.images TO __WEB_ROLE__;
CREATE POLICY images_delete_own ON imagen.images FOR DELETE TO __WEB_ROLE__
    USING (owner = imagen.current_owner());

-- Search by prompt: words and word beginnings, any language's letters, case-insensitive.
CREATE INDEX images_prompt_words ON imagen.images USING gin (to_tsvector('simple', prompt));

-- The caller's images whose prompt matches ``query`` (newest first, below ``before``, at most
-- ``n``, of job ``job`` when given). A function rather than a query under row-level security:
-- text search operators are not leakproof, so under a policy the planner may not use the
-- index above and reads every image of the owner instead. This one applies the policy's
-- own rule (owner = imagen.current_owner()) itself, and nothing else.
CREATE FUNCTION imagen.search_images(query tsquery, before bigint, job bigint, n integer)
RETURNS SETOF imagen.images
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT i.* FROM imagen.images AS i
 WHERE i.owner = imagen.current_owner()
   AND to_tsvector('simple', i.prompt) @@ query
   AND (before IS NULL OR i.id < before)
   AND (job IS NULL OR i.job_id = job)
 ORDER BY i.id DESC
 LIMIT least(greatest(n, 0), 100)
$$;
REVOKE EXECUTE ON FUNCTION imagen.search_images(tsquery, bigint, bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION imagen.search_images(tsquery, bigint, bigint, integer) TO __WEB_ROLE__;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'service_role') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON imagen.workers TO service_role;
    END IF;
END
$$;
