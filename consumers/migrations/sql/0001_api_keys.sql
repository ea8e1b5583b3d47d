-- API keys of department systems for the HTTP ingest API (`ioc keys create SOURCE`).
-- Only a hash of the secret is stored; the key itself is shown once, at creation.
CREATE TABLE api_keys (
    key_id      text        PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{12}$'),
    source      text        NOT NULL,
    sector      text        NOT NULL,
    secret_hash text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz NULL
);

CREATE INDEX api_keys_source_idx ON api_keys (source);
