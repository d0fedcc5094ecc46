//! Operations: shared rate limits through Redis (fail closed when it is unreachable unless the
//! loud opt-in is set), readiness, and hot reload (an invalid file keeps the old policy).

use rand::Rng;

use crate::harness::*;

fn unique_use_case() -> String {
    format!("rl{:016x}", rand::thread_rng().gen::<u64>())
}

fn extra(uc: &str, redis_url: &str, fallback: bool) -> (String, String) {
    (
        format!(
            "  - name: {uc}\n    purpose: operations\n    roles: [service]\n    models: [clinical-chat]\n    phi:\n      default: redact\nredis:\n  url: {redis_url}\n  allow_local_fallback: {fallback}\n"
        ),
        format!("  - {{ use_case: {uc}, requests_per_minute: 3 }}\n"),
    )
}

async fn key_for(s: &Stack, uc: &str) -> String {
    policy::create_key(&s.store, "svc:replica-bot", &["service".to_string()], Some(uc), None)
        .await
        .unwrap()
        .1
}

#[tokio::test]
async fn replicas_share_one_count_through_redis() {
    let uc = unique_use_case();
    let (u, l) = extra(&uc, "redis://127.0.0.1:6379", false);
    let a = stack_with(None, &u, &l).await;
    let b = stack_with(None, &u, &l).await;
    let (ka, kb) = (key_for(&a, &uc).await, key_for(&b, &uc).await);
    let mut codes = Vec::new();
    for i in 0..4 {
        let (s, k) = if i % 2 == 0 { (&a, &ka) } else { (&b, &kb) };
        let r = call(
            &s.state,
            "POST",
            "/v1/chat/completions",
            Some(k),
            &[],
            Some(chat_body("clinical-chat", "hello")),
        )
        .await;
        codes.push(r.status.as_u16());
    }
    // Three allowed across both replicas, the fourth refused (one window, unless a minute
    // boundary fell inside the loop, in which case a fifth request is refused instead).
    if codes != [200, 200, 200, 429] {
        let r = call(
            &a.state,
            "POST",
            "/v1/chat/completions",
            Some(&ka),
            &[],
            Some(chat_body("clinical-chat", "hello")),
        )
        .await;
        assert!(codes.iter().filter(|c| **c == 200).count() >= 3, "{codes:?}");
        assert_eq!(r.status, 429, "{codes:?}");
    }
    let ready = call(&a.state, "GET", "/readyz", None, &[], None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
}

#[tokio::test]
async fn unreachable_redis_fails_closed_without_the_opt_in() {
    let uc = unique_use_case();
    let port = closed_port().await;
    let (u, l) = extra(&uc, &format!("redis://127.0.0.1:{port}"), false);
    let s = stack_with(None, &u, &l).await;
    let k = key_for(&s, &uc).await;
    let r = call(
        &s.state,
        "POST",
        "/v1/chat/completions",
        Some(&k),
        &[],
        Some(chat_body("clinical-chat", "hello")),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.code(), "rate_limiter_unavailable");
    assert_eq!(s.upstream.count(), 0);
    let ready = call(&s.state, "GET", "/readyz", None, &[], None).await;
    assert_eq!(ready.status, 503, "{}", ready.body);
}

#[tokio::test]
async fn unreachable_redis_with_the_opt_in_counts_locally() {
    let uc = unique_use_case();
    let port = closed_port().await;
    let (u, l) = extra(&uc, &format!("redis://127.0.0.1:{port}"), true);
    let s = stack_with(None, &u, &l).await;
    let k = key_for(&s, &uc).await;
    for _ in 0..3 {
        let r = call(
            &s.state,
            "POST",
            "/v1/chat/completions",
            Some(&k),
            &[],
            Some(chat_body("clinical-chat", "hello")),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = call(
        &s.state,
        "POST",
        "/v1/chat/completions",
        Some(&k),
        &[],
        Some(chat_body("clinical-chat", "hello")),
    )
    .await;
    assert_eq!(r.code(), "rate_limited", "{}", r.body);
}

#[tokio::test]
async fn reload_swaps_a_valid_file_and_keeps_the_old_policy_on_an_invalid_one() {
    let s = stack().await;
    let path = s.dir.path().join("phigate.yaml");
    let before = s.state.policy().version().to_string();
    let text = std::fs::read_to_string(&path).unwrap();

    std::fs::write(&path, text.replace("providers:", "providers_typo:")).unwrap();
    let err = gateway::reload(&s.state, &path).unwrap_err();
    assert!(!err.0.is_empty());
    assert_eq!(s.state.policy().version(), before);
    let ok = call(
        &s.state,
        "POST",
        "/v1/chat/completions",
        Some(&s.clinician),
        &[],
        Some(chat_body("clinical-chat", "hello")),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    // Take clinical-chat out of the use case: the new policy refuses it at once.
    std::fs::write(
        &path,
        text.replace("models: [clinical-chat, cloud-chat", "models: [cloud-chat"),
    )
    .unwrap();
    let v = gateway::reload(&s.state, &path).unwrap();
    assert_ne!(v, before);
    let r = call(
        &s.state,
        "POST",
        "/v1/chat/completions",
        Some(&s.clinician),
        &[],
        Some(chat_body("clinical-chat", "hello")),
    )
    .await;
    assert_eq!(r.code(), "model_not_allowed", "{}", r.body);
}
