//! What the ledger benches share.

use ledger::record::{Action, Decision, Hmac256, HmacKey, Record};

/// A record the size of a gateway request's: a use case, a model, a provider, a category count
/// and the request's HMAC.
pub fn record(i: u64, key: &HmacKey) -> Record {
    Record::builder("svc-bench", Action::ChatCompletion, Decision::Redact)
        .use_case("triage")
        .model("gpt-4o")
        .provider("private-vllm")
        .category(phi::Category::Name, 1 + (i % 3) as u32)
        .request_hmac(Hmac256::compute(key, &i.to_le_bytes()))
        .build()
        .expect("valid")
}
