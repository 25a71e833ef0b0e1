SET LOCAL client_min_messages = warning;

-- The bot owns `avatars` and usually has it already: create it only when missing, and add the
-- columns this service relies on without touching existing data (additive only). Where the
-- service creates it, it has the types the bot's ORM gives these columns (varchar holding the
-- upper-case enum names, json), so the bot can take it over as it is.
CREATE TABLE IF NOT EXISTS avatars (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid,
    name varchar(100),
    status varchar(18) NOT NULL DEFAULT 'DRAFT',
    training_type varchar(8),
    fal_request_id varchar(255),
    training_progress integer NOT NULL DEFAULT 0,
    training_started_at timestamptz,
    training_completed_at timestamptz,
    last_status_check timestamptz,
    diffusers_lora_file_url varchar(500),
    config_file_url varchar(500),
    training_error text,
    fal_response_data json,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE avatars ADD COLUMN IF NOT EXISTS training_type varchar(8);
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS fal_request_id varchar(255);
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS training_progress integer DEFAULT 0;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS training_started_at timestamptz;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS training_completed_at timestamptz;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS last_status_check timestamptz;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS diffusers_lora_file_url varchar(500);
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS config_file_url varchar(500);
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS training_error text;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS fal_response_data json;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS created_at timestamptz DEFAULT now();
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS updated_at timestamptz DEFAULT now();
-- Ours: where the trained files were copied to (filled by the file worker).
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS lora_object_key text;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS config_object_key text;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS files_stored_at timestamptz;

-- Callbacks find their avatar by fal_request_id: through the bot's index when it has one
-- (ix_avatars_fal_request_id), otherwise through ours.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = 'avatars'::regclass AND a.attname = 'fal_request_id'
    ) THEN
        CREATE INDEX avatars_fal_request_id_idx ON avatars (fal_request_id);
    END IF;
END
$$;
