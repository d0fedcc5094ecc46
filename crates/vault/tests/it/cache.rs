//! What the vault keeps in memory (stored rows: tokens, keyed fingerprints, ciphertexts; and
//! data key state for `key_row_ttl`) and the bounds of it: known values are tokenized and
//! revealed without a store read, a reveal still needs its ledger record, a shred by this
//! vault takes effect at once and one by another replica within `key_row_ttl`.

use std::time::Duration;

use phi::Category;
use vault::{Actor, Error, NewValue, RevealReason, ShredReason, VaultConfig};

use crate::harness::{kek, Db};
use crate::on_both;

on_both!(known_values_need_no_store_read, another_replica_sees_a_shred_within_the_ttl);

fn actor() -> Actor {
    Actor::new("user:dr-house").expect("valid actor")
}

fn items() -> [NewValue<'static>; 2] {
    [
        NewValue { category: Category::Name, value: "Jane Roe", token: Some("[NAME_1]") },
        NewValue { category: Category::Mrn, value: "MRN 00123456", token: Some("[MRN_1]") },
    ]
}

async fn known_values_need_no_store_read(db: &mut Db) {
    let mut cfg = VaultConfig::default();
    cfg.key_row_ttl = Duration::from_secs(600);
    let v = db.vault_with(db.ledger().await, vault::Keyring::new(kek()), cfg);
    let first = v.tokenize_many("conv-1", &items()).await.expect("tokenize");
    assert!(first.iter().all(|t| t.created));
    // The store goes away: values this vault already stored keep their tokens...
    db.store.close().await;
    let again = v.tokenize_many("conv-1", &items()).await.expect("tokenize from memory");
    assert_eq!(again.iter().map(|t| t.token.as_str()).collect::<Vec<_>>(), ["[NAME_1]", "[MRN_1]"]);
    assert!(again.iter().all(|t| !t.created));
    // ...a new value cannot be stored, so it gets no token (fail closed)...
    let e = v
        .tokenize("conv-1", Category::Name, "John Doe", Some("[NAME_2]"))
        .await
        .expect_err("new value with the store down");
    assert!(matches!(e, Error::Store(_)), "{e}");
    // ...and no value is revealed: the reveal's ledger record cannot be written.
    let e = v
        .reveal("conv-1", &["[NAME_1]".into()], &actor(), RevealReason::Treatment)
        .await
        .expect_err("reveal with the ledger down");
    assert!(!e.to_string().contains("Jane"), "{e}");
}

async fn another_replica_sees_a_shred_within_the_ttl(db: &mut Db) {
    let k = kek();
    let here = db.vault(k.clone()).await;
    let mut cfg = VaultConfig::default();
    cfg.key_row_ttl = Duration::from_millis(200);
    let replica = db.vault_with(db.ledger().await, vault::Keyring::new(k.clone()), cfg);
    here.tokenize_many("conv-1", &items()).await.expect("tokenize");
    // The replica tokenizes and reveals too, so it holds the rows and the key state.
    replica.tokenize_many("conv-1", &items()).await.expect("tokenize on the replica");
    let r = replica
        .reveal("conv-1", &["[NAME_1]".into()], &actor(), RevealReason::Treatment)
        .await
        .expect("reveal on the replica");
    assert_eq!(r.get("[NAME_1]").map(|p| p.expose()), Some("Jane Roe"));

    here.shred_scope("conv-1", &actor(), ShredReason::ScopeClosed).await.expect("shred");
    // The vault that shredded refuses at once; so does one that trusts nothing it remembers.
    for v in [&here, &db.vault_reading_store(k.clone()).await] {
        let e = v
            .reveal("conv-1", &["[NAME_1]".into()], &actor(), RevealReason::Treatment)
            .await
            .expect_err("shredded");
        assert!(matches!(e, Error::Shredded { .. }), "{e}");
    }
    // The replica, once its key state is older than its TTL, refuses too, for reveals and for
    // new values alike.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = replica
        .reveal("conv-1", &["[NAME_1]".into()], &actor(), RevealReason::Treatment)
        .await
        .expect_err("shredded, seen by the replica");
    assert!(matches!(e, Error::Shredded { .. }), "{e}");
    let e = replica
        .tokenize("conv-1", Category::Name, "John Doe", None)
        .await
        .expect_err("no new value in a shredded scope");
    assert!(matches!(e, Error::Shredded { .. }), "{e}");
}
