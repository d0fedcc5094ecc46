//! Reading a configuration: parse every section, resolve secrets, check every reference and
//! value, and report every problem at once, each with its path and (where found) its line.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;
use sha2::{Digest, Sha256};

use crate::model::*;
use crate::{ConfigErrors, ConfigProblem, Secret};

const TOP: &[&str] = &[
    "server",
    "store",
    "audit",
    "vault",
    "redis",
    "organization",
    "providers",
    "models",
    "roles",
    "use_cases",
    "limits",
    "oidc",
];

struct Problems<'a> {
    text: &'a str,
    list: Vec<ConfigProblem>,
}

impl<'a> Problems<'a> {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        let line = line_of(self.text, &path);
        self.list.push(ConfigProblem { path, line, message: message.into() });
    }

    /// Deserializes one value, reporting every problem inside it with its full path: after each
    /// error the offending field is taken out (or an unknown variant replaced by a known one)
    /// and the value tried again, so one bad field does not hide the next. `None` when the value
    /// cannot be made whole (a required field missing or unusable).
    fn one<T: DeserializeOwned>(&mut self, path: &str, v: Value) -> Option<T> {
        let mut v = v;
        // Fields taken out after an error (their own "missing field" is not reported again).
        let mut removed: Vec<String> = Vec::new();
        // Missing fields given a stand-in, with the index of the one in place.
        let mut stood_in: Vec<(String, usize)> = Vec::new();
        for _ in 0..64 {
            let err = match serde_path_to_error::deserialize::<_, T>(v.clone()) {
                // Whole only if nothing had to stand in for a missing field.
                Ok(t) => return stood_in.is_empty().then_some(t),
                Err(e) => e,
            };
            let inner = err.path().to_string();
            let inner = if inner == "." { String::new() } else { inner };
            let full = if inner.is_empty() {
                path.to_string()
            } else if inner.starts_with('[') {
                format!("{path}{inner}")
            } else {
                format!("{path}.{inner}")
            };
            let msg = err.into_inner().to_string();
            // serde_yaml_ng appends its own position, which is not the file's: drop it.
            let msg = match msg.find(" at line ") {
                Some(i) => msg[..i].to_string(),
                None => msg,
            };
            // An error in a stand-in of ours: the next kind of value there, silently.
            if let Some(entry) = stood_in.iter_mut().find(|(p, _)| *p == inner) {
                let next = match first_expected(&msg) {
                    Some(variant) if msg.contains("unknown variant") => Some(variant),
                    _ => {
                        entry.1 += 1;
                        stand_ins().get(entry.1).cloned()
                    }
                };
                if next.is_some_and(|w| patch(&mut v, &inner, Some(w))) {
                    continue;
                }
                return None;
            }
            if let Some(field) = missing_field(&msg) {
                let at =
                    if inner.is_empty() { field.to_string() } else { format!("{inner}.{field}") };
                if !removed.contains(&at) {
                    self.push(full, msg.clone());
                }
                let [first, ..] = stand_ins();
                if !set_field(&mut v, &at, first) {
                    return None;
                }
                stood_in.push((at, 0));
                continue;
            }
            let replacement =
                msg.contains("unknown variant").then(|| first_expected(&msg)).flatten();
            self.push(full, msg);
            if inner.is_empty() || !patch(&mut v, &inner, replacement.clone()) {
                return None;
            }
            if replacement.is_none() {
                removed.push(inner);
            }
        }
        None
    }

    /// Deserializes every element of a sequence on its own; returns the good ones with their
    /// index, and the names (`name:`) of the bad ones so that references to them are not
    /// reported twice.
    fn list<T: DeserializeOwned>(
        &mut self,
        path: &str,
        v: Value,
    ) -> (Vec<(usize, T)>, Vec<String>) {
        let mut good = Vec::new();
        let mut bad_names = Vec::new();
        let Value::Sequence(items) = v else {
            self.push(path, "expected a list");
            return (good, bad_names);
        };
        for (i, item) in items.into_iter().enumerate() {
            let name = item.get("name").and_then(|n| n.as_str()).map(str::to_string);
            match self.one::<T>(&format!("{path}[{i}]"), item) {
                Some(t) => good.push((i, t)),
                None => bad_names.extend(name),
            }
        }
        (good, bad_names)
    }
}

/// Parses, resolves and validates (see [`Config::from_yaml`]).
pub(crate) fn from_yaml(text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let mut p = Problems { text, list: Vec::new() };
    let root: Value = match serde_yaml_ng::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let line = e.location().map(|l| l.line());
            let msg = e.to_string();
            let msg = match msg.find(" at line ") {
                Some(i) => msg[..i].to_string(),
                None => msg,
            };
            return Err(ConfigErrors(vec![ConfigProblem {
                path: String::new(),
                line,
                message: format!("not valid YAML: {msg}"),
            }]));
        }
    };
    let Value::Mapping(map) = root else {
        return Err(ConfigErrors(vec![ConfigProblem {
            path: String::new(),
            line: None,
            message: "the configuration must be a mapping of sections (server, providers, models, roles, use_cases, ...)".into(),
        }]));
    };

    let mut server = ServerConfig::default();
    let mut store = StoreConfig::default();
    let mut audit: Option<AuditConfig> = None;
    let mut vault: Option<VaultConfig> = None;
    let mut redis: Option<RedisConfig> = None;
    let mut organization = Organization::default();
    let mut providers: Vec<(usize, Provider)> = Vec::new();
    let mut models: Vec<(usize, Model)> = Vec::new();
    let mut roles: Vec<(usize, String)> = Vec::new();
    let mut use_cases: Vec<(usize, UseCase)> = Vec::new();
    let mut limits: Vec<(usize, Limit)> = Vec::new();
    let mut oidc: Option<OidcConfig> = None;
    let mut bad_providers = Vec::new();
    let mut bad_models = Vec::new();
    let mut bad_use_cases = Vec::new();
    let mut seen = BTreeSet::new();

    for (k, v) in map {
        let Some(key) = k.as_str().map(str::to_string) else {
            p.push("", "section names must be strings");
            continue;
        };
        seen.insert(key.clone());
        match key.as_str() {
            "server" => server = p.one(&key, v).unwrap_or_default(),
            "store" => store = p.one(&key, v).unwrap_or_default(),
            "audit" => audit = p.one(&key, v),
            "vault" => vault = p.one(&key, v),
            "redis" => redis = p.one::<Option<RedisConfig>>(&key, v).flatten(),
            "organization" => organization = p.one(&key, v).unwrap_or_default(),
            "providers" => (providers, bad_providers) = p.list(&key, v),
            "models" => (models, bad_models) = p.list(&key, v),
            "roles" => roles = p.list(&key, v).0,
            "use_cases" => (use_cases, bad_use_cases) = p.list(&key, v),
            "limits" => limits = p.list(&key, v).0,
            "oidc" => oidc = p.one::<Option<OidcConfig>>(&key, v).flatten(),
            _ => {
                p.push(key.clone(), format!("unknown section; expected one of {}", TOP.join(", ")))
            }
        }
    }
    for req in ["audit", "vault", "providers", "models", "roles", "use_cases"] {
        if !seen.contains(req) {
            p.push("", format!("missing section `{req}`"));
        }
    }

    // ---- server, store, redis --------------------------------------------------------------
    if server.listen.parse::<SocketAddr>().is_err() {
        p.push("server.listen", format!("{:?} is not host:port with an IP address", server.listen));
    }
    if server.max_body_bytes == 0 || server.max_body_bytes > 64 * 1024 * 1024 {
        p.push("server.max_body_bytes", "must be between 1 and 67108864");
    }
    if server.text_cache > 10_000_000 {
        p.push("server.text_cache", "must be between 0 and 10000000");
    }
    if server.read_timeout_secs == 0 || server.read_timeout_secs > 3600 {
        p.push("server.read_timeout_secs", "must be between 1 and 3600");
    }
    if server.max_connections == 0 || server.max_connections > 1_000_000 {
        p.push("server.max_connections", "must be between 1 and 1000000");
    }
    if server.shutdown_grace_secs > 3600 {
        p.push("server.shutdown_grace_secs", "must be between 0 and 3600");
    }
    if server.key_cache_secs > 300 {
        p.push("server.key_cache_secs", "must be between 0 and 300 (a revocation waits this long)");
    }
    if let Some(u) = &store.url {
        let scheme_ok = u.starts_with("sqlite:")
            || u.starts_with("postgres://")
            || u.starts_with("postgresql://")
            || !u.contains("://");
        if u.trim().is_empty() || !scheme_ok {
            p.push("store.url", "expected sqlite://PATH, a file path, or postgres://...");
        }
    }
    if let Some(r) = &redis {
        match url::Url::parse(&r.url) {
            Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host().is_some() => {}
            _ => p.push("redis.url", "expected redis://HOST:PORT or rediss://HOST:PORT"),
        }
    }

    // ---- secrets: audit, vault, providers ---------------------------------------------------
    let mut secret_digests: Vec<[u8; 32]> = Vec::new();
    let mut resolve =
        |p: &mut Problems, path: &str, s: &mut Secret, need_len: Option<(usize, bool)>| match s
            .resolve(base_dir)
        {
            Err(m) => p.push(path, m),
            Ok(()) => {
                secret_digests.push(Sha256::digest(s.expose().as_bytes()).into());
                if let Some((n, exact)) = need_len {
                    match base64::engine::general_purpose::STANDARD.decode(s.expose()) {
                        Err(_) => p.push(path, "must be standard base64"),
                        Ok(b) if exact && b.len() != n => {
                            p.push(path, format!("must be the base64 of exactly {n} bytes"))
                        }
                        Ok(b) if b.len() < n => {
                            p.push(path, format!("must be the base64 of at least {n} bytes"))
                        }
                        Ok(_) => {}
                    }
                }
            }
        };
    if let Some(a) = audit.as_mut() {
        resolve(&mut p, "audit.hmac_key", &mut a.hmac_key, Some((32, false)));
        resolve(&mut p, "audit.signing_key", &mut a.signing_key, Some((32, true)));
        if a.checkpoint_interval_secs == 0 || a.checkpoint_interval_secs > 86_400 {
            p.push("audit.checkpoint_interval_secs", "must be between 1 and 86400");
        }
        let o = &a.origin;
        if o.is_empty() || o.len() > 128 || o.contains(|c: char| c.is_whitespace() || c == '+') {
            p.push("audit.origin", "must be 1 to 128 bytes, without spaces or '+'");
        }
    }
    if let Some(v) = vault.as_mut() {
        resolve(&mut p, "vault.kek", &mut v.kek, Some((32, true)));
        for (i, k) in v.previous_keks.iter_mut().enumerate() {
            resolve(&mut p, &format!("vault.previous_keks[{i}]"), k, Some((32, true)));
        }
        if v.retention_secs < 60 || v.retention_secs > 10 * 366 * 86_400 {
            p.push("vault.retention_secs", "must be between 60 and 316224000 (ten years)");
        }
        if v.row_cache > 10_000_000 {
            p.push("vault.row_cache", "must be between 0 and 10000000");
        }
        if v.key_state_ms > 60_000 {
            p.push("vault.key_state_ms", "must be between 0 and 60000 (a shred waits this long)");
        }
    }

    // ---- organization ----------------------------------------------------------------------
    organization.blocked_categories.clear();
    for (i, c) in organization.raw_blocked.iter().enumerate() {
        match c.parse::<phi::Category>() {
            Ok(c) => organization.blocked_categories.push(c),
            Err(e) => p.push(format!("organization.blocked_categories[{i}]"), e.to_string()),
        }
    }
    organization.categories =
        categories(&mut p, "organization.categories", &organization.raw_categories);
    if !organization.require_baa_for_phi {
        p.push(
            "organization.require_baa_for_phi",
            "cannot be turned off: a provider without a valid BAA never receives PHI",
        );
    }

    // ---- roles -----------------------------------------------------------------------------
    let mut role_set = BTreeSet::new();
    for (i, r) in &roles {
        if !valid_name(r) {
            p.push(
                format!("roles[{i}]"),
                format!("invalid role name {r:?} (letters, digits, - and _)"),
            );
        } else if !role_set.insert(r.clone()) {
            p.push(format!("roles[{i}]"), format!("duplicate role {r:?}"));
        }
    }

    // ---- providers -------------------------------------------------------------------------
    let mut provider_names: BTreeSet<String> = bad_providers.into_iter().collect();
    for (i, pr) in providers.iter_mut() {
        let at = format!("providers[{i}]");
        if !valid_name(&pr.name) {
            p.push(format!("{at}.name"), format!("invalid name {:?}", pr.name));
        } else if !provider_names.insert(pr.name.clone()) {
            p.push(format!("{at}.name"), format!("duplicate provider {:?}", pr.name));
        }
        match url::Url::parse(&pr.base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if pr.hosting == Hosting::Cloud && u.scheme() != "https" && !is_loopback(&u) {
                    p.push(format!("{at}.base_url"), "a cloud provider must be reached over https");
                }
                if !u.username().is_empty() || u.password().is_some() {
                    p.push(
                        format!("{at}.base_url"),
                        "credentials belong in api_key, not in the URL",
                    );
                }
            }
            _ => p.push(
                format!("{at}.base_url"),
                format!("is not an http(s) URL ({})", url_problem(&pr.base_url)),
            ),
        }
        if let Some(k) = pr.api_key.as_mut() {
            resolve(&mut p, &format!("{at}.api_key"), k, None);
        }
        match (pr.kind, &pr.api_version) {
            (ProviderKind::Azure, None) => {
                p.push(format!("{at}.api_version"), "required for kind azure")
            }
            (ProviderKind::Openai, Some(_)) => {
                p.push(format!("{at}.api_version"), "only for kind azure")
            }
            _ => {}
        }
        if let Some(e) = &pr.baa.expires {
            match parse_instant(e) {
                Some(t) => pr.baa.expires_at = Some(t),
                None => p.push(
                    format!("{at}.baa.expires"),
                    format!("{e:?} is not a date (YYYY-MM-DD) or an RFC 3339 time"),
                ),
            }
        }
        if pr.timeout_ms == 0 || pr.timeout_ms > 600_000 {
            p.push(format!("{at}.timeout_ms"), "must be between 1 and 600000");
        }
        if pr.retries > 10 {
            p.push(format!("{at}.retries"), "must be at most 10");
        }
    }

    // ---- models ----------------------------------------------------------------------------
    let mut model_names: BTreeSet<String> = bad_models.into_iter().collect();
    for (i, m) in &models {
        let at = format!("models[{i}]");
        if m.name.trim().is_empty() || m.name.len() > 200 {
            p.push(format!("{at}.name"), "must be 1 to 200 characters");
        } else if !model_names.insert(m.name.clone()) {
            p.push(format!("{at}.name"), format!("duplicate model {:?}", m.name));
        }
        if m.deployments.is_empty() {
            p.push(format!("{at}.deployments"), "at least one deployment is needed");
        }
        for (j, d) in m.deployments.iter().enumerate() {
            if !provider_names.contains(&d.provider) {
                p.push(
                    format!("{at}.deployments[{j}].provider"),
                    format!("unknown provider {:?}", d.provider),
                );
            }
            if d.model.trim().is_empty() {
                p.push(format!("{at}.deployments[{j}].model"), "must not be empty");
            }
        }
    }

    // ---- use cases -------------------------------------------------------------------------
    let mut uc_names: BTreeSet<String> = bad_use_cases.into_iter().collect();
    for (i, uc) in use_cases.iter_mut() {
        let at = format!("use_cases[{i}]");
        if !valid_name(&uc.name) {
            p.push(
                format!("{at}.name"),
                format!("invalid name {:?} (letters, digits, - and _)", uc.name),
            );
        } else if !uc_names.insert(uc.name.clone()) {
            p.push(format!("{at}.name"), format!("duplicate use case {:?}", uc.name));
        }
        if uc.roles.is_empty() {
            p.push(format!("{at}.roles"), "at least one role is needed");
        }
        for (j, r) in uc.roles.iter().enumerate() {
            if !role_set.contains(r) {
                p.push(format!("{at}.roles[{j}]"), format!("unknown role {r:?}"));
            }
        }
        if uc.models.is_empty() {
            p.push(format!("{at}.models"), "at least one model is needed");
        }
        for (j, m) in uc.models.iter().enumerate() {
            if !model_names.contains(m) {
                p.push(format!("{at}.models[{j}]"), format!("unknown model {m:?}"));
            }
        }
        uc.phi.categories =
            categories(&mut p, &format!("{at}.phi.categories"), &uc.phi.raw_categories);
        for (j, r) in uc.output.reidentify_roles.iter().enumerate() {
            if !role_set.contains(r) {
                p.push(format!("{at}.output.reidentify_roles[{j}]"), format!("unknown role {r:?}"));
            } else if !uc.roles.contains(r) {
                p.push(
                    format!("{at}.output.reidentify_roles[{j}]"),
                    format!("role {r:?} is not among this use case's roles"),
                );
            }
        }
    }

    // ---- limits ----------------------------------------------------------------------------
    // Two entries for one role or use case would count each request twice in one bucket.
    let mut limit_of: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (i, l) in &limits {
        let at = format!("limits[{i}]");
        match (&l.role, &l.use_case) {
            (Some(r), None) => {
                if !role_set.contains(r) {
                    p.push(format!("{at}.role"), format!("unknown role {r:?}"));
                } else if let Some(j) = limit_of.insert(("role", r.as_str()), *i) {
                    p.push(
                        format!("{at}.role"),
                        format!(
                            "role {r:?} already has a limit (limits[{j}]): put both in one entry"
                        ),
                    );
                }
            }
            (None, Some(u)) => {
                if !uc_names.contains(u) {
                    p.push(format!("{at}.use_case"), format!("unknown use case {u:?}"));
                } else if let Some(j) = limit_of.insert(("use_case", u.as_str()), *i) {
                    p.push(
                        format!("{at}.use_case"),
                        format!("use case {u:?} already has a limit (limits[{j}]): put both in one entry"),
                    );
                }
            }
            _ => p.push(at.clone(), "give exactly one of role or use_case"),
        }
        if l.requests_per_minute.is_none() && l.tokens_per_minute.is_none() {
            p.push(at.clone(), "give requests_per_minute, tokens_per_minute or both");
        }
        if l.requests_per_minute == Some(0) {
            p.push(format!("{at}.requests_per_minute"), "must be at least 1");
        }
        if l.tokens_per_minute == Some(0) {
            p.push(format!("{at}.tokens_per_minute"), "must be at least 1");
        }
    }

    // ---- oidc ------------------------------------------------------------------------------
    if let Some(o) = oidc.as_mut() {
        if o.issuer.trim().is_empty() {
            p.push("oidc.issuer", "must not be empty");
        }
        if o.audience.trim().is_empty() {
            p.push("oidc.audience", "must not be empty");
        }
        for (name, v) in [("identity_claim", &o.identity_claim), ("roles_claim", &o.roles_claim)] {
            if v.trim().is_empty() {
                p.push(format!("oidc.{name}"), "must not be empty");
            }
        }
        if o.jwks_cache_secs == 0 || o.jwks_cache_secs > 86_400 {
            p.push("oidc.jwks_cache_secs", "must be between 1 and 86400");
        }
        if o.leeway_secs > 300 {
            p.push("oidc.leeway_secs", "must be at most 300");
        }
        match crate::oidc::JwksSource::parse(&o.jwks, base_dir) {
            Ok(src) => {
                if let crate::oidc::JwksSource::File(path) = &src {
                    if let Err(m) = crate::oidc::read_jwks_file(path) {
                        p.push("oidc.jwks", m);
                    }
                }
            }
            Err(m) => p.push("oidc.jwks", m),
        }
    }

    if !p.list.is_empty() {
        let mut list = p.list;
        list.sort_by_key(|x| x.line.unwrap_or(0));
        return Err(ConfigErrors(list));
    }
    let (Some(audit), Some(vault)) = (audit, vault) else {
        return Err(ConfigErrors(vec![ConfigProblem {
            path: String::new(),
            line: None,
            message: "missing audit or vault section".into(),
        }]));
    };
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    for d in &secret_digests {
        h.update(d);
    }
    let version = hex_prefix(&h.finalize());
    Ok(Config {
        server,
        store,
        audit,
        vault,
        redis,
        organization,
        providers: providers.into_iter().map(|x| x.1).collect(),
        models: models.into_iter().map(|x| x.1).collect(),
        roles: roles.into_iter().map(|x| x.1).collect(),
        use_cases: use_cases.into_iter().map(|x| x.1).collect(),
        limits: limits.into_iter().map(|x| x.1).collect(),
        oidc,
        base_dir: base_dir.to_path_buf(),
        version,
    })
}

/// The field a "missing field `x`" message names.
fn missing_field(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("missing field `")?;
    Some(&rest[..rest.find('`')?])
}

/// The first variant named after "expected" in a serde message.
fn first_expected(msg: &str) -> Option<Value> {
    let rest = &msg[msg.find("expected")?..];
    let start = rest.find('`')? + 1;
    let len = rest[start..].find('`')?;
    Some(Value::String(rest[start..start + len].to_string()))
}

/// Takes the field at `inner` (`a.b[2].c`) out of `v`, or sets it to `with`. `false` when the
/// path cannot be followed or ends in a list index (removing an element would shift the
/// indexes of the problems after it).
fn patch(v: &mut Value, inner: &str, with: Option<Value>) -> bool {
    let Some((m, key)) = field_of(v, inner) else { return false };
    match with {
        Some(w) if m.contains_key(&key) => {
            m.insert(key, w);
            true
        }
        _ => m.remove(&key).is_some(),
    }
}

/// Puts `with` at `path` (a field of a mapping), whether or not it is there.
fn set_field(v: &mut Value, path: &str, with: Value) -> bool {
    let Some((m, key)) = field_of(v, path) else { return false };
    m.insert(key, with);
    true
}

/// The mapping that holds the field at `path` (`a.b[2].c`), and the field's key.
fn field_of<'v>(v: &'v mut Value, path: &str) -> Option<(&'v mut serde_yaml_ng::Mapping, Value)> {
    enum Seg<'a> {
        Key(&'a str),
        Index(usize),
    }
    let mut segs = Vec::new();
    for part in path.split('.') {
        let (key, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            segs.push(Seg::Key(key));
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            segs.push(Seg::Index(idx.trim_end_matches(']').parse().ok()?));
        }
    }
    let (Seg::Key(last), parents) = segs.split_last()? else { return None };
    let mut cur = v;
    for p in parents {
        cur = match p {
            Seg::Key(k) => cur.get_mut(*k)?,
            Seg::Index(i) => cur.get_mut(*i)?,
        };
    }
    let Value::Mapping(m) = cur else { return None };
    Some((m, Value::String((*last).to_string())))
}

/// Values tried in turn in place of a missing field, so that the rest of its value is still
/// checked: one of them has the field's type (an unknown variant is then replaced by a known
/// one). The value stays refused.
fn stand_ins() -> [Value; 5] {
    [
        Value::String(String::new()),
        Value::Number(0.into()),
        Value::Bool(false),
        Value::Sequence(Vec::new()),
        Value::Mapping(serde_yaml_ng::Mapping::new()),
    ]
}

fn hex_prefix(d: &[u8]) -> String {
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn categories(
    p: &mut Problems,
    at: &str,
    raw: &BTreeMap<String, Handling>,
) -> BTreeMap<phi::Category, Handling> {
    let mut out = BTreeMap::new();
    for (k, h) in raw {
        match k.parse::<phi::Category>() {
            Ok(c) => {
                if out.insert(c, *h).is_some() {
                    p.push(format!("{at}.{k}"), format!("category {c} is given twice (aliases)"));
                }
            }
            Err(e) => p.push(format!("{at}.{k}"), e.to_string()),
        }
    }
    out
}

/// Names of roles, providers and use cases: `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`.
pub(crate) fn valid_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphanumeric())
        && s.len() <= 64
        && c.all(|x| x.is_ascii_alphanumeric() || matches!(x, '_' | '-' | '.'))
}

/// Why `s` is not a usable http(s) URL, without echoing it: a URL that does not parse may still
/// hold credentials (`https://user:pa ss@host`), and the message goes to a terminal and to logs.
pub(crate) fn url_problem(s: &str) -> String {
    match url::Url::parse(s.trim()) {
        Err(e) => format!("it does not parse: {e}"),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            format!("its scheme is {:?}", u.scheme())
        }
        Ok(_) => "it has no host".into(),
    }
}

pub(crate) fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// Parses a time as the configuration writes it: `YYYY-MM-DD` (00:00 UTC that day) or
/// RFC 3339. Used for BAA expiries and key expiries.
pub fn parse_instant(s: &str) -> Option<time::OffsetDateTime> {
    let s = s.trim();
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Some(t);
    }
    let d = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(d.midnight().assume_utc())
}

/// The 1-based line of `path` (`use_cases[1].phi.categories.SSN`) in block-style YAML: the
/// deepest part of the path that could be found. A heuristic for messages, never for meaning.
pub(crate) fn line_of(text: &str, path: &str) -> Option<usize> {
    #[derive(Clone, Copy)]
    enum Seg<'a> {
        Key(&'a str),
        Index(usize),
    }
    let mut segs = Vec::new();
    for part in path.split('.') {
        let (key, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            segs.push(Seg::Key(key));
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            segs.push(Seg::Index(idx.trim_end_matches(']').parse().ok()?));
        }
    }
    if segs.is_empty() {
        return None;
    }
    let lines: Vec<&str> = text.lines().collect();
    // (column where the line starts, column of the first key after any "- ", the key text)
    fn info(l: &str) -> Option<(usize, usize, &str)> {
        let start = l.len() - l.trim_start().len();
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') || t.starts_with("---") {
            return None;
        }
        let mut col = start;
        let mut rest = t;
        while let Some(r) = rest.strip_prefix("- ").or_else(|| (rest == "-").then_some("")) {
            let r2 = r.trim_start();
            col += rest.len() - r2.len();
            rest = r2;
        }
        Some((start, col, rest))
    }
    let (mut lo, mut hi) = (0usize, lines.len());
    let mut parent: isize = -1;
    let mut best = None;
    for seg in segs {
        let found = match seg {
            Seg::Key(k) => {
                let mut child_col = None;
                let mut hit = None;
                for (n, l) in lines.iter().enumerate().take(hi).skip(lo) {
                    let Some((_, col, rest)) = info(l) else { continue };
                    if (col as isize) <= parent {
                        continue;
                    }
                    let cc = *child_col.get_or_insert(col);
                    let key = rest.split(':').next().unwrap_or("").trim().trim_matches(['"', '\'']);
                    if col == cc && key == k && rest.contains(':') {
                        hit = Some((n, col));
                        break;
                    }
                }
                hit
            }
            Seg::Index(i) => {
                let mut dash_col = None;
                let mut count = 0;
                let mut hit = None;
                for (n, l) in lines.iter().enumerate().take(hi).skip(lo) {
                    let Some((start, _, _)) = info(l) else { continue };
                    if (start as isize) <= parent || !l.trim_start().starts_with('-') {
                        continue;
                    }
                    let dc = *dash_col.get_or_insert(start);
                    if start == dc {
                        if count == i {
                            hit = Some((n, start));
                            break;
                        }
                        count += 1;
                    }
                }
                hit
            }
        };
        let Some((n, col)) = found else { break };
        best = Some(n + 1);
        // The children: following lines indented deeper than `col` (the item's own line too for
        // a list item, whose first key sits after the dash).
        let mut end = lines.len().min(hi);
        for (m, l) in lines.iter().enumerate().take(hi).skip(n + 1) {
            if let Some((start, _, _)) = info(l) {
                if start <= col {
                    end = m;
                    break;
                }
            }
        }
        match seg {
            Seg::Index(_) => lo = n,
            Seg::Key(_) => lo = n + 1,
        }
        hi = end;
        parent = col as isize;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_paths() {
        let y = "a: 1\nuse_cases:\n  - name: x\n    models: [m]\n  - name: y\n    phi:\n      default: redact\n      categories:\n        SSN: drop\n    models:\n      - one\n      - two\n";
        assert_eq!(line_of(y, "use_cases"), Some(2));
        assert_eq!(line_of(y, "use_cases[0]"), Some(3));
        assert_eq!(line_of(y, "use_cases[0].models[0]"), Some(4));
        assert_eq!(line_of(y, "use_cases[1].name"), Some(5));
        assert_eq!(line_of(y, "use_cases[1].phi.categories.SSN"), Some(9));
        assert_eq!(line_of(y, "use_cases[1].models[1]"), Some(12));
        assert_eq!(line_of(y, "nothing"), None);
    }

    #[test]
    fn names_and_instants() {
        assert!(valid_name("clinical-notes"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a b"));
        assert_eq!(
            parse_instant("2027-01-01"),
            Some(time::macros::datetime!(2027-01-01 00:00 UTC))
        );
        assert!(parse_instant("2027-01-01T12:00:00Z").is_some());
        assert!(parse_instant("next week").is_none());
    }
}
