-- phigate store, SQLite schema v3: ledger_categories keyed by entry first. Keyed by category
-- first, one append wrote one leaf page of this table per category it named (a request naming
-- six categories dirtied six pages, each written whole to the WAL on every commit); keyed by
-- entry, an append's rows are neighbours in one leaf. A search by category checks each
-- candidate entry by primary key.
CREATE TABLE ledger_categories_v3 (
    idx      INTEGER NOT NULL REFERENCES ledger_entries (idx),
    category TEXT    NOT NULL,
    PRIMARY KEY (idx, category)
) WITHOUT ROWID;
INSERT INTO ledger_categories_v3 (idx, category) SELECT idx, category FROM ledger_categories;
DROP TABLE ledger_categories;
ALTER TABLE ledger_categories_v3 RENAME TO ledger_categories;
