//! Integration tests of the policy crate: configuration loading and validation, decisions,
//! API keys in both store backends, OIDC tokens.

mod common;
mod config;
mod decide;
mod keys;
mod oidc;
