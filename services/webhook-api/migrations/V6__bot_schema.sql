SET LOCAL client_min_messages = warning;

-- Databases that applied V1 before it was corrected have our index on fal_request_id beside
-- the bot's own (ix_avatars_fal_request_id): one is enough. (The old partial index of
-- trainings, on `status = 'training'`, is rebuilt at start for the bot's labels.)
DO $$
BEGIN
    IF EXISTS (
        SELECT FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = 'avatars'::regclass AND a.attname = 'fal_request_id'
          AND c.relname <> 'avatars_fal_request_id_idx'
    ) THEN
        DROP INDEX IF EXISTS avatars_fal_request_id_idx;
    END IF;
END
$$;
