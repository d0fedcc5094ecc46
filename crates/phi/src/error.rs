//! The error type of the `phi` crate.

/// Everything that can go wrong when building a scanner or transforming text.
/// Messages never contain scanned text.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A built-in or user-supplied pattern did not compile.
    #[error("pattern {name} did not compile: {message}")]
    Pattern {
        /// The recognizer's name.
        name: &'static str,
        /// The compiler's message.
        message: String,
    },
    /// A configuration value was out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A transformation needs a key that was not given (the `hash` mode).
    #[error("the {mode} mode needs a key")]
    MissingKey {
        /// The mode that needs it.
        mode: &'static str,
    },
}
