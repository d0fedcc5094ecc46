//! The tamper-evident audit ledger: an RFC 9162 Merkle log of records that hold no raw PHI,
//! signed checkpoints, proofs, offline verification.
//!
//! - [`record`]: the [`Record`] type. It has no free-text field, so it cannot carry PHI or
//!   credentials; what gets hashed is its canonical encoding.
//! - [`merkle`]: RFC 9162 tree heads, inclusion and consistency proofs and their verification.
//! - [`checkpoint`]: Ed25519 signed checkpoints in the C2SP signed-note / tlog-checkpoint format.
//!
//! This crate must never hold raw PHI: only keyed digests, counts, categories and identifiers.

#![deny(missing_docs)]

pub mod checkpoint;
pub mod merkle;
pub mod record;

pub use checkpoint::{Checkpoint, NoteSigner, NoteVerifier};
pub use merkle::{Frontier, Hash, ProofError};
pub use record::{Action, Decision, Hmac256, HmacKey, Record, RecordBuilder, Slug};

/// Everything that can go wrong in the ledger. No variant holds a record value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A record field was refused.
    #[error("invalid {field}: {problem}")]
    InvalidField {
        /// The field's name.
        field: &'static str,
        /// The rule it broke.
        problem: &'static str,
    },
    /// Stored or exported record bytes do not decode to a valid, canonical record.
    #[error("malformed record: {0}")]
    MalformedRecord(&'static str),
    /// A signing, verifier or HMAC key is unusable.
    #[error("key: {0}")]
    Key(String),
    /// A signed note or checkpoint is malformed or its signature does not verify.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A proof did not verify.
    #[error("proof: {0}")]
    Proof(#[from] ProofError),
}
