//! Every refusal the gateway gives, turned into an HTTP response in one place.
//!
//! The client gets OpenAI's error shape with a stable code and a fixed, safe message: never an
//! upstream body, never a PHI value, never a secret. Causes go to the log through `tracing`
//! (and those causes are, by construction, free of values: store, vault and ledger errors name
//! fields and kinds only).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use phi::Category;

/// A refusal, with everything needed to answer it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No credentials.
    #[error("missing_api_key")]
    MissingApiKey,
    /// Unknown, revoked or malformed credentials.
    #[error("invalid_api_key")]
    InvalidApiKey,
    /// Expired key or token.
    #[error("token_expired")]
    TokenExpired,
    /// The identity provider's keys (OIDC JWKS) could not be fetched: fail closed.
    #[error("auth_unavailable")]
    AuthUnavailable,
    /// The model is outside the use case's scope.
    #[error("model_not_allowed")]
    ModelNotAllowed,
    /// The identity's roles may not use this use case.
    #[error("role_not_allowed")]
    RoleNotAllowed,
    /// The use case is not one the identity may use.
    #[error("use_case_not_allowed")]
    UseCaseNotAllowed,
    /// PHI of these categories is blocked (categories only, never values).
    #[error("phi_blocked")]
    PhiBlocked {
        /// The categories found.
        categories: Vec<Category>,
        /// Whether it was the answer (true) or the request (false).
        in_answer: bool,
    },
    /// No deployment may receive this request.
    #[error("no_eligible_provider")]
    NoEligibleProvider,
    /// Over a request or token budget.
    #[error("rate_limited")]
    RateLimited {
        /// Seconds until the window resets.
        retry_after_secs: u64,
    },
    /// Body over the configured limit.
    #[error("request_too_large")]
    RequestTooLarge,
    /// Malformed request; the message is a fixed description written by the gateway.
    #[error("invalid_request")]
    InvalidRequest(&'static str),
    /// The request holds or asks for something the scanner cannot read (an image, audio or a
    /// file part; log-probabilities or audio in the answer): refused rather than passed unseen.
    #[error("unscannable_content")]
    Unscannable(&'static str),
    /// The conversation's vault scope is past its retention (expired or shredded): its values
    /// are gone, and a new conversation must be started.
    #[error("conversation_expired")]
    ConversationExpired,
    /// The scanner could not run.
    #[error("scanner_unavailable")]
    ScannerUnavailable,
    /// The vault could not run.
    #[error("vault_unavailable")]
    VaultUnavailable,
    /// The store or the ledger could not run.
    #[error("store_unavailable")]
    StoreUnavailable,
    /// The shared rate-limit counter (Redis) could not run.
    #[error("rate_limiter_unavailable")]
    RateLimiterUnavailable,
    /// No upstream answered.
    #[error("upstream_unavailable")]
    UpstreamUnavailable,
    /// The upstream was too slow.
    #[error("upstream_timeout")]
    UpstreamTimeout,
    /// The upstream answered something that is not a valid OpenAI response.
    #[error("upstream_invalid_response")]
    UpstreamInvalidResponse,
    /// The upstream refused the request (a 4xx); its body is never relayed.
    #[error("upstream_rejected")]
    UpstreamRejected {
        /// The upstream's status.
        status: u16,
    },
    /// A prompt-injection rule matched under a blocking use case.
    #[error("prompt_injection")]
    PromptInjection,
    /// No such route.
    #[error("not_found")]
    NotFound,
    /// A route that exists, with another method (`GET /v1/chat/completions`).
    #[error("method_not_allowed")]
    MethodNotAllowed,
}

impl ApiError {
    /// The stable code (the `error.code` field).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MissingApiKey => "missing_api_key",
            ApiError::InvalidApiKey => "invalid_api_key",
            ApiError::TokenExpired => "token_expired",
            ApiError::AuthUnavailable => "auth_unavailable",
            ApiError::ModelNotAllowed => "model_not_allowed",
            ApiError::RoleNotAllowed => "role_not_allowed",
            ApiError::UseCaseNotAllowed => "use_case_not_allowed",
            ApiError::PhiBlocked { .. } => "phi_blocked",
            ApiError::NoEligibleProvider => "no_eligible_provider",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::RequestTooLarge => "request_too_large",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::Unscannable(_) => "unscannable_content",
            ApiError::ConversationExpired => "conversation_expired",
            ApiError::ScannerUnavailable => "scanner_unavailable",
            ApiError::VaultUnavailable => "vault_unavailable",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::RateLimiterUnavailable => "rate_limiter_unavailable",
            ApiError::UpstreamUnavailable => "upstream_unavailable",
            ApiError::UpstreamTimeout => "upstream_timeout",
            ApiError::UpstreamInvalidResponse => "upstream_invalid_response",
            ApiError::UpstreamRejected { .. } => "upstream_rejected",
            ApiError::PromptInjection => "prompt_injection",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MissingApiKey | ApiError::InvalidApiKey | ApiError::TokenExpired => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::ModelNotAllowed
            | ApiError::RoleNotAllowed
            | ApiError::UseCaseNotAllowed
            | ApiError::NoEligibleProvider => StatusCode::FORBIDDEN,
            ApiError::PhiBlocked { .. }
            | ApiError::InvalidRequest(_)
            | ApiError::Unscannable(_)
            | ApiError::PromptInjection => StatusCode::BAD_REQUEST,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::ScannerUnavailable
            | ApiError::VaultUnavailable
            | ApiError::StoreUnavailable
            | ApiError::RateLimiterUnavailable
            | ApiError::AuthUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::UpstreamUnavailable | ApiError::UpstreamInvalidResponse => {
                StatusCode::BAD_GATEWAY
            }
            ApiError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::UpstreamRejected { status } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::ConversationExpired => StatusCode::GONE,
        }
    }

    /// OpenAI's `error.type`.
    fn kind(&self) -> &'static str {
        match self.status().as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            400 | 405 | 410 | 413 => "invalid_request_error",
            _ => "api_error",
        }
    }

    /// A fixed message: names categories at most, never a value.
    pub fn message(&self) -> String {
        match self {
            ApiError::MissingApiKey => "No API key was given (Authorization: Bearer ...).".into(),
            ApiError::InvalidApiKey => "The API key or token is not valid.".into(),
            ApiError::TokenExpired => "The API key or token has expired.".into(),
            ApiError::AuthUnavailable => "The identity provider's keys are unavailable.".into(),
            ApiError::ModelNotAllowed => "This model is not allowed for your use case.".into(),
            ApiError::RoleNotAllowed => "Your roles may not use this use case.".into(),
            ApiError::UseCaseNotAllowed => "This use case is not one you may use.".into(),
            ApiError::PhiBlocked { categories, in_answer } => {
                let names: Vec<&str> = categories.iter().map(|c| c.as_str()).collect();
                let place = if *in_answer { "The answer" } else { "The request" };
                format!("{place} contains PHI that policy blocks: {}.", names.join(", "))
            }
            ApiError::NoEligibleProvider => {
                "No provider may receive this request under policy (BAA or hosting).".into()
            }
            ApiError::RateLimited { retry_after_secs } => {
                format!("Rate limit reached; retry in {retry_after_secs} s.")
            }
            ApiError::RequestTooLarge => "The request body is too large.".into(),
            ApiError::InvalidRequest(why) => format!("Invalid request: {why}."),
            ApiError::ConversationExpired => "This conversation's retention has ended and its \
                values were shredded: start a new conversation (a new X-Phigate-Conversation)."
                .into(),
            ApiError::Unscannable(what) => format!("{what}; phigate refuses the request."),
            ApiError::ScannerUnavailable => "The PHI scanner is unavailable.".into(),
            ApiError::VaultUnavailable => "The token vault is unavailable.".into(),
            ApiError::StoreUnavailable => "The store or the audit ledger is unavailable.".into(),
            ApiError::RateLimiterUnavailable => "The shared rate limiter is unavailable.".into(),
            ApiError::UpstreamUnavailable => "No upstream model server is reachable.".into(),
            ApiError::UpstreamTimeout => "The upstream model server timed out.".into(),
            ApiError::UpstreamInvalidResponse => {
                "The upstream model server sent an invalid response.".into()
            }
            ApiError::UpstreamRejected { status } => {
                format!("The upstream model server refused the request (status {status}).")
            }
            ApiError::PromptInjection => {
                "The request was refused by prompt-injection rules.".into()
            }
            ApiError::NotFound => "No such route.".into(),
            ApiError::MethodNotAllowed => "This route does not take that method.".into(),
        }
    }

    /// The JSON body, `{"error":{"message","type","code","param":null}}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message(),
                "type": self.kind(),
                "code": self.code(),
                "param": null,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), Json(self.body())).into_response();
        if let ApiError::RateLimited { retry_after_secs } = self {
            if let Ok(v) = axum::http::HeaderValue::from_str(&retry_after_secs.to_string()) {
                resp.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        resp.extensions_mut().insert(ErrorCode(self.code()));
        resp
    }
}

/// The code of an error response, left in the response's extensions for metrics.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCode(pub &'static str);

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        tracing::error!(error = %e, "store error");
        ApiError::StoreUnavailable
    }
}

impl From<ledger::Error> for ApiError {
    fn from(e: ledger::Error) -> Self {
        tracing::error!(error = %e, "ledger error");
        ApiError::StoreUnavailable
    }
}

impl From<vault::Error> for ApiError {
    fn from(e: vault::Error) -> Self {
        match e {
            // Not a failure: the scope's retention ended. Retrying cannot help; a new
            // conversation does.
            vault::Error::Expired { .. } | vault::Error::Shredded { .. } => {
                tracing::info!("a request of a conversation past its retention was refused");
                ApiError::ConversationExpired
            }
            e => {
                tracing::error!(error = %e, "vault error");
                ApiError::VaultUnavailable
            }
        }
    }
}

/// Errors of building or serving the gateway (not of one request).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The PHI scanner could not be built.
    #[error("scanner: {0}")]
    Scanner(#[from] phi::Error),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] store::Error),
    /// The ledger failed.
    #[error("ledger: {0}")]
    Ledger(#[from] ledger::Error),
    /// The vault failed.
    #[error("vault: {0}")]
    Vault(#[from] vault::Error),
    /// Redis could not be set up.
    #[error("redis: {0}")]
    Redis(String),
    /// The metrics recorder could not be installed.
    #[error("metrics: {0}")]
    Metrics(String),
    /// A configuration value is unusable (names the field, never its value).
    #[error("config: {0}")]
    Config(String),
    /// Binding or serving failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
