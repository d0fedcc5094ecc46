-- phigate store, PostgreSQL schema v1.
-- The ledger: one row per entry, idx 0..N-1 without gaps (assigned under a transaction-scoped
-- advisory lock); the body is the truth, the other columns are indexed copies for search.
CREATE TABLE ledger_entries (
    idx        BIGINT  PRIMARY KEY CHECK (idx >= 0),
    leaf_hash  BYTEA   NOT NULL CHECK (length(leaf_hash) = 32),
    body       BYTEA   NOT NULL,
    ts_ms      BIGINT  NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    use_case   TEXT    NOT NULL,
    decision   TEXT    NOT NULL,
    categories TEXT[]  NOT NULL DEFAULT '{}'
);
CREATE INDEX ledger_entries_ts ON ledger_entries (ts_ms);
CREATE INDEX ledger_entries_actor ON ledger_entries (actor);
CREATE INDEX ledger_entries_use_case ON ledger_entries (use_case);
CREATE INDEX ledger_entries_decision ON ledger_entries (decision);
-- Index-only scans for ledger_leaf_hashes (32-byte hashes without the bodies).
CREATE INDEX ledger_entries_leaf ON ledger_entries (idx) INCLUDE (leaf_hash);
CREATE INDEX ledger_entries_categories ON ledger_entries USING GIN (categories);

CREATE TABLE checkpoints (
    tree_size BIGINT PRIMARY KEY CHECK (tree_size >= 0),
    root_hash BYTEA  NOT NULL CHECK (length(root_hash) = 32),
    ts_ms     BIGINT NOT NULL,
    note      TEXT   NOT NULL
);

CREATE TABLE data_keys (
    key_id        TEXT   PRIMARY KEY,
    scope         TEXT   NOT NULL,
    kek_id        TEXT   NOT NULL,
    wrapped       BYTEA  NOT NULL,
    created_ms    BIGINT NOT NULL,
    expires_at_ms BIGINT,
    shredded_ms   BIGINT
);
CREATE INDEX data_keys_scope ON data_keys (scope, created_ms);

CREATE TABLE vault_entries (
    scope       TEXT   NOT NULL,
    token       TEXT   NOT NULL,
    key_id      TEXT   NOT NULL REFERENCES data_keys (key_id),
    fingerprint BYTEA  NOT NULL,
    nonce       BYTEA  NOT NULL,
    ciphertext  BYTEA  NOT NULL,
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (scope, token)
);
CREATE INDEX vault_entries_fingerprint ON vault_entries (scope, fingerprint);
CREATE INDEX vault_entries_key ON vault_entries (key_id);
