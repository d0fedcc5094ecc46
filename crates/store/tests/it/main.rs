//! The store's integration tests: every test of `suite` runs on a real SQLite file and on a fresh
//! PostgreSQL database (`postgres://postgres@127.0.0.1:5432`, created and dropped per test).

mod backup;
mod checkpoints;
mod common;
mod failures;
mod migrate;
mod replicas;
mod suite;
mod wal;
