//! The token vault: token-to-value mappings under per-scope data keys wrapped by a key-encryption key; retention and crypto-shredding.

#![deny(missing_docs)]
