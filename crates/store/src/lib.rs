//! Storage for phigate: one API, SQLite (embedded default) and PostgreSQL backends, each with its own migrations.

#![deny(missing_docs)]
