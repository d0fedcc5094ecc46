-- phigate store, SQLite schema v1.
-- The ledger: one row per entry, idx 0..N-1 without gaps; the body is the truth, the other
-- columns are indexed copies for search.
CREATE TABLE ledger_entries (
    idx       INTEGER PRIMARY KEY CHECK (idx >= 0),
    leaf_hash BLOB    NOT NULL CHECK (length(leaf_hash) = 32),
    body      BLOB    NOT NULL,
    ts_ms     INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    use_case  TEXT    NOT NULL,
    decision  TEXT    NOT NULL
);
CREATE INDEX ledger_entries_ts ON ledger_entries (ts_ms);
CREATE INDEX ledger_entries_actor ON ledger_entries (actor);
CREATE INDEX ledger_entries_use_case ON ledger_entries (use_case);
CREATE INDEX ledger_entries_decision ON ledger_entries (decision);
-- Covering index: ledger_leaf_hashes reads 32-byte hashes without touching the bodies.
CREATE INDEX ledger_entries_leaf ON ledger_entries (idx, leaf_hash);

-- Categories of an entry (e.g. NAME, DATE), one row each.
CREATE TABLE ledger_categories (
    category TEXT    NOT NULL,
    idx      INTEGER NOT NULL REFERENCES ledger_entries (idx),
    PRIMARY KEY (category, idx)
) WITHOUT ROWID;

CREATE TABLE checkpoints (
    tree_size INTEGER PRIMARY KEY CHECK (tree_size >= 0),
    root_hash BLOB    NOT NULL CHECK (length(root_hash) = 32),
    ts_ms     INTEGER NOT NULL,
    note      TEXT    NOT NULL
);

CREATE TABLE data_keys (
    key_id        TEXT    PRIMARY KEY NOT NULL,
    scope         TEXT    NOT NULL,
    kek_id        TEXT    NOT NULL,
    wrapped       BLOB    NOT NULL,
    created_ms    INTEGER NOT NULL,
    expires_at_ms INTEGER,
    shredded_ms   INTEGER
);
CREATE INDEX data_keys_scope ON data_keys (scope, created_ms);

CREATE TABLE vault_entries (
    scope       TEXT    NOT NULL,
    token       TEXT    NOT NULL,
    key_id      TEXT    NOT NULL REFERENCES data_keys (key_id),
    fingerprint BLOB    NOT NULL,
    nonce       BLOB    NOT NULL,
    ciphertext  BLOB    NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (scope, token)
);
CREATE INDEX vault_entries_fingerprint ON vault_entries (scope, fingerprint);
CREATE INDEX vault_entries_key ON vault_entries (key_id);
