//! The pure cryptography: data keys, the subkeys derived from them, value sealing, fingerprints and
//! the associated data that binds every ciphertext to its row. No I/O here.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of a data key and of every derived subkey.
pub(crate) const KEY_LEN: usize = 32;
/// Length of an XChaCha20-Poly1305 nonce.
pub(crate) const NONCE_LEN: usize = 24;

const INFO_ENC: &[u8] = b"phigate-vault/v1/value-encryption";
const INFO_FP: &[u8] = b"phigate-vault/v1/value-fingerprint";
const AAD_VALUE: &[u8] = b"phigate-vault/v1/value";
const AAD_WRAP: &[u8] = b"phigate-vault/v1/data-key";
const FP_DOMAIN: &[u8] = b"phigate-vault/v1/fingerprint";
const PLAINTEXT_VERSION: u8 = 1;

/// Appends `bytes` with a 4-byte big-endian length prefix, so concatenations are unambiguous.
fn push_lp(out: &mut Vec<u8>, bytes: &[u8]) {
    // Inputs are validated ids (<= 128 bytes) or values bounded by MAX_VALUE_LEN: fits in u32.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A fresh random data key: 32 bytes from the OS CSPRNG, zeroized on drop.
pub(crate) fn generate_raw_key() -> Zeroizing<[u8; KEY_LEN]> {
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    rand::rngs::OsRng.fill_bytes(k.as_mut());
    k
}

/// A random XChaCha20 nonce.
pub(crate) fn random_nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

/// The associated data a wrapped data key is bound to: the KEK that wraps it, its scope and its id.
/// A wrapped key copied to another row, or presented under another KEK id, fails to unwrap.
pub(crate) fn wrap_aad(kek_id: &str, scope: &str, key_id: &str) -> Vec<u8> {
    let mut aad =
        Vec::with_capacity(AAD_WRAP.len() + 12 + kek_id.len() + scope.len() + key_id.len());
    aad.extend_from_slice(AAD_WRAP);
    push_lp(&mut aad, kek_id.as_bytes());
    push_lp(&mut aad, scope.as_bytes());
    push_lp(&mut aad, key_id.as_bytes());
    aad
}

/// The associated data a value ciphertext is bound to: scope, token and key id.
fn value_aad(scope: &str, token: &str, key_id: &str) -> Vec<u8> {
    let mut aad =
        Vec::with_capacity(AAD_VALUE.len() + 12 + scope.len() + token.len() + key_id.len());
    aad.extend_from_slice(AAD_VALUE);
    push_lp(&mut aad, scope.as_bytes());
    push_lp(&mut aad, token.as_bytes());
    push_lp(&mut aad, key_id.as_bytes());
    aad
}

/// An unwrapped data key, held only as the two subkeys derived from it with HKDF-SHA256: one
/// encrypts values, one keys their fingerprints. Both are zeroized on drop; `Debug` shows nothing.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct DataKey {
    enc: [u8; KEY_LEN],
    fp: [u8; KEY_LEN],
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// The error of [`DataKey::open`]: authentication failed. Carries nothing.
#[derive(Debug)]
pub(crate) struct OpenFailed;

impl DataKey {
    /// Derives the subkeys from the raw 32-byte data key.
    pub(crate) fn derive(raw: &[u8]) -> Option<DataKey> {
        if raw.len() != KEY_LEN {
            return None;
        }
        let hk = Hkdf::<Sha256>::new(None, raw);
        let mut k = DataKey { enc: [0; KEY_LEN], fp: [0; KEY_LEN] };
        // 32 bytes is always a valid HKDF-SHA256 output length.
        hk.expand(INFO_ENC, &mut k.enc).ok()?;
        hk.expand(INFO_FP, &mut k.fp).ok()?;
        Some(k)
    }

    /// The keyed fingerprint of `(category, value)` in `scope`: HMAC-SHA256 under the fingerprint
    /// subkey. Equal inputs under one data key give equal fingerprints; without the key they say
    /// nothing, and once the key is shredded nobody can compute them again.
    pub(crate) fn fingerprint(&self, scope: &str, category: &str, value: &str) -> Vec<u8> {
        // HMAC accepts keys of any length: new_from_slice cannot fail here.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.fp)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(FP_DOMAIN);
        let mut framed = Vec::with_capacity(12 + scope.len() + category.len());
        push_lp(&mut framed, scope.as_bytes());
        push_lp(&mut framed, category.as_bytes());
        mac.update(&framed);
        mac.update(&(value.len() as u64).to_be_bytes());
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// Encrypts `(category, value)` for the row `(scope, token, key_id)` under a fresh random
    /// nonce. Returns `(nonce, ciphertext || tag)`.
    pub(crate) fn seal(
        &self,
        scope: &str,
        token: &str,
        key_id: &str,
        category: &str,
        value: &str,
    ) -> (Vec<u8>, Vec<u8>) {
        let mut plain = Zeroizing::new(Vec::with_capacity(1 + 4 + category.len() + value.len()));
        plain.push(PLAINTEXT_VERSION);
        push_lp(&mut plain, category.as_bytes());
        plain.extend_from_slice(value.as_bytes());
        let nonce = random_nonce();
        let aad = value_aad(scope, token, key_id);
        let cipher = XChaCha20Poly1305::new((&self.enc).into());
        // XChaCha20-Poly1305 encryption fails only for messages over ~256 GiB; values are
        // bounded far below that by validation.
        let ct = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: &plain, aad: &aad })
            .unwrap_or_else(|_| unreachable!("bounded plaintext"));
        (nonce.to_vec(), ct)
    }

    /// Decrypts the row `(scope, token, key_id)`; returns `(category, value)`. Any change to the
    /// nonce, the ciphertext, or the row it sits in fails with [`OpenFailed`].
    pub(crate) fn open(
        &self,
        scope: &str,
        token: &str,
        key_id: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<(String, Zeroizing<String>), OpenFailed> {
        if nonce.len() != NONCE_LEN {
            return Err(OpenFailed);
        }
        let aad = value_aad(scope, token, key_id);
        let cipher = XChaCha20Poly1305::new((&self.enc).into());
        let plain = Zeroizing::new(
            cipher
                .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
                .map_err(|_| OpenFailed)?,
        );
        // Authenticated, so the framing was written by `seal`; still, parse defensively.
        if plain.first() != Some(&PLAINTEXT_VERSION) || plain.len() < 5 {
            return Err(OpenFailed);
        }
        let clen = u32::from_be_bytes([plain[1], plain[2], plain[3], plain[4]]) as usize;
        let rest = &plain[5..];
        if clen > rest.len() {
            return Err(OpenFailed);
        }
        let category = std::str::from_utf8(&rest[..clen]).map_err(|_| OpenFailed)?.to_owned();
        let value = std::str::from_utf8(&rest[clen..]).map_err(|_| OpenFailed)?;
        Ok((category, Zeroizing::new(value.to_owned())))
    }
}

/// Bytes as letters `a`..`p` (one per nibble): like hex, but with no digits, so ids built from
/// it are always valid ledger slugs (which refuse long runs of digits).
fn letters(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(b'a' + (b >> 4)));
        s.push(char::from(b'a' + (b & 0x0f)));
    }
    s
}

/// A short, stable identifier of key material (for KEK ids): a domain-separated SHA-256,
/// truncated to 64 bits. It identifies a key without revealing anything usable about it.
pub(crate) fn key_fingerprint_id(domain: &[u8], key: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(domain);
    h.update(key);
    letters(&h.finalize()[..8])
}

/// The public reference of a scope in the ledger and in data key ids: `vs-` and 24 letters of a
/// domain-separated SHA-256 of the scope. Always a valid ledger slug, whatever the scope looks
/// like; an auditor who knows a scope computes its reference with [`crate::scope_ref`].
pub(crate) fn scope_ref(scope: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"phigate-vault/v1/scope-ref");
    h.update(scope.as_bytes());
    format!("vs-{}", letters(&h.finalize()[..12]))
}

/// Data keys of a scope are numbered 1, 2, ... (each data-key rotation adds one); the key id is
/// the scope reference and the generation, zero-padded so ids sort by generation.
pub(crate) fn key_id(scope: &str, generation: u32) -> String {
    format!("{}.k{generation:06}", scope_ref(scope))
}

/// The generation of a key id made by [`key_id`].
pub(crate) fn key_generation(key_id: &str) -> Option<u32> {
    key_id.rsplit_once(".k")?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DataKey {
        let raw = generate_raw_key();
        DataKey::derive(raw.as_ref()).expect("32 bytes")
    }

    #[test]
    fn seal_open_round_trip() {
        let k = key();
        let (n, ct) = k.seal("conv-1", "[NAME_1]", "dk-1", "NAME", "Jane Roe");
        let (cat, v) = k.open("conv-1", "[NAME_1]", "dk-1", &n, &ct).expect("opens");
        assert_eq!(cat, "NAME");
        assert_eq!(v.as_str(), "Jane Roe");
        assert!(!ct.windows(8).any(|w| w == b"Jane Roe"));
    }

    #[test]
    fn moved_or_altered_rows_fail() {
        let k = key();
        let (n, ct) = k.seal("conv-1", "[NAME_1]", "dk-1", "NAME", "Jane Roe");
        assert!(k.open("conv-2", "[NAME_1]", "dk-1", &n, &ct).is_err());
        assert!(k.open("conv-1", "[NAME_2]", "dk-1", &n, &ct).is_err());
        assert!(k.open("conv-1", "[NAME_1]", "dk-2", &n, &ct).is_err());
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert!(k.open("conv-1", "[NAME_1]", "dk-1", &n, &bad).is_err());
        let mut badn = n.clone();
        badn[3] ^= 1;
        assert!(k.open("conv-1", "[NAME_1]", "dk-1", &badn, &ct).is_err());
        assert!(k.open("conv-1", "[NAME_1]", "dk-1", &n[..12], &ct).is_err());
        assert!(key().open("conv-1", "[NAME_1]", "dk-1", &n, &ct).is_err());
    }

    #[test]
    fn nonces_differ_per_value() {
        let k = key();
        let (n1, c1) = k.seal("s", "t", "k", "NAME", "same");
        let (n2, c2) = k.seal("s", "t", "k", "NAME", "same");
        assert_ne!(n1, n2);
        assert_ne!(c1, c2);
    }

    #[test]
    fn fingerprints_are_keyed_and_framed() {
        let k = key();
        let a = k.fingerprint("s", "NAME", "Jane Roe");
        assert_eq!(a, k.fingerprint("s", "NAME", "Jane Roe"));
        assert_ne!(a, k.fingerprint("s", "LOCATION", "Jane Roe"));
        assert_ne!(a, k.fingerprint("t", "NAME", "Jane Roe"));
        assert_ne!(a, key().fingerprint("s", "NAME", "Jane Roe"));
        // Framing: moving bytes between fields changes the fingerprint.
        assert_ne!(k.fingerprint("s", "NAMEJ", "ane"), k.fingerprint("s", "NAME", "Jane"));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn ids_are_slugs() {
        let id = key_id("550e8400-e29b-41d4-a716-446655440000", 12);
        assert!(ledger::Slug::check(&id).is_ok(), "{id}");
        assert_eq!(key_generation(&id), Some(12));
        assert!(id.starts_with(&scope_ref("550e8400-e29b-41d4-a716-446655440000")));
        assert_ne!(scope_ref("a"), scope_ref("b"));
        assert!(ledger::Slug::check(&key_fingerprint_id(b"x", &[0u8; 32])).is_ok());
    }

    #[test]
    fn derive_rejects_wrong_length_and_debug_redacts() {
        assert!(DataKey::derive(&[0u8; 31]).is_none());
        assert_eq!(format!("{:?}", key()), "DataKey(..)");
    }
}
