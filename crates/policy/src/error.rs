//! Errors: [`Denial`] (why a request is refused, with a stable code and HTTP status) and
//! [`Error`] (key management). Neither ever holds a key, a token or PHI.

/// Why a request is refused. `code()` is the stable OpenAI-shaped error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denial {
    /// No credentials.
    #[error("no API key or token was given")]
    MissingKey,
    /// An API key that is unknown, wrong, revoked or expired.
    #[error("the API key is not valid")]
    InvalidKey,
    /// An expired JWT.
    #[error("the token has expired")]
    TokenExpired,
    /// A JWT that does not verify (signature, issuer, audience, key, claims).
    #[error("the token is not valid")]
    InvalidToken,
    /// The model is not in the use case's models.
    #[error("the model is not allowed for this use case")]
    ModelNotAllowed,
    /// None of the caller's roles is in the use case's roles.
    #[error("the caller's roles do not allow this use case")]
    RoleNotAllowed,
    /// No use case, or one that does not exist.
    #[error("the use case is unknown or not given")]
    UseCaseNotAllowed,
    /// No deployment may receive this request now.
    #[error("no eligible provider for this request")]
    NoEligibleProvider,
    /// The store could not be reached to check a key (fail closed).
    #[error("the key store is unavailable")]
    StoreUnavailable,
    /// The JWKS could not be fetched (fail closed).
    #[error("the token issuer's keys are unavailable")]
    AuthUnavailable,
}

impl Denial {
    /// The stable error code (see `docs/GATEWAY.md`).
    pub fn code(&self) -> &'static str {
        match self {
            Denial::MissingKey => "missing_api_key",
            Denial::InvalidKey | Denial::InvalidToken => "invalid_api_key",
            Denial::TokenExpired => "token_expired",
            Denial::ModelNotAllowed => "model_not_allowed",
            Denial::RoleNotAllowed => "role_not_allowed",
            Denial::UseCaseNotAllowed => "use_case_not_allowed",
            Denial::NoEligibleProvider => "no_eligible_provider",
            Denial::StoreUnavailable => "store_unavailable",
            Denial::AuthUnavailable => "auth_unavailable",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Denial::MissingKey
            | Denial::InvalidKey
            | Denial::TokenExpired
            | Denial::InvalidToken => 401,
            Denial::ModelNotAllowed
            | Denial::RoleNotAllowed
            | Denial::UseCaseNotAllowed
            | Denial::NoEligibleProvider => 403,
            Denial::StoreUnavailable | Denial::AuthUnavailable => 503,
        }
    }

    /// The OpenAI error `type` for this denial.
    pub fn error_type(&self) -> &'static str {
        match self.status() {
            401 => "authentication_error",
            403 => "permission_error",
            _ => "server_error",
        }
    }
}

/// Errors of key management.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An identity, role or use case name that is not well formed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which argument.
        field: &'static str,
        /// Why (never a secret).
        reason: String,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] store::Error),
}
