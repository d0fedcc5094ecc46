//! The OpenAI-compatible gateway: authenticates, applies use-case policy, scans and tokenizes PHI, routes only to eligible providers, re-identifies answers for allowed roles (streaming too), and records every request in the ledger.

#![deny(missing_docs)]
