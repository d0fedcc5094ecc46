//! Who may do what: the phigate configuration (one YAML file), identities (API keys, OIDC
//! JWTs), roles, use cases as scope statements, providers with their BAA state, and the
//! decision for one request.
//!
//! This crate runs no HTTP server and calls no upstream; it reads the configuration (and the
//! secret files it names), reads and writes API keys through [`store::Store`], and may fetch a
//! JWKS URL. It must never let a request weaken what an administrator set: the handling of
//! every PHI category is the strictest of the organization's, the use case's and the
//! request's. It never puts a key, a token, a secret or PHI in an error, a log or `Debug`.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use policy::{Config, Handling, Identity, AuthKind, Policy, RequestMeta};
//! let dir = tempfile::tempdir()?;
//! for (f, bytes) in [("hmac", 32), ("sign", 32), ("kek", 32)] {
//!     use base64::Engine as _;
//!     std::fs::write(dir.path().join(f), base64::engine::general_purpose::STANDARD.encode(vec![7u8; bytes]))?;
//! }
//! let yaml = r#"
//! audit: { hmac_key: "file:hmac", signing_key: "file:sign" }
//! vault: { kek: "file:kek" }
//! organization: { blocked_categories: [SSN] }
//! providers:
//!   - { name: local, kind: openai, base_url: "http://127.0.0.1:8000/v1", hosting: private }
//! models:
//!   - { name: chat, deployments: [{ provider: local, model: llama }] }
//! roles: [clinician]
//! use_cases:
//!   - name: notes
//!     purpose: treatment
//!     roles: [clinician]
//!     models: [chat]
//!     phi: { default: tokenize, categories: { DATE: redact } }
//! "#;
//! let policy = Policy::new(Config::from_yaml(yaml, dir.path())?)?;
//! let who = Identity { id: "user:jdoe".into(), roles: vec!["clinician".into()],
//!     default_use_case: Some("notes".into()), key_id: None, via: AuthKind::ApiKey };
//! let req = RequestMeta { model: "chat".into(), use_case: None, tighten: None };
//! let d = policy.decide(&who, &req, time::OffsetDateTime::now_utc())?;
//! assert_eq!(d.handling_of(phi::Category::Ssn), Handling::Block);      // organization
//! assert_eq!(d.handling_of(phi::Category::Date), Handling::Redact);    // use case
//! assert_eq!(d.handling_of(phi::Category::Name), Handling::Tokenize);  // default
//! assert_eq!(policy.eligible(&d, true, time::OffsetDateTime::now_utc()).len(), 1);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod decide;
mod error;
mod keys;
mod load;
mod model;
mod oidc;
mod peek;
mod problems;
mod secret;

use std::path::Path;

pub use decide::{
    baa_valid, AuthKind, Decision, Deployment, Identity, Policy, RequestMeta, CATEGORIES,
};
pub use error::{Denial, Error};
pub use keys::{
    create_key, list_keys, parse_key, revoke_key, validate_identity, KeyInfo, KEY_ID_LEN,
};
pub use load::parse_instant;
pub use model::{
    AuditConfig, Baa, Config, DeploymentConfig, Handling, Hosting, InjectionMode, Limit, Model,
    NewPhi, OidcConfig, Organization, OutputScope, PhiScope, Provider, ProviderKind, Purpose,
    RedisConfig, ServerConfig, SqliteSyncMode, StoreConfig, StreamScan, UseCase, VaultConfig,
    DEFAULT_LEDGER_ORIGIN,
};
pub use oidc::{
    JwksSource, JWKS_FETCH_TIMEOUT, JWKS_REFETCH_MIN, JWKS_RETRY_AFTER_FAILURE, MAX_JWKS_BYTES,
};
pub use peek::{peek, Peek};
pub use problems::{ConfigErrors, ConfigProblem};
pub use secret::{Secret, SecretSource};

/// Largest configuration file read.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// A configuration file's text (at most [`MAX_CONFIG_BYTES`]) and its directory, made
/// absolute: relative paths in it are taken from there. `Err` names the file, never its text.
pub(crate) fn read_config(path: &Path) -> Result<(String, std::path::PathBuf), String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(format!("larger than {MAX_CONFIG_BYTES} bytes"));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?;
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let base = std::path::absolute(&base).unwrap_or(base);
    Ok((text, base))
}

/// The store URL of a configuration: `store.url` (`url`; a relative SQLite path taken from
/// `base_dir`), else `phigate.db` in `data_dir`.
pub(crate) fn store_url_in(url: Option<&str>, base_dir: &Path, data_dir: &Path) -> String {
    match url {
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => u.to_string(),
        Some(u) => {
            let path =
                u.strip_prefix("sqlite://").or_else(|| u.strip_prefix("sqlite:")).unwrap_or(u);
            base_dir.join(path).display().to_string()
        }
        None => data_dir.join("phigate.db").display().to_string(),
    }
}

impl Config {
    /// Reads, parses, resolves secrets and validates; every problem at once. Relative paths
    /// (`file:` secrets, the JWKS file, the data dir) are taken from the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let fail = |m: String| {
            ConfigErrors(vec![ConfigProblem { path: String::new(), line: None, message: m }])
        };
        let (text, base) = read_config(path).map_err(fail)?;
        Config::from_yaml(&text, &base)
    }

    /// Parses, resolves secrets (relative `file:` paths against `base_dir`) and validates;
    /// every problem at once.
    pub fn from_yaml(text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
        load::from_yaml(text, base_dir)
    }

    /// The data directory, made absolute against the config's directory.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.base_dir.join(&self.server.data_dir)
    }

    /// The store URL: `store.url` (a relative SQLite path taken from the config's directory),
    /// else `phigate.db` in the data directory.
    pub fn store_url(&self) -> String {
        store_url_in(self.store.url.as_deref(), &self.base_dir, &self.data_dir())
    }

    /// A one-line summary (counts), for `phigate config check`.
    pub fn summary(&self) -> String {
        format!(
            "{} providers, {} models, {} roles, {} use cases, {} limits, oidc {}",
            self.providers.len(),
            self.models.len(),
            self.roles.len(),
            self.use_cases.len(),
            self.limits.len(),
            if self.oidc.is_some() { "on" } else { "off" }
        )
    }
}

impl Policy {
    /// An API key (`pg_...`, checked against the store) or, when `oidc` is configured, an OIDC
    /// JWT. Fails closed: a store or JWKS that cannot be reached is a refusal.
    pub async fn authenticate(
        &self,
        store: &store::Store,
        bearer: &str,
    ) -> Result<Identity, Denial> {
        self.authenticate_at(store, bearer, time::OffsetDateTime::now_utc()).await
    }

    /// [`Policy::authenticate`] with an explicit time for API key expiry (JWT expiry uses the
    /// system clock).
    pub async fn authenticate_at(
        &self,
        store: &store::Store,
        bearer: &str,
        now: time::OffsetDateTime,
    ) -> Result<Identity, Denial> {
        let mut bearer = bearer.trim();
        if let Some(head) = bearer.get(..6) {
            let rest = &bearer[6..];
            if head.eq_ignore_ascii_case("bearer") && (rest.is_empty() || rest.starts_with(' ')) {
                bearer = rest.trim();
            }
        }
        if bearer.is_empty() {
            return Err(Denial::MissingKey);
        }
        if bearer.starts_with("pg_") {
            let mut who = keys::authenticate_key(store, &self.inner.keys, bearer, now).await?;
            who.roles.retain(|r| self.config().roles.contains(r));
            return Ok(who);
        }
        match &self.inner.oidc {
            Some(v) if bearer.matches('.').count() == 2 => {
                v.verify(bearer, &self.config().roles).await
            }
            _ => Err(Denial::InvalidKey),
        }
    }

    /// Checks that roles and a use case exist in this configuration, and that one of the roles
    /// may use the use case (for `phigate keys create`).
    pub fn check_grant(&self, roles: &[String], use_case: Option<&str>) -> Result<(), Error> {
        for r in roles {
            if !self.config().roles.contains(r) {
                return Err(Error::Invalid {
                    field: "roles",
                    reason: format!("unknown role {r:?}"),
                });
            }
        }
        if let Some(u) = use_case {
            let uc = self.use_case(u).ok_or_else(|| Error::Invalid {
                field: "use_case",
                reason: format!("unknown use case {u:?}"),
            })?;
            if !uc.roles.iter().any(|r| roles.contains(r)) {
                return Err(Error::Invalid {
                    field: "roles",
                    reason: format!("none of these roles may use {u:?}"),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod send_sync {
    fn is<T: Send + Sync + Clone>() {}
    #[test]
    fn public_types_are_send_sync() {
        is::<crate::Policy>();
        is::<crate::Config>();
        is::<crate::Decision>();
        is::<crate::Identity>();
        is::<crate::Deployment>();
        is::<crate::Secret>();
    }
}
