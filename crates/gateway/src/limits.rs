//! Rate limits and token budgets: fixed one-minute windows per bucket (identity, role, use
//! case), counted in process by default or in Redis when it is configured, so that replicas
//! share one count. With Redis unreachable the limiter fails closed unless the configuration
//! opted in to per-replica counting (`allow_local_fallback`), which is logged loudly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::ApiError;

/// One budget that applies to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// The bucket's key (`role:clinician`, `use_case:clinical-notes`, `identity:svc:bot`).
    pub key: String,
    /// Requests per minute, if limited.
    pub requests_per_minute: Option<u64>,
    /// Estimated tokens per minute, if limited.
    pub tokens_per_minute: Option<u64>,
}

/// The counter behind the limits.
pub struct Limiter {
    local: Mutex<LocalCounts>,
    redis: Option<RedisCounter>,
    warned: AtomicBool,
}

/// The in-process counts: this minute's buckets and the last minute's (a request that read the
/// clock just before the minute turned is still counted, and refunded, in its own window).
/// Older windows are dropped whole when a new one starts, so the map holds the buckets of two
/// minutes at most and nothing else ever walks it.
#[derive(Default)]
struct LocalCounts {
    window: u64,
    now: HashMap<String, (u64, u64)>,
    prev: HashMap<String, (u64, u64)>,
}

impl LocalCounts {
    /// Adds `requests` and `tokens` to `key`'s bucket of `window` (a window older than the last
    /// one counts in the last one) and returns the bucket's counts.
    fn add(&mut self, window: u64, key: &str, requests: u64, tokens: u64) -> (u64, u64) {
        let window = window.max(self.window.saturating_sub(1));
        let Some(counts) = self.of(window) else { return (0, 0) };
        let e = match counts.get_mut(key) {
            Some(e) => e,
            None => counts.entry(key.to_string()).or_insert((0, 0)),
        };
        e.0 = e.0.saturating_add(requests);
        e.1 = e.1.saturating_add(tokens);
        *e
    }

    /// The counts of `window`, after moving on to it if it is new; `None` for a window older
    /// than the last one (not kept).
    fn of(&mut self, window: u64) -> Option<&mut HashMap<String, (u64, u64)>> {
        if window > self.window {
            self.prev = if window == self.window + 1 {
                std::mem::take(&mut self.now)
            } else {
                HashMap::new()
            };
            self.now = HashMap::new();
            self.window = window;
        }
        if window == self.window {
            Some(&mut self.now)
        } else if window + 1 == self.window {
            Some(&mut self.prev)
        } else {
            None
        }
    }
}

struct RedisCounter {
    client: redis::Client,
    /// One multiplexed connection, cloned by every request (requests pipeline on it; none
    /// waits for another's answer). `None` until the first use and after a failure.
    conn: tokio::sync::RwLock<Option<redis::aio::MultiplexedConnection>>,
    /// When the last attempt to connect failed. For [`CONNECT_BACKOFF`] after it requests are
    /// refused (or counted locally) at once: otherwise each would wait its turn for the
    /// connection lock and then its own connect timeout, a queue that grows by 2 s a request.
    failed_at: Mutex<Option<Instant>>,
    allow_local_fallback: bool,
}

/// How long the counter waits for Redis to connect, or to answer.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long after a failed connect no new one is tried.
const CONNECT_BACKOFF: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("redis", &self.redis.is_some()).finish_non_exhaustive()
    }
}

fn minute() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() / 60).unwrap_or(0)
}

fn secs_to_next_minute() -> u64 {
    let s = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    60 - (s % 60)
}

impl Limiter {
    /// Counts in this process only.
    pub fn local() -> Limiter {
        Limiter {
            local: Mutex::new(LocalCounts::default()),
            redis: None,
            warned: AtomicBool::new(false),
        }
    }

    /// Counts in Redis at `url` (the connection is made on first use and re-made after errors).
    pub fn redis(url: &str, allow_local_fallback: bool) -> Result<Limiter, crate::Error> {
        let client = redis::Client::open(url).map_err(|e| crate::Error::Redis(e.to_string()))?;
        Ok(Limiter {
            local: Mutex::new(LocalCounts::default()),
            redis: Some(RedisCounter {
                client,
                conn: tokio::sync::RwLock::new(None),
                failed_at: Mutex::new(None),
                allow_local_fallback,
            }),
            warned: AtomicBool::new(false),
        })
    }

    /// Whether a Redis counter is configured.
    pub fn uses_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// Whether requests are counted in this replica when Redis does not answer
    /// (`allow_local_fallback`).
    pub fn falls_back_locally(&self) -> bool {
        self.redis.as_ref().is_some_and(|r| r.allow_local_fallback)
    }

    /// Pings Redis (readiness), within [`REDIS_TIMEOUT`]; `Ok` when none is configured.
    pub async fn ping(&self) -> Result<(), ApiError> {
        let Some(r) = &self.redis else { return Ok(()) };
        let mut conn = connect(r).await?;
        let ping = redis::cmd("PING");
        let pong = ping.query_async::<String>(&mut conn);
        if !matches!(tokio::time::timeout(REDIS_TIMEOUT, pong).await, Ok(Ok(_))) {
            reset(r).await;
            return Err(ApiError::RateLimiterUnavailable);
        }
        Ok(())
    }

    /// Counts one request of `tokens` estimated tokens against every bucket; refuses when any
    /// budget is exceeded.
    pub async fn admit(&self, buckets: &[Bucket], tokens: u64) -> Result<(), ApiError> {
        let window = minute();
        let mut counted: Vec<(&str, Counted)> = Vec::new();
        for b in buckets {
            if b.requests_per_minute.is_none() && b.tokens_per_minute.is_none() {
                continue;
            }
            let (reqs, toks, place) = match self.count(&b.key, window, tokens).await {
                Ok(v) => v,
                Err(e) => {
                    self.refund_all(&counted, window, tokens).await;
                    return Err(e);
                }
            };
            counted.push((&b.key, place));
            let over_r = b.requests_per_minute.is_some_and(|l| reqs > l);
            let over_t = b.tokens_per_minute.is_some_and(|l| toks > l);
            if over_r || over_t {
                metrics::counter!("phigate_rate_limited_total").increment(1);
                // A refused request costs nothing: its request and its tokens go back to every
                // bucket that counted them, this one and the ones before it.
                self.refund_all(&counted, window, tokens).await;
                return Err(ApiError::RateLimited { retry_after_secs: secs_to_next_minute() });
            }
        }
        Ok(())
    }

    /// Charges `tokens` more to every bucket with a token budget (an answer larger than its
    /// estimate), without counting a request. Best effort: a charge that cannot reach Redis
    /// is logged and lost.
    pub async fn charge(&self, buckets: &[Bucket], tokens: u64) {
        let window = minute();
        for b in buckets.iter().filter(|b| b.tokens_per_minute.is_some()) {
            if let Some(r) = &self.redis {
                match redis_add_tokens(r, &b.key, window, tokens).await {
                    Ok(()) => continue,
                    Err(e) if !r.allow_local_fallback => {
                        tracing::warn!(code = e.code(), "an answer's tokens were not charged");
                        continue;
                    }
                    Err(_) => {}
                }
            }
            let mut m = self.local.lock().unwrap_or_else(|p| p.into_inner());
            m.add(window, &b.key, 0, tokens);
        }
    }

    async fn refund_all(&self, counted: &[(&str, Counted)], window: u64, tokens: u64) {
        for (key, place) in counted {
            self.refund(key, window, tokens, *place).await;
        }
    }

    /// Gives one request and `tokens` back to a bucket, where they were counted (best effort: a
    /// refund that cannot reach Redis leaves them spent, the safe side).
    async fn refund(&self, key: &str, window: u64, tokens: u64, place: Counted) {
        match (place, &self.redis) {
            (Counted::Redis, Some(r)) => {
                if let Err(e) = redis_refund(r, key, window, tokens).await {
                    tracing::warn!(code = e.code(), "a refused request's count stays in Redis");
                }
            }
            (Counted::Redis, None) => {}
            (Counted::Local, _) => {
                let mut m = self.local.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(e) = m.of(window).and_then(|m| m.get_mut(key)) {
                    e.0 = e.0.saturating_sub(1);
                    e.1 = e.1.saturating_sub(tokens);
                }
            }
        }
    }

    /// Counts one request and `tokens` in `key`'s bucket of `window`: the bucket's requests and
    /// tokens so far, and where they were counted.
    async fn count(
        &self,
        key: &str,
        window: u64,
        tokens: u64,
    ) -> Result<(u64, u64, Counted), ApiError> {
        if let Some(r) = &self.redis {
            match redis_count(r, key, window, tokens).await {
                Ok((reqs, toks)) => return Ok((reqs, toks, Counted::Redis)),
                Err(e) => {
                    if !r.allow_local_fallback {
                        return Err(e);
                    }
                    if !self.warned.swap(true, Ordering::Relaxed) {
                        tracing::error!(
                            "REDIS IS UNREACHABLE: rate limits are now counted PER REPLICA (allow_local_fallback: true); with N replicas the effective limit is N times the configured one"
                        );
                    }
                    metrics::counter!("phigate_rate_limit_local_fallback_total").increment(1);
                }
            }
        }
        let mut m = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let (reqs, toks) = m.add(window, key, 1, tokens);
        Ok((reqs, toks, Counted::Local))
    }
}

/// How many refusals for a missing or wrong credential are written to the ledger: up to
/// [`FAILURE_BURST`] at once and [`FAILURE_RATE`] a second after that, per replica. Each is a
/// durable append, and anyone who can reach the port can send them: unthrottled, a flood
/// would grow the ledger without bound and take its flushes from the requests that count.
/// Past the budget one record a second marks the flood (reason `auth_failures_throttled`);
/// the refusals it stands for are counted in `phigate_auth_failures_unrecorded_total` and in a
/// log line every 10 s. Every such request is refused all the same.
pub struct FailureRecords {
    state: Mutex<FailureState>,
}

struct FailureState {
    tokens: f64,
    last: Instant,
    marked_at: Option<Instant>,
    unrecorded: u64,
    logged_at: Option<Instant>,
}

/// Refusals a replica records at once, before the rate applies.
pub const FAILURE_BURST: f64 = 100.0;
/// Refusals a replica records each second past the burst.
pub const FAILURE_RATE: f64 = 20.0;

/// What to do with one refusal's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureRecord {
    /// Write it.
    Write,
    /// Write a record that marks a throttled flood in its place.
    Mark,
    /// Write nothing (counted in the metrics).
    Skip,
}

impl Default for FailureRecords {
    fn default() -> Self {
        FailureRecords {
            state: Mutex::new(FailureState {
                tokens: FAILURE_BURST,
                last: Instant::now(),
                marked_at: None,
                unrecorded: 0,
                logged_at: None,
            }),
        }
    }
}

impl FailureRecords {
    /// Decides for one refusal, at `now`.
    pub fn decide(&self, now: Instant) -> FailureRecord {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let refill = now.saturating_duration_since(s.last).as_secs_f64() * FAILURE_RATE;
        s.tokens = (s.tokens + refill).min(FAILURE_BURST);
        s.last = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            return FailureRecord::Write;
        }
        if s.marked_at.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1)) {
            s.marked_at = Some(now);
            return FailureRecord::Mark;
        }
        s.unrecorded += 1;
        metrics::counter!("phigate_auth_failures_unrecorded_total").increment(1);
        if s.logged_at.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(10)) {
            tracing::warn!(
                unrecorded = s.unrecorded,
                "failed authentications over the ledger's budget: counted, not each recorded"
            );
            s.unrecorded = 0;
            s.logged_at = Some(now);
        }
        FailureRecord::Skip
    }
}

/// Where a request was counted (so that a refund goes to the same counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Counted {
    Redis,
    Local,
}

/// The shared connection (a clone: cheap), made on first use with a 2 s limit; refused at once
/// within [`CONNECT_BACKOFF`] of a failed attempt.
async fn connect(r: &RedisCounter) -> Result<redis::aio::MultiplexedConnection, ApiError> {
    if let Some(c) = r.conn.read().await.as_ref() {
        return Ok(c.clone());
    }
    let backing_off = || {
        let at = r.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        at.is_some_and(|t| t.elapsed() < CONNECT_BACKOFF)
    };
    if backing_off() {
        return Err(ApiError::RateLimiterUnavailable);
    }
    let mut slot = r.conn.write().await;
    if let Some(c) = slot.as_ref() {
        return Ok(c.clone());
    }
    // Another request's attempt may have failed while this one waited for the lock.
    if backing_off() {
        return Err(ApiError::RateLimiterUnavailable);
    }
    let fut = r.client.get_multiplexed_async_connection();
    match tokio::time::timeout(REDIS_TIMEOUT, fut).await {
        Ok(Ok(c)) => {
            *slot = Some(c.clone());
            Ok(c)
        }
        _ => {
            *r.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            Err(ApiError::RateLimiterUnavailable)
        }
    }
}

/// Drops the shared connection after a failure (the next request connects again).
async fn reset(r: &RedisCounter) {
    *r.conn.write().await = None;
}

async fn redis_count(
    r: &RedisCounter,
    key: &str,
    window: u64,
    tokens: u64,
) -> Result<(u64, u64), ApiError> {
    let mut conn = connect(r).await?;
    let rk = format!("phigate:rl:{window}:{key}:r");
    let tk = format!("phigate:rl:{window}:{key}:t");
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("INCR")
        .arg(&rk)
        .cmd("EXPIRE")
        .arg(&rk)
        .arg(120)
        .ignore()
        .cmd("INCRBY")
        .arg(&tk)
        .arg(tokens)
        .cmd("EXPIRE")
        .arg(&tk)
        .arg(120)
        .ignore();
    let fut = pipe.query_async::<(u64, u64)>(&mut conn);
    match tokio::time::timeout(REDIS_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        _ => {
            reset(r).await;
            Err(ApiError::RateLimiterUnavailable)
        }
    }
}

/// Adds `requests` and `tokens` (negative: gives them back) to a Redis bucket's counts; each
/// key touched keeps its expiry even if it had gone in between.
async fn redis_add(
    r: &RedisCounter,
    key: &str,
    window: u64,
    requests: i64,
    tokens: i64,
) -> Result<(), ApiError> {
    let mut conn = connect(r).await?;
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (suffix, n) in [("r", requests), ("t", tokens)] {
        if n != 0 {
            let k = format!("phigate:rl:{window}:{key}:{suffix}");
            pipe.cmd("INCRBY").arg(&k).arg(n).ignore().cmd("EXPIRE").arg(&k).arg(120).ignore();
        }
    }
    let fut = pipe.query_async::<()>(&mut conn);
    match tokio::time::timeout(REDIS_TIMEOUT, fut).await {
        Ok(Ok(())) => Ok(()),
        _ => {
            reset(r).await;
            Err(ApiError::RateLimiterUnavailable)
        }
    }
}

/// Adds `tokens` to a Redis bucket's token count.
async fn redis_add_tokens(
    r: &RedisCounter,
    key: &str,
    window: u64,
    tokens: u64,
) -> Result<(), ApiError> {
    redis_add(r, key, window, 0, i64::try_from(tokens).unwrap_or(i64::MAX)).await
}

/// Takes one request and `tokens` back out of a Redis bucket.
async fn redis_refund(
    r: &RedisCounter,
    key: &str,
    window: u64,
    tokens: u64,
) -> Result<(), ApiError> {
    redis_add(r, key, window, -1, -i64::try_from(tokens).unwrap_or(i64::MAX)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn token_budgets_and_request_counts() {
        let l = Limiter::local();
        let b =
            [Bucket { key: "t".into(), requests_per_minute: None, tokens_per_minute: Some(100) }];
        assert!(l.admit(&b, 60).await.is_ok());
        assert!(matches!(l.admit(&b, 60).await, Err(ApiError::RateLimited { .. })));
        // The refused request spent nothing: 40 tokens are still there.
        assert!(l.admit(&b, 40).await.is_ok());
        assert!(l.admit(&b, 1).await.is_err());
        let r = [Bucket { key: "r".into(), requests_per_minute: Some(2), tokens_per_minute: None }];
        assert!(l.admit(&r, 0).await.is_ok());
        assert!(l.admit(&r, 0).await.is_ok());
        assert!(l.admit(&r, 0).await.is_err());
        // Unlimited buckets are not counted.
        let u = [Bucket { key: "u".into(), requests_per_minute: None, tokens_per_minute: None }];
        for _ in 0..10 {
            assert!(l.admit(&u, 1_000_000).await.is_ok());
        }
    }

    /// Waits for the next one-minute window when this one has little left, so that every
    /// request of a test is counted in the same window.
    async fn fresh_window() {
        let s = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() % 60.0;
        if s > 55.0 {
            tokio::time::sleep(std::time::Duration::from_secs_f64(60.0 - s + 0.2)).await;
        }
    }

    fn bucket(key: String, requests: Option<u64>, tokens: Option<u64>) -> Bucket {
        Bucket { key, requests_per_minute: requests, tokens_per_minute: tokens }
    }

    fn refused(r: Result<(), ApiError>) -> bool {
        matches!(r, Err(ApiError::RateLimited { .. }))
    }

    /// A request refused by a later bucket (on its token budget, then on its request rate)
    /// leaves nothing counted in the buckets before it, nor in the one that refused it.
    async fn refused_request_costs_nothing(l: &Limiter, prefix: &str) {
        fresh_window().await;
        // Refused on tokens by the second bucket, five times over.
        let first = bucket(format!("{prefix}:first-a"), Some(3), Some(100));
        let tokens = bucket(format!("{prefix}:tokens"), None, Some(10));
        for _ in 0..5 {
            assert!(refused(l.admit(&[first.clone(), tokens.clone()], 20).await));
        }
        // The first bucket still admits its full count and budget, then refuses.
        for _ in 0..3 {
            assert!(l.admit(std::slice::from_ref(&first), 30).await.is_ok());
        }
        assert!(refused(l.admit(std::slice::from_ref(&first), 0).await));
        // The refusing bucket still has its whole budget.
        assert!(l.admit(std::slice::from_ref(&tokens), 10).await.is_ok());
        assert!(refused(l.admit(std::slice::from_ref(&tokens), 1).await));

        // Refused on requests by the second bucket (1 a minute) after one admitted request.
        let first = bucket(format!("{prefix}:first-b"), Some(3), None);
        let requests = bucket(format!("{prefix}:requests"), Some(1), None);
        assert!(l.admit(&[first.clone(), requests.clone()], 0).await.is_ok());
        for _ in 0..5 {
            assert!(refused(l.admit(&[first.clone(), requests.clone()], 0).await));
        }
        // The first bucket has counted the admitted request only: two more, then a refusal.
        for _ in 0..2 {
            assert!(l.admit(std::slice::from_ref(&first), 0).await.is_ok());
        }
        assert!(refused(l.admit(std::slice::from_ref(&first), 0).await));
    }

    #[test]
    fn failed_logins_are_recorded_up_to_a_budget_then_marked_once_a_second() {
        let f = FailureRecords::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut seen = HashMap::new();
        // 1,000 refusals in the same instant: the burst, one mark, the rest skipped.
        for _ in 0..1000 {
            *seen.entry(f.decide(at(0))).or_insert(0) += 1;
        }
        assert_eq!(seen[&FailureRecord::Write], 100);
        assert_eq!(seen[&FailureRecord::Mark], 1);
        assert_eq!(seen[&FailureRecord::Skip], 899);
        // Half a second later, ten more may be written (20 a second), and no second mark yet.
        let later: Vec<_> = (0..20).map(|_| f.decide(at(500))).collect();
        assert_eq!(later.iter().filter(|r| **r == FailureRecord::Write).count(), 10);
        assert!(!later.contains(&FailureRecord::Mark));
        // A second after the mark, the next one over the budget is a mark again.
        assert_eq!(f.decide(at(1000)), FailureRecord::Write);
        let more: Vec<_> = (0..20).map(|_| f.decide(at(1000))).collect();
        assert_eq!(more.iter().filter(|r| **r == FailureRecord::Mark).count(), 1);
        // After a quiet spell the whole burst is back.
        let quiet: Vec<_> = (0..100).map(|_| f.decide(at(60_000))).collect();
        assert!(quiet.iter().all(|r| *r == FailureRecord::Write));
    }

    #[test]
    fn local_counts_keep_two_windows_and_drop_older_ones_whole() {
        let mut c = LocalCounts::default();
        c.of(100).unwrap().insert("a".into(), (1, 0));
        c.of(101).unwrap().insert("b".into(), (2, 0));
        // The last window is still there (a late refund finds its count)...
        assert_eq!(c.of(100).unwrap().get("a"), Some(&(1, 0)));
        assert_eq!(c.of(101).unwrap().get("b"), Some(&(2, 0)));
        // ...an older one is not.
        assert!(c.of(99).is_none());
        // A skipped minute drops both.
        assert!(c.of(103).unwrap().is_empty());
        assert!(c.of(102).unwrap().is_empty());
    }

    #[tokio::test]
    async fn many_buckets_do_not_reset_each_other() {
        // The old map was cleared whole past 100,000 keys: a burst of new identities gave every
        // other bucket its whole budget back.
        fresh_window().await;
        let l = Limiter::local();
        let watched = [bucket("watched".into(), Some(1), None)];
        assert!(l.admit(&watched, 0).await.is_ok());
        for i in 0..100_100 {
            assert!(l.admit(&[bucket(format!("id-{i}"), Some(5), None)], 0).await.is_ok());
        }
        assert!(refused(l.admit(&watched, 0).await));
    }

    /// A Redis that accepts connections and never answers: every request must not wait behind
    /// the ones before it (each for the connect timeout), but fail (or fall back) at once while
    /// the last failure is recent.
    #[tokio::test]
    async fn a_silent_redis_does_not_queue_requests_behind_each_other() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let _held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((c, _)) = silent.accept().await {
                open.push(c);
            }
        });
        let l = std::sync::Arc::new(Limiter::redis(&format!("redis://{addr}"), false).unwrap());
        let b = [bucket("convoy".into(), Some(100), None)];
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (l, b) = (l.clone(), b.clone());
            tasks.push(tokio::spawn(async move { l.admit(&b, 0).await }));
        }
        for t in tasks {
            assert!(matches!(t.await.unwrap(), Err(ApiError::RateLimiterUnavailable)));
        }
        // One connect timeout (2 s), not twenty of them in turn (40 s).
        let took = started.elapsed();
        assert!(took < Duration::from_secs(8), "{took:?}");
        // Within the back-off a request fails without trying.
        let started = Instant::now();
        assert!(l.admit(&b, 0).await.is_err());
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    /// An answer's charge lands where the requests are counted, Redis or this process.
    async fn a_charge_counts_against_the_budget(l: &Limiter, key: String) {
        fresh_window().await;
        let b = [bucket(key, Some(100), Some(100))];
        assert!(l.admit(&b, 10).await.is_ok());
        l.charge(&b, 85).await;
        assert!(l.admit(&b, 5).await.is_ok());
        assert!(refused(l.admit(&b, 1).await));
    }

    #[tokio::test]
    async fn a_charge_counts_locally_and_in_redis() {
        a_charge_counts_against_the_budget(&Limiter::local(), "charge".into()).await;
        let l = Limiter::redis("redis://127.0.0.1:6379", false).unwrap();
        let key = format!("unit-charge-{:016x}", rand::random::<u64>());
        a_charge_counts_against_the_budget(&l, key).await;
        assert!(l.local.lock().unwrap().now.is_empty(), "counted locally, not in Redis");
    }

    #[tokio::test]
    async fn a_refused_request_costs_nothing_in_any_bucket() {
        refused_request_costs_nothing(&Limiter::local(), "local").await;
    }

    #[tokio::test]
    async fn a_refused_request_costs_nothing_in_any_bucket_in_redis() {
        // Uses the local Redis (127.0.0.1:6379); fresh bucket names, so no other run's count.
        let l = Limiter::redis("redis://127.0.0.1:6379", false).unwrap();
        let run = format!("unit-{:016x}", rand::random::<u64>());
        refused_request_costs_nothing(&l, &run).await;
        // Counted in Redis, not locally.
        assert!(l.local.lock().unwrap().now.is_empty());
    }
}
