//! What the vault keeps in memory (stored rows: tokens, keyed fingerprints, ciphertexts; and
//! data key state for `key_row_ttl`) and the bounds of it: known values are tokenized and
//! revealed without a store read, a reveal still needs its ledger record, a shred by this
//! vault takes effect at once and one by another replica within `key_row_ttl`.

use std::time::Duration;

use phi::Category;
use vault::{Actor, Error, NewValue, RevealReason, ShredReason, VaultConfig};

use crate::harness::{kek, Db};
use crate::on_both;

on_both!(
    known_values_need_no_store_read,
    another_replica_sees_a_shred_within_the_ttl,
    many_first_turns_at_once
);

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
    // Keys in use are not idle: nothing to drop.
    assert_eq!(replica.drop_idle_keys(Duration::from_secs(60)), 0);

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
    // And the unwrapped key has left the replica's memory: nothing is left to drop.
    assert_eq!(replica.drop_idle_keys(Duration::ZERO), 0, "a shredded key stayed in memory");

    // A key shredded elsewhere that this vault does not use again leaves its memory once idle.
    replica.tokenize_many("conv-2", &items()).await.expect("tokenize");
    here.shred_scope("conv-2", &actor(), ShredReason::ScopeClosed).await.expect("shred");
    assert_eq!(replica.drop_idle_keys(Duration::from_secs(60)), 0);
    assert_eq!(replica.drop_idle_keys(Duration::ZERO), 1);
}

/// Many conversations start at the same moment (their keys and values are group-committed),
/// several of them racing on the same scope: every value gets a token that reveals it, each
/// scope has exactly one data key, and nothing is lost.
async fn many_first_turns_at_once(db: &mut Db) {
    let v = db.vault(kek()).await;
    let mut tasks = Vec::new();
    for i in 0..48u32 {
        let v = v.clone();
        // Scopes 0..40 alone; 40..48 all on one scope.
        let scope = if i < 40 { format!("conv-{i}") } else { "conv-shared".to_string() };
        tasks.push(tokio::spawn(async move {
            let name = format!("Patient Number{i}");
            let mrn = format!("MRN {i:08}");
            let items = [
                NewValue { category: Category::Name, value: &name, token: None },
                NewValue { category: Category::Mrn, value: &mrn, token: None },
            ];
            let t = v.tokenize_many(&scope, &items).await.expect("tokenize");
            (scope, vec![(t[0].token.clone(), name.clone()), (t[1].token.clone(), mrn.clone())])
        }));
    }
    let mut by_scope: std::collections::BTreeMap<String, Vec<(String, String)>> =
        std::collections::BTreeMap::new();
    for t in tasks {
        let (scope, pairs) = t.await.expect("join");
        by_scope.entry(scope).or_default().extend(pairs);
    }
    let live = db.store.data_keys_live().await.expect("live");
    for (scope, pairs) in &by_scope {
        assert_eq!(live.iter().filter(|k| &k.scope == scope).count(), 1, "{scope}");
        let tokens: Vec<String> = pairs.iter().map(|(t, _)| t.clone()).collect();
        let r = v.reveal(scope, &tokens, &actor(), RevealReason::Treatment).await.expect("reveal");
        for (t, value) in pairs {
            assert_eq!(r.get(t).map(|p| p.expose()), Some(value.as_str()), "{scope} {t}");
        }
        let stored = db.store.vault_get(scope, &tokens).await.expect("rows");
        assert_eq!(stored.len(), pairs.len(), "{scope}: every row is in the store");
    }
    assert_eq!(by_scope.len(), 41);
}
