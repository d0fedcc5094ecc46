//! OIDC JWTs: RS256 (a test-only key pair under tests/data) and ES256 (a key made in the
//! test), JWKS from a file and from a local HTTP server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use policy::{AuthKind, Config, Denial, Policy};
use serde_json::json;

use crate::common::{secrets, MINIMAL};

const ISS: &str = "https://login.example.org/";
const AUD: &str = "phigate";

fn rsa_key(file: &str) -> EncodingKey {
    let pem = std::fs::read(format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    EncodingKey::from_rsa_pem(&pem).unwrap()
}

fn ec_key() -> EncodingKey {
    let sk = p256::SecretKey::random(&mut rand::rngs::OsRng);
    EncodingKey::from_ec_der(sk.to_pkcs8_der().unwrap().as_bytes())
}

fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut j = Jwk::from_encoding_key(key, alg).unwrap();
    j.common.key_id = Some(kid.into());
    j
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims(sub: &str, exp: i64) -> serde_json::Value {
    json!({ "iss": ISS, "aud": AUD, "sub": sub, "exp": exp, "iat": now(),
            "roles": ["clinician", "unknown-role"], "phigate_use_case": "notes" })
}

fn sign(
    key: &EncodingKey,
    alg: Algorithm,
    kid: Option<&str>,
    claims: &serde_json::Value,
) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

fn oidc_yaml(jwks: &str) -> String {
    format!(
        "{MINIMAL}oidc:\n  issuer: {ISS}\n  audience: {AUD}\n  jwks: \"{jwks}\"\n  identity_claim: sub\n  roles_claim: roles\n  use_case_claim: phigate_use_case\n"
    )
}

fn policy_with_file(set: &JwkSet) -> Policy {
    policy_with_file_and(set, "")
}

fn policy_with_file_and(set: &JwkSet, extra: &str) -> Policy {
    let dir = tempfile::tempdir().unwrap();
    secrets(dir.path());
    std::fs::write(dir.path().join("jwks.json"), serde_json::to_vec(set).unwrap()).unwrap();
    let c = Config::from_yaml(&format!("{}{extra}", oidc_yaml("file:jwks.json")), dir.path())
        .unwrap_or_else(|e| panic!("{e}"));
    Policy::new(c).unwrap()
}

#[tokio::test]
async fn a_token_names_a_service_only_when_the_configuration_allows_it() {
    let key = rsa_key("rsa_test_key.pem");
    let set = JwkSet { keys: vec![jwk(&key, Algorithm::RS256, "r1")] };
    let (_d, s) = store().await;
    let svc = sign(&key, Algorithm::RS256, Some("r1"), &claims("svc:triage-bot", now() + 600));
    let p = policy_with_file_and(&set, "  service_identities: true\n");
    assert_eq!(p.authenticate(&s, &svc).await.unwrap().id, "svc:triage-bot");
    let p = policy_with_file_and(&set, "  service_identities: false\n");
    assert_eq!(p.authenticate(&s, &svc).await, Err(Denial::InvalidToken));
}

/// Identity providers' subjects: Auth0's `provider|id`, a base64url subject that starts with
/// `-`, an address with `+`, a staff number sent as a JSON number.
#[tokio::test]
async fn common_subject_forms_are_identities() {
    let key = rsa_key("rsa_test_key.pem");
    let set = JwkSet { keys: vec![jwk(&key, Algorithm::RS256, "r1")] };
    let p = policy_with_file(&set);
    let (_d, s) = store().await;
    for sub in ["auth0|5f1c0a9e", "-Kx_9zQ4", "j.doe+ai@hospital.org"] {
        let t = sign(&key, Algorithm::RS256, Some("r1"), &claims(sub, now() + 600));
        assert_eq!(p.authenticate(&s, &t).await.unwrap().id, format!("user:{sub}"));
    }
    let mut c = claims("x", now() + 600);
    c["sub"] = json!(4_471_902);
    let t = sign(&key, Algorithm::RS256, Some("r1"), &c);
    assert_eq!(p.authenticate(&s, &t).await.unwrap().id, "user:4471902");
    for bad in [json!("a b"), json!(["x"]), json!(1.5)] {
        c["sub"] = bad.clone();
        let t = sign(&key, Algorithm::RS256, Some("r1"), &c);
        assert_eq!(p.authenticate(&s, &t).await, Err(Denial::InvalidToken), "{bad}");
    }
}

async fn store() -> (tempfile::TempDir, store::Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = store::Store::open(dir.path().join("s.db").to_str().unwrap()).await.unwrap();
    (dir, s)
}

#[tokio::test]
async fn rs256_from_a_jwks_file() {
    let key = rsa_key("rsa_test_key.pem");
    let p = policy_with_file(&JwkSet { keys: vec![jwk(&key, Algorithm::RS256, "r1")] });
    let (_d, s) = store().await;
    let ok = sign(&key, Algorithm::RS256, Some("r1"), &claims("jdoe", now() + 600));
    let who = p.authenticate(&s, &format!("Bearer {ok}")).await.unwrap();
    assert_eq!(who.id, "user:jdoe");
    assert_eq!(who.roles, vec!["clinician".to_string()]);
    assert_eq!(who.default_use_case.as_deref(), Some("notes"));
    assert_eq!(who.via, AuthKind::Jwt);
    assert_eq!(who.key_id, None);
    // A token may not name a service unless the configuration says tokens may: a person whose
    // claim reads `svc:triage-bot` would otherwise act as that service.
    let svc = sign(&key, Algorithm::RS256, Some("r1"), &claims("svc:triage-bot", now() + 600));
    assert_eq!(p.authenticate(&s, &svc).await, Err(Denial::InvalidToken));
    let explicit = sign(&key, Algorithm::RS256, Some("r1"), &claims("user:jdoe", now() + 600));
    assert_eq!(p.authenticate(&s, &explicit).await.unwrap().id, "user:jdoe");

    let expired = sign(&key, Algorithm::RS256, Some("r1"), &claims("jdoe", now() - 3600));
    assert_eq!(p.authenticate(&s, &expired).await, Err(Denial::TokenExpired));

    let mut c = claims("jdoe", now() + 600);
    c["iss"] = json!("https://evil.example.org/");
    assert_eq!(
        p.authenticate(&s, &sign(&key, Algorithm::RS256, Some("r1"), &c)).await,
        Err(Denial::InvalidToken)
    );

    let mut c = claims("jdoe", now() + 600);
    c["aud"] = json!("someone-else");
    assert_eq!(
        p.authenticate(&s, &sign(&key, Algorithm::RS256, Some("r1"), &c)).await,
        Err(Denial::InvalidToken)
    );

    // Signed by another key under the known kid.
    let other = rsa_key("rsa_other_test_key.pem");
    let forged = sign(&other, Algorithm::RS256, Some("r1"), &claims("jdoe", now() + 600));
    assert_eq!(p.authenticate(&s, &forged).await, Err(Denial::InvalidToken));
    // A kid the JWKS does not hold.
    let unknown = sign(&key, Algorithm::RS256, Some("r9"), &claims("jdoe", now() + 600));
    assert_eq!(p.authenticate(&s, &unknown).await, Err(Denial::InvalidToken));
    // HS256 with the public key's bytes (algorithm confusion) and garbage.
    let hs = jsonwebtoken::encode(
        &Header { kid: Some("r1".into()), ..Header::new(Algorithm::HS256) },
        &claims("jdoe", now() + 600),
        &EncodingKey::from_secret(b"anything"),
    )
    .unwrap();
    assert_eq!(p.authenticate(&s, &hs).await, Err(Denial::InvalidToken));
    assert_eq!(p.authenticate(&s, "a.b.c").await, Err(Denial::InvalidToken));
    // A token without exp is refused; an identity that is not well formed too.
    let mut c = claims("jdoe", 0);
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        p.authenticate(&s, &sign(&key, Algorithm::RS256, Some("r1"), &c)).await,
        Err(Denial::InvalidToken)
    );
    let bad_id = sign(&key, Algorithm::RS256, Some("r1"), &claims("j doe/../x", now() + 600));
    assert_eq!(p.authenticate(&s, &bad_id).await, Err(Denial::InvalidToken));
    // No token in any message.
    assert!(!Denial::InvalidToken.to_string().contains('.'));
}

#[tokio::test]
async fn a_key_its_issuer_marked_for_encryption_verifies_nothing() {
    use jsonwebtoken::jwk::{KeyOperations, PublicKeyUse};
    let key = rsa_key("rsa_test_key.pem");
    let (_d, s) = store().await;
    let token = sign(&key, Algorithm::RS256, Some("r1"), &claims("jdoe", now() + 600));
    // Each set also holds a signing key under another kid (a set without one is a
    // configuration error).
    let other = jwk(&rsa_key("rsa_other_test_key.pem"), Algorithm::RS256, "r2");
    let mut enc = jwk(&key, Algorithm::RS256, "r1");
    enc.common.public_key_use = Some(PublicKeyUse::Encryption);
    let p = policy_with_file(&JwkSet { keys: vec![enc, other.clone()] });
    assert_eq!(p.authenticate(&s, &token).await, Err(Denial::InvalidToken));
    let mut ops = jwk(&key, Algorithm::RS256, "r1");
    ops.common.key_operations = Some(vec![KeyOperations::Encrypt]);
    let p = policy_with_file(&JwkSet { keys: vec![ops, other] });
    assert_eq!(p.authenticate(&s, &token).await, Err(Denial::InvalidToken));
    let mut sig = jwk(&key, Algorithm::RS256, "r1");
    sig.common.public_key_use = Some(PublicKeyUse::Signature);
    let p = policy_with_file(&JwkSet { keys: vec![sig] });
    assert_eq!(p.authenticate(&s, &token).await.unwrap().id, "user:jdoe");
}

/// Serves `set` at /jwks.json on 127.0.0.1, counting the requests.
async fn serve_jwks(set: JwkSet) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let body = serde_json::to_string(&set).unwrap();
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            h.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/jwks.json"), hits)
}

#[tokio::test]
async fn es256_from_a_jwks_url_is_fetched_once_and_cached() {
    let key = ec_key();
    let (url, hits) = serve_jwks(JwkSet { keys: vec![jwk(&key, Algorithm::ES256, "e1")] }).await;
    let dir = tempfile::tempdir().unwrap();
    secrets(dir.path());
    let p = Policy::new(Config::from_yaml(&oidc_yaml(&url), dir.path()).unwrap()).unwrap();
    let (_d, s) = store().await;
    let ok = sign(&key, Algorithm::ES256, Some("e1"), &claims("jdoe", now() + 600));
    assert_eq!(p.authenticate(&s, &ok).await.unwrap().id, "user:jdoe");
    assert_eq!(p.authenticate(&s, &ok).await.unwrap().id, "user:jdoe");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the JWKS is cached");
    // Unknown kid right after a fetch: refused without hammering the issuer.
    let unknown = sign(&key, Algorithm::ES256, Some("e2"), &claims("jdoe", now() + 600));
    assert_eq!(p.authenticate(&s, &unknown).await, Err(Denial::InvalidToken));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // Expired and wrong-audience ES256 tokens.
    let expired = sign(&key, Algorithm::ES256, Some("e1"), &claims("jdoe", now() - 3600));
    assert_eq!(p.authenticate(&s, &expired).await, Err(Denial::TokenExpired));
    let other = ec_key();
    let forged = sign(&other, Algorithm::ES256, Some("e1"), &claims("jdoe", now() + 600));
    assert_eq!(p.authenticate(&s, &forged).await, Err(Denial::InvalidToken));
}

#[tokio::test]
async fn an_unreachable_jwks_url_is_a_refusal() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    secrets(dir.path());
    let p = Policy::new(Config::from_yaml(&oidc_yaml(&url), dir.path()).unwrap()).unwrap();
    let (_d, s) = store().await;
    let key = ec_key();
    let t = sign(&key, Algorithm::ES256, Some("e1"), &claims("jdoe", now() + 600));
    assert_eq!(p.authenticate(&s, &t).await, Err(Denial::AuthUnavailable));
}

#[test]
fn jwks_problems_are_config_problems() {
    let dir = tempfile::tempdir().unwrap();
    secrets(dir.path());
    let e = Config::from_yaml(&oidc_yaml("file:missing.json"), dir.path()).unwrap_err();
    assert!(e.has_path("oidc.jwks"), "{e}");
    let e = Config::from_yaml(&oidc_yaml("http://login.example.org/jwks"), dir.path()).unwrap_err();
    assert!(e.has_path("oidc.jwks"), "{e}");
    std::fs::write(dir.path().join("empty.json"), r#"{"keys":[]}"#).unwrap();
    let e = Config::from_yaml(&oidc_yaml("file:empty.json"), dir.path()).unwrap_err();
    assert!(e.has_path("oidc.jwks"), "{e}");
}

/// While one request refetches a slow JWKS (its cache has run out, and the token names a kid
/// the set does not hold), a token whose key is in the set in hand is checked at once: nothing
/// waits on another request's fetch.
#[tokio::test]
async fn a_slow_refetch_does_not_hold_up_tokens_the_cached_set_can_check() {
    let key = ec_key();
    let set = JwkSet { keys: vec![jwk(&key, Algorithm::ES256, "e1")] };
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let body = serde_json::to_string(&set).unwrap();
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let n = h.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            async move {
                // The first fetch is quick; the next takes 3 s.
                if n > 0 {
                    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                }
                ([("content-type", "application/json")], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    secrets(dir.path());
    let yaml = format!("{}  jwks_cache_secs: 1\n", oidc_yaml(&url));
    let p = Arc::new(Policy::new(Config::from_yaml(&yaml, dir.path()).unwrap()).unwrap());
    let (_d, s) = store().await;
    let s = Arc::new(s);
    let ok = sign(&key, Algorithm::ES256, Some("e1"), &claims("jdoe", now() + 600));
    assert_eq!(p.authenticate(&s, &ok).await.unwrap().id, "user:jdoe");

    // The cache runs out; a token with an unknown kid starts the slow refetch.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let unknown = sign(&key, Algorithm::ES256, Some("e9"), &claims("jdoe", now() + 600));
    let slow = {
        let (p, s) = (p.clone(), s.clone());
        tokio::spawn(async move { p.authenticate(&s, &unknown).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    assert_eq!(p.authenticate(&s, &ok).await.unwrap().id, "user:jdoe");
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(1), "waited {took:?} on another's fetch");
    assert_eq!(slow.await.unwrap(), Err(Denial::InvalidToken));
    assert_eq!(hits.load(Ordering::SeqCst), 2, "one refetch");
}
