//! The OpenAI-compatible gateway: authenticates, applies use-case policy, scans and tokenizes PHI, routes only to eligible providers, re-identifies answers for allowed roles (streaming too), and records every request in the ledger.
//!
//! What it must never do: forward anything when a check could not run (fail closed), relay an
//! upstream's error body, or put a PHI value in a log line, an error, a metric or the ledger.

#![deny(missing_docs)]

pub mod app;
pub mod error;
pub mod injection;
pub mod limits;
pub mod output;
pub mod phiops;
pub mod serve;
pub mod state;
pub mod upstream;

pub use app::app;
pub use error::{ApiError, Error};
pub use serve::{open, reload, serve, Running};
pub use state::{AppState, Detector};
