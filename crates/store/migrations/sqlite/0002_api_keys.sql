-- phigate store, SQLite schema v2: API keys (the policy crate's). Only the SHA-256 of a key's
-- secret is kept; roles are a JSON array of strings.
CREATE TABLE api_keys (
    id            TEXT    PRIMARY KEY,
    secret_sha256 BLOB    NOT NULL CHECK (length(secret_sha256) = 32),
    identity      TEXT    NOT NULL,
    roles         TEXT    NOT NULL,
    use_case      TEXT,
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER,
    revoked_ms    INTEGER
);
CREATE INDEX api_keys_identity ON api_keys (identity);
