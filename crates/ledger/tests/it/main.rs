//! Integration tests of the ledger: records that cannot hold PHI, the log over a real store,
//! checkpoints, proofs and the offline verifier.

mod canary;
mod common;
mod export;
mod journal;
mod log;
mod props;
