//! Key-encryption keys (KEKs): the [`Kms`] interface, its local AEAD implementation [`LocalKek`],
//! loading a local KEK from a file or the environment, and the [`Keyring`] of the active KEK plus
//! the older ones still needed to unwrap data keys during and after a rotation.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::crypto::{key_fingerprint_id, random_nonce, KEY_LEN, NONCE_LEN};
use crate::error::{Error, KmsError};

/// The environment variable [`LocalKek::from_env_default`] reads: base64 of 32 random bytes.
pub const KEK_ENV: &str = "PHIGATE_VAULT_KEK";

/// A key-encryption key, wherever it lives: the interface a KMS adapter (AWS KMS, GCP KMS,
/// HashiCorp Vault Transit, an HSM) implements. The KEK never leaves the KMS; the vault only asks it
/// to wrap and unwrap 32-byte data keys.
///
/// `aad` is the context the wrapped key is bound to (its scope, key id and this KEK's id); an
/// adapter must authenticate it (an AEAD's associated data, AWS's encryption context, Transit's
/// `context`), so a wrapped key moved to another row fails to unwrap.
#[async_trait]
pub trait Kms: Send + Sync + 'static {
    /// A stable id for this KEK, stored next to every data key it wraps (not secret; at most 128
    /// characters of `[A-Za-z0-9._:/-]`).
    fn id(&self) -> &str;
    /// Wraps (encrypts) a data key bound to `aad`.
    async fn wrap(&self, data_key: &[u8], aad: &[u8]) -> Result<Vec<u8>, KmsError>;
    /// Unwraps a data key; fails with [`KmsError::Rejected`] when the KEK is wrong or the bytes or
    /// `aad` differ from what was wrapped.
    async fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, KmsError>;
}

/// A KEK held in this process: XChaCha20-Poly1305 with a random nonce per wrap. Wrapped format:
/// `nonce (24) || ciphertext (32) || tag (16)`. The key is zeroized on drop; `Debug` shows only
/// the id.
pub struct LocalKek {
    id: String,
    cipher: XChaCha20Poly1305,
    _key: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for LocalKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKek").field("id", &self.id).finish_non_exhaustive()
    }
}

impl LocalKek {
    /// A KEK from 32 bytes of key material. Its id is `local-` and 16 hex digits of a
    /// domain-separated SHA-256 of the key, so the same key always has the same id and a
    /// different key is recognised as such ([`Error::UnknownKek`]) rather than tried.
    pub fn new(key: [u8; KEY_LEN]) -> LocalKek {
        let key = Zeroizing::new(key);
        let id = format!("local-{}", key_fingerprint_id(b"phigate-vault/v1/kek-id", key.as_ref()));
        Self::build(id, key)
    }

    /// A KEK with an explicit id (validated like a scope).
    pub fn with_id(id: &str, key: [u8; KEY_LEN]) -> Result<LocalKek, Error> {
        crate::codes::validate_id("kek id", id)?;
        Ok(Self::build(id.to_owned(), Zeroizing::new(key)))
    }

    fn build(id: String, key: Zeroizing<[u8; KEY_LEN]>) -> LocalKek {
        let cipher = XChaCha20Poly1305::new(key.as_ref().into());
        LocalKek { id, cipher, _key: key }
    }

    /// A fresh random KEK (tests, first start-up).
    pub fn generate() -> LocalKek {
        let raw = crate::crypto::generate_raw_key();
        Self::new(*raw)
    }

    /// A KEK from standard base64 of exactly 32 bytes (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<LocalKek, Error> {
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| Error::KekSource("not valid base64".into()))?,
        );
        let key: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| Error::KekSource(format!("must decode to {KEY_LEN} bytes")))?;
        Ok(Self::new(key))
    }

    /// A KEK from an environment variable holding base64 of 32 bytes.
    pub fn from_env(var: &str) -> Result<LocalKek, Error> {
        let text = Zeroizing::new(
            std::env::var(var)
                .map_err(|_| Error::KekSource(format!("environment variable {var} is not set")))?,
        );
        Self::from_base64(&text)
            .map_err(|e| Error::KekSource(format!("environment variable {var}: {e}")))
    }

    /// [`LocalKek::from_env`] on [`KEK_ENV`] (`PHIGATE_VAULT_KEK`).
    pub fn from_env_default() -> Result<LocalKek, Error> {
        Self::from_env(KEK_ENV)
    }

    /// A KEK from a file holding either exactly 32 raw bytes or base64 of them. On Unix a file
    /// readable by group or others is refused: a KEK must not be world-readable.
    pub fn from_file(path: &Path) -> Result<LocalKek, Error> {
        let shown = path.display();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let meta = std::fs::metadata(path)
                .map_err(|e| Error::KekSource(format!("{shown}: {}", e.kind())))?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(Error::KekSource(format!(
                    "{shown}: readable by group or others; chmod 600 it"
                )));
            }
        }
        let bytes = Zeroizing::new(
            std::fs::read(path).map_err(|e| Error::KekSource(format!("{shown}: {}", e.kind())))?,
        );
        if let Ok(raw) = <[u8; KEY_LEN]>::try_from(bytes.as_slice()) {
            return Ok(Self::new(raw));
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Error::KekSource(format!("{shown}: neither 32 raw bytes nor base64")))?;
        Self::from_base64(text).map_err(|e| Error::KekSource(format!("{shown}: {e}")))
    }

    /// A KEK from a reference: `env:VAR` (or `${VAR}`), `file:/path`, or `base64:...`.
    pub fn from_spec(spec: &str) -> Result<LocalKek, Error> {
        // `${VAR}`, as the configuration writes it, is `env:VAR`.
        if let Some(var) = spec.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
            Self::from_env(var)
        } else if let Some(var) = spec.strip_prefix("env:") {
            Self::from_env(var)
        } else if let Some(path) = spec.strip_prefix("file:") {
            Self::from_file(Path::new(path))
        } else if let Some(b64) = spec.strip_prefix("base64:") {
            Self::from_base64(b64)
        } else {
            Err(Error::KekSource("expected env:VAR (or ${VAR}), file:/path or base64:...".into()))
        }
    }
}

#[async_trait]
impl Kms for LocalKek {
    fn id(&self) -> &str {
        &self.id
    }

    async fn wrap(&self, data_key: &[u8], aad: &[u8]) -> Result<Vec<u8>, KmsError> {
        let nonce = random_nonce();
        let ct = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: data_key, aad })
            .map_err(|_| KmsError::Other("wrap failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    async fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        if wrapped.len() <= NONCE_LEN + 16 {
            return Err(KmsError::Malformed);
        }
        let (nonce, ct) = wrapped.split_at(NONCE_LEN);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| KmsError::Rejected)
    }
}

/// The KEKs a vault knows: the active one (wraps every new data key) and older ones by id (only
/// unwrap), so data keys stay readable during and after a KEK rotation.
#[derive(Clone)]
pub struct Keyring {
    active: Arc<dyn Kms>,
    all: BTreeMap<String, Arc<dyn Kms>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active.id())
            .field("ids", &self.all.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// A keyring whose active KEK is `active`.
    pub fn new(active: Arc<dyn Kms>) -> Keyring {
        let mut all = BTreeMap::new();
        all.insert(active.id().to_owned(), active.clone());
        Keyring { active, all }
    }

    /// Adds an older KEK, used only to unwrap data keys it wrapped. Does not replace the active one.
    pub fn with_previous(mut self, older: Arc<dyn Kms>) -> Keyring {
        let id = older.id().to_owned();
        self.all.entry(id).or_insert(older);
        self
    }

    /// The id of the active KEK.
    pub fn active_id(&self) -> &str {
        self.active.id()
    }

    /// The active KEK.
    pub fn active(&self) -> &Arc<dyn Kms> {
        &self.active
    }

    /// The KEK with this id, active or older.
    pub fn get(&self, id: &str) -> Option<&Arc<dyn Kms>> {
        self.all.get(id)
    }

    /// Every KEK id in the ring, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.all.keys().cloned().collect()
    }

    /// Makes `kek` the active KEK, keeping the previous one for unwrapping.
    pub(crate) fn activate(&mut self, kek: Arc<dyn Kms>) {
        self.all.insert(kek.id().to_owned(), kek.clone());
        self.active = kek;
    }

    /// Drops an older KEK. The active one cannot be removed.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        if id == self.active.id() {
            return false;
        }
        self.all.remove(id).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wrap_unwrap_and_refusals() {
        let a = LocalKek::generate();
        let b = LocalKek::generate();
        assert_ne!(a.id(), b.id());
        assert!(a.id().starts_with("local-"));
        let w = a.wrap(&[7u8; 32], b"ctx").await.expect("wraps");
        assert_eq!(w.len(), 24 + 32 + 16);
        assert_eq!(a.unwrap(&w, b"ctx").await.expect("unwraps").as_slice(), &[7u8; 32]);
        assert!(matches!(a.unwrap(&w, b"other").await, Err(KmsError::Rejected)));
        assert!(matches!(b.unwrap(&w, b"ctx").await, Err(KmsError::Rejected)));
        assert!(matches!(a.unwrap(&w[..30], b"ctx").await, Err(KmsError::Malformed)));
    }

    #[test]
    fn ids_are_stable_and_debug_redacts() {
        let a = LocalKek::new([1u8; 32]);
        assert_eq!(a.id(), LocalKek::new([1u8; 32]).id());
        let dbg = format!("{a:?}");
        assert!(dbg.contains(a.id()) && !dbg.contains("[1, 1"));
    }

    #[test]
    fn sources_parse_and_refuse() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let k = LocalKek::from_base64(&format!(" {b64}\n")).expect("parses");
        assert_eq!(k.id(), LocalKek::new([9u8; 32]).id());
        let short = base64::engine::general_purpose::STANDARD.encode([9u8; 16]);
        let e = LocalKek::from_base64(&short).expect_err("too short");
        assert!(!e.to_string().contains(&short));
        assert!(LocalKek::from_base64("not base64!").is_err());
        assert!(LocalKek::from_spec("vault:xyz").is_err());
        let e = LocalKek::from_env("PHIGATE_TEST_SURELY_UNSET_VAR").expect_err("unset");
        assert!(e.to_string().contains("PHIGATE_TEST_SURELY_UNSET_VAR"));
        // The configuration's form reads the same variable.
        let e = LocalKek::from_spec("${PHIGATE_TEST_SURELY_UNSET_VAR}").expect_err("unset");
        assert!(e.to_string().contains("PHIGATE_TEST_SURELY_UNSET_VAR"), "{e}");
        let e = LocalKek::from_spec("env:PHIGATE_TEST_SURELY_UNSET_VAR").expect_err("unset");
        assert!(e.to_string().contains("PHIGATE_TEST_SURELY_UNSET_VAR"), "{e}");
    }

    #[test]
    fn file_source() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kek");
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(base64::engine::general_purpose::STANDARD.encode([3u8; 32]).as_bytes())
            .expect("write");
        drop(f);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            assert!(LocalKek::from_file(&path).is_err(), "world-readable KEK refused");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let k = LocalKek::from_file(&path).expect("loads");
        assert_eq!(k.id(), LocalKek::new([3u8; 32]).id());
        std::fs::write(&path, [4u8; 32]).expect("write raw");
        let k = LocalKek::from_spec(&format!("file:{}", path.display())).expect("loads raw");
        assert_eq!(k.id(), LocalKek::new([4u8; 32]).id());
    }

    #[test]
    fn keyring_keeps_older_keks() {
        let a: Arc<dyn Kms> = Arc::new(LocalKek::generate());
        let b: Arc<dyn Kms> = Arc::new(LocalKek::generate());
        let mut ring = Keyring::new(a.clone());
        ring.activate(b.clone());
        assert_eq!(ring.active_id(), b.id());
        assert!(ring.get(a.id()).is_some());
        assert!(!ring.remove(b.id()));
        assert!(ring.remove(a.id()));
        assert!(ring.get(a.id()).is_none());
    }
}
