//! Wrong KEK, KEK rotation under concurrent load, data-key rotation.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use phi::Category;
use vault::{Actor, Error, Keyring, Kms, LocalKek, RevealReason};

use crate::harness::{kek, Db};
use crate::on_both;

on_both!(
    wrong_kek_refuses,
    kek_rotation_under_load,
    data_key_rotation,
    a_scope_shred_reaches_a_generation_made_under_a_clock_stepped_back
);

fn admin() -> Actor {
    Actor::new("admin:key-officer").expect("valid")
}

async fn wrong_kek_refuses(db: &mut Db) {
    let right = kek();
    let v = db.vault(right.clone()).await;
    v.tokenize("conv-1", Category::Name, "Jane Roe", Some("[NAME_1]")).await.expect("tokenize");

    let ok = v.check_keyring().await.expect("right KEK passes the start-up check");
    assert_eq!(ok.get(right.id()), Some(&1));

    // Another KEK altogether: the store names a KEK the keyring lacks.
    let other = db.vault(kek()).await;
    let e = other.check_keyring().await.expect_err("start-up check refuses");
    assert!(matches!(e, Error::UnknownKek { .. }), "{e}");
    let e = other
        .reveal("conv-1", &["[NAME_1]".into()], &admin(), RevealReason::Treatment)
        .await
        .expect_err("wrong kek");
    assert!(matches!(&e, Error::UnknownKek { kek_id, .. } if kek_id == right.id()), "{e}");
    let e =
        other.tokenize("conv-1", Category::Name, "John Doe", None).await.expect_err("wrong kek");
    assert!(matches!(e, Error::UnknownKek { .. }), "{e}");

    // Same id, different key material: the unwrap fails authentication.
    let impostor: Arc<dyn Kms> = Arc::new(LocalKek::with_id(right.id(), [0x42; 32]).expect("kek"));
    let imp = db.vault(impostor).await;
    let e = imp.check_keyring().await.expect_err("start-up check refuses");
    assert!(matches!(e, Error::KeyUnwrap { .. }), "{e}");
    let e = imp
        .reveal("conv-1", &["[NAME_1]".into()], &admin(), RevealReason::Treatment)
        .await
        .expect_err("impostor");
    assert!(matches!(e, Error::KeyUnwrap { .. }), "{e}");
    assert!(db.records("vault_reidentify").await.is_empty(), "nothing revealed, nothing recorded");
}

async fn kek_rotation_under_load(db: &mut Db) {
    let old = kek();
    let v = db.vault(old.clone()).await;
    const SCOPES: usize = 6;
    for s in 0..SCOPES {
        for i in 0..5 {
            v.tokenize(
                &format!("conv-{s}"),
                Category::Name,
                &format!("Person {s}-{i}"),
                Some(&format!("[NAME_{i}]")),
            )
            .await
            .expect("seed");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..4usize {
        let v = v.clone();
        let stop = stop.clone();
        let ops = ops.clone();
        workers.push(tokio::spawn(async move {
            let actor = Actor::new("svc:gateway").expect("valid");
            let mut n = 0usize;
            let mut after_stop = 0;
            // Keep going until told to stop, then a few more rounds so work overlaps the end.
            while after_stop < 2 {
                if stop.load(Ordering::SeqCst) {
                    after_stop += 1;
                }
                let scope = format!("conv-{}", (w + n) % SCOPES);
                let fresh = format!("conv-new-{w}-{n}");
                v.tokenize(
                    &scope,
                    Category::Name,
                    &format!("Person {}-{}", (w + n) % SCOPES, n % 5),
                    None,
                )
                .await
                .map_err(|e| format!("tokenize existing: {e}"))?;
                v.tokenize(&fresh, Category::Date, "01/02/2020", Some("[DATE_1]"))
                    .await
                    .map_err(|e| format!("tokenize new scope: {e}"))?;
                let r = v
                    .reveal(&scope, &[format!("[NAME_{}]", n % 5)], &actor, RevealReason::Treatment)
                    .await
                    .map_err(|e| format!("reveal: {e}"))?;
                let want = format!("Person {}-{}", (w + n) % SCOPES, n % 5);
                if r.get(&format!("[NAME_{}]", n % 5)).map(|p| p.expose()) != Some(want.as_str()) {
                    return Err("wrong value".to_string());
                }
                n += 1;
                ops.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<usize, String>(n)
        }));
    }
    // Let every worker get going before the rotation starts.
    while ops.load(Ordering::SeqCst) < 8 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let new = kek();
    let rot = v.rotate_kek(new.clone(), &admin()).await.expect("rotate");
    assert_eq!(rot.kek_id, new.id());
    assert!(rot.rewrapped >= SCOPES, "rewrapped {}", rot.rewrapped);
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        let n = w.await.expect("join").expect("worker saw no error");
        assert!(n >= 2);
    }
    // Every live key is under the new KEK; the old one can go.
    let live = db.store.data_keys_live().await.expect("live");
    assert!(live.iter().all(|k| k.kek_id == new.id()));
    v.retire_kek(old.id()).await.expect("retire old kek");
    // A vault that only knows the new KEK (cold cache) reads everything.
    let only_new = db.vault(new.clone()).await;
    for s in 0..SCOPES {
        let r = only_new
            .reveal(&format!("conv-{s}"), &["[NAME_0]".into()], &admin(), RevealReason::Operations)
            .await
            .expect("reveal after rotation");
        assert_eq!(r.get("[NAME_0]").map(|p| p.expose().to_owned()), Some(format!("Person {s}-0")));
    }
    // And the old KEK alone no longer opens anything.
    let only_old = db.vault(old.clone()).await;
    let e = only_old
        .reveal("conv-0", &["[NAME_0]".into()], &admin(), RevealReason::Operations)
        .await
        .expect_err("old");
    assert!(matches!(e, Error::UnknownKek { .. }), "{e}");
    assert!(db
        .records("vault_key_rotate")
        .await
        .iter()
        .any(|r| r.reason().map(|s| s.as_str()) == Some("kek_rotation")));
    // Retiring the active KEK is refused.
    assert!(v.retire_kek(new.id()).await.is_err());
}

async fn data_key_rotation(db: &mut Db) {
    let k = kek();
    let v = db.vault(k.clone()).await;
    let a = v.tokenize("conv-1", Category::Name, "Jane Roe", Some("[NAME_1]")).await.expect("a");
    let before = v.scope_key("conv-1").await.expect("key").expect("some");
    assert_eq!(before.generation, 1);
    let after = v.rotate_data_key("conv-1", &admin()).await.expect("rotate");
    assert_eq!(after.generation, 2);
    assert_ne!(after.key_id, before.key_id);
    assert_eq!(
        after.expires_at_ms, before.expires_at_ms,
        "retention is the scope's, not the key's"
    );

    // The old value keeps its token (found under the old key); a new one goes under the new key.
    let again =
        v.tokenize("conv-1", Category::Name, "Jane Roe", Some("[NAME_2]")).await.expect("again");
    assert_eq!(again.token, a.token);
    assert!(!again.created);
    let b = v.tokenize("conv-1", Category::Name, "John Doe", Some("[NAME_2]")).await.expect("b");
    assert!(b.created);
    let rows =
        db.store.vault_get("conv-1", &["[NAME_1]".into(), "[NAME_2]".into()]).await.expect("rows");
    let key_of = |t: &str| rows.iter().find(|r| r.token == t).map(|r| r.key_id.clone());
    assert_eq!(key_of("[NAME_1]"), Some(before.key_id.clone()));
    assert_eq!(key_of("[NAME_2]"), Some(after.key_id.clone()));

    // Both readable, by a cold vault too (another replica that reads the store on every use).
    let cold =
        db.vault_with(db.ledger().await, Keyring::new(k.clone()), crate::harness::uncached());
    let r = cold
        .reveal(
            "conv-1",
            &["[NAME_1]".into(), "[NAME_2]".into()],
            &admin(),
            RevealReason::Treatment,
        )
        .await
        .expect("reveal");
    assert_eq!(r.get("[NAME_1]").map(|p| p.expose()), Some("Jane Roe"));
    assert_eq!(r.get("[NAME_2]").map(|p| p.expose()), Some("John Doe"));
    assert!(db
        .records("vault_key_rotate")
        .await
        .iter()
        .any(|r| r.resource().map(|s| s.as_str()) == Some(after.key_id.as_str())));

    // Shredding the scope destroys both generations.
    let rep =
        v.shred_scope("conv-1", &admin(), vault::ShredReason::ScopeClosed).await.expect("shred");
    assert_eq!(rep.key_ids.len(), 2);
    // The vault that shredded refuses at once, though it had the rows and keys in memory.
    let e = v
        .reveal("conv-1", &["[NAME_1]".into()], &admin(), RevealReason::Treatment)
        .await
        .expect_err("gone here");
    assert!(matches!(e, Error::Shredded { .. }), "{e}");
    let e = cold
        .reveal("conv-1", &["[NAME_1]".into()], &admin(), RevealReason::Treatment)
        .await
        .expect_err("gone");
    assert!(matches!(e, Error::Shredded { .. }), "{e}");
}

/// A newer generation of a scope's key whose creation time is earlier than the active one's
/// (a clock stepped back, or skew between replicas) is shredded with the scope all the same.
async fn a_scope_shred_reaches_a_generation_made_under_a_clock_stepped_back(db: &mut Db) {
    let v = db.vault(kek()).await;
    v.tokenize("conv-1", Category::Name, "Jane Roe", None).await.expect("tokenize");
    let first = db.store.data_key_active("conv-1").await.unwrap().expect("a key");
    let (stem, generation) = first.key_id.rsplit_once(".k").expect("a generation");
    assert_eq!(generation, "000001");
    let mut second = first.clone();
    second.key_id = format!("{stem}.k000002");
    second.created_ms = first.created_ms - 60_000;
    db.store.data_key_put(&second).await.unwrap();
    assert_eq!(db.store.data_key_active("conv-1").await.unwrap().unwrap().key_id, first.key_id);
    v.shred_scope("conv-1", &admin(), vault::ShredReason::PatientRequest).await.expect("shred");
    for id in [&first.key_id, &second.key_id] {
        let row = db.store.data_key_get(id).await.unwrap().expect("row");
        assert!(row.shredded_ms.is_some() && row.wrapped.is_empty(), "{id} left live");
    }
}
