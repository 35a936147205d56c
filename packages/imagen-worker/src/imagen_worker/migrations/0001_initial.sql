-- imagen's queue: jobs, images, usage, and row-level security for the web role.
-- __WEB_ROLE__ is replaced by the configured web role's quoted name (default authenticated).

CREATE SCHEMA IF NOT EXISTS imagen;
CREATE SCHEMA IF NOT EXISTS mai;

-- The caller's identity, Supabase-compatible: auth.uid() where an auth schema provides it,
-- otherwise the "sub" of the request.jwt.claims setting. That setting reads back as '' (not
-- NULL) once it has been set on a connection, so '' and NULL both mean "nobody", which no
-- row can match.
CREATE OR REPLACE FUNCTION imagen.current_owner() RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    claims text;
    who text;
BEGIN
    IF to_regprocedure('auth.uid()') IS NOT NULL THEN
        EXECUTE 'SELECT auth.uid()::text' INTO who;
    ELSE
        claims := current_setting('request.jwt.claims', true);
        IF claims IS NOT NULL AND claims <> '' THEN
            who := claims::jsonb ->> 'sub';
        END IF;
    END IF;
    RETURN nullif(who, '');
END
$$;

CREATE TABLE imagen.jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner text NOT NULL DEFAULT imagen.current_owner(),
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    prompt text NOT NULL CHECK (prompt <> ''),
    negative_prompt text NOT NULL DEFAULT '',
    width integer CHECK (width > 0),
    height integer CHECK (height > 0),
    steps integer CHECK (steps > 0),
    seed bigint CHECK (seed >= 0),
    style text,
    count integer NOT NULL DEFAULT 1 CHECK (count BETWEEN 1 AND 64),
    backend text,                                   -- instance name; NULL: the default one
    options jsonb NOT NULL DEFAULT '{}',
    priority integer NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    run_after timestamptz NOT NULL DEFAULT now(),
    lease_owner text,
    lease_expires_at timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    upstream_run_id text,
    progress jsonb,
    error text,
    image_id bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- What a claim scans: only the claimable rows, however many finished ones pile up.
CREATE INDEX jobs_claimable ON imagen.jobs (priority DESC, run_after, id) WHERE status = 'pending';
CREATE INDEX jobs_leases ON imagen.jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_owner ON imagen.jobs (owner, created_at DESC);

CREATE TABLE imagen.images (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner text NOT NULL,
    job_id bigint REFERENCES imagen.jobs (id) ON DELETE SET NULL,
    local_path text,
    storage_location text,
    prompt text NOT NULL,
    backend text NOT NULL,
    seed bigint,
    width integer,
    height integer,
    mime_type text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX images_job ON imagen.images (job_id);
CREATE INDEX images_owner ON imagen.images (owner, created_at DESC);

ALTER TABLE imagen.jobs
    ADD CONSTRAINT jobs_image FOREIGN KEY (image_id) REFERENCES imagen.images (id) ON DELETE SET NULL;

-- Workers LISTEN on imagen_jobs: a new job, or a cancellation to pass to a running one.
CREATE FUNCTION imagen.notify_job() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('imagen_jobs', json_build_object(
        'id', NEW.id,
        'event', CASE WHEN TG_OP = 'INSERT' THEN 'inserted' ELSE 'cancel' END
    )::text);
    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_inserted AFTER INSERT ON imagen.jobs
    FOR EACH ROW EXECUTE FUNCTION imagen.notify_job();
CREATE TRIGGER jobs_cancel_requested AFTER UPDATE OF cancel_requested ON imagen.jobs
    FOR EACH ROW WHEN (NEW.cancel_requested AND NOT OLD.cancel_requested)
    EXECUTE FUNCTION imagen.notify_job();

CREATE TABLE mai.imagen_usage (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    owner text,
    job_id bigint,
    backend text NOT NULL,
    backend_type text NOT NULL,
    model text,
    images integer NOT NULL DEFAULT 0,
    width integer,
    height integer,
    steps integer,
    duration_s double precision,
    cost_usd numeric(12, 6),
    status text NOT NULL
);
CREATE INDEX imagen_usage_at ON mai.imagen_usage (at);

-- The web role: it may queue jobs for itself only, read its own jobs and images, and ask
-- for its own jobs to be cancelled. It can never choose the owner, nor write status,
-- results or leases (no column privilege for them). The worker connects as the owner of
-- these tables, which row-level security does not restrict.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = __WEB_ROLE_LITERAL__) THEN
        CREATE ROLE __WEB_ROLE__ NOLOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA imagen TO __WEB_ROLE__;
GRANT EXECUTE ON FUNCTION imagen.current_owner() TO __WEB_ROLE__;
GRANT SELECT ON imagen.jobs, imagen.images TO __WEB_ROLE__;
GRANT INSERT (prompt, negative_prompt, width, height, steps, seed, style, count, backend, options)
    ON imagen.jobs TO __WEB_ROLE__;
GRANT UPDATE (cancel_requested) ON imagen.jobs TO __WEB_ROLE__;

ALTER TABLE imagen.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE imagen.images ENABLE ROW LEVEL SECURITY;

CREATE POLICY jobs_insert_own ON imagen.jobs FOR INSERT TO __WEB_ROLE__
    WITH CHECK (owner = imagen.current_owner());
CREATE POLICY jobs_read_own ON imagen.jobs FOR SELECT TO __WEB_ROLE__
    USING (owner = imagen.current_owner());
CREATE POLICY jobs_cancel_own ON imagen.jobs FOR UPDATE TO __WEB_ROLE__
    USING (owner = imagen.current_owner() AND status IN ('pending', 'running'))
    WITH CHECK (owner = imagen.current_owner());
CREATE POLICY images_read_own ON imagen.images FOR SELECT TO __WEB_ROLE__
    USING (owner = imagen.current_owner());
