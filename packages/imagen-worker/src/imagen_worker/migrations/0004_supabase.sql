-- Ready for a Supabase project as migrated, and still right on a plain PostgreSQL:
-- one owner rule for every kind of caller, the service role's grants, the usage table and the
-- migration records private, a second wall behind the web role's column grants, the bucket in
-- each images row, cloud sync's idempotent record, and a Storage read policy per owner.
-- __WEB_ROLE__ is replaced by the configured web role's quoted name (default authenticated).

-- The caller: the "sub" claim of the JWT, as text. Supabase users have a uuid there, API keys
-- of imagen serve a name such as "alice", the CLI's jobs are "local": one rule for all. It
-- reads what PostgREST 12 and imagen serve set (request.jwt.claims), then the setting older
-- PostgREST releases set (request.jwt.claim.sub), as Supabase's auth.uid() does, but never
-- casts to uuid: auth.uid() fails on "alice". '' and NULL both mean nobody, whom no row
-- matches.
CREATE OR REPLACE FUNCTION imagen.current_owner() RETURNS text
LANGUAGE sql STABLE
AS $$
SELECT coalesce(
    nullif(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub', ''),
    nullif(current_setting('request.jwt.claim.sub', true), '')
)
$$;

-- Where each image is stored: the bucket beside the path. The Storage read policy below
-- and cloud sync's record look objects up by both.
ALTER TABLE imagen.images ADD COLUMN storage_bucket text;
CREATE INDEX images_stored_object ON imagen.images (storage_bucket, storage_location)
    WHERE storage_location IS NOT NULL;

-- Cloud sync's record of an uploaded image, idempotent however many syncs run at once: it
-- takes a lock on the object, and adds a row only when no row records that object yet (the
-- worker's own rows included). True when this call recorded it. The lock is held to the end
-- of the caller's transaction, so a second sync of the same object waits for the first to
-- commit and then finds its row.
CREATE FUNCTION imagen.record_synced_image(
    bucket text, path text, owner text, prompt text, backend text, mime_type text,
    local_path text DEFAULT NULL, seed bigint DEFAULT NULL, width integer DEFAULT NULL,
    height integer DEFAULT NULL, metadata jsonb DEFAULT '{}'
) RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('imagen.images'), hashtext(bucket || '/' || path));
    IF EXISTS (SELECT FROM imagen.images i
                WHERE i.storage_bucket = record_synced_image.bucket
                  AND i.storage_location = record_synced_image.path) THEN
        RETURN false;
    END IF;
    INSERT INTO imagen.images (owner, local_path, storage_bucket, storage_location, prompt,
                               backend, seed, width, height, mime_type, metadata)
    VALUES (record_synced_image.owner, record_synced_image.local_path, record_synced_image.bucket,
            record_synced_image.path, record_synced_image.prompt, record_synced_image.backend,
            record_synced_image.seed, record_synced_image.width, record_synced_image.height,
            record_synced_image.mime_type, coalesce(record_synced_image.metadata, '{}'));
    RETURN true;
END
$$;
REVOKE EXECUTE ON FUNCTION imagen.record_synced_image(
    text, text, text, text, text, text, text, bigint, integer, integer, jsonb) FROM PUBLIC;

-- The second wall. The web role's column grants already keep it to the request's columns
-- on insert and to cancel_requested on update; an operator who widens them (Supabase's
-- generic "GRANT ALL ON ALL TABLES IN SCHEMA" recipe does) must still not let a caller queue
-- a job as done, raise its priority or rewrite its result. The trigger only runs for callers
-- under row-level security: the worker (the tables' owner, or the BYPASSRLS service role)
-- never pays for it.
CREATE FUNCTION imagen.jobs_web_columns() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    written text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(n.key ORDER BY n.key) INTO written
          FROM jsonb_each(to_jsonb(NEW)) AS n (key, value)
          JOIN jsonb_each(jsonb_build_object(
                   'status', 'pending', 'priority', 0, 'attempts', 0, 'max_attempts', 3,
                   'run_after', now(), 'lease_owner', NULL, 'lease_expires_at', NULL,
                   'cancel_requested', false, 'upstream_run_id', NULL, 'progress', NULL,
                   'error', NULL, 'image_id', NULL, 'created_at', now(), 'started_at', NULL,
                   'finished_at', NULL
               )) AS d (key, value) ON d.key = n.key
         WHERE n.value IS DISTINCT FROM d.value;
    ELSE
        SELECT array_agg(n.key ORDER BY n.key) INTO written
          FROM jsonb_each(to_jsonb(NEW)) AS n (key, value)
          JOIN jsonb_each(to_jsonb(OLD)) AS o (key, value) ON o.key = n.key
         WHERE n.value IS DISTINCT FROM o.value
           AND n.key NOT IN ('cancel_requested', 'updated_at');
    END IF;
    IF written IS NOT NULL THEN
        RAISE EXCEPTION 'imagen.jobs: % may not write %', current_user,
                        array_to_string(written, ', ')
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'imagen db check names the grant that allows more than the design does';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_web_columns BEFORE INSERT OR UPDATE ON imagen.jobs
    FOR EACH ROW WHEN (row_security_active('imagen.jobs'))
    EXECUTE FUNCTION imagen.jobs_web_columns();

-- Usage rows are their owner's to read and nobody's to write but the worker's: without
-- row-level security, any role granted the table (the generic recipe grants it to anon)
-- reads every user's spending and can insert rows that exhaust another user's budget cap.
-- The migration records are the migrator's alone.
ALTER TABLE mai.imagen_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE imagen.schema_migrations ENABLE ROW LEVEL SECURITY;
GRANT USAGE ON SCHEMA mai TO __WEB_ROLE__;
GRANT SELECT ON mai.imagen_usage TO __WEB_ROLE__;
CREATE POLICY usage_read_own ON mai.imagen_usage FOR SELECT TO __WEB_ROLE__
    USING (owner = imagen.current_owner());

-- Supabase's service role, where there is one: what the worker and cloud sync need, and no
-- more. (It bypasses row-level security; the worker may also connect as the tables' owner.)
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'service_role') THEN
        GRANT USAGE ON SCHEMA imagen, mai TO service_role;
        GRANT SELECT, INSERT, UPDATE, DELETE ON imagen.jobs TO service_role;
        GRANT SELECT, INSERT ON imagen.images TO service_role;
        GRANT SELECT, INSERT, UPDATE ON mai.imagen_usage TO service_role;
        GRANT SELECT ON imagen.schema_migrations TO service_role;
        GRANT SELECT ON imagen.server_keys TO service_role;
        GRANT EXECUTE ON FUNCTION imagen.current_owner(),
            imagen.claim_jobs(text, double precision, integer),
            imagen.record_synced_image(
                text, text, text, text, text, text, text, bigint, integer, integer, jsonb)
            TO service_role;
    END IF;
END
$$;

-- Supabase Storage, where there is one: each owner reads (and only reads) the objects the
-- images table records as theirs, whatever cloud.path names them. Creating a policy on
-- storage.objects needs its owner's rights, which some projects keep from the postgres
-- role: then this says so, and imagen db check prints the statement to run elsewhere.
DO $$
BEGIN
    IF to_regclass('storage.objects') IS NOT NULL THEN
        CREATE POLICY imagen_owner_reads ON storage.objects FOR SELECT TO __WEB_ROLE__
            USING (EXISTS (SELECT FROM imagen.images AS i
                            WHERE i.storage_bucket = objects.bucket_id
                              AND i.storage_location = objects.name
                              AND i.owner = imagen.current_owner()));
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'could not create the Storage policy imagen_owner_reads on storage.objects '
                  '(%): imagen db check prints the statement to run as its owner', SQLERRM;
END
$$;
