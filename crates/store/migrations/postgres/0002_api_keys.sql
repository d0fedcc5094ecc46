-- phigate store, PostgreSQL schema v2: API keys (the policy crate's). Only the SHA-256 of a
-- key's secret is kept; roles are a JSON array of strings.
CREATE TABLE api_keys (
    id            TEXT   PRIMARY KEY,
    secret_sha256 BYTEA  NOT NULL CHECK (length(secret_sha256) = 32),
    identity      TEXT   NOT NULL,
    roles         TEXT   NOT NULL,
    use_case      TEXT,
    created_ms    BIGINT NOT NULL,
    expires_ms    BIGINT,
    revoked_ms    BIGINT
);
CREATE INDEX api_keys_identity ON api_keys (identity);
