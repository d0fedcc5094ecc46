//! Gateway integration tests: a real local upstream, the real phigate stack.

mod budgets;
mod connections;
mod flows;
mod harness;
mod openai_sdk;
mod ops;
mod refusals;
