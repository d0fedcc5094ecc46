//! OIDC bearer tokens: RS256 or ES256 JWTs checked against a JWKS (a file, or a URL fetched
//! with a timeout and cached), with issuer, audience and expiry checked. The identity and the
//! roles come from configurable claims. Errors never contain the token.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::model::OidcConfig;
use crate::{AuthKind, Denial, Identity};

/// Longest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Timeout of one JWKS fetch.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// An unknown `kid` refetches a URL JWKS at most this often.
pub const JWKS_REFETCH_MIN: Duration = Duration::from_secs(30);

/// Where the JWKS comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    /// A local file.
    File(PathBuf),
    /// An `https://` URL (`http://` only for loopback).
    Url(url::Url),
}

impl JwksSource {
    /// Parses `file:PATH` or a URL.
    pub fn parse(s: &str, base_dir: &Path) -> Result<JwksSource, String> {
        let s = s.trim();
        if let Some(p) = s.strip_prefix("file:") {
            if p.is_empty() {
                return Err("empty path after file:".into());
            }
            return Ok(JwksSource::File(crate::secret::join_clean(base_dir, p)));
        }
        let u = url::Url::parse(s).map_err(|_| {
            format!("is neither file:PATH nor a URL ({})", crate::load::url_problem(s))
        })?;
        match u.scheme() {
            "https" if u.host().is_some() => Ok(JwksSource::Url(u)),
            "http" if crate::load::is_loopback(&u) => Ok(JwksSource::Url(u)),
            "http" => Err("a JWKS URL must be https (http only to localhost)".into()),
            _ => Err(format!(
                "is neither file:PATH nor an https URL ({})",
                crate::load::url_problem(s)
            )),
        }
    }
}

fn parse_jwks(bytes: &[u8]) -> Result<JwkSet, String> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err("the JWKS is larger than 1 MiB".into());
    }
    let set: JwkSet =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
    if !set.keys.iter().any(|k| alg_of(k).is_some()) {
        return Err("the JWKS holds no RS256 or ES256 key".into());
    }
    Ok(set)
}

/// Reads and parses a JWKS file.
pub(crate) fn read_jwks_file(path: &Path) -> Result<JwkSet, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read JWKS file {}: {}", path.display(), e.kind()))?;
    parse_jwks(&bytes)
}

/// The algorithm a key is used with: RS256 for RSA keys, ES256 for P-256 keys, none else; and
/// none for a key its issuer marked for another use than verifying signatures (`use` other
/// than `sig`, or `key_ops` without `verify`).
fn alg_of(k: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    use jsonwebtoken::jwk::{
        AlgorithmParameters, EllipticCurve, KeyAlgorithm, KeyOperations, PublicKeyUse,
    };
    if k.common.public_key_use.as_ref().is_some_and(|u| *u != PublicKeyUse::Signature) {
        return None;
    }
    if k.common.key_operations.as_ref().is_some_and(|ops| !ops.contains(&KeyOperations::Verify)) {
        return None;
    }
    let by_type = match &k.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        _ => return None,
    };
    match k.common.key_algorithm {
        None => Some(by_type),
        Some(KeyAlgorithm::RS256) if by_type == Algorithm::RS256 => Some(by_type),
        Some(KeyAlgorithm::ES256) if by_type == Algorithm::ES256 => Some(by_type),
        Some(_) => None,
    }
}

struct Cached {
    set: JwkSet,
    fetched: Instant,
}

/// After a failed fetch, requests are refused without fetching again for this long (an
/// outage of the issuer must not turn into a flood of fetches).
pub const JWKS_RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);

/// Checks tokens for one `oidc:` section.
///
/// The fetched set is read without waiting for anything: only a request that needs a fetch
/// (the set is past `jwks_cache_secs`, or a `kid` it does not hold) takes the fetch lock, one
/// fetch at a time. While one runs, a request whose key is in the set in hand uses it, though
/// the set may be past its time by up to one fetch's timeout; nobody else waits on the fetch.
pub(crate) struct Verifier {
    cfg: OidcConfig,
    source: JwksSource,
    file_set: Option<JwkSet>,
    cache: RwLock<Option<Arc<Cached>>>,
    fetching: tokio::sync::Mutex<()>,
    failed: Mutex<Option<Instant>>,
    client: reqwest::Client,
}

impl Verifier {
    pub(crate) fn new(cfg: &OidcConfig, base_dir: &Path) -> Result<Verifier, String> {
        let source = JwksSource::parse(&cfg.jwks, base_dir)?;
        let file_set = match &source {
            JwksSource::File(p) => Some(read_jwks_file(p)?),
            JwksSource::Url(_) => None,
        };
        let client = reqwest::Client::builder()
            .timeout(JWKS_FETCH_TIMEOUT)
            .connect_timeout(JWKS_FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Verifier {
            cfg: cfg.clone(),
            source,
            file_set,
            cache: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
            failed: Mutex::new(None),
            client,
        })
    }

    async fn fetch(&self, url: &url::Url) -> Result<JwkSet, Denial> {
        let resp = self.client.get(url.clone()).send().await.map_err(|e| {
            tracing::warn!(error = %e, "JWKS fetch failed");
            Denial::AuthUnavailable
        })?;
        if !resp.status().is_success() {
            tracing::warn!(status = %resp.status(), "JWKS fetch refused");
            return Err(Denial::AuthUnavailable);
        }
        if resp.content_length().is_some_and(|l| l > MAX_JWKS_BYTES as u64) {
            return Err(Denial::AuthUnavailable);
        }
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|_| Denial::AuthUnavailable)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                tracing::warn!("JWKS larger than the limit");
                return Err(Denial::AuthUnavailable);
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body).map_err(|m| {
            tracing::warn!(problem = %m, "JWKS unusable");
            Denial::AuthUnavailable
        })
    }

    /// The key for `kid` (or the only usable key when the token names none).
    async fn key_for(&self, kid: Option<&str>) -> Result<jsonwebtoken::jwk::Jwk, Denial> {
        let pick = |set: &JwkSet| -> Option<jsonwebtoken::jwk::Jwk> {
            match kid {
                Some(k) => set.find(k).cloned(),
                None => {
                    let usable: Vec<_> = set.keys.iter().filter(|k| alg_of(k).is_some()).collect();
                    (usable.len() == 1).then(|| usable[0].clone())
                }
            }
        };
        let url = match &self.source {
            JwksSource::File(_) => {
                return self.file_set.as_ref().and_then(pick).ok_or(Denial::InvalidToken);
            }
            JwksSource::Url(u) => u,
        };
        let ttl = Duration::from_secs(self.cfg.jwks_cache_secs);
        let cached = self.cached();
        if let Some(c) = cached.as_ref().filter(|c| c.fetched.elapsed() < ttl) {
            if let Some(k) = pick(&c.set) {
                return Ok(k);
            }
            // Unknown kid: the issuer may have rotated; refetch, but not too often.
            if c.fetched.elapsed() < JWKS_REFETCH_MIN {
                return Err(Denial::InvalidToken);
            }
        }
        let _fetch = match self.fetching.try_lock() {
            Ok(g) => g,
            Err(_) => {
                // Another request is fetching: the set in hand serves its keys meanwhile.
                let usable =
                    cached.as_ref().filter(|c| c.fetched.elapsed() < ttl + JWKS_FETCH_TIMEOUT);
                if let Some(k) = usable.and_then(|c| pick(&c.set)) {
                    return Ok(k);
                }
                let g = self.fetching.lock().await;
                // That fetch may have brought what this request needs.
                if let Some(c) = self.cached().filter(|c| c.fetched.elapsed() < ttl) {
                    let newer = cached.as_ref().is_none_or(|old| !Arc::ptr_eq(old, &c));
                    if newer {
                        return pick(&c.set).ok_or(Denial::InvalidToken);
                    }
                }
                g
            }
        };
        let recently_failed = |f: &Mutex<Option<Instant>>| {
            f.lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|t| t.elapsed() < JWKS_RETRY_AFTER_FAILURE)
        };
        if recently_failed(&self.failed) {
            return Err(Denial::AuthUnavailable);
        }
        match self.fetch(url).await {
            Err(e) => {
                *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                Err(e)
            }
            Ok(set) => {
                *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = None;
                let k = pick(&set);
                *self.cache.write().unwrap_or_else(|p| p.into_inner()) =
                    Some(Arc::new(Cached { set, fetched: Instant::now() }));
                k.ok_or(Denial::InvalidToken)
            }
        }
    }

    fn cached(&self) -> Option<Arc<Cached>> {
        self.cache.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) async fn verify(
        &self,
        token: &str,
        known_roles: &[String],
    ) -> Result<Identity, Denial> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Denial::InvalidToken)?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(Denial::InvalidToken);
        }
        let jwk = self.key_for(header.kid.as_deref()).await?;
        if alg_of(&jwk) != Some(header.alg) {
            return Err(Denial::InvalidToken);
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| Denial::InvalidToken)?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[self.cfg.issuer.as_str()]);
        v.set_audience(&[self.cfg.audience.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = self.cfg.leeway_secs;
        v.validate_nbf = true;
        let data =
            jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => Denial::TokenExpired,
                    _ => Denial::InvalidToken,
                }
            })?;
        let claims = data.claims;
        // A numeric claim (some issuers' staff numbers) is its decimal digits.
        let number;
        let raw_id = match claims.get(&self.cfg.identity_claim) {
            Some(serde_json::Value::String(s)) => s.as_str(),
            Some(serde_json::Value::Number(n)) if n.is_u64() => {
                number = n.to_string();
                number.as_str()
            }
            _ => {
                tracing::warn!(
                    "a valid token has no string oidc.identity_claim: refused (check the claim's name)"
                );
                return Err(Denial::InvalidToken);
            }
        };
        if raw_id.starts_with("svc:") && !self.cfg.service_identities {
            tracing::warn!(
                "a valid token claims a service identity and oidc.service_identities is off: refused"
            );
            return Err(Denial::InvalidToken);
        }
        let id = if raw_id.starts_with("user:") || raw_id.starts_with("svc:") {
            raw_id.to_string()
        } else {
            format!("user:{raw_id}")
        };
        if crate::keys::validate_identity(&id).is_err() {
            // The rule, never the value (an identity may be an e-mail address).
            tracing::warn!(
                "a valid token's identity claim breaks the identity rules (1 to 128 of letters, digits, . _ @ - | + = ~): refused"
            );
            return Err(Denial::InvalidToken);
        }
        let roles: Vec<String> = match claims.get(&self.cfg.roles_claim) {
            Some(serde_json::Value::Array(a)) => {
                a.iter().filter_map(|v| v.as_str()).map(str::to_string).collect()
            }
            Some(serde_json::Value::String(s)) => {
                s.split_whitespace().map(str::to_string).collect()
            }
            _ => Vec::new(),
        };
        let mut roles: Vec<String> =
            roles.into_iter().filter(|r| known_roles.contains(r)).collect();
        roles.sort();
        roles.dedup();
        let default_use_case = self
            .cfg
            .use_case_claim
            .as_ref()
            .and_then(|c| claims.get(c))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        Ok(Identity { id, roles, default_use_case, key_id: None, via: AuthKind::Jwt })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        let b = Path::new("/etc/phigate");
        assert_eq!(
            JwksSource::parse("file:jwks.json", b).unwrap(),
            JwksSource::File(PathBuf::from("/etc/phigate/jwks.json"))
        );
        assert!(JwksSource::parse("https://login.example.org/jwks", b).is_ok());
        assert!(JwksSource::parse("http://127.0.0.1:9000/jwks", b).is_ok());
        assert!(JwksSource::parse("http://login.example.org/jwks", b).is_err());
        assert!(JwksSource::parse("ftp://x/y", b).is_err());
        assert!(JwksSource::parse("jwks.json", b).is_err());
        // A refused URL is described, never echoed: it may hold a password.
        for bad in ["https://u:hunter2@lo gin.example.org/jwks", "ldap://u:hunter2@x/y"] {
            let e = JwksSource::parse(bad, b).unwrap_err();
            assert!(!e.contains("hunter2") && e.contains('('), "{e}");
        }
    }

    #[test]
    fn jwks_without_usable_keys_is_refused() {
        assert!(parse_jwks(br#"{"keys":[]}"#).is_err());
        assert!(parse_jwks(b"not json").is_err());
    }
}
