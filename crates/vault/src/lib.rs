//! The token vault: token ↔ value mappings encrypted under per-scope data keys that are wrapped
//! by a key-encryption key; retention and crypto-shredding.
//!
//! # Key hierarchy
//!
//! ```text
//!  KEK (key-encryption key)       LocalKek (file / PHIGATE_VAULT_KEK) or any `Kms` adapter
//!   │  wraps (XChaCha20-Poly1305, AAD = kek id, scope, key id)
//!   ▼
//!  data key, one per scope and generation   32 random bytes; stored only wrapped
//!   │  HKDF-SHA256
//!   ├─► value key        XChaCha20-Poly1305, random 24-byte nonce per value,
//!   │                    AAD = scope, token, key id (a row moved or edited fails to open)
//!   └─► fingerprint key  HMAC-SHA256 of (scope, category, value): the same value gets the same
//!                        token in a scope, found with `store.vault_find`
//! ```
//!
//! A scope is a conversation, session or tenant: whatever the gateway picks. The KEK never leaves
//! its [`Kms`]; the vault keeps unwrapped data keys only in memory (a bounded cache, zeroized on
//! drop). The [`Keyring`] holds the active KEK and older ones by id.
//!
//! # Rotation, without downtime
//!
//! - **KEK** ([`Vault::rotate_kek`]): the new KEK becomes active (new data keys are wrapped by it
//!   at once), then every live data key still under an older KEK is unwrapped and re-wrapped
//!   under the new one with the store's compare-and-set `data_key_rewrap`, in passes until none
//!   is left. Reads and writes continue meanwhile, because the older KEKs stay in the keyring
//!   until [`Vault::retire_kek`] (which refuses while any live data key still needs them). With
//!   several replicas, give every replica the new KEK first ([`Vault::add_kek`]), then rotate.
//! - **Data key** ([`Vault::rotate_data_key`]): a new generation becomes the scope's active key
//!   for new values; older values stay readable under their own keys, and are still found by
//!   their fingerprints under those keys, so a value keeps its token across rotations.
//!
//! # Retention and crypto-shredding
//!
//! Each scope's data keys carry an expiry (`expires_at_ms`, from [`VaultConfig::retention`] or
//! [`Vault::open_scope`]). Past it, the keys are no longer used ([`Error::Expired`]), and the
//! sweeper ([`Vault::spawn_sweeper`], a tokio task with a shutdown handle) shreds them.
//! Shredding ([`Vault::shred_scope`], [`Vault::sweep_expired`]) destroys the wrapped data key in
//! the store (and deletes the rows under it): without the key, the ciphertexts and the
//! fingerprints are meaningless to everyone, including whoever holds the KEK or a backup made
//! after the shred. Every shred is appended to the ledger **before** the key is destroyed; if the
//! ledger cannot record it, the key is left alone and the error returned (fail closed). The
//! ledger stays verifiable, because it never held the values.
//!
//! # Re-identification
//!
//! [`Vault::reveal`] takes an [`Actor`] and a [`RevealReason`] code (never free text). Values are
//! decrypted and authenticated, the reveal is appended to the ledger (actor, reason, the scope's
//! reference [`scope_ref`], categories and counts), and only then are values returned; if
//! recording fails, nothing is revealed.
//!
//! # What this crate must never do
//!
//! - Keep a value readable after its data key is shredded, or give a new key to a shredded scope.
//! - Return a wrong value: any altered or moved ciphertext, nonce, wrapped key or row fails with
//!   [`Error::Tampered`] / [`Error::KeyUnwrap`], never decrypts to something else.
//! - Put a value, a plaintext, a key or a ciphertext in `Debug`, `Display`, an error, a log line
//!   or the ledger; or store a data key unwrapped.
//! - Reveal or shred without its ledger record.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use vault::{Actor, Keyring, LocalKek, NewValue, RevealReason, Vault, VaultConfig};
//!
//! let store = store::Store::open("sqlite:///var/lib/phigate/phigate.db").await?;
//! let ledger = ledger::Ledger::open(store.clone(), ledger::LedgerConfig::new("phigate")).await?;
//! let kek = Arc::new(LocalKek::from_env_default()?); // PHIGATE_VAULT_KEK
//! let vault = Vault::new(store, ledger, Keyring::new(kek), VaultConfig::default());
//!
//! // The gateway, for each (category, value) found in a conversation:
//! let found = [NewValue { category: phi::Category::Name, value: "Jane Roe", token: Some("[NAME_1]") }];
//! let tokens = vault.tokenize_many("conv-42", &found).await?;
//! // Later, restoring a response for a role allowed to see PHI:
//! let asked: Vec<String> = tokens.iter().map(|t| t.token.clone()).collect();
//! let actor = Actor::new("user:dr-who")?;
//! let values = vault.reveal("conv-42", &asked, &actor, RevealReason::Treatment).await?;
//! assert_eq!(values.get("[NAME_1]").map(|v| v.expose()), Some("Jane Roe"));
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod codes;
mod crypto;
mod error;
mod kek;
mod secret;
mod sweeper;
mod vault;
mod writes;

pub use codes::{Actor, RevealReason, ShredReason, MAX_ID_LEN, MAX_VALUE_LEN};
pub use error::{Error, KmsError, Result};
pub use kek::{Keyring, Kms, LocalKek, KEK_ENV};
pub use secret::{PlainValue, Revealed};
pub use sweeper::{SweepStatus, Sweeper};
pub use vault::{
    scope_ref, KekRotation, NewValue, ScopeKey, ShredReport, Tokenized, Vault, VaultConfig,
};
