//! Token budgets (`tokens_per_minute`) through the real gateway: a request's estimate is its text
//! bytes / 4 rounded up plus the answer budget it asks for (`max_completion_tokens`, else
//! `max_tokens`), and an answer larger than that is charged the rest after it; a use case's budget is one count for every caller of it, a role's budget is a
//! count per identity holding the role; the request that would pass the budget is refused with
//! 429 `rate_limited` with a `Retry-After` (seconds to the window's end), never forwarded, and
//! recorded; with Redis, replicas share one count.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::harness::*;

/// A stack with the use case `budgeted` for the service role, whose whole budget is 1000 tokens
/// a minute.
async fn budgeted_stack() -> Stack {
    let limit = "  - { use_case: budgeted, tokens_per_minute: 1000 }\n";
    stack_with(None, &service_use_case("budgeted"), limit).await
}

/// The budgets count in one-minute windows: when the current window has little left, wait for
/// the next one so that every request of a test falls in the same window.
async fn fresh_window() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() % 60.0;
    if now > 50.0 {
        tokio::time::sleep(Duration::from_secs_f64(60.0 - now + 0.2)).await;
    }
}

/// ASCII text of exactly `bytes` bytes, with no PHI and nothing that looks like an injection.
fn text_of(bytes: usize) -> String {
    let t: String = "Summarize the general dosing guidance. ".chars().cycle().take(bytes).collect();
    assert_eq!(t.len(), bytes);
    t
}

/// A chat request of one user message of `bytes` bytes and the answer budget `answer`
/// (`(field, n)`), if any.
fn budget_body(bytes: usize, answer: Option<(&str, u64)>) -> Value {
    let mut b = json!({"model": "clinical-chat", "messages": [
        {"role": "user", "content": text_of(bytes)}
    ]});
    if let Some((field, n)) = answer {
        b[field] = json!(n);
    }
    b
}

#[track_caller]
fn assert_ok(a: &Answer) {
    assert_eq!(a.status, 200, "{}", a.body);
}

/// 429 `rate_limited` in the OpenAI error shape, with a `Retry-After` of at most the rest of
/// the one-minute window.
#[track_caller]
fn assert_rate_limited(a: &Answer) {
    assert_error(a, 429, "rate_limited");
    assert_eq!(a.json()["error"]["type"], "rate_limit_error", "{}", a.body);
    assert_retry_after(a, 60);
}

/// The actors of the rate-limit refusals in the ledger, in order; each one is a denial with
/// the reason `rate_limited`.
async fn rate_limited_actors(s: &Stack) -> Vec<String> {
    s.records()
        .await
        .iter()
        .filter(|r| r.action() == ledger::Action::RateLimited)
        .map(|r| {
            assert_eq!(r.decision(), ledger::Decision::Deny);
            assert_eq!(r.reason().map(|r| r.as_str()), Some("rate_limited"));
            r.actor().as_str().to_string()
        })
        .collect()
}

#[tokio::test]
async fn token_budget_of_a_use_case_admits_up_to_the_budget_then_refuses() {
    let s = budgeted_stack().await;
    let a = s.key("svc:budget-a", "service", "budgeted").await;
    let b = s.key("svc:budget-b", "service", "budgeted").await;
    fresh_window().await;

    // 400 bytes = 100 tokens, + 200 asked: 300 (300 spent).
    assert_ok(&s.chat(&a, budget_body(400, Some(("max_tokens", 200)))).await);
    // 401 bytes = 101 tokens (rounded up), + 199 asked: 300 (600 spent); another identity of
    // the same use case spends from the same budget.
    assert_ok(&s.chat(&b, budget_body(401, Some(("max_completion_tokens", 199)))).await);
    // 1599 bytes = 400 tokens, nothing asked: 400 (1000 spent, exactly the budget).
    assert_ok(&s.chat(&a, budget_body(1599, None)).await);
    assert_eq!(s.upstream.count(), 3);

    // One more token is over the budget, for either caller of the use case.
    assert_rate_limited(&s.chat(&a, budget_body(1, None)).await);
    assert_rate_limited(&s.chat(&b, budget_body(1, None)).await);
    assert_eq!(s.upstream.count(), 3, "a request over the token budget reached the upstream");

    // Both refusals are recorded, with the use case they were refused for.
    assert_eq!(rate_limited_actors(&s).await, ["svc:budget-a", "svc:budget-b"]);
    for r in s.records().await.iter().filter(|r| r.action() == ledger::Action::RateLimited) {
        assert_eq!(r.use_case().map(|u| u.as_str()), Some("budgeted"));
    }
    let allowed =
        s.records().await.iter().filter(|r| r.action() == ledger::Action::ChatCompletion).count();
    assert_eq!(allowed, 3);
}

#[tokio::test]
async fn a_large_answer_budget_alone_is_refused_as_the_first_request() {
    // One fresh gateway per case, so that each request is the first its budget sees.
    let over_mt = budgeted_stack().await;
    let over_mct = budgeted_stack().await;
    let at = budgeted_stack().await;
    let k_mt = over_mt.key("svc:budget-a", "service", "budgeted").await;
    let k_mct = over_mct.key("svc:budget-a", "service", "budgeted").await;
    let k_at = at.key("svc:budget-a", "service", "budgeted").await;
    fresh_window().await;

    // "hello"-sized text (5 bytes = 2 tokens) + 999 asked = 1001 > 1000.
    for (s, k, field) in
        [(&over_mt, &k_mt, "max_tokens"), (&over_mct, &k_mct, "max_completion_tokens")]
    {
        assert_rate_limited(&s.chat(k, budget_body(5, Some((field, 999)))).await);
        assert_eq!(s.upstream.count(), 0, "{field}: the refused request reached the upstream");
        assert_eq!(rate_limited_actors(s).await, ["svc:budget-a"], "{field}");
    }
    // The same text + 998 asked is exactly the budget: admitted.
    assert_ok(&at.chat(&k_at, budget_body(5, Some(("max_tokens", 998)))).await);
    assert_eq!(at.upstream.count(), 1);
    assert!(rate_limited_actors(&at).await.is_empty());
    // A refused request spends none of the budget: after the refusals above, the whole budget
    // is still there on those gateways.
    for (s, k) in [(&over_mt, &k_mt), (&over_mct, &k_mct)] {
        assert_ok(&s.chat(k, budget_body(5, Some(("max_tokens", 998)))).await);
        assert_rate_limited(&s.chat(k, budget_body(1, None)).await);
        assert_eq!(s.upstream.count(), 1);
    }
}

#[tokio::test]
async fn answer_budgets_are_read_as_the_upstream_reads_them() {
    // A null max_completion_tokens leaves max_tokens in force (as vLLM reads it), n answers
    // cost n budgets, and a value the budget cannot count (a float, a negative, a huge
    // number) is refused rather than charged as nothing.
    let s = budgeted_stack().await;
    let k = s.key("svc:budget-n", "service", "budgeted").await;
    fresh_window().await;
    let mut null_mct = budget_body(5, Some(("max_tokens", 999)));
    null_mct["max_completion_tokens"] = Value::Null;
    assert_rate_limited(&s.chat(&k, null_mct).await);
    let mut two = budget_body(5, Some(("max_tokens", 500)));
    two["n"] = json!(2);
    assert_rate_limited(&s.chat(&k, two).await);
    for (field, v) in [
        ("max_tokens", json!(4000.0)),
        ("max_tokens", json!(-1)),
        ("max_completion_tokens", json!(u64::MAX)),
        ("n", json!(1000)),
    ] {
        let mut b = budget_body(5, None);
        b[field] = v;
        assert_error(&s.chat(&k, b).await, 400, "invalid_request");
    }
    assert_eq!(s.upstream.count(), 0);
    assert_ok(&s.chat(&k, budget_body(5, Some(("max_tokens", 998)))).await);
}

#[tokio::test]
async fn token_budget_of_a_role_is_per_identity() {
    let s = stack_with(
        None,
        "  - name: research-notes\n    purpose: research\n    roles: [researcher]\n    models: [clinical-chat]\n    phi:\n      default: redact\n",
        "  - { role: researcher, tokens_per_minute: 1000 }\n",
    )
    .await;
    // s.researcher is user:res-b (researcher, clinical-notes); the same identity's other keys,
    // one of them for another use case, and another researcher identity.
    let same_identity = s.key("user:res-b", "researcher", "clinical-notes").await;
    let same_identity_other_uc = s.key("user:res-b", "researcher", "research-notes").await;
    let other = s.key("user:res-c", "researcher", "clinical-notes").await;
    fresh_window().await;

    // user:res-b spends the whole budget (400 bytes = 100 tokens, + 900 asked).
    assert_ok(&s.chat(&s.researcher, budget_body(400, Some(("max_tokens", 900)))).await);
    // The budget is the identity's, not the key's nor the use case's.
    assert_rate_limited(&s.chat(&same_identity, budget_body(1, None)).await);
    assert_rate_limited(&s.chat(&same_identity_other_uc, budget_body(1, None)).await);
    assert_eq!(s.upstream.count(), 1);

    // Another identity with the same role has a budget of its own.
    assert_ok(&s.chat(&other, budget_body(400, Some(("max_tokens", 900)))).await);
    assert_rate_limited(&s.chat(&other, budget_body(1, None)).await);
    assert_eq!(s.upstream.count(), 2);

    // A role without a budget is not limited by the researchers' one.
    assert_ok(&s.chat(&s.clinician, budget_body(400, Some(("max_tokens", 5000)))).await);
    assert_eq!(s.upstream.count(), 3);

    assert_eq!(rate_limited_actors(&s).await, ["user:res-b", "user:res-b", "user:res-c"]);
}

#[tokio::test]
async fn replicas_share_one_token_budget_through_redis() {
    let uc = unique_use_case("tb");
    let u = service_use_case(&uc) + &redis_section("redis://127.0.0.1:6379", false);
    let l = format!("  - {{ use_case: {uc}, tokens_per_minute: 1000 }}\n");
    let a = stack_with(None, &u, &l).await;
    let b = stack_with(None, &u, &l).await;
    let ka = a.key("svc:replica-a", "service", &uc).await;
    let kb = b.key("svc:replica-b", "service", &uc).await;
    fresh_window().await;

    // 600 tokens on A, 300 on B: 900 of 1000 spent across both.
    assert_ok(&a.chat(&ka, budget_body(400, Some(("max_tokens", 500)))).await);
    assert_ok(&b.chat(&kb, budget_body(400, Some(("max_tokens", 200)))).await);
    // 200 more on A: A alone has spent 600 (800 with this one), so only B's 300 can put it over.
    assert_rate_limited(&a.chat(&ka, budget_body(400, Some(("max_tokens", 100)))).await);
    // 200 more on B: B alone has spent 300 (500 with this one), so only A's count can.
    assert_rate_limited(&b.chat(&kb, budget_body(400, Some(("max_tokens", 100)))).await);
    assert_eq!(a.upstream.count(), 1, "a request over the shared budget reached the upstream");
    assert_eq!(b.upstream.count(), 1, "a request over the shared budget reached the upstream");
    assert_eq!(rate_limited_actors(&a).await, ["svc:replica-a"]);
    assert_eq!(rate_limited_actors(&b).await, ["svc:replica-b"]);
}

#[tokio::test]
async fn a_request_refused_by_a_later_bucket_costs_nothing_in_the_earlier_ones() {
    // The limits in order: the use case `limited` (3 requests a minute, in the harness), then
    // 100 tokens a minute for each identity of the service role.
    let s = stack_with(None, "", "  - { role: service, tokens_per_minute: 100 }\n").await;
    fresh_window().await;

    // 400 bytes = 100 tokens, + 200 asked: the use case counts the request, then the role's
    // budget refuses it, three times (as many as the use case allows in a minute).
    for _ in 0..3 {
        assert_rate_limited(&s.chat(&s.limited, budget_body(400, Some(("max_tokens", 200)))).await);
    }
    assert_eq!(s.upstream.count(), 0);
    // The use case still admits its 3 requests (40 bytes = 10 tokens each), then refuses.
    for _ in 0..3 {
        assert_ok(&s.chat(&s.limited, budget_body(40, None)).await);
    }
    assert_rate_limited(&s.chat(&s.limited, budget_body(40, None)).await);
    assert_eq!(s.upstream.count(), 3);
    assert_eq!(rate_limited_actors(&s).await, ["svc:limited-bot"; 4]);
}

/// The estimate charged before the send covers the answer only up to the `max_tokens` asked
/// for. An answer larger than that is charged after it, from the upstream's `usage` when it
/// reports one, else from the answer's text bytes / 4 (a stream); the next request then finds
/// the budget spent.
#[tokio::test]
async fn an_answer_larger_than_its_estimate_is_charged_after_it() {
    // Reported usage: 40 bytes (10 tokens) charged before, 900 reported, 890 charged after.
    let s = budgeted_stack().await;
    let a = s.key("svc:budget-a", "service", "budgeted").await;
    fresh_window().await;
    let mut body = budget_body(40, None);
    body["x_usage"] = json!(900);
    assert_ok(&s.chat(&a, body).await);
    // 101 tokens more would make 1001.
    assert_rate_limited(&s.chat(&a, budget_body(404, None)).await);
    assert_ok(&s.chat(&a, budget_body(400, None)).await);
    assert_eq!(s.upstream.count(), 2);

    // A stream with no usage: its text (3,600 bytes and more) is charged as 900 tokens and more.
    let s = budgeted_stack().await;
    let a = s.key("svc:budget-a", "service", "budgeted").await;
    fresh_window().await;
    s.upstream.set_extra(&text_of(3600));
    let mut body = budget_body(40, None);
    body["stream"] = json!(true);
    body["x_chunk"] = json!(500);
    let r = s.chat(&a, body).await;
    assert_ok(&r);
    assert!(r.body.contains("[DONE]"), "{}", r.body);
    s.upstream.set_extra("");
    assert_rate_limited(&s.chat(&a, budget_body(400, None)).await);
    assert_eq!(s.upstream.count(), 1);
}
