//! Configuration problems: every one found, each with its path and, where known, its line.

use std::fmt;

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Where, e.g. `use_cases[1].models[0]` (empty for the whole file).
    pub path: String,
    /// 1-based line in the file, where known.
    pub line: Option<usize>,
    /// What is wrong (never a secret value).
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = self.line {
            write!(f, "{l}: ")?;
        }
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a configuration; `Display` prints one per line.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl ConfigErrors {
    /// `FILE:LINE: path: message`, one line per problem (`FILE: path: message` without a line).
    pub fn render(&self, file: &str) -> String {
        let mut out = String::new();
        for p in &self.0 {
            out.push_str(file);
            out.push(':');
            if let Some(l) = p.line {
                out.push_str(&l.to_string());
                out.push(':');
            }
            out.push(' ');
            if !p.path.is_empty() {
                out.push_str(&p.path);
                out.push_str(": ");
            }
            out.push_str(&p.message);
            out.push('\n');
        }
        out
    }

    /// Whether some problem has exactly this path.
    pub fn has_path(&self, path: &str) -> bool {
        self.0.iter().any(|p| p.path == path)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
