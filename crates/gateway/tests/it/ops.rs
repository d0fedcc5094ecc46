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
    // Requests are served, so the replica is ready; the probe still says Redis is down.
    let ready = s.get("/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["checks"]["redis"], false, "{}", ready.body);
    assert_eq!(ready.json()["checks"]["ledger"], true, "{}", ready.body);
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

/// KEK rotation on a running deployment: a gateway started with a new `vault.kek` and the old
/// one in `vault.previous_keks` opens the data keys the old one wrapped (the conversation's
/// values come back); without it, it refuses to start.
#[tokio::test]
async fn a_new_kek_with_the_old_one_as_previous_keeps_conversations() {
    use base64::Engine as _;
    let s = stack().await;
    let first = s.ask(&s.clinician, "clinical-chat", NOTE).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let dir = s.dir.path();
    let new_kek = base64::engine::general_purpose::STANDARD.encode([10u8; 32]);
    std::fs::write(dir.join("new.kek"), new_kek).unwrap();
    // The same store as the stack's (phigate.db beside the configuration).
    let base = std::fs::read_to_string(dir.join("phigate.yaml"))
        .unwrap()
        .replace("  max_body_bytes: 65536", "  max_body_bytes: 65536\n  data_dir: .");
    let open = |yaml: String| async move {
        let cfg = policy::Config::from_yaml(&yaml, dir).unwrap_or_else(|e| panic!("{e}"));
        gateway::open(policy::Policy::new(cfg).unwrap()).await
    };
    let alone = base.replace("  kek: file:vault.kek", "  kek: file:new.kek");
    assert!(open(alone).await.is_err(), "started without the KEK of live data keys");
    let rotating = base
        .replace("  kek: file:vault.kek", "  kek: file:new.kek\n  previous_keks: [file:vault.kek]");
    let running = open(rotating).await.unwrap_or_else(|e| panic!("{e}"));
    let again = call(
        &running.state,
        "POST",
        "/v1/chat/completions",
        Some(&s.clinician),
        &[],
        Some(chat_body("clinical-chat", NOTE)),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(again.body.contains(CANARY_NAME), "not restored: {}", again.body);
    let sent = s.upstream.bodies.lock().unwrap().clone();
    let (a, b) = (&sent[sent.len() - 2], &sent[sent.len() - 1]);
    assert!(a.contains("[NAME_1]") && a == b, "the conversation's tokens changed");
}

/// Shreds `scope` as `phigate vault shred` would (another vault over the same store), then
/// waits out the gateway's trust in the data key's state (`key_state_ms`, 1 s by default).
async fn shred_elsewhere(s: &Stack, scope: &str, reason: vault::ShredReason) {
    use base64::Engine as _;
    let ledger =
        ledger::Ledger::open(s.store.clone(), ledger::LedgerConfig::new("test.example/phigate"))
            .await
            .unwrap();
    let kek = std::sync::Arc::new(
        vault::LocalKek::from_base64(&base64::engine::general_purpose::STANDARD.encode([9u8; 32]))
            .unwrap(),
    );
    let v = vault::Vault::new(
        s.store.clone(),
        ledger,
        vault::Keyring::new(kek),
        vault::VaultConfig::default(),
    );
    let actor = vault::Actor::new("admin:cli").unwrap();
    v.shred_scope(scope, &actor, reason).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
}

/// A conversation whose scope was shredded (retention, or a patient's request) is refused with
/// 410 `conversation_expired`, a refusal a client can act on (start a new conversation), not a
/// 503 it would retry for ever; a new conversation goes through.
#[tokio::test]
async fn a_shredded_conversation_is_gone_and_a_new_one_works() {
    let s = stack().await;
    let conv = [("x-phigate-conversation", "visit-42")];
    let body = || chat_body("clinical-chat", NOTE);
    assert_eq!(s.chat_with(Some(&s.clinician), &conv, body()).await.status, 200);
    let live = s.store.data_keys_live().await.unwrap();
    assert_eq!(live.len(), 1, "one conversation, one data key");
    // What `phigate vault scope` prints names it (the harness's audit key is [7; 32]).
    assert_eq!(
        live[0].scope,
        gateway::app::conversation_scope(&[7u8; 32], "user:dr-a", "visit-42")
    );
    shred_elsewhere(&s, &live[0].scope, vault::ShredReason::PatientRequest).await;
    let gone = s.chat_with(Some(&s.clinician), &conv, body()).await;
    assert_error(&gone, 410, "conversation_expired");
    // A turn with nothing to tokenize is refused too: its surname alone ("Smith's potassium")
    // could not be told from the names the conversation held.
    let bare = s.chat_with(Some(&s.clinician), &conv, chat_body("clinical-chat", "And now?")).await;
    assert_error(&bare, 410, "conversation_expired");
    let fresh = [("x-phigate-conversation", "visit-43")];
    assert_eq!(s.chat_with(Some(&s.clinician), &fresh, body()).await.status, 200);
}

/// Without `X-Phigate-Conversation`, conversations that open with the same message share a
/// scope. Once it has expired (here: shredded), they are not locked out for good: the request
/// goes on in a scope of the current retention period.
#[tokio::test]
async fn a_shared_opening_message_is_not_locked_out_once_its_scope_is_gone() {
    let s = stack().await;
    let body = || chat_body("clinical-chat", NOTE);
    assert_eq!(s.chat_with(Some(&s.clinician), &[], body()).await.status, 200);
    let live = s.store.data_keys_live().await.unwrap();
    assert_eq!(live.len(), 1);
    shred_elsewhere(&s, &live[0].scope, vault::ShredReason::RetentionExpired).await;
    let again = s.chat_with(Some(&s.clinician), &[], body()).await;
    assert_eq!(again.status, 200, "{}", again.body);
    let now_live = s.store.data_keys_live().await.unwrap();
    assert_eq!(now_live.len(), 1);
    assert_ne!(now_live[0].scope, live[0].scope, "the fallback scope is another one");
    // And it stays: the next turn uses the same fallback scope.
    assert_eq!(s.chat_with(Some(&s.clinician), &[], body()).await.status, 200);
    assert_eq!(s.store.data_keys_live().await.unwrap().len(), 1);
    assert!(!s.upstream.all_bodies().contains(CANARY_NAME));
}

/// A request waits on a slow private deployment; meanwhile the cloud fallback's BAA is marked
/// unsigned (a reload; a lapsing expiry date works the same way). When the first deployment
/// times out, the fallback is not tried: the request's PHI never reaches a provider whose BAA
/// no longer covers it, though it was eligible when the request was decided.
#[tokio::test]
async fn a_fallback_whose_baa_lapsed_during_the_request_receives_nothing() {
    let s = stack().await;
    let path = s.dir.path().join("phigate.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    // A model on the slow private deployment, with the BAA-covered Azure one as its standby.
    let text = text
        .replace(
            "  - name: dead-chat\n",
            "  - name: slow-then-azure\n    deployments:\n      - { provider: local, model: upstream-llama, weight: 1 }\n      - { provider: azure-baa, model: gpt4o-deployment, weight: 0 }\n  - name: dead-chat\n",
        )
        .replace("models: [clinical-chat, cloud-chat,", "models: [slow-then-azure, clinical-chat, cloud-chat,");
    std::fs::write(&path, &text).unwrap();
    gateway::reload(&s.state, &path).unwrap_or_else(|e| panic!("{e}"));

    s.upstream.set_mode(Mode::Slow);
    let during = tokio::spawn({
        let (state, key) = (s.state.clone(), s.clinician.clone());
        async move {
            call(
                &state,
                "POST",
                "/v1/chat/completions",
                Some(&key),
                &[],
                Some(chat_body("slow-then-azure", NOTE)),
            )
            .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let unsigned = text
        .replace("    baa: { signed: true, expires: 2099-01-01 }", "    baa: { signed: false }");
    assert_ne!(unsigned, text);
    std::fs::write(&path, &unsigned).unwrap();
    gateway::reload(&s.state, &path).unwrap_or_else(|e| panic!("{e}"));
    let r = during.await.unwrap();
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.code(), "upstream_timeout", "{}", r.body);
    assert!(
        s.upstream.azure.lock().unwrap().is_empty(),
        "PHI went to a provider whose BAA no longer covered it"
    );
}
