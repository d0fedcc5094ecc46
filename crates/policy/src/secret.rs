//! Secrets named in the configuration: `${ENV_VAR}` or `file:PATH` (relative to the config
//! file's directory). A [`Secret`] never shows its value in `Debug` or `Display`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

/// Where a secret comes from, as written in the configuration.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum SecretSource {
    /// `${NAME}`: the environment variable `NAME`.
    Env(String),
    /// `file:PATH`: the file at this path (made absolute against the config's directory).
    File(PathBuf),
    /// Built in code ([`Secret::new`]), not from a configuration.
    Inline,
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(v) => write!(f, "${{{v}}}"),
            SecretSource::File(p) => write!(f, "file:{}", p.display()),
            SecretSource::Inline => f.write_str("inline"),
        }
    }
}

/// A secret value (an API key, an HMAC key, a KEK). `Debug` and `Display` print `[secret]`;
/// only [`Secret::expose`] gives the value.
///
/// A `Secret` read from YAML holds only its reference (`${VAR}` or `file:PATH`) until
/// [`crate::Config::from_yaml`] resolves it; every `Secret` in a [`crate::Config`] returned by
/// `from_yaml` or `load` is resolved.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    source: SecretSource,
    raw_ref: String,
}

impl Secret {
    /// A secret with this value (tests, code that builds a configuration by hand).
    pub fn new(value: impl Into<String>) -> Secret {
        Secret { value: value.into(), source: SecretSource::Inline, raw_ref: String::new() }
    }

    /// The value. Never log it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Where the value came from (safe to show).
    pub fn source(&self) -> &SecretSource {
        &self.source
    }

    /// Parses the reference written in the YAML and reads the value. `Err` is a message that
    /// names the variable or the file, never a value.
    pub(crate) fn resolve(&mut self, base_dir: &Path) -> Result<(), String> {
        self.source = SecretSource::parse(&self.raw_ref, base_dir)?;
        match &self.source {
            SecretSource::Env(var) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => {
                    self.value = v.trim().to_string();
                    Ok(())
                }
                Ok(_) => Err(format!("environment variable {var} is empty")),
                Err(std::env::VarError::NotPresent) => {
                    Err(format!("environment variable {var} is not set"))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(format!("environment variable {var} is not valid UTF-8"))
                }
            },
            SecretSource::File(path) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    format!("cannot read secret file {}: {}", path.display(), e.kind())
                })?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| format!("secret file {} is not text", path.display()))?;
                let text = text.trim();
                if text.is_empty() {
                    return Err(format!("secret file {} is empty", path.display()));
                }
                self.value = text.to_string();
                Ok(())
            }
            SecretSource::Inline => {
                Err("a secret must be written as ${ENV_VAR} or file:PATH, never inline".into())
            }
        }
    }
}

impl SecretSource {
    /// Where a reference written in the YAML (`${VAR}` or `file:PATH`, a relative path taken
    /// from `base_dir`) points, without reading it. `Err` never repeats the reference: a secret
    /// pasted in by mistake would reach the log.
    pub fn parse(raw: &str, base_dir: &Path) -> Result<SecretSource, String> {
        let r = raw.trim();
        if let Some(var) = r.strip_prefix("${").and_then(|s| s.strip_suffix('}')) {
            if var.is_empty()
                || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || var.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err("invalid environment variable name in a ${...} reference (letters, digits and _, not starting with a digit)".into());
            }
            Ok(SecretSource::Env(var.to_string()))
        } else if let Some(p) = r.strip_prefix("file:") {
            if p.is_empty() {
                return Err("empty path after file:".into());
            }
            Ok(SecretSource::File(join_clean(base_dir, p)))
        } else {
            Err("a secret must be written as ${ENV_VAR} or file:PATH, never inline".into())
        }
    }
}

/// `base.join(rel)` without `.` components (for messages that read well).
pub(crate) fn join_clean(base: &Path, rel: &str) -> PathBuf {
    base.join(rel).components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect()
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw_ref = String::deserialize(d)?;
        Ok(Secret { value: String::new(), source: SecretSource::Inline, raw_ref })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "[secret]");
        assert_eq!(format!("{s}"), "[secret]");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn inline_values_are_refused() {
        let mut s: Secret = serde_yaml_ng::from_str("sk-live-123").unwrap();
        let e = s.resolve(Path::new("/")).unwrap_err();
        assert!(!e.contains("sk-live-123"), "{e}");
    }

    #[test]
    fn file_relative_to_base_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k"), "abc\n").unwrap();
        let mut s: Secret = serde_yaml_ng::from_str("file:k").unwrap();
        s.resolve(dir.path()).unwrap();
        assert_eq!(s.expose(), "abc");
        assert_eq!(s.source(), &SecretSource::File(dir.path().join("k")));
        let mut m: Secret = serde_yaml_ng::from_str("file:missing").unwrap();
        assert!(m.resolve(dir.path()).unwrap_err().contains("missing"));
    }

    #[test]
    fn env_var() {
        std::env::set_var("POLICY_SECRET_UNIT_TEST", " v1 ");
        let mut s: Secret = serde_yaml_ng::from_str("${POLICY_SECRET_UNIT_TEST}").unwrap();
        s.resolve(Path::new("/")).unwrap();
        assert_eq!(s.expose(), "v1");
        let mut u: Secret = serde_yaml_ng::from_str("${POLICY_SECRET_UNIT_TEST_UNSET}").unwrap();
        assert!(u.resolve(Path::new("/")).unwrap_err().contains("not set"));
        let mut bad: Secret = serde_yaml_ng::from_str("${A-B}").unwrap();
        assert!(bad.resolve(Path::new("/")).is_err());
    }
}
