//! Rate limits and token budgets: fixed one-minute windows per bucket (identity, role, use
//! case), counted in process by default or in Redis when it is configured, so that replicas
//! share one count. With Redis unreachable the limiter fails closed unless the configuration
//! opted in to per-replica counting (`allow_local_fallback`), which is logged loudly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

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
    local: Mutex<HashMap<String, (u64, u64)>>,
    redis: Option<RedisCounter>,
    warned: AtomicBool,
}

struct RedisCounter {
    client: redis::Client,
    /// One multiplexed connection, cloned by every request (requests pipeline on it; none
    /// waits for another's answer). `None` until the first use and after a failure.
    conn: tokio::sync::RwLock<Option<redis::aio::MultiplexedConnection>>,
    allow_local_fallback: bool,
}

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
        Limiter { local: Mutex::new(HashMap::new()), redis: None, warned: AtomicBool::new(false) }
    }

    /// Counts in Redis at `url` (the connection is made on first use and re-made after errors).
    pub fn redis(url: &str, allow_local_fallback: bool) -> Result<Limiter, crate::Error> {
        let client = redis::Client::open(url).map_err(|e| crate::Error::Redis(e.to_string()))?;
        Ok(Limiter {
            local: Mutex::new(HashMap::new()),
            redis: Some(RedisCounter {
                client,
                conn: tokio::sync::RwLock::new(None),
                allow_local_fallback,
            }),
            warned: AtomicBool::new(false),
        })
    }

    /// Whether a Redis counter is configured.
    pub fn uses_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// Pings Redis (readiness); `Ok` when none is configured.
    pub async fn ping(&self) -> Result<(), ApiError> {
        let Some(r) = &self.redis else { return Ok(()) };
        let mut conn = connect(r).await?;
        let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
        if pong.is_err() {
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
                if let Some(e) = m.get_mut(&format!("{window}|{key}")) {
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
        if m.len() > 100_000 {
            m.clear();
        }
        let prefix = format!("{window}|");
        // Past windows go when a new one starts (not on every call: that would walk the map).
        if !m.contains_key(&format!("{prefix}{key}")) {
            m.retain(|k, _| k.starts_with(&prefix));
        }
        let e = m.entry(format!("{prefix}{key}")).or_insert((0, 0));
        e.0 = e.0.saturating_add(1);
        e.1 = e.1.saturating_add(tokens);
        Ok((e.0, e.1, Counted::Local))
    }
}

/// Where a request was counted (so that a refund goes to the same counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Counted {
    Redis,
    Local,
}

/// The shared connection (a clone: cheap), made on first use with a 2 s limit.
async fn connect(r: &RedisCounter) -> Result<redis::aio::MultiplexedConnection, ApiError> {
    if let Some(c) = r.conn.read().await.as_ref() {
        return Ok(c.clone());
    }
    let mut slot = r.conn.write().await;
    if let Some(c) = slot.as_ref() {
        return Ok(c.clone());
    }
    let fut = r.client.get_multiplexed_async_connection();
    match tokio::time::timeout(std::time::Duration::from_secs(2), fut).await {
        Ok(Ok(c)) => {
            *slot = Some(c.clone());
            Ok(c)
        }
        _ => Err(ApiError::RateLimiterUnavailable),
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
    match tokio::time::timeout(std::time::Duration::from_secs(2), fut).await {
        Ok(Ok(v)) => Ok(v),
        _ => {
            reset(r).await;
            Err(ApiError::RateLimiterUnavailable)
        }
    }
}

/// Takes one request and `tokens` back out of a Redis bucket (the keys keep an expiry even if
/// they had gone in between).
async fn redis_refund(
    r: &RedisCounter,
    key: &str,
    window: u64,
    tokens: u64,
) -> Result<(), ApiError> {
    let mut conn = connect(r).await?;
    let rk = format!("phigate:rl:{window}:{key}:r");
    let tk = format!("phigate:rl:{window}:{key}:t");
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("DECR")
        .arg(&rk)
        .ignore()
        .cmd("EXPIRE")
        .arg(&rk)
        .arg(120)
        .ignore()
        .cmd("DECRBY")
        .arg(&tk)
        .arg(tokens)
        .ignore()
        .cmd("EXPIRE")
        .arg(&tk)
        .arg(120)
        .ignore();
    let fut = pipe.query_async::<()>(&mut conn);
    match tokio::time::timeout(std::time::Duration::from_secs(2), fut).await {
        Ok(Ok(())) => Ok(()),
        _ => {
            reset(r).await;
            Err(ApiError::RateLimiterUnavailable)
        }
    }
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
        assert!(l.local.lock().unwrap().is_empty());
    }
}
