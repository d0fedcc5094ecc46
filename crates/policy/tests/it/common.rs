//! Helpers: a directory with the secret files the example configuration names.

use std::path::Path;

use base64::Engine as _;

pub const HMAC_ENV: &str = "PHIGATE_AUDIT_HMAC_KEY";

/// Writes `phigate-data/ledger.key` and `phigate-data/vault.kek` under `dir`, sets the HMAC
/// environment variable, and returns the example configuration's text.
pub fn example_setup(dir: &Path) -> String {
    let b64 = |n: u8| base64::engine::general_purpose::STANDARD.encode([n; 32]);
    std::fs::create_dir_all(dir.join("phigate-data")).unwrap();
    std::fs::write(dir.join("phigate-data/ledger.key"), b64(1)).unwrap();
    std::fs::write(dir.join("phigate-data/vault.kek"), b64(2)).unwrap();
    // Every test sets the same value, so parallel tests cannot disagree.
    std::env::set_var(HMAC_ENV, b64(3));
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/phigate.yaml"))
        .unwrap()
}

/// The secret files of [`minimal`], in `dir`.
pub fn secrets(dir: &Path) {
    let b64 = |n: u8| base64::engine::general_purpose::STANDARD.encode([n; 32]);
    for (f, n) in [("hmac", 4), ("sign", 5), ("kek", 6)] {
        std::fs::write(dir.join(f), b64(n)).unwrap();
    }
}

/// A small valid configuration (with [`secrets`] in the base directory).
pub const MINIMAL: &str = r#"
audit: { hmac_key: "file:hmac", signing_key: "file:sign" }
vault: { kek: "file:kek" }
organization: { blocked_categories: [SSN] }
providers:
  - { name: local, kind: openai, base_url: "http://127.0.0.1:8000/v1", hosting: private }
  - name: cloud
    kind: azure
    base_url: https://example.openai.azure.com/openai
    api_version: "2024-06-01"
    hosting: cloud
    baa: { signed: true, expires: "2027-01-01" }
  - { name: nobaa, kind: openai, base_url: "https://api.example.com/v1", hosting: cloud }
models:
  - name: chat
    deployments:
      - { provider: cloud, model: gpt-4o }
      - { provider: nobaa, model: gpt-4o }
      - { provider: local, model: llama }
  - { name: other, deployments: [{ provider: local, model: llama }] }
roles: [clinician, researcher]
use_cases:
  - name: notes
    purpose: treatment
    roles: [clinician]
    models: [chat]
    phi: { default: tokenize, categories: { DATE: redact } }
    output: { reidentify_roles: [clinician] }
  - name: research
    purpose: research
    roles: [researcher]
    models: [chat, other]
    phi: { default: redact, categories: { LOCATION: private_only } }
"#;
