//! Integration tests of the ledger: records that cannot hold PHI, the log over a real store,
//! checkpoints, proofs and the offline verifier.

mod big;
mod canary;
mod common;
mod export;
mod integrity;
mod journal;
mod log;
mod props;
