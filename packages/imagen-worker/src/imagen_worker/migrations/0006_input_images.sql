-- Input images: a job may name images to edit, start from, follow or mask (issue 16).
-- __WEB_ROLE__ is replaced by the configured web role's quoted name (default authenticated).
--
-- jobs.inputs is a JSON array of references, never image bytes:
--   {"role": "image" | "reference" | "mask", "upload": "<sha256 hex>", "name": "photo.png"}
--       an image sent through imagen serve, kept under the server's inputs directory in
--       its owner's folder by its SHA-256;
--   {"role": ..., "object": "imagen-inputs/<owner>/<path>", "sha256": "<hex>"}
--       an object the owner uploaded to their own folder of the cloud bucket.
-- A reference can only name the owner's own uploads: the check below holds the object's
-- folder to the row's owner, and the worker builds an upload's path from the row's owner.
ALTER TABLE imagen.jobs
    ADD COLUMN inputs jsonb,
    ADD COLUMN strength double precision;

-- Run by the jobs_inputs_limits check for whoever inserts, so PUBLIC keeps EXECUTE: it reads
-- nothing but its arguments.
CREATE FUNCTION imagen.inputs_ok(inputs jsonb, owner text) RETURNS boolean
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_typeof(inputs) = 'array'
       AND jsonb_array_length(inputs) BETWEEN 1 AND 16
       AND (SELECT count(*) FROM jsonb_array_elements(inputs) AS e (v)
             WHERE v ->> 'role' = 'mask') <= 1
       AND NOT EXISTS (
           SELECT FROM jsonb_array_elements(inputs) AS e (v)
            WHERE jsonb_typeof(v) IS DISTINCT FROM 'object'
               OR EXISTS (SELECT FROM jsonb_object_keys(v) AS k
                           WHERE k NOT IN ('role', 'upload', 'object', 'name', 'sha256'))
               OR jsonb_typeof(v -> 'role') IS DISTINCT FROM 'string'
               OR v ->> 'role' NOT IN ('image', 'reference', 'mask')
               OR (v ? 'upload') = (v ? 'object')
               OR (v ? 'upload' AND (jsonb_typeof(v -> 'upload') <> 'string'
                                     OR v ->> 'upload' !~ '^[0-9a-f]{64}$'))
               OR (v ? 'sha256' AND (jsonb_typeof(v -> 'sha256') <> 'string'
                                     OR v ->> 'sha256' !~ '^[0-9a-f]{64}$'))
               OR (v ? 'name' AND (jsonb_typeof(v -> 'name') <> 'string'
                                   OR char_length(v ->> 'name') > 255))
               OR (v ? 'object' AND (
                       jsonb_typeof(v -> 'object') <> 'string'
                       OR char_length(v ->> 'object') > 1024
                       OR owner IS NULL OR strpos(owner, '/') > 0
                       OR NOT starts_with(v ->> 'object', 'imagen-inputs/' || owner || '/')
                       OR (v ->> 'object') ~ '(^|/)\.{1,2}(/|$)|//|\\'
                   ))
       )
$$;

ALTER TABLE imagen.jobs
    ADD CONSTRAINT jobs_inputs_limits CHECK (inputs IS NULL OR imagen.inputs_ok(inputs, owner)),
    ADD CONSTRAINT jobs_strength_limits CHECK (
        strength >= 0 AND strength <= 1 AND strength <> 'NaN'::double precision
    );

-- The web role queues jobs with inputs as it does with the other request fields.
GRANT INSERT (inputs, strength) ON imagen.jobs TO __WEB_ROLE__;

-- Supabase Storage, where there is one: each owner may upload, read and remove objects in
-- their own folder imagen-inputs/<owner>/ of any bucket (the bucket's own size and type
-- limits still apply), and nowhere else. As in 0004, creating the policy needs the rights
-- of storage.objects' owner; imagen db check prints the statement when it is missing.
DO $$
BEGIN
    IF to_regclass('storage.objects') IS NOT NULL THEN
        CREATE POLICY imagen_owner_inputs ON storage.objects FOR ALL TO __WEB_ROLE__
            USING (strpos(imagen.current_owner(), '/') = 0
                   AND starts_with(name, 'imagen-inputs/' || imagen.current_owner() || '/'))
            WITH CHECK (strpos(imagen.current_owner(), '/') = 0
                        AND starts_with(name, 'imagen-inputs/' || imagen.current_owner() || '/'));
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'could not create the Storage policy imagen_owner_inputs on storage.objects '
                  '(%): imagen db check prints the statement to run as its owner', SQLERRM;
END
$$;
