//! API keys: `pg_<id>_<secret>`, a 256-bit random secret (base64url), shown once and stored as
//! the SHA-256 of the secret text, compared in constant time. Each key is bound to an
//! organization identity with roles, a default use case, an optional expiry and revocation.

use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::{AuthKind, Denial, Error, Identity};

/// Length of a key id (hex digits).
pub const KEY_ID_LEN: usize = 16;
const SECRET_LEN: usize = 43; // base64url of 32 bytes, unpadded

/// A stored key, without its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key id (the `<id>` of `pg_<id>_<secret>`); safe to show.
    pub id: String,
    /// The organization identity (`user:...`, `svc:...`).
    pub identity: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Default use case.
    pub use_case: Option<String>,
    /// When it was made.
    pub created: OffsetDateTime,
    /// When it stops working.
    pub expires: Option<OffsetDateTime>,
    /// When it was revoked.
    pub revoked: Option<OffsetDateTime>,
}

impl KeyInfo {
    /// Neither revoked nor expired at `now`.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.revoked.is_none() && self.expires.is_none_or_before(now)
    }
}

trait ExpiryExt {
    fn is_none_or_before(&self, now: OffsetDateTime) -> bool;
}
impl ExpiryExt for Option<OffsetDateTime> {
    fn is_none_or_before(&self, now: OffsetDateTime) -> bool {
        match self {
            Some(e) => now < *e,
            None => true,
        }
    }
}

/// Checks an organization identity: `user:` or `svc:` then 1 to 128 of
/// `A-Z a-z 0-9 . _ @ - | + = ~`: what identity providers' subjects hold (`auth0|5f1c..`, a
/// base64url subject that starts with `-` or `_`, `j.doe+ai@hospital.org`).
pub fn validate_identity(id: &str) -> Result<(), Error> {
    let rest = id.strip_prefix("user:").or_else(|| id.strip_prefix("svc:")).ok_or_else(|| {
        Error::Invalid { field: "identity", reason: "must start with user: or svc:".into() }
    })?;
    let ok = !rest.is_empty()
        && rest.len() <= 128
        && rest.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-' | '|' | '+' | '=' | '~')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            field: "identity",
            reason: "after the prefix: 1 to 128 of letters, digits, . _ @ - | + = ~".into(),
        })
    }
}

fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn from_ms(m: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(m as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn info(r: store::ApiKeyRow) -> KeyInfo {
    KeyInfo {
        id: r.id,
        identity: r.identity,
        roles: r.roles,
        use_case: r.use_case,
        created: from_ms(r.created_ms),
        expires: r.expires_ms.map(from_ms),
        revoked: r.revoked_ms.map(from_ms),
    }
}

/// Makes a key, stores its hash, and returns it with the full key text — shown once, never
/// stored. Roles and the use case are checked for form here; against a configuration by the
/// caller (`Policy::check_grant`).
pub async fn create_key(
    store: &store::Store,
    identity: &str,
    roles: &[String],
    use_case: Option<&str>,
    expires: Option<OffsetDateTime>,
) -> Result<(KeyInfo, String), Error> {
    validate_identity(identity)?;
    if roles.is_empty() {
        return Err(Error::Invalid {
            field: "roles",
            reason: "at least one role is needed".into(),
        });
    }
    for r in roles {
        if !crate::load::valid_name(r) {
            return Err(Error::Invalid {
                field: "roles",
                reason: format!("invalid role name {r:?}"),
            });
        }
    }
    if let Some(u) = use_case {
        if !crate::load::valid_name(u) {
            return Err(Error::Invalid {
                field: "use_case",
                reason: format!("invalid name {u:?}"),
            });
        }
    }
    let now = OffsetDateTime::now_utc();
    if let Some(e) = expires {
        if e <= now {
            return Err(Error::Invalid { field: "expires", reason: "is in the past".into() });
        }
    }
    let mut rng = rand::rngs::OsRng;
    let mut id_bytes = [0u8; KEY_ID_LEN / 2];
    rng.fill_bytes(&mut id_bytes);
    let id: String = id_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut secret_bytes = [0u8; 32];
    rng.fill_bytes(&mut secret_bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret_bytes);
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    let row = store::ApiKeyRow {
        id: id.clone(),
        secret_sha256: Sha256::digest(secret.as_bytes()).into(),
        identity: identity.to_string(),
        roles,
        use_case: use_case.map(str::to_string),
        created_ms: ms(now),
        expires_ms: expires.map(ms),
        revoked_ms: None,
    };
    store.api_key_put(&row).await?;
    let text = format!("pg_{id}_{secret}");
    Ok((info(row), text))
}

/// Every stored key, without secrets, in creation order.
pub async fn list_keys(store: &store::Store) -> Result<Vec<KeyInfo>, Error> {
    Ok(store.api_keys_list().await?.into_iter().map(info).collect())
}

/// Revokes a key from now on; `false` when there is no such live key.
pub async fn revoke_key(store: &store::Store, id: &str) -> Result<bool, Error> {
    Ok(store.api_key_revoke(id, ms(OffsetDateTime::now_utc())).await?)
}

/// Splits `pg_<id>_<secret>`; `None` when the form is wrong.
pub fn parse_key(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("pg_")?;
    let (id, secret) = rest.split_at_checked(KEY_ID_LEN)?;
    let secret = secret.strip_prefix('_')?;
    let id_ok = id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    let secret_ok = secret.len() == SECRET_LEN
        && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some((id, secret))
}

/// Stored key records (hashes, never secrets) read in the last `ttl`, by key id.
pub(crate) struct KeyCache {
    rows: quick_cache::sync::Cache<String, (store::ApiKeyRow, std::time::Instant)>,
    ttl: std::time::Duration,
}

impl KeyCache {
    pub(crate) fn new(ttl: std::time::Duration) -> KeyCache {
        KeyCache { rows: quick_cache::sync::Cache::new(10_000), ttl }
    }

    /// The stored record of key `id`: from memory while fresh, else from the store. Only
    /// records that exist are kept (an unknown id always reads the store).
    async fn get(
        &self,
        store: &store::Store,
        id: &str,
    ) -> Result<Option<store::ApiKeyRow>, Denial> {
        if !self.ttl.is_zero() {
            if let Some((row, at)) = self.rows.get(id) {
                if at.elapsed() < self.ttl {
                    return Ok(Some(row));
                }
            }
        }
        let row = store.api_key_get(id).await.map_err(|e| {
            tracing::warn!(error = %e, "key lookup failed");
            Denial::StoreUnavailable
        })?;
        if let (Some(r), false) = (&row, self.ttl.is_zero()) {
            self.rows.insert(id.to_owned(), (r.clone(), std::time::Instant::now()));
        }
        Ok(row)
    }
}

/// Checks an API key against the store (through `cache`) at `now`.
pub(crate) async fn authenticate_key(
    store: &store::Store,
    cache: &KeyCache,
    text: &str,
    now: OffsetDateTime,
) -> Result<Identity, Denial> {
    let (id, secret) = parse_key(text).ok_or(Denial::InvalidKey)?;
    let row = cache.get(store, id).await?;
    let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let Some(row) = row else {
        // Key ids are not secret, and timing may tell which exist (a known id is answered
        // from the cache, an unknown one asks the store): what must not leak is how much of a
        // secret matched, and that is compared in constant time below.
        let _ = presented.ct_eq(&[0u8; 32]);
        return Err(Denial::InvalidKey);
    };
    let same: bool = presented.ct_eq(&row.secret_sha256).into();
    if !same || row.revoked_ms.is_some() || row.expires_ms.is_some_and(|e| ms(now) >= e) {
        return Err(Denial::InvalidKey);
    }
    Ok(Identity {
        id: row.identity,
        roles: row.roles,
        default_use_case: row.use_case,
        key_id: Some(row.id),
        via: AuthKind::ApiKey,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities() {
        assert!(validate_identity("user:jdoe").is_ok());
        assert!(validate_identity("svc:triage-bot").is_ok());
        assert!(validate_identity("user:j.doe@hospital.org").is_ok());
        // Identity providers' subjects.
        for ok in ["user:auth0|5f1c0a", "user:-Kx_9zQ", "user:j.doe+ai@hospital.org", "user:a=b~c"]
        {
            assert!(validate_identity(ok).is_ok(), "{ok}");
        }
        for bad in ["jdoe", "user:", "admin:x", "user:a b", "svc:x/y", "user:a\0b", "user:é"] {
            assert!(validate_identity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_form() {
        let s = "A".repeat(43);
        let k = format!("pg_0123456789abcdef_{s}");
        assert_eq!(parse_key(&k), Some(("0123456789abcdef", s.as_str())));
        let with_underscore = format!("pg_0123456789abcdef_{}_", "a".repeat(42));
        assert!(parse_key(&with_underscore).is_some());
        assert!(parse_key("pg_0123456789ABCDEF_x").is_none());
        assert!(parse_key(&format!("pg_0123456789abcde_{s}")).is_none());
        assert!(parse_key("sk-123").is_none());
        assert!(parse_key("pg_é").is_none());
    }
}
