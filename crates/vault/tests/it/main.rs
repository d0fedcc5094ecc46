//! Integration tests of the vault, each written once over a `Store` and run on both backends: a
//! real SQLite file in a temporary directory and a fresh PostgreSQL database per test.

mod harness;

mod at_rest;
mod basics;
mod cache;
mod keys;
mod retention;
