SET LOCAL client_min_messages = warning;

-- The bot owns `avatars` and usually has it already: create it only when missing, and add the
-- columns this service relies on without touching existing data (additive only).
CREATE TABLE IF NOT EXISTS avatars (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid,
    name text,
    status text NOT NULL DEFAULT 'draft',
    training_type text,
    fal_request_id text,
    training_progress integer NOT NULL DEFAULT 0,
    training_started_at timestamptz,
    training_completed_at timestamptz,
    last_status_check timestamptz,
    diffusers_lora_file_url text,
    config_file_url text,
    training_error text,
    fal_response_data jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE avatars ADD COLUMN IF NOT EXISTS training_type text;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS fal_request_id text;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS training_progress integer DEFAULT 0;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS training_started_at timestamptz;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS training_completed_at timestamptz;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS last_status_check timestamptz;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS diffusers_lora_file_url text;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS config_file_url text;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS training_error text;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS fal_response_data jsonb;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS created_at timestamptz DEFAULT now();
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS updated_at timestamptz DEFAULT now();
-- Ours: where the trained files were copied to (filled by the file worker).
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS lora_object_key text;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS config_object_key text;
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS files_stored_at timestamptz;

CREATE INDEX IF NOT EXISTS avatars_fal_request_id_idx ON avatars (fal_request_id);
