//! Operations: shared rate limits through Redis (fail closed when it is unreachable unless the
//! loud opt-in is set), readiness, and hot reload (an invalid file keeps the old policy).

use crate::harness::*;

/// A fresh use case limited to 3 requests a minute, on the Redis at `redis_url`, and a stack
/// for it with a key of the service role bound to it.
async fn redis_stack(uc: &str, redis_url: &str, fallback: bool) -> (Stack, String) {
    let u = service_use_case(uc) + &redis_section(redis_url, fallback);
    let l = format!("  - {{ use_case: {uc}, requests_per_minute: 3 }}\n");
    let s = stack_with(None, &u, &l).await;
    let k = s.key("svc:replica-bot", "service", uc).await;
    (s, k)
}

#[tokio::test]
async fn replicas_share_one_count_through_redis() {
    let uc = unique_use_case("rl");
    let (a, ka) = redis_stack(&uc, "redis://127.0.0.1:6379", false).await;
    let (b, kb) = redis_stack(&uc, "redis://127.0.0.1:6379", false).await;
    let mut codes = Vec::new();
    for i in 0..4 {
        let (s, k) = if i % 2 == 0 { (&a, &ka) } else { (&b, &kb) };
        codes.push(s.ask(k, "clinical-chat", "hello").await.status.as_u16());
    }
    // Three allowed across both replicas, the fourth refused (one window, unless a minute
    // boundary fell inside the loop, in which case a fifth request is refused instead).
    if codes != [200, 200, 200, 429] {
        let r = a.ask(&ka, "clinical-chat", "hello").await;
        assert!(codes.iter().filter(|c| **c == 200).count() >= 3, "{codes:?}");
        assert_eq!(r.status, 429, "{codes:?}");
    }
    let ready = a.get("/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
}

#[tokio::test]
async fn unreachable_redis_fails_closed_without_the_opt_in() {
    let uc = unique_use_case("rl");
    let port = closed_port().await;
    let (s, k) = redis_stack(&uc, &format!("redis://127.0.0.1:{port}"), false).await;
    let r = s.ask(&k, "clinical-chat", "hello").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.code(), "rate_limiter_unavailable");
    assert_eq!(s.upstream.count(), 0);
    let ready = s.get("/readyz", None).await;
    assert_eq!(ready.status, 503, "{}", ready.body);
}

#[tokio::test]
async fn unreachable_redis_with_the_opt_in_counts_locally() {
    let uc = unique_use_case("rl");
    let port = closed_port().await;
    let (s, k) = redis_stack(&uc, &format!("redis://127.0.0.1:{port}"), true).await;
    for _ in 0..3 {
        let r = s.ask(&k, "clinical-chat", "hello").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = s.ask(&k, "clinical-chat", "hello").await;
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
    let ok = s.ask(&s.clinician, "clinical-chat", "hello").await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    // Take clinical-chat out of the use case: the new policy refuses it at once.
    std::fs::write(
        &path,
        text.replace("models: [clinical-chat, cloud-chat", "models: [cloud-chat"),
    )
    .unwrap();
    let v = gateway::reload(&s.state, &path).unwrap();
    assert_ne!(v, before);
    let r = s.ask(&s.clinician, "clinical-chat", "hello").await;
    assert_eq!(r.code(), "model_not_allowed", "{}", r.body);
}
