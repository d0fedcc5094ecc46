//! The tamper-evident audit ledger: an RFC 9162 Merkle log of records that hold no raw PHI,
//! signed checkpoints, proofs, offline verification.
//!
//! - [`record`]: the [`Record`] type. It has no free-text field, so it cannot carry PHI or
//!   credentials; what gets hashed is its canonical encoding.
//! - [`merkle`]: RFC 9162 tree heads, inclusion and consistency proofs and their verification.
//! - [`checkpoint`]: Ed25519 signed checkpoints in the C2SP signed-note / tlog-checkpoint format.
//!
//! - [`Ledger`]: the log over a `store::Store`: group-committed appends, scheduled and on-demand
//!   checkpoints, proofs, search, verification of the store, export.
//! - [`export`]: the self-contained export file and its streaming offline verifier.
//!
//! This crate must never hold raw PHI: only keyed digests, counts, categories and identifiers.
//!
//! ```
//! use ledger::{Action, Decision, Hmac256, HmacKey, Record};
//!
//! let key = HmacKey::from_bytes(&[7; 32])?;
//! let r = Record::builder("svc-intake", Action::ChatCompletion, Decision::Redact)
//!     .use_case("triage")
//!     .reason("phi_redacted")
//!     .category(phi::Category::Name, 2)
//!     .request_hmac(Hmac256::compute(&key, b"the request body, never stored"))
//!     .build()?;
//! let leaf = ledger::merkle::leaf_hash(&r.canonical_bytes());
//! assert_eq!(ledger::merkle::root(&[leaf]), leaf);
//! // Free text, names and numbers that could identify someone are refused.
//! assert!(Record::builder("Jane Doe", Action::ChatCompletion, Decision::Allow).build().is_err());
//! assert!(Record::builder("svc-a", Action::Admin, Decision::Allow).resource("ssn-123-45-6789").build().is_err());
//! # Ok::<(), ledger::Error>(())
//! ```
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ledger::{Action, Decision, Ledger, LedgerConfig, NoteSigner, Record};
//!
//! let store = store::Store::open("phigate-data/phigate.db").await?;
//! let signer = NoteSigner::load("hospital.example/phigate", None)?.expect("PHIGATE_LEDGER_KEY");
//! let cfg = LedgerConfig::new("hospital.example/phigate")
//!     .signer(signer)
//!     .checkpoint_every(std::time::Duration::from_secs(60));
//! let log = Ledger::open(store, cfg).await?;
//! let index = log.append(Record::builder("svc-vault", Action::VaultShred, Decision::Allow).resource("scope:ward-7").build()?).await?;
//! let cp = log.checkpoint().await?;
//! log.inclusion_proof(index, cp.checkpoint.tree_size).await?.verify(&cp.checkpoint.root)?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod checkpoint;
pub mod export;
mod journal;
mod ledger;
pub mod merkle;
pub mod record;
pub mod tree;

pub use checkpoint::{Checkpoint, NoteSigner, NoteVerifier};
pub use export::{verify_export, verify_export_with, ExportSummary, ExportWriter};
pub use ledger::{
    journal_path, replay_journal, restore_backup, ConsistencyProof, InclusionProof, Ledger,
    LedgerConfig, Query, SignedCheckpoint, StoreReport,
};
pub use merkle::{Frontier, Hash, ProofError};
pub use record::{actor_name, Action, Decision, Hmac256, HmacKey, Record, RecordBuilder, Slug};

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
    /// The store failed (the message holds no record values).
    #[error("store: {0}")]
    Store(String),
    /// The ledger's committer has stopped (the runtime is shutting down).
    #[error("the ledger is closed")]
    Closed,
    /// A checkpoint was asked for but no signing key is configured.
    #[error("no checkpoint signing key is configured")]
    NoSigningKey,
    /// Reading or writing a file failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// An export file is malformed at this line.
    #[error("line {line}: {problem}")]
    Export {
        /// The 1-based line number.
        line: u64,
        /// What is wrong.
        problem: String,
    },
    /// The first bad record: its index and what is wrong with it.
    #[error("record {index} (line {line}): {problem}")]
    BadRecord {
        /// The record's index in the log.
        index: u64,
        /// The 1-based line of an export (0 when checking a store).
        line: u64,
        /// What is wrong.
        problem: String,
    },
    /// The first bad checkpoint.
    #[error("checkpoint #{number} (tree size {tree_size}, line {line}): {problem}")]
    BadCheckpoint {
        /// 1-based, in file (or size) order.
        number: u64,
        /// The size it claims (0 when unreadable).
        tree_size: u64,
        /// The 1-based line of an export (0 when checking a store).
        line: u64,
        /// What is wrong.
        problem: String,
    },
    /// The export ends early or its trailer does not match its content.
    #[error("truncated at line {line}: {problem}")]
    Truncated {
        /// The last line read.
        line: u64,
        /// What is missing.
        problem: String,
    },
}
