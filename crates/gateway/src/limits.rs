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
        let mut counted: Vec<&str> = Vec::new();
        for b in buckets {
            if b.requests_per_minute.is_none() && b.tokens_per_minute.is_none() {
                continue;
            }
            let (reqs, toks) = self.count(&b.key, window, tokens).await?;
            counted.push(&b.key);
            let over_r = b.requests_per_minute.is_some_and(|l| reqs > l);
            let over_t = b.tokens_per_minute.is_some_and(|l| toks > l);
            if over_r || over_t {
                metrics::counter!("phigate_rate_limited_total").increment(1);
                // A refused request spends no budget: its tokens go back to every bucket that
                // counted them (the attempt still counts against request rates).
                if tokens > 0 {
                    for key in counted {
                        self.refund(key, window, tokens).await;
                    }
                }
                return Err(ApiError::RateLimited { retry_after_secs: secs_to_next_minute() });
            }
        }
        Ok(())
    }

    /// Gives `tokens` back to a bucket (best effort: a refund that cannot reach Redis leaves
    /// the budget spent, the safe side).
    async fn refund(&self, key: &str, window: u64, tokens: u64) {
        if let Some(r) = &self.redis {
            if let Ok(mut conn) = connect(r).await {
                let tk = format!("phigate:rl:{window}:{key}:t");
                let mut cmd = redis::cmd("DECRBY");
                cmd.arg(&tk).arg(tokens);
                let fut = cmd.query_async::<i64>(&mut conn);
                if matches!(
                    tokio::time::timeout(std::time::Duration::from_secs(2), fut).await,
                    Ok(Ok(_))
                ) {
                    return;
                }
                reset(r).await;
            }
            if !r.allow_local_fallback {
                return;
            }
        }
        let mut m = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = m.get_mut(&format!("{window}|{key}")) {
            e.1 = e.1.saturating_sub(tokens);
        }
    }

    async fn count(&self, key: &str, window: u64, tokens: u64) -> Result<(u64, u64), ApiError> {
        if let Some(r) = &self.redis {
            match redis_count(r, key, window, tokens).await {
                Ok(v) => return Ok(v),
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
        e.0 += 1;
        e.1 += tokens;
        Ok(*e)
    }
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
}
