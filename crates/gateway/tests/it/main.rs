//! Gateway integration tests: a real local upstream, the real phigate stack.

mod budgets;
mod flows;
mod harness;
mod openai_sdk;
mod ops;
mod refusals;
