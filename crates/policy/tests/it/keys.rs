//! API keys on both store backends: made once, stored hashed, checked, listed, revoked.

use std::future::Future;

use policy::{create_key, list_keys, parse_key, revoke_key, AuthKind, Denial, Policy};
use sha2::{Digest, Sha256};
use sqlx::Connection;
use store::Store;
use time::OffsetDateTime;

use crate::common::MINIMAL;
use crate::decide::policy_from;

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";

async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.db").to_str().unwrap()).await.unwrap();
    test(store).await;
}

/// A fresh PostgreSQL database, dropped afterwards even when the test panics.
async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Store) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = format!("phigate_policy_test_{:016x}", rand::random::<u64>());
    let mut c = sqlx::PgConnection::connect(PG_ADMIN).await.expect("PostgreSQL must be running");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.unwrap();
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let res = tokio::spawn(async move {
        let store = Store::open(&url).await.unwrap();
        test(store.clone()).await;
        store.close().await;
    })
    .await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut c)
        .await
        .unwrap();
    if let Err(e) = res {
        std::panic::resume_unwind(e.into_panic());
    }
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::on_sqlite(super::$name).await; }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::on_postgres(super::$name).await; }
        }
    )*};
}

both_backends!(key_lifecycle, expired_and_tampered_keys, key_cache_bounds);

fn roles(r: &[&str]) -> Vec<String> {
    r.iter().map(|s| s.to_string()).collect()
}

/// MINIMAL with the verified-key cache off (every check reads the store) or set.
fn with_key_cache(secs: u64) -> Policy {
    policy_from(&format!("server: {{ key_cache_secs: {secs} }}\n{MINIMAL}"))
}

async fn key_lifecycle(s: Store) {
    let p: Policy = with_key_cache(0);
    let (info, text) =
        create_key(&s, "svc:triage-bot", &roles(&["clinician", "ghost"]), Some("notes"), None)
            .await
            .unwrap();
    // pg_<16 hex>_<43 base64url>, 256-bit secret.
    let (id, secret) = parse_key(&text).expect("well-formed key");
    assert_eq!(id, info.id);
    assert_eq!(secret.len(), 43);
    assert_eq!(
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, secret)
            .unwrap()
            .len(),
        32
    );
    // Stored: the SHA-256 of the secret, never the secret.
    let row = s.api_key_get(id).await.unwrap().unwrap();
    assert_eq!(row.secret_sha256, <[u8; 32]>::from(Sha256::digest(secret.as_bytes())));
    assert!(!format!("{info:?}{row:?}").contains(secret));

    let who = p.authenticate(&s, &text).await.unwrap();
    assert_eq!(who.id, "svc:triage-bot");
    assert_eq!(
        who.roles,
        vec!["clinician".to_string()],
        "roles the config does not know are dropped"
    );
    assert_eq!(who.default_use_case.as_deref(), Some("notes"));
    assert_eq!(who.key_id.as_deref(), Some(id));
    assert_eq!(who.via, AuthKind::ApiKey);
    assert_eq!(p.authenticate(&s, &format!("Bearer {text}")).await.unwrap().id, "svc:triage-bot");

    let (second, _) =
        create_key(&s, "user:jdoe", &roles(&["researcher"]), None, None).await.unwrap();
    let listed = list_keys(&s).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|k| k.id == info.id) && listed.iter().any(|k| k.id == second.id));

    assert!(revoke_key(&s, id).await.unwrap());
    assert!(!revoke_key(&s, id).await.unwrap());
    assert_eq!(p.authenticate(&s, &text).await, Err(Denial::InvalidKey));
    let now = OffsetDateTime::now_utc();
    let listed = list_keys(&s).await.unwrap();
    let k = listed.iter().find(|k| k.id == info.id).unwrap();
    assert!(k.revoked.is_some() && !k.is_live(now));
}

async fn expired_and_tampered_keys(s: Store) {
    let p = with_key_cache(0);
    let now = OffsetDateTime::now_utc();
    let expires = now + time::Duration::days(1);
    let (_, text) =
        create_key(&s, "user:jdoe", &roles(&["clinician"]), Some("notes"), Some(expires))
            .await
            .unwrap();
    assert!(p.authenticate_at(&s, &text, expires - time::Duration::seconds(1)).await.is_ok());
    assert_eq!(p.authenticate_at(&s, &text, expires).await, Err(Denial::InvalidKey));
    // One changed character of the secret; an unknown id; malformed and missing keys.
    let mut bad = text.clone().into_bytes();
    let last = bad.len() - 1;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    assert_eq!(p.authenticate(&s, &bad).await, Err(Denial::InvalidKey));
    let unknown = format!("pg_0000000000000000_{}", &text[20..]);
    assert_eq!(p.authenticate(&s, &unknown).await, Err(Denial::InvalidKey));
    assert_eq!(p.authenticate(&s, "pg_nonsense").await, Err(Denial::InvalidKey));
    assert_eq!(p.authenticate(&s, "sk-openai-style").await, Err(Denial::InvalidKey));
    assert_eq!(p.authenticate(&s, "").await, Err(Denial::MissingKey));
    assert_eq!(p.authenticate(&s, "Bearer ").await, Err(Denial::MissingKey));
    // Bad arguments are refused before anything is stored.
    assert!(create_key(&s, "jdoe", &roles(&["clinician"]), None, None).await.is_err());
    assert!(create_key(&s, "user:jdoe", &[], None, None).await.is_err());
    assert!(create_key(
        &s,
        "user:jdoe",
        &roles(&["clinician"]),
        None,
        Some(now - time::Duration::days(1))
    )
    .await
    .is_err());
    assert_eq!(list_keys(&s).await.unwrap().len(), 1);
    // A store that cannot answer is a refusal (fail closed), not a pass.
    s.close().await;
    assert_eq!(p.authenticate(&s, &text).await, Err(Denial::StoreUnavailable));
}

/// With the cache on, a verified key's stored record is trusted for `key_cache_secs`: a
/// revocation made elsewhere (another replica, `phigate keys revoke`) takes effect once that
/// has passed; an expiry date is checked on every request; a wrong secret for a cached id is
/// still refused; and a reload (a new `Policy`) starts with an empty cache.
async fn key_cache_bounds(s: Store) {
    let p = with_key_cache(1);
    let now = OffsetDateTime::now_utc();
    let expires = now + time::Duration::days(1);
    let (info, text) =
        create_key(&s, "user:jdoe", &roles(&["clinician"]), Some("notes"), Some(expires))
            .await
            .unwrap();
    assert!(p.authenticate(&s, &text).await.is_ok());
    assert!(revoke_key(&s, &info.id).await.unwrap());
    // Within the second: the cached record still lets the key through...
    assert!(p.authenticate(&s, &text).await.is_ok());
    // ...but never past its expiry date, and never with another secret.
    assert_eq!(p.authenticate_at(&s, &text, expires).await, Err(Denial::InvalidKey));
    let mut bad = text.clone().into_bytes();
    let last = bad.len() - 1;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(p.authenticate(&s, &String::from_utf8(bad).unwrap()).await, Err(Denial::InvalidKey));
    // A reloaded policy reads the store: revoked.
    assert_eq!(with_key_cache(1).authenticate(&s, &text).await, Err(Denial::InvalidKey));
    // Once the second has passed, this one reads it too.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(p.authenticate(&s, &text).await, Err(Denial::InvalidKey));
    // Unknown ids are never cached: a key made now works at once.
    let (_, other) =
        create_key(&s, "user:asmith", &roles(&["clinician"]), None, None).await.unwrap();
    assert!(p.authenticate(&s, &other).await.is_ok());
}

#[test]
fn denial_codes_and_statuses() {
    for (d, code, status) in [
        (Denial::MissingKey, "missing_api_key", 401),
        (Denial::InvalidKey, "invalid_api_key", 401),
        (Denial::InvalidToken, "invalid_api_key", 401),
        (Denial::TokenExpired, "token_expired", 401),
        (Denial::ModelNotAllowed, "model_not_allowed", 403),
        (Denial::RoleNotAllowed, "role_not_allowed", 403),
        (Denial::UseCaseNotAllowed, "use_case_not_allowed", 403),
        (Denial::NoEligibleProvider, "no_eligible_provider", 403),
        (Denial::StoreUnavailable, "store_unavailable", 503),
        (Denial::AuthUnavailable, "auth_unavailable", 503),
    ] {
        assert_eq!((d.code(), d.status()), (code, status), "{d:?}");
        assert!(!d.to_string().is_empty());
    }
}
