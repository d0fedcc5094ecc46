//! Round trip, same value same token, scopes, tampering, the reveal's ledger record.

use phi::Category;
use vault::{Actor, Error, NewValue, RevealReason, ShredReason};

use crate::harness::{kek, Db};
use crate::on_both;

on_both!(
    round_trip,
    same_value_same_token,
    concurrent_same_value,
    concurrent_first_use,
    concurrent_first_turns_converge,
    scopes_differ,
    tampered_and_moved_rows_fail,
    token_in_use,
    numbered_tokens_are_dense_per_scope,
    numbered_tokens_under_concurrent_writers,
    numbered_tokens_from_two_replicas_stay_distinct,
    values_of_a_conversation
);

fn actor() -> Actor {
    Actor::new("user:dr-house").expect("valid actor")
}

/// `tokenize_numbered`, tried again while another writer takes the number first (TokenInUse),
/// as the gateway does.
async fn numbered_retrying(
    v: &vault::Vault,
    scope: &str,
    items: &[(Category, &str)],
) -> Vec<vault::Tokenized> {
    for _ in 0..50 {
        match v.tokenize_numbered(scope, items).await {
            Ok(t) => return t,
            Err(Error::TokenInUse { .. }) => continue,
            Err(e) => panic!("tokenize: {e}"),
        }
    }
    panic!("no token after 50 tries");
}

async fn round_trip(db: &mut Db) {
    let v = db.vault(kek()).await;
    let items = [
        NewValue { category: Category::Name, value: "Jane Roe", token: Some("[NAME_1]") },
        NewValue { category: Category::Date, value: "03/14/2021", token: Some("[DATE_1]") },
        NewValue { category: Category::Mrn, value: "MRN 00123456", token: None },
    ];
    let toks = v.tokenize_many("conv-1", &items).await.expect("tokenize");
    assert_eq!(toks[0].token, "[NAME_1]");
    assert_eq!(toks[1].token, "[DATE_1]");
    assert!(
        toks[2].token.starts_with("[MRN_") && toks[2].token.ends_with(']'),
        "{}",
        toks[2].token
    );
    assert!(toks.iter().all(|t| t.created));

    let mut ask: Vec<String> = toks.iter().map(|t| t.token.clone()).collect();
    ask.push("[NAME_99]".into());
    let r = v.reveal("conv-1", &ask, &actor(), RevealReason::Treatment).await.expect("reveal");
    assert_eq!(r.len(), 3);
    assert_eq!(r.get("[NAME_1]").map(|p| (p.category(), p.expose())), Some(("NAME", "Jane Roe")));
    assert_eq!(r.get("[DATE_1]").map(|p| p.expose()), Some("03/14/2021"));
    assert_eq!(r.get(&toks[2].token).map(|p| p.expose()), Some("MRN 00123456"));
    assert_eq!(r.missing(), ["[NAME_99]".to_string()]);
    let dbg = format!("{r:?}");
    assert!(!dbg.contains("Jane") && !dbg.contains("00123456"), "{dbg}");

    // The reveal is in the ledger: actor, reason, scope reference, categories; no value, no token.
    let recs = db.records("vault_reidentify").await;
    assert_eq!(recs.len(), 1);
    let rec = &recs[0];
    assert_eq!(rec.actor().as_str(), "user:dr-house");
    assert_eq!(rec.purpose().map(|s| s.as_str()), Some("treatment"));
    assert_eq!(rec.resource().map(|s| s.as_str().to_owned()), Some(vault::scope_ref("conv-1")));
    assert_eq!(rec.categories().get(&Category::Name), Some(&1));
    assert_eq!(rec.categories().get(&Category::Mrn), Some(&1));
    let body = String::from_utf8_lossy(&rec.canonical_bytes()).into_owned();
    assert!(!body.contains("Jane") && !body.contains("NAME_1"), "{body}");

    // Nothing found: nothing revealed, nothing recorded.
    let r = v
        .reveal("conv-1", &["[NAME_42]".into()], &actor(), RevealReason::Treatment)
        .await
        .expect("reveal");
    assert!(r.is_empty());
    assert_eq!(db.records("vault_reidentify").await.len(), 1);
}

async fn same_value_same_token(db: &mut Db) {
    let v = db.vault(kek()).await;
    let a = v.tokenize("conv-1", Category::Name, "Jane Roe", Some("[NAME_1]")).await.expect("t1");
    assert!(a.created);
    // Later message: the engine proposes another placeholder; the vault keeps the first one.
    let b = v.tokenize("conv-1", Category::Name, "Jane Roe", Some("[NAME_7]")).await.expect("t2");
    assert_eq!(b, vault::Tokenized { token: "[NAME_1]".into(), created: false });
    let c = v.tokenize("conv-1", Category::Name, "Jane Roe", None).await.expect("t3");
    assert_eq!(c.token, "[NAME_1]");
    // Another category is another value.
    let d = v.tokenize("conv-1", Category::Location, "Jane Roe", None).await.expect("t4");
    assert_ne!(d.token, "[NAME_1]");
    // Repeats inside one batch get one token.
    let batch = [
        NewValue { category: Category::Name, value: "John Doe", token: None },
        NewValue { category: Category::Name, value: "Jane Roe", token: None },
        NewValue { category: Category::Name, value: "John Doe", token: Some("[NAME_3]") },
    ];
    let out = v.tokenize_many("conv-1", &batch).await.expect("batch");
    assert_eq!(out[0].token, out[2].token);
    assert!(out[0].created && !out[2].created);
    assert_eq!(out[1].token, "[NAME_1]");
}

async fn concurrent_same_value(db: &mut Db) {
    let v = db.vault(kek()).await;
    v.open_scope("conv-1", None).await.expect("open");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let v = v.clone();
        tasks.push(tokio::spawn(async move {
            let proposed = format!("[NAME_{i}]");
            v.tokenize("conv-1", Category::Name, "Jane Roe", Some(proposed.as_str())).await
        }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.expect("join").expect("tokenize").token);
    }
    tokens.sort();
    tokens.dedup();
    // Every token handed out reveals the one value (usually there is exactly one token).
    let r = v.reveal("conv-1", &tokens, &actor(), RevealReason::Treatment).await.expect("reveal");
    assert_eq!(r.len(), tokens.len());
    assert!(r.iter().all(|(_, p)| p.expose() == "Jane Roe"));
    // Afterwards the value has one canonical token.
    let a = v.tokenize("conv-1", Category::Name, "Jane Roe", None).await.expect("again");
    let b = v.tokenize("conv-1", Category::Name, "Jane Roe", None).await.expect("again");
    assert_eq!(a.token, b.token);
    assert!(tokens.contains(&a.token));
}

async fn concurrent_first_use(db: &mut Db) {
    // Many writers touch a new scope at once: exactly one data key is made, all use it.
    let v = db.vault(kek()).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let v = v.clone();
        tasks.push(tokio::spawn(async move {
            let value = format!("Person {i}");
            v.tokenize("conv-new", Category::Name, &value, None).await.map(|t| (value, t.token))
        }));
    }
    let mut pairs = Vec::new();
    for t in tasks {
        pairs.push(t.await.expect("join").expect("tokenize"));
    }
    let live = db.store.data_keys_live().await.expect("live");
    assert_eq!(live.iter().filter(|k| k.scope == "conv-new").count(), 1);
    let tokens: Vec<String> = pairs.iter().map(|(_, t)| t.clone()).collect();
    let r = v.reveal("conv-new", &tokens, &actor(), RevealReason::Treatment).await.expect("reveal");
    for (value, token) in &pairs {
        assert_eq!(r.get(token).map(|p| p.expose()), Some(value.as_str()));
    }
}

async fn concurrent_first_turns_converge(db: &mut Db) {
    // Two replicas, eight first turns of one new conversation at once, each naming the same
    // patient and a person of its own. One turn makes the scope (its key and its values at one
    // stroke); the others find it and go on from it. The shared name has one token, every
    // other name its own, numbered without a gap.
    let k = kek();
    let replicas = [db.vault(k.clone()).await, db.vault(k).await];
    let mut tasks = Vec::new();
    for i in 0..8 {
        let v = replicas[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let own = format!("Person {i}");
            let items = [(Category::Name, "Jane Roe"), (Category::Name, own.as_str())];
            let t = numbered_retrying(&v, "conv-first", &items).await;
            (own, t[0].token.clone(), t[1].token.clone())
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.expect("join"));
    }
    let live = db.store.data_keys_live().await.expect("live");
    assert_eq!(live.iter().filter(|k| k.scope == "conv-first").count(), 1, "one key");
    let shared: std::collections::BTreeSet<&str> = got.iter().map(|g| g.1.as_str()).collect();
    assert_eq!(shared.len(), 1, "one token for the shared name: {shared:?}");
    let mut numbers: Vec<u32> = got
        .iter()
        .flat_map(|g| [&g.1, &g.2])
        .map(|t| t.trim_start_matches("[NAME_").trim_end_matches(']').parse().expect("numbered"))
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers, (1..=9).collect::<Vec<u32>>());
    let tokens: Vec<String> = got.iter().flat_map(|g| [g.1.clone(), g.2.clone()]).collect();
    let r = replicas[1]
        .reveal("conv-first", &tokens, &actor(), RevealReason::Treatment)
        .await
        .expect("reveal");
    for (own, jane, token) in &got {
        assert_eq!(r.get(jane).map(|p| p.expose()), Some("Jane Roe"));
        assert_eq!(r.get(token).map(|p| p.expose()), Some(own.as_str()));
    }
}

async fn scopes_differ(db: &mut Db) {
    let v = db.vault(kek()).await;
    let a = v.tokenize("conv-a", Category::Name, "Jane Roe", Some("[NAME_1]")).await.expect("a");
    let b = v.tokenize("conv-b", Category::Name, "Jane Roe", Some("[NAME_1]")).await.expect("b");
    assert!(a.created && b.created, "each scope stores its own mapping");
    let ra = db.store.vault_get("conv-a", &["[NAME_1]".into()]).await.expect("get a");
    let rb = db.store.vault_get("conv-b", &["[NAME_1]".into()]).await.expect("get b");
    assert_ne!(ra[0].fingerprint, rb[0].fingerprint, "fingerprints are keyed per scope");
    assert_ne!(ra[0].key_id, rb[0].key_id);
    assert_ne!(ra[0].ciphertext, rb[0].ciphertext);
    // A scope's token means nothing in another scope.
    let r = v
        .reveal("conv-c", &["[NAME_1]".into()], &actor(), RevealReason::Treatment)
        .await
        .expect("reveal");
    assert!(r.is_empty() && r.missing().len() == 1);
}

async fn tampered_and_moved_rows_fail(db: &mut Db) {
    let k = kek();
    // Rows are checked as they are read from the store; this vault reads every one.
    let v = db.vault_reading_store(k.clone()).await;
    v.tokenize("conv-1", Category::Name, "Jane Roe", Some("[NAME_1]")).await.expect("t1");
    v.tokenize("conv-1", Category::Name, "John Doe", Some("[NAME_2]")).await.expect("t2");
    v.tokenize("conv-2", Category::Name, "Ann Poe", Some("[NAME_1]")).await.expect("t3");
    let row1 = db.store.vault_get("conv-1", &["[NAME_1]".into()]).await.expect("get").remove(0);

    // A copy of [NAME_1]'s ciphertext under another token of the same scope does not open.
    let mut moved = row1.clone();
    moved.token = "[NAME_9]".into();
    db.store.vault_put(&[moved]).await.expect("put moved");
    let e = v
        .reveal("conv-1", &["[NAME_9]".into()], &actor(), RevealReason::Treatment)
        .await
        .expect_err("moved");
    assert!(matches!(&e, Error::Tampered { token, .. } if token == "[NAME_9]"), "{e}");
    assert!(!e.to_string().contains("Jane"));

    // Nor in another scope.
    let mut other = row1.clone();
    other.scope = "conv-2".into();
    other.token = "[NAME_5]".into();
    db.store.vault_put(&[other]).await.expect("put other");
    let e = v
        .reveal("conv-2", &["[NAME_5]".into()], &actor(), RevealReason::Treatment)
        .await
        .expect_err("other scope");
    assert!(matches!(e, Error::Tampered { .. }), "{e}");

    // A flipped ciphertext byte in place.
    let mut ct = row1.ciphertext.clone();
    ct[3] ^= 0x40;
    db.sql(
        "UPDATE vault_entries SET ciphertext = ? WHERE scope = ? AND token = ?",
        "UPDATE vault_entries SET ciphertext = $1 WHERE scope = $2 AND token = $3",
        &ct,
        "conv-1",
        "[NAME_1]",
    )
    .await;
    // Nothing is revealed from a batch with one bad row, and nothing is recorded.
    let before = db.records("vault_reidentify").await.len();
    let e = v
        .reveal(
            "conv-1",
            &["[NAME_1]".into(), "[NAME_2]".into()],
            &actor(),
            RevealReason::Treatment,
        )
        .await
        .expect_err("tampered");
    assert!(matches!(e, Error::Tampered { .. }), "{e}");
    assert_eq!(db.records("vault_reidentify").await.len(), before);

    // Another row's ciphertext copied over [NAME_2]: it fails, never shows the other value.
    db.sql(
        "UPDATE vault_entries SET ciphertext = ? WHERE scope = ? AND token = ?",
        "UPDATE vault_entries SET ciphertext = $1 WHERE scope = $2 AND token = $3",
        &row1.ciphertext,
        "conv-1",
        "[NAME_2]",
    )
    .await;
    let e = v
        .reveal("conv-1", &["[NAME_2]".into()], &actor(), RevealReason::Treatment)
        .await
        .expect_err("swapped");
    assert!(matches!(e, Error::Tampered { .. }), "{e}");

    // Wrapped data keys swapped between scopes: they refuse to unwrap (a fresh vault, no cache).
    let k1 = db.store.data_key_active("conv-1").await.expect("k1").expect("some");
    let k2 = db.store.data_key_active("conv-2").await.expect("k2").expect("some");
    db.sql(
        "UPDATE data_keys SET wrapped = ? WHERE scope = ? AND key_id = ?",
        "UPDATE data_keys SET wrapped = $1 WHERE scope = $2 AND key_id = $3",
        &k1.wrapped,
        "conv-2",
        &k2.key_id,
    )
    .await;
    // `v` still holds conv-2's key in its cache; a vault with a cold cache must refuse.
    let cold = db.vault(k.clone()).await;
    let e = cold
        .reveal("conv-2", &["[NAME_1]".into()], &actor(), RevealReason::Treatment)
        .await
        .expect_err("swapped key");
    assert!(matches!(e, Error::KeyUnwrap { .. }), "{e}");
    let e =
        cold.tokenize("conv-2", Category::Name, "New Person", None).await.expect_err("swapped key");
    assert!(matches!(e, Error::KeyUnwrap { .. }), "{e}");
}

async fn token_in_use(db: &mut Db) {
    let v = db.vault(kek()).await;
    v.tokenize("conv-1", Category::Name, "Jane Roe", Some("[NAME_1]")).await.expect("t1");
    let e = v
        .tokenize("conv-1", Category::Name, "John Doe", Some("[NAME_1]"))
        .await
        .expect_err("taken");
    assert!(matches!(&e, Error::TokenInUse { token, .. } if token == "[NAME_1]"), "{e}");
    assert!(!e.to_string().contains("John"));
    let r = v
        .reveal("conv-1", &["[NAME_1]".into()], &actor(), RevealReason::Treatment)
        .await
        .expect("reveal");
    assert_eq!(r.get("[NAME_1]").map(|p| p.expose()), Some("Jane Roe"), "the first value stays");
}

async fn numbered_tokens_are_dense_per_scope(db: &mut Db) {
    let v = db.vault(kek()).await;
    let tokens = |t: Vec<vault::Tokenized>| t.into_iter().map(|t| t.token).collect::<Vec<_>>();
    // Turn 1: numbers in order of appearance, per category, from 1.
    let t1 = v
        .tokenize_numbered(
            "conv-n",
            &[
                (Category::Name, "Jane Roe"),
                (Category::Date, "03/14/2021"),
                (Category::Name, "John Doe"),
                (Category::Name, "Jane Roe"),
            ],
        )
        .await
        .expect("turn 1");
    assert_eq!(tokens(t1), ["[NAME_1]", "[DATE_1]", "[NAME_2]", "[NAME_1]"]);
    // Turn 2 names a new person first, then a known one: the new one is NAME_3, not a number
    // counted from this turn's own list.
    let t2 = v
        .tokenize_numbered("conv-n", &[(Category::Name, "Ann Lee"), (Category::Name, "John Doe")])
        .await
        .expect("turn 2");
    assert_eq!(tokens(t2), ["[NAME_3]", "[NAME_2]"]);
    // A higher number stored by another caller, and a minted (random) token: numbering goes on
    // after the highest number, and the minted token changes nothing.
    v.tokenize("conv-n", Category::Name, "Max Mustermann", Some("[NAME_7]")).await.expect("7");
    v.tokenize("conv-n", Category::Name, "Erika Muster", None).await.expect("minted");
    let t3 = v
        .tokenize_numbered("conv-n", &[(Category::Name, "Li Wei"), (Category::Date, "04/01/2021")])
        .await
        .expect("turn 3");
    assert_eq!(tokens(t3), ["[NAME_8]", "[DATE_2]"]);
    // Another scope numbers from 1.
    let other = v.tokenize_numbered("conv-m", &[(Category::Name, "Li Wei")]).await.expect("other");
    assert_eq!(tokens(other), ["[NAME_1]"]);
    // Every token reveals its own value.
    let r = v
        .reveal(
            "conv-n",
            &["[NAME_3]".into(), "[NAME_8]".into()],
            &actor(),
            RevealReason::Treatment,
        )
        .await
        .expect("reveal");
    assert_eq!(r.get("[NAME_3]").map(|p| p.expose()), Some("Ann Lee"));
    assert_eq!(r.get("[NAME_8]").map(|p| p.expose()), Some("Li Wei"));
}

async fn numbered_tokens_under_concurrent_writers(db: &mut Db) {
    // Eight requests of one conversation each bring a new name at once. Losers of a race for a
    // number are refused (TokenInUse) and try again, as the gateway does: in the end every
    // name has its own token, and the numbers are 1..=8 with no gap.
    let v = db.vault(kek()).await;
    v.tokenize_numbered("conv-race", &[(Category::Date, "03/14/2021")]).await.expect("scope");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let v = v.clone();
        tasks.push(tokio::spawn(async move {
            let value = format!("Person {i}");
            let mut t = numbered_retrying(&v, "conv-race", &[(Category::Name, &value)]).await;
            (value, t.remove(0).token)
        }));
    }
    let mut pairs = Vec::new();
    for t in tasks {
        pairs.push(t.await.expect("join"));
    }
    let mut got: Vec<String> = pairs.iter().map(|(_, t)| t.clone()).collect();
    got.sort_by_key(|t| t.trim_start_matches("[NAME_").trim_end_matches(']').parse::<u32>().ok());
    let want: Vec<String> = (1..=8).map(|n| format!("[NAME_{n}]")).collect();
    assert_eq!(got, want);
    let r = v.reveal("conv-race", &got, &actor(), RevealReason::Treatment).await.expect("reveal");
    for (value, token) in &pairs {
        assert_eq!(r.get(token).map(|p| p.expose()), Some(value.as_str()));
    }
}

async fn numbered_tokens_from_two_replicas_stay_distinct(db: &mut Db) {
    // Two replicas (two vaults over one store) add names to one conversation in turn. Each
    // keeps the scope's highest numbers in memory, so each is behind after the other's turn:
    // the store refuses a number already taken (TokenInUse), and the next try reads them anew.
    let k = kek();
    let a = db.vault(k.clone()).await;
    let b = db.vault(k).await;
    let mut pairs = Vec::new();
    for i in 0..10 {
        let v = if i % 2 == 0 { &a } else { &b };
        let value = format!("Person {i}");
        let t = numbered_retrying(v, "conv-two", &[(Category::Name, &value)]).await;
        pairs.push((value, t[0].token.clone()));
        // A value already stored is found by either replica, under its token.
        let again = numbered_retrying(
            if i % 2 == 0 { &b } else { &a },
            "conv-two",
            &[(Category::Name, &pairs[i].0)],
        )
        .await;
        assert_eq!(again[0].token, pairs[i].1);
    }
    let tokens: Vec<String> = pairs.iter().map(|(_, t)| t.clone()).collect();
    let want: Vec<String> = (1..=10).map(|n| format!("[NAME_{n}]")).collect();
    assert_eq!(tokens, want);
    let r = a.reveal("conv-two", &tokens, &actor(), RevealReason::Treatment).await.expect("reveal");
    for (value, token) in &pairs {
        assert_eq!(r.get(token).map(|p| p.expose()), Some(value.as_str()));
    }
}

async fn values_of_a_conversation(db: &mut Db) {
    let k = kek();
    let v = db.vault(k.clone()).await;
    v.tokenize_numbered(
        "conv-v",
        &[
            (Category::Name, "Jane Roe"),
            (Category::Date, "03/14/2021"),
            (Category::Name, "John Doe"),
        ],
    )
    .await
    .expect("turn 1");
    let mut names: Vec<String> = v
        .values_of("conv-v", Category::Name)
        .await
        .expect("names")
        .iter()
        .map(|p| p.expose().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["Jane Roe", "John Doe"]);
    let dates = v.values_of("conv-v", Category::Date).await.expect("dates");
    assert_eq!(dates.iter().map(|p| p.expose()).collect::<Vec<_>>(), ["03/14/2021"]);
    assert!(v.values_of("conv-none", Category::Name).await.expect("none").is_empty());
    // Read in process, disclosed to no one: no reveal is recorded.
    assert!(db.records("vault_reidentify").await.is_empty(), "a read for recognition was recorded");
    // Another replica stores a name after this one counted: it is read all the same.
    let other = db.vault(k).await;
    other.tokenize_numbered("conv-v", &[(Category::Name, "Ann Lee")]).await.expect("replica");
    let names = v.values_of("conv-v", Category::Name).await.expect("names after the replica");
    assert!(
        names.iter().any(|p| p.expose() == "Ann Lee"),
        "a name another replica stored was missed"
    );
    v.shred_scope("conv-v", &actor(), ShredReason::ScopeClosed).await.expect("shred");
    assert!(matches!(v.values_of("conv-v", Category::Name).await, Err(Error::Shredded { .. })));
}
