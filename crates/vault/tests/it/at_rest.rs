//! What reaches the disk: no canary plaintext in the SQLite file or its WAL, and no wrapped data
//! key once shredded; no value in `Debug` or errors.

use std::sync::{Arc, Mutex};

use phi::Category;
use vault::{Actor, Error, Kms, KmsError, LocalKek, NewValue, RevealReason, ShredReason};
use zeroize::Zeroizing;

use crate::harness::{Db, Kind};

const CANARIES: &[(Category, &str)] = &[
    (Category::Name, "Zebulon Canarywick"),
    (Category::Mrn, "MRN-CANARY-8675309"),
    (Category::Email, "canary.patient@example.org"),
    (Category::Ssn, "078-05-1120"),
];

/// A KMS adapter that wraps with a local KEK and keeps a copy of every data key it is given,
/// so the test can look for those keys on disk.
struct Recording {
    inner: LocalKek,
    seen: Mutex<Vec<Vec<u8>>>,
}

#[async_trait::async_trait]
impl Kms for Recording {
    fn id(&self) -> &str {
        self.inner.id()
    }
    async fn wrap(&self, data_key: &[u8], aad: &[u8]) -> Result<Vec<u8>, KmsError> {
        self.seen.lock().expect("lock").push(data_key.to_vec());
        self.inner.wrap(data_key, aad).await
    }
    async fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        self.inner.unwrap(wrapped, aad).await
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn disk_bytes(db: &Db) -> Vec<u8> {
    let path = db.path.clone().expect("sqlite path");
    let mut all = std::fs::read(&path).expect("read db");
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        if let Ok(b) = std::fs::read(&p) {
            all.extend_from_slice(&b);
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_holds_no_plaintext_and_no_shredded_key() {
    let db = Db::new(Kind::Sqlite).await;
    let kek_bytes = [0x5a_u8; 32];
    let recording =
        Arc::new(Recording { inner: LocalKek::new(kek_bytes), seen: Mutex::new(Vec::new()) });
    let v = db.vault(recording.clone()).await;
    let items: Vec<NewValue<'_>> =
        CANARIES.iter().map(|(c, s)| NewValue { category: *c, value: s, token: None }).collect();
    let toks = v.tokenize_many("conv-canary", &items).await.expect("tokenize");
    let tokens: Vec<String> = toks.iter().map(|t| t.token.clone()).collect();
    let actor = Actor::new("user:auditor").expect("valid");
    let r =
        v.reveal("conv-canary", &tokens, &actor, RevealReason::Operations).await.expect("reveal");
    assert_eq!(r.len(), CANARIES.len());

    let wrapped =
        db.store.data_key_active("conv-canary").await.expect("key").expect("some").wrapped;
    let bytes = disk_bytes(&db);
    assert!(contains(&bytes, b"conv-canary"), "the scan sees the database's content");
    for (_, canary) in CANARIES {
        assert!(!contains(&bytes, canary.as_bytes()), "plaintext canary found on disk");
    }
    assert!(!contains(&bytes, &kek_bytes), "KEK on disk");
    let data_keys = recording.seen.lock().expect("lock").clone();
    assert_eq!(data_keys.len(), 1);
    for k in &data_keys {
        assert!(!contains(&bytes, k), "an unwrapped data key is on disk");
    }
    assert!(contains(&bytes, &wrapped), "the live wrapped key is stored (the scan would see it)");

    v.shred_scope("conv-canary", &actor, ShredReason::ScopeClosed).await.expect("shred");
    let bytes = disk_bytes(&db);
    assert!(!contains(&bytes, &wrapped), "the shredded wrapped data key is still on disk");
    for (_, canary) in CANARIES {
        assert!(!contains(&bytes, canary.as_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_and_errors_hold_no_values() {
    let db = Db::new(Kind::Sqlite).await;
    let v = db.vault(Arc::new(LocalKek::new([7u8; 32]))).await;
    let (cat, canary) = CANARIES[0];
    let item = NewValue { category: cat, value: canary, token: Some("[NAME_1]") };
    let t = v.tokenize_many("conv-1", &[item]).await.expect("tokenize");
    let r = v
        .reveal(
            "conv-1",
            &[t[0].token.clone()],
            &Actor::new("user:x").expect("ok"),
            RevealReason::Treatment,
        )
        .await
        .expect("reveal");
    let e = v.tokenize("conv-1", cat, "Someone Else", Some("[NAME_1]")).await.expect_err("taken");
    let e2 = v.tokenize("bad scope", cat, canary, None).await.expect_err("bad scope");
    let e3: Error = "Zebulon asked".parse::<RevealReason>().expect_err("free text");
    for shown in [
        format!("{item:?}"),
        format!("{r:?}"),
        format!("{v:?}"),
        format!("{e} {e:?} {e2} {e2:?} {e3}"),
        format!("{:?}", LocalKek::new([7u8; 32])),
    ] {
        assert!(!shown.contains("Zebulon") && !shown.contains("Canarywick"), "{shown}");
        assert!(!shown.contains("[7, 7"), "{shown}");
    }
}

#[test]
fn public_types_are_send_and_sync() {
    fn is<T: Send + Sync>() {}
    is::<vault::Vault>();
    is::<vault::Keyring>();
    is::<vault::LocalKek>();
    is::<vault::Revealed>();
    is::<vault::Error>();
    is::<vault::Sweeper>();
}
