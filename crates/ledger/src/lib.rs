//! The tamper-evident audit ledger: an RFC 9162 Merkle log of records that hold no raw PHI, signed checkpoints, proofs, offline verification.

#![deny(missing_docs)]
