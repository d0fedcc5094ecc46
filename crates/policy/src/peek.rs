//! The few settings the operator commands (`phigate audit`, `vault`, `backup`, `keys`) take
//! from the gateway's configuration, read without loading it whole: no secret is resolved and
//! nothing else is checked, so a command run where the gateway's secrets are not at hand still
//! finds the gateway's store, and does not act on another one.

use std::path::Path;

use serde_yaml_ng::Value;

use crate::SecretSource;

/// What [`peek`] read. Secret references come back in the command-line form: `file:` with an
/// absolute path, `env:VAR` for `${VAR}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peek {
    /// The store URL, as [`crate::Config::store_url`] makes it.
    pub store_url: String,
    /// `audit.origin`, if set.
    pub origin: Option<String>,
    /// `audit.signing_key`.
    pub signing_key: Option<String>,
    /// `vault.kek`.
    pub kek: Option<String>,
    /// `vault.previous_keks`.
    pub previous_keks: Vec<String>,
}

/// Reads [`Peek`] from the configuration at `path`. An error names the file and what was
/// wrong, never a value.
pub fn peek(path: &Path) -> Result<Peek, String> {
    let (text, base) = crate::read_config(path)?;
    let root: Value = serde_yaml_ng::from_str(&text).map_err(|_| {
        format!("{}: not valid YAML (phigate config check says where)", path.display())
    })?;
    let get = |section: &str, key: &str| -> Option<String> {
        root.get(section)?.get(key)?.as_str().map(str::to_string)
    };
    let data_dir = base.join(get("server", "data_dir").unwrap_or_else(|| "./phigate-data".into()));
    let store_url = crate::store_url_in(get("store", "url").as_deref(), &base, &data_dir);
    let previous_keks = root
        .get("vault")
        .and_then(|v| v.get("previous_keks"))
        .and_then(Value::as_sequence)
        .map(|s| s.iter().filter_map(Value::as_str).filter_map(|s| cli_spec(s, &base)).collect())
        .unwrap_or_default();
    Ok(Peek {
        store_url,
        origin: get("audit", "origin"),
        signing_key: get("audit", "signing_key").and_then(|s| cli_spec(&s, &base)),
        kek: get("vault", "kek").and_then(|s| cli_spec(&s, &base)),
        previous_keks,
    })
}

/// A secret reference of the configuration in the command-line form, resolved as the gateway
/// resolves it ([`SecretSource::parse`]): `${VAR}` is `env:VAR`, a `file:` path is absolute.
/// `None` for a reference the gateway would refuse.
fn cli_spec(s: &str, base: &Path) -> Option<String> {
    match SecretSource::parse(s, base).ok()? {
        SecretSource::Env(var) => Some(format!("env:{var}")),
        SecretSource::File(p) => Some(format!("file:{}", p.display())),
        SecretSource::Inline => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_store_and_the_key_sources_without_resolving_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phigate.yaml");
        std::fs::write(
            &path,
            "server: { data_dir: ./data }\naudit:\n  hmac_key: ${MISSING}\n  signing_key: file:./data/ledger.key\n  origin: hospital.example/phigate\nvault:\n  kek: ${KEK_VAR}\n  previous_keks: [file:old.kek]\nproviders: []\n",
        )
        .unwrap();
        let p = peek(&path).unwrap();
        let base = std::path::absolute(dir.path()).unwrap();
        assert_eq!(p.store_url, base.join("./data").join("phigate.db").display().to_string());
        assert_eq!(p.origin.as_deref(), Some("hospital.example/phigate"));
        assert_eq!(p.kek.as_deref(), Some("env:KEK_VAR"));
        assert_eq!(p.previous_keks, [format!("file:{}", base.join("old.kek").display())]);
        assert_eq!(p.signing_key, Some(format!("file:{}", base.join("data/ledger.key").display())));

        std::fs::write(&path, "store: { url: postgres://u@db/phigate }\n").unwrap();
        let p = peek(&path).unwrap();
        assert_eq!(p.store_url, "postgres://u@db/phigate");
        assert_eq!((p.origin, p.kek), (None, None));

        std::fs::write(&path, "store: { url: [oops\n").unwrap();
        assert!(peek(&path).unwrap_err().contains("not valid YAML"));
    }
}
