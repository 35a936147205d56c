-- Everything a web user writes is checked by the database itself, whatever path it took
-- (PostgREST, imagen serve, psql): the limits below are imagen_worker.limits, and a test
-- keeps the two in step. Rows written before this migration are not re-checked (NOT VALID);
-- the worker reads every row defensively anyway.

ALTER TABLE imagen.jobs
    ADD CONSTRAINT jobs_prompt_limits CHECK (
        char_length(prompt) <= 32000 AND prompt ~ '[^[:space:]]'
    ) NOT VALID,
    ADD CONSTRAINT jobs_negative_prompt_limits CHECK (char_length(negative_prompt) <= 32000) NOT VALID,
    ADD CONSTRAINT jobs_names_limits CHECK (
        char_length(style) BETWEEN 1 AND 200 AND char_length(backend) BETWEEN 1 AND 200
    ) NOT VALID,
    ADD CONSTRAINT jobs_size_limits CHECK (width <= 16384 AND height <= 16384) NOT VALID,
    ADD CONSTRAINT jobs_steps_limits CHECK (steps <= 1000) NOT VALID,
    -- Image i of a job uses seed + i: every one of them must stay a seed that JSON carries
    -- exactly to any client (2^53 - 1, JavaScript's largest safe integer) and bigint holds.
    ADD CONSTRAINT jobs_seed_limits CHECK (seed <= 9007199254740991 - (count - 1)) NOT VALID,
    ADD CONSTRAINT jobs_attempts_limits CHECK (max_attempts <= 100) NOT VALID,
    -- Options: an object, small, shallow, and with numbers any JSON reader can hold.
    ADD CONSTRAINT jobs_options_limits CHECK (
        jsonb_typeof(options) = 'object'
        AND pg_column_size(options) <= 16384
        AND NOT jsonb_path_exists(options, 'strict $.**{9 to last}')
        AND NOT jsonb_path_exists(
            options, 'strict $.** ? (@.type() == "number" && @.abs() > 9007199254740991)'
        )
    ) NOT VALID;

-- What kind of failure ended a job, for callers that answer differently for each (imagen
-- serve answers a request the backend refused with 400, a spending cap with 429).
ALTER TABLE imagen.jobs ADD COLUMN error_kind text
    CHECK (error_kind IN ('request', 'config', 'backend', 'transient', 'budget', 'output',
                          'internal', 'lost'));

-- The status lifecycle. A new job is a fresh pending job whatever the inserting role may
-- write; a status changes only along the edges the worker and the commands use.
CREATE FUNCTION imagen.check_job_lifecycle() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'pending' OR NEW.attempts <> 0 OR NEW.cancel_requested
           OR NEW.lease_owner IS NOT NULL OR NEW.lease_expires_at IS NOT NULL
           OR NEW.upstream_run_id IS NOT NULL OR NEW.progress IS NOT NULL
           OR NEW.error IS NOT NULL OR NEW.error_kind IS NOT NULL OR NEW.image_id IS NOT NULL
           OR NEW.started_at IS NOT NULL OR NEW.finished_at IS NOT NULL THEN
            RAISE EXCEPTION 'a new job must be a fresh pending job'
                USING ERRCODE = 'check_violation',
                      HINT = 'insert only the request columns; the worker writes the rest';
        END IF;
    ELSIF NEW.status IS DISTINCT FROM OLD.status AND NOT (
           (OLD.status = 'pending' AND NEW.status IN ('running', 'cancelled', 'failed'))
        OR (OLD.status = 'running' AND NEW.status IN ('pending', 'done', 'failed', 'cancelled'))
        OR (OLD.status IN ('failed', 'cancelled') AND NEW.status = 'pending')
    ) THEN
        RAISE EXCEPTION 'job %: a % job cannot become %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_lifecycle BEFORE INSERT OR UPDATE OF status ON imagen.jobs
    FOR EACH ROW EXECUTE FUNCTION imagen.check_job_lifecycle();

-- Notifications are hints, never commands: the payload says only that something happened,
-- and a worker reads what to do from the rows. NOTIFY needs no privilege, so any role can
-- send anything on these channels; and any role can LISTEN, so payloads name no job.
CREATE OR REPLACE FUNCTION imagen.notify_job() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('imagen_jobs', json_build_object(
        'event', CASE WHEN TG_OP = 'INSERT' THEN 'inserted' ELSE 'cancel' END
    )::text);
    RETURN NEW;
END
$$;

-- Progress announcements name a job by a keyed hash of its id (imagen_worker.notices):
-- imagen serve and the workers hold the key, a listening web role learns nothing.
CREATE TABLE imagen.server_keys (
    name text PRIMARY KEY,
    value bytea NOT NULL
);
REVOKE ALL ON imagen.server_keys FROM PUBLIC;
ALTER TABLE imagen.server_keys ENABLE ROW LEVEL SECURITY;  -- and no policy: no web role reads it
INSERT INTO imagen.server_keys (name, value)
    VALUES ('progress', uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));

-- The claim as in 0002, clearing the kind of the previous attempt's failure as well.
CREATE OR REPLACE FUNCTION imagen.claim_jobs(worker text, lease_s double precision, n integer)
RETURNS SETOF imagen.jobs
LANGUAGE sql
VOLATILE
SET enable_bitmapscan = off
AS $$
UPDATE imagen.jobs AS j
   SET status = 'running', attempts = j.attempts + 1, lease_owner = worker,
       lease_expires_at = now() + make_interval(secs => lease_s),
       started_at = coalesce(j.started_at, now()), updated_at = now(), error = NULL,
       error_kind = NULL
 WHERE j.id IN (
       SELECT id FROM imagen.jobs
        WHERE status = 'pending' AND run_after <= now() AND NOT cancel_requested
        ORDER BY priority DESC, run_after, id
        LIMIT n
        FOR UPDATE SKIP LOCKED)
RETURNING j.*
$$;
