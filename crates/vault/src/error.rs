//! The vault's error type. No variant carries a value, a key, a plaintext or a ciphertext: only
//! ids (scope, token, key id, KEK id), which are not PHI, and kinds.

/// Everything that can go wrong in the vault.
///
/// `Display` and `Debug` never contain a value, key material, a plaintext or a ciphertext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument failed validation (`what` names the argument; its content is not echoed).
    #[error("invalid {what}: {rule}")]
    Invalid {
        /// Which argument (`scope`, `token`, `category`, `actor`, `reason`, ...).
        what: &'static str,
        /// The rule it broke.
        rule: &'static str,
    },
    /// The scope's data key was crypto-shredded: its values can never be recovered.
    #[error("scope {scope} was crypto-shredded; its values are gone")]
    Shredded {
        /// The scope.
        scope: String,
    },
    /// The scope has no data key (it was never opened).
    #[error("scope {scope} has no data key")]
    UnknownScope {
        /// The scope.
        scope: String,
    },
    /// The scope's retention ended; its key is awaiting the sweeper and is no longer used.
    #[error("scope {scope} is past its retention period")]
    Expired {
        /// The scope.
        scope: String,
    },
    /// A data key was wrapped by a KEK that is not in the keyring (wrong or missing KEK).
    #[error("data key {key_id} is wrapped by KEK {kek_id}, which is not in the keyring")]
    UnknownKek {
        /// The data key.
        key_id: String,
        /// The KEK the store says wrapped it.
        kek_id: String,
    },
    /// A wrapped data key did not unwrap: the KEK is wrong, or the wrapped bytes or their row
    /// were altered.
    #[error("data key {key_id} does not unwrap under KEK {kek_id}: wrong KEK or tampered key")]
    KeyUnwrap {
        /// The data key.
        key_id: String,
        /// The KEK that was tried.
        kek_id: String,
    },
    /// A stored value failed authentication: its ciphertext, nonce or row (scope, token, key id)
    /// was altered or moved. No value is ever returned in this case.
    #[error(
        "value for token {token} in scope {scope} failed authentication: tampered or moved row"
    )]
    Tampered {
        /// The scope.
        scope: String,
        /// The token whose row failed.
        token: String,
    },
    /// The token asked for a new value already maps to a different value in this scope.
    #[error("token {token} already maps to another value in scope {scope}")]
    TokenInUse {
        /// The scope.
        scope: String,
        /// The token.
        token: String,
    },
    /// Live data keys still depend on this KEK; it cannot be retired yet.
    #[error("KEK {kek_id} still wraps {live} live data key(s)")]
    KekInUse {
        /// The KEK.
        kek_id: String,
        /// How many live data keys it still wraps.
        live: usize,
    },
    /// KEK rotation did not converge (data keys kept appearing under older KEKs).
    #[error("KEK rotation to {kek_id} left {remaining} data key(s) under older KEKs")]
    RotationIncomplete {
        /// The new KEK.
        kek_id: String,
        /// Data keys still wrapped by an older KEK.
        remaining: usize,
    },
    /// Loading a KEK from its source failed (the message names the source, never its content).
    #[error("KEK source: {0}")]
    KekSource(String),
    /// The KMS (KEK implementation) failed.
    #[error("KMS: {0}")]
    Kms(#[from] KmsError),
    /// The audit ledger refused or could not record the operation; the operation did not happen.
    #[error("ledger: {0}")]
    Ledger(#[from] ledger::Error),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] store::Error),
}

/// What a [`Kms`](crate::Kms) implementation may report. Never carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// The KMS could not be reached or timed out.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Authentication of the wrapped key failed (wrong KEK, tampered bytes or wrong context).
    #[error("wrapped key failed authentication")]
    Rejected,
    /// The wrapped bytes are not in this KMS's format.
    #[error("malformed wrapped key")]
    Malformed,
    /// Anything else, without key material.
    #[error("{0}")]
    Other(String),
}

/// The vault's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
