//! Signed checkpoints: the tree size and root hash of the log at a time, signed with Ed25519 in
//! the C2SP signed-note format (<https://c2sp.org/signed-note>) with a tlog-checkpoint body
//! (<https://c2sp.org/tlog-checkpoint>):
//!
//! ```text
//! <origin>
//! <tree size>
//! <base64 root hash>
//! timestamp <unix milliseconds>
//!
//! — <key name> <base64(4-byte key hash || 64-byte signature)>
//! ```
//!
//! Keys: a signer is a 32-byte Ed25519 seed and a key name; the verifier key string is
//! `<name>+<8 hex digits of key hash>+<base64(0x01 || public key)>`, as Go's
//! `golang.org/x/mod/sumdb/note` and the transparency-dev tools read it.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;
use crate::Error;

/// The signature algorithm byte of Ed25519 in signed notes.
const ALG_ED25519: u8 = 0x01;

/// The environment variable that holds the base64 of the checkpoint signing seed.
pub const KEY_ENV: &str = "PHIGATE_LEDGER_KEY";

/// The em dash that starts every signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// Checks a key name: non-empty, no whitespace, no `+`.
fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(Error::Key("a key name must be non-empty, without spaces or '+'".into()));
    }
    Ok(())
}

fn key_hash(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// An Ed25519 note signer. `Debug` shows the name and key hash, never the seed.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    hash: [u8; 4],
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoteSigner({}+{}, <secret redacted>)", self.name, hex::encode(self.hash))
    }
}

impl NoteSigner {
    /// A signer from a 32-byte seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<NoteSigner, Error> {
        check_name(name)?;
        let key = SigningKey::from_bytes(seed);
        let hash = key_hash(name, key.verifying_key().as_bytes());
        Ok(NoteSigner { name: name.to_string(), key, hash })
    }

    /// A signer from the base64 of a 32-byte seed (surrounding whitespace ignored), as held by
    /// `PHIGATE_LEDGER_KEY` or a key file.
    pub fn from_base64_seed(name: &str, b64: &str) -> Result<NoteSigner, Error> {
        let raw = B64
            .decode(b64.trim())
            .map_err(|_| Error::Key("the signing key is not valid base64".into()))?;
        let seed: [u8; 32] = raw
            .try_into()
            .map_err(|_| Error::Key("the signing key must be the base64 of 32 bytes".into()))?;
        NoteSigner::from_seed(name, &seed)
    }

    /// The signing key from `file` when given, else from the environment variable
    /// `PHIGATE_LEDGER_KEY`; both hold the base64 of a 32-byte seed. `Ok(None)` when neither is
    /// set. Errors name the file or the variable, never the key.
    pub fn load(name: &str, file: Option<&std::path::Path>) -> Result<Option<NoteSigner>, Error> {
        if let Some(p) = file {
            let s = std::fs::read_to_string(p).map_err(|e| {
                Error::Key(format!("cannot read the key file {}: {e}", p.display()))
            })?;
            return NoteSigner::from_base64_seed(name, &s)
                .map(Some)
                .map_err(|e| Error::Key(format!("{}: {e}", p.display())));
        }
        match std::env::var(KEY_ENV) {
            Ok(s) if !s.trim().is_empty() => NoteSigner::from_base64_seed(name, &s)
                .map(Some)
                .map_err(|e| Error::Key(format!("{KEY_ENV}: {e}"))),
            _ => Ok(None),
        }
    }

    /// A new random signer; returns it with the base64 of its seed (keep that secret).
    pub fn generate(name: &str) -> Result<(NoteSigner, String), Error> {
        use rand::RngCore;
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let s = NoteSigner::from_seed(name, &seed)?;
        Ok((s, B64.encode(seed)))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier { name: self.name.clone(), key: self.key.verifying_key(), hash: self.hash }
    }

    /// Signs `text` (which must end with a newline and hold no blank line) and returns the
    /// whole signed note.
    pub fn sign(&self, text: &str) -> Result<String, Error> {
        if !text.ends_with('\n') || text.contains("\n\n") || text.starts_with('\n') {
            return Err(Error::Checkpoint(
                "note text must end with a newline and hold no blank line".into(),
            ));
        }
        let sig = self.key.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&self.hash);
        blob.extend_from_slice(&sig.to_bytes());
        Ok(format!("{text}\n{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob)))
    }
}

/// An Ed25519 note verifier (public key and name).
#[derive(Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
    hash: [u8; 4],
}

impl fmt::Debug for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoteVerifier({})", self.key_string())
    }
}

impl fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key_string())
    }
}

impl std::str::FromStr for NoteVerifier {
    type Err = Error;
    fn from_str(s: &str) -> Result<NoteVerifier, Error> {
        NoteVerifier::parse(s)
    }
}

impl NoteVerifier {
    /// Parses `<name>+<hex keyhash>+<base64(0x01 || public key)>`.
    pub fn parse(s: &str) -> Result<NoteVerifier, Error> {
        let bad = |why: &str| {
            Error::Key(format!("not a verifier key ({why}); expected NAME+KEYHASH+BASE64"))
        };
        let s = s.trim();
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(h), Some(k)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("three '+'-separated parts"));
        };
        check_name(name)?;
        if h.len() != 8 || !h.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
            return Err(bad("the key hash is 8 lower-case hex digits"));
        }
        let raw = B64.decode(k).map_err(|_| bad("the key is not base64"))?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(bad("not an Ed25519 key"));
        }
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&raw[1..]);
        let key = VerifyingKey::from_bytes(&pk).map_err(|_| bad("not a valid Ed25519 point"))?;
        let hash = key_hash(name, &pk);
        if hex::encode(hash) != h {
            return Err(bad("the key hash does not match the name and key"));
        }
        Ok(NoteVerifier { name: name.to_string(), key, hash })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key string.
    pub fn key_string(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.hash), B64.encode(raw))
    }

    /// Checks a signed note and returns its text (everything before the blank line, with its
    /// final newline). At least one signature must be by this key and verify; signatures by
    /// other keys are ignored, a bad signature by this key is an error.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, Error> {
        let bad = |why: &str| Error::Checkpoint(why.to_string());
        if !note.ends_with('\n') {
            return Err(bad("a signed note ends with a newline"));
        }
        let split = note.rfind("\n\n").ok_or_else(|| bad("no blank line before the signatures"))?;
        let text = &note[..=split];
        let sigs = &note[split + 2..];
        let mut ok = false;
        for line in sigs.lines() {
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or_else(|| bad("a signature line starts with '— '"))?;
            let (name, b64) =
                rest.split_once(' ').ok_or_else(|| bad("a signature line is '— NAME BASE64'"))?;
            let blob = B64.decode(b64).map_err(|_| bad("a signature is not base64"))?;
            if blob.len() < 5 {
                return Err(bad("a signature is too short"));
            }
            if name != self.name || blob[..4] != self.hash {
                continue;
            }
            let sig = ed25519_dalek::Signature::from_slice(&blob[4..])
                .map_err(|_| bad("an Ed25519 signature is 64 bytes"))?;
            self.key
                .verify_strict(text.as_bytes(), &sig)
                .map_err(|_| bad("the signature does not verify"))?;
            ok = true;
        }
        if !ok {
            return Err(bad("no signature by the expected key"));
        }
        Ok(text)
    }
}

/// A checkpoint: the log's origin, size and root at a time.
#[derive(Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (a unique name for this log, e.g. `hospital.example/phigate`).
    pub origin: String,
    /// The number of records covered.
    pub tree_size: u64,
    /// The MTH of the first `tree_size` records.
    pub root: Hash,
    /// When it was issued, milliseconds since the Unix epoch.
    pub ts_ms: i64,
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("origin", &self.origin)
            .field("tree_size", &self.tree_size)
            .field("root", &hex::encode(self.root))
            .field("ts_ms", &self.ts_ms)
            .finish()
    }
}

impl Checkpoint {
    /// The note text (the checkpoint body, before signing).
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\ntimestamp {}\n",
            self.origin,
            self.tree_size,
            B64.encode(self.root),
            self.ts_ms
        )
    }

    /// The signed note.
    pub fn sign(&self, signer: &NoteSigner) -> Result<String, Error> {
        if self.origin.is_empty() || self.origin.contains('\n') {
            return Err(Error::Checkpoint("the origin must be one non-empty line".into()));
        }
        signer.sign(&self.body())
    }

    /// Verifies a signed checkpoint note with `verifier` and parses it.
    pub fn open(note: &str, verifier: &NoteVerifier) -> Result<Checkpoint, Error> {
        let text = verifier.open(note)?;
        Checkpoint::parse_body(text)
    }

    /// Parses a checkpoint body without checking any signature.
    pub fn parse_body(text: &str) -> Result<Checkpoint, Error> {
        let bad = |why: &str| Error::Checkpoint(why.to_string());
        let mut lines = text.lines();
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or_else(|| bad("no origin line"))?;
        let size = lines.next().ok_or_else(|| bad("no tree size line"))?;
        if size.is_empty()
            || !size.bytes().all(|c| c.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(bad("the tree size is not a decimal number"));
        }
        let tree_size: u64 = size.parse().map_err(|_| bad("the tree size is out of range"))?;
        let root_b64 = lines.next().ok_or_else(|| bad("no root hash line"))?;
        let root: Hash = B64
            .decode(root_b64)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("the root hash is not the base64 of 32 bytes"))?;
        let mut ts_ms = None;
        for ext in lines {
            if let Some(t) = ext.strip_prefix("timestamp ") {
                ts_ms = Some(t.parse::<i64>().map_err(|_| bad("the timestamp is not a number"))?);
            }
        }
        let ts_ms = ts_ms.ok_or_else(|| bad("no timestamp extension line"))?;
        Ok(Checkpoint { origin: origin.to_string(), tree_size, root, ts_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of golang.org/x/mod/sumdb/note (and of C2SP signed-note).
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const SIGNED: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn peter() -> NoteSigner {
        let b64 = PETER_SKEY.splitn(5, '+').nth(4).unwrap();
        let raw = B64.decode(b64).unwrap();
        assert_eq!(raw[0], 1);
        let seed: [u8; 32] = raw[1..].try_into().unwrap();
        NoteSigner::from_seed("PeterNeumann", &seed).unwrap()
    }

    #[test]
    fn reproduces_the_go_note_vector() {
        let s = peter();
        assert_eq!(s.verifier().key_string(), PETER_VKEY);
        assert_eq!(s.sign(TEXT).unwrap(), SIGNED);
        let v = NoteVerifier::parse(PETER_VKEY).unwrap();
        assert_eq!(v.open(SIGNED).unwrap(), TEXT);
        assert!(v.open(&SIGNED.replace("cryptography", "cryptographY")).is_err());
        // A verifier key whose hash does not match is refused.
        assert!(NoteVerifier::parse(&PETER_VKEY.replace("c74f20a3", "c74f20a4")).is_err());
    }

    #[test]
    fn checkpoint_round_trip() {
        let (s, seed) = NoteSigner::generate("phigate.test/log").unwrap();
        let again = NoteSigner::from_base64_seed("phigate.test/log", &seed).unwrap();
        assert_eq!(again.verifier(), s.verifier());
        let c = Checkpoint {
            origin: "phigate.test/log".into(),
            tree_size: 7,
            root: [9u8; 32],
            ts_ms: 1_700_000_000_123,
        };
        let note = c.sign(&s).unwrap();
        assert!(note.starts_with("phigate.test/log\n7\nCQkJ"), "{note}");
        assert!(note.contains("\ntimestamp 1700000000123\n\n\u{2014} phigate.test/log "));
        let v = NoteVerifier::parse(&s.verifier().to_string()).unwrap();
        assert_eq!(Checkpoint::open(&note, &v).unwrap(), c);
        let forged = note.replacen("\n7\n", "\n8\n", 1);
        assert!(Checkpoint::open(&forged, &v).is_err());
        let (other, _) = NoteSigner::generate("phigate.test/log").unwrap();
        assert!(Checkpoint::open(&note, &other.verifier()).is_err());
        assert!(!format!("{s:?}").contains(&seed));
    }
}
