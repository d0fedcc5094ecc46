//! Retention: the sweeper shreds expired scopes; shredding is recorded first and refused when
//! the ledger cannot record it.

use std::time::Duration;

use phi::Category;
use vault::{Actor, Error, Keyring, RevealReason, ShredReason, VaultConfig};

use crate::harness::{kek, Db};
use crate::on_both;

on_both!(sweeper_shreds_expired_scope, explicit_shred, shred_refused_without_ledger);

fn actor() -> Actor {
    Actor::new("user:dr-house").expect("valid")
}

async fn wait_until_past(ms: i64) {
    while ledger::record::now_ms() <= ms {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn sweeper_shreds_expired_scope(db: &mut Db) {
    let v = db.vault(kek()).await;
    let short = v.open_scope("conv-short", Some(Duration::from_millis(300))).await.expect("open");
    v.open_scope("conv-long", None).await.expect("open default");
    v.tokenize("conv-short", Category::Name, "Jane Roe", Some("[NAME_1]")).await.expect("t");
    v.tokenize("conv-long", Category::Name, "John Doe", Some("[NAME_1]")).await.expect("t");
    let expires = short.expires_at_ms.expect("has retention");
    wait_until_past(expires).await;

    // Past retention: refused even before the sweeper runs.
    let e = v
        .reveal("conv-short", &["[NAME_1]".into()], &actor(), RevealReason::Treatment)
        .await
        .expect_err("expired");
    assert!(matches!(e, Error::Expired { .. }), "{e}");

    let sweeper = v.spawn_sweeper(Duration::from_millis(20));
    let mut status = sweeper.status();
    let st = *status.wait_for(|s| s.shredded >= 1).await.expect("sweeper running");
    sweeper.shutdown().await;
    assert_eq!(st.failures, 0);

    let e = v
        .reveal("conv-short", &["[NAME_1]".into()], &actor(), RevealReason::Treatment)
        .await
        .expect_err("shredded");
    assert!(matches!(&e, Error::Shredded { scope } if scope == "conv-short"), "{e}");
    let e = v
        .tokenize("conv-short", Category::Name, "Jane Roe", None)
        .await
        .expect_err("stays shredded");
    assert!(matches!(e, Error::Shredded { .. }), "{e}");
    // The wrapped key is gone from the store.
    let row = db.store.data_key_get(&short.key_id).await.expect("get").expect("row kept");
    assert!(row.shredded_ms.is_some() && row.wrapped.iter().all(|b| *b == 0));

    // The shred is in the ledger, with the key id and the reason, by the sweeper.
    let recs = db.records("vault_shred").await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].resource().map(|s| s.as_str()), Some(short.key_id.as_str()));
    assert_eq!(recs[0].reason().map(|s| s.as_str()), Some("retention_expired"));
    assert_eq!(recs[0].actor().as_str(), "system:vault-sweeper");

    // The other scope is untouched.
    let r = v
        .reveal("conv-long", &["[NAME_1]".into()], &actor(), RevealReason::Treatment)
        .await
        .expect("long");
    assert_eq!(r.get("[NAME_1]").map(|p| p.expose()), Some("John Doe"));
}

async fn explicit_shred(db: &mut Db) {
    let k = kek();
    let v = db.vault(k.clone()).await;
    v.tokenize("conv-1", Category::Ssn, "123-45-6789", Some("[SSN_1]")).await.expect("t");
    let rep = v.shred_scope("conv-1", &actor(), ShredReason::PatientRequest).await.expect("shred");
    assert_eq!(rep.key_ids.len(), 1);
    let again =
        v.shred_scope("conv-1", &actor(), ShredReason::PatientRequest).await.expect("idempotent");
    assert!(again.key_ids.is_empty());
    for vault in [v.clone(), db.vault(k.clone()).await] {
        let e = vault
            .reveal("conv-1", &["[SSN_1]".into()], &actor(), RevealReason::Treatment)
            .await
            .expect_err("gone");
        assert!(matches!(e, Error::Shredded { .. }), "{e}");
    }
    let recs = db.records("vault_shred").await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].reason().map(|s| s.as_str()), Some("patient_request"));
    assert_eq!(recs[0].actor().as_str(), "user:dr-house");
    // The ledger stays verifiable after the shred: it never held the values.
    let ledger = db.ledger().await;
    let report = ledger.verify_store(None).await.expect("ledger verifies");
    assert_eq!(report.records, ledger.len().await.expect("len"));
    assert!(report.records >= 1);
}

async fn shred_refused_without_ledger(db: &mut Db) {
    let k = kek();
    let v = db.vault(k.clone()).await;
    v.tokenize("conv-1", Category::Name, "Jane Roe", Some("[NAME_1]")).await.expect("t");
    let short = v.open_scope("conv-exp", Some(Duration::from_millis(50))).await.expect("open");

    // A vault whose ledger lives in a store that becomes unreachable.
    let mut ledger_db = Db::new(db.kind).await;
    let dead =
        db.vault_with(ledger_db.ledger().await, Keyring::new(k.clone()), VaultConfig::default());
    let _lock = ledger_db.make_unavailable().await;

    let e = dead
        .shred_scope("conv-1", &actor(), ShredReason::AdministratorRequest)
        .await
        .expect_err("no ledger");
    assert!(matches!(e, Error::Ledger(_)), "{e}");
    let e = dead
        .reveal("conv-1", &["[NAME_1]".into()], &actor(), RevealReason::Treatment)
        .await
        .expect_err("no ledger");
    assert!(matches!(e, Error::Ledger(_)), "{e}");
    assert!(!e.to_string().contains("Jane"));
    wait_until_past(short.expires_at_ms.expect("retention")).await;
    let sweeper = dead.spawn_sweeper(Duration::from_millis(10));
    let st = *sweeper.status().wait_for(|s| s.failures >= 1).await.expect("sweeper running");
    sweeper.shutdown().await;
    assert_eq!(st.shredded, 0);

    // Nothing was destroyed: with a working ledger everything is still there.
    let live = db.store.data_keys_live().await.expect("live");
    assert!(
        live.iter().any(|r| r.key_id == short.key_id),
        "expired key not shredded without a record"
    );
    let r = v
        .reveal("conv-1", &["[NAME_1]".into()], &actor(), RevealReason::Treatment)
        .await
        .expect("reveal");
    assert_eq!(r.get("[NAME_1]").map(|p| p.expose()), Some("Jane Roe"));
    assert!(db.records("vault_shred").await.is_empty());
}
