//! The OpenAI-compatible gateway: authenticates, applies use-case policy, scans and tokenizes PHI, routes only to eligible providers, re-identifies answers for allowed roles (streaming too), and records every request in the ledger.
//!
//! What it must never do: forward anything when a check could not run (fail closed), relay an
//! upstream's error body, or put a PHI value in a log line, an error, a metric or the ledger.
//!
//! # One request ([`app()`])
//!
//! read the body under `server.max_body_bytes` → authenticate (API key or OIDC JWT, `policy`)
//! → decide (use case, model, handling per category) → rate limits ([`limits`], Redis when
//! configured) → prompt-injection rules ([`injection`]) → scan every text ([`phiops`], a
//! [`Detector`] panic is `scanner_unavailable`) → block / redact / tokenize (vault) / pass to
//! private deployments → route ([`upstream`]: fallback, retries, weights, cool-down) → answer:
//! new-PHI scan and role-gated restoration ([`output`], SSE rewritten event by event) → one
//! ledger record. Every refusal is an [`ApiError`], turned into OpenAI's error shape in one place.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = policy::Config::load(std::path::Path::new("phigate.yaml"))?;
//! let running = gateway::open(policy::Policy::new(config)?).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! gateway::serve(running.state.clone(), listener, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod app;
pub mod error;
pub mod injection;
pub mod limits;
pub mod output;
pub mod phiops;
pub mod serve;
pub mod state;
pub mod telemetry;
pub mod textcache;
pub mod upstream;

pub use app::app;
pub use error::{ApiError, Error};
pub use serve::{open, reload, serve, Running};
pub use state::{AppState, Detector};

#[cfg(test)]
mod tests {
    #[test]
    fn shared_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<crate::AppState>();
        check::<crate::ApiError>();
        check::<crate::upstream::Upstreams>();
        check::<crate::limits::Limiter>();
        check::<crate::output::StreamRewriter>();
    }
}
