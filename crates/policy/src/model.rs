//! The configuration's types: what one YAML file holds (see `docs/GATEWAY.md`).
//!
//! Every struct refuses unknown fields. Values that need more than their type to be right
//! (references between sections, URLs, dates, ranges) are checked by [`crate::Config::from_yaml`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use phi::Category;
use serde::Deserialize;

use crate::Secret;

/// The whole configuration, resolved and validated.
/// Only [`Config::from_yaml`] and [`Config::load`] make one (each section is read with
/// `deny_unknown_fields`; unknown sections are errors too).
#[derive(Clone, Debug)]
pub struct Config {
    /// The HTTP listener.
    pub server: ServerConfig,
    /// Where state lives.
    pub store: StoreConfig,
    /// The audit ledger's keys.
    pub audit: AuditConfig,
    /// The token vault's key-encryption key and retention.
    pub vault: VaultConfig,
    /// Shared rate limits across replicas (optional).
    pub redis: Option<RedisConfig>,
    /// The ceiling: nothing below may loosen it.
    pub organization: Organization,
    /// Upstream providers with their BAA state.
    pub providers: Vec<Provider>,
    /// Model names clients send, each with its deployments.
    pub models: Vec<Model>,
    /// The roles that exist.
    pub roles: Vec<String>,
    /// Use cases: scope statements.
    pub use_cases: Vec<UseCase>,
    /// Rate limits per role or use case.
    pub limits: Vec<Limit>,
    /// OIDC bearer tokens (optional).
    pub oidc: Option<OidcConfig>,
    /// The directory relative paths are resolved against (the config file's).
    pub base_dir: PathBuf,
    /// Hash of the resolved configuration (see [`crate::Policy::version`]).
    pub(crate) version: String,
}

/// `server:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `host:port` to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Larger request bodies are refused with 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Data directory (relative to the config file's directory).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// How long a verified API key's stored record is trusted in memory before the store is
    /// read again (0: read the store on every request). A revocation or expiry made by
    /// `phigate keys revoke` or another replica takes effect within this time; expiry dates
    /// are checked on every request.
    #[serde(default = "default_key_cache_secs")]
    pub key_cache_secs: u64,
    /// How many request texts' findings and injection-rule matches are kept in memory, so that
    /// a conversation's earlier messages and a use case's system prompt are examined once, not
    /// on every turn (0: examine every text every time). Kept by a keyed digest: no text, no
    /// value. Read at start-up.
    #[serde(default = "default_text_cache")]
    pub text_cache: usize,
    /// Seconds a client has to send a request's headers, and then its body, and the longest
    /// an answer's write may make no progress (a client that stops reading). The header
    /// deadline also closes a kept-alive connection that sends no next request in this time.
    /// The body deadline follows a reload; the others are read at start-up.
    #[serde(default = "default_read_timeout_secs")]
    pub read_timeout_secs: u64,
    /// Client connections served at once. At the limit the gateway accepts no more until one
    /// closes: new ones wait in the kernel's listen queue. Read at start-up.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a shutdown (SIGTERM, Ctrl-C) waits for requests in flight, streams included,
    /// before it closes their connections. Read at start-up.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_max_body() -> u64 {
    1024 * 1024
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./phigate-data")
}
fn default_key_cache_secs() -> u64 {
    2
}
fn default_text_cache() -> usize {
    20_000
}
fn default_read_timeout_secs() -> u64 {
    30
}
fn default_max_connections() -> usize {
    4096
}
fn default_shutdown_grace_secs() -> u64 {
    30
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            max_body_bytes: default_max_body(),
            data_dir: default_data_dir(),
            key_cache_secs: default_key_cache_secs(),
            text_cache: default_text_cache(),
            read_timeout_secs: default_read_timeout_secs(),
            max_connections: default_max_connections(),
            shutdown_grace_secs: default_shutdown_grace_secs(),
        }
    }
}

/// `store:`. `Debug` masks a password in the URL.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://...`, a file path, or `postgres://...`; default: `phigate.db` in the data dir.
    #[serde(default)]
    pub url: Option<String>,
    /// SQLite only: when a commit (a ledger record, a vault write) counts as done. `full` (the
    /// default): flushed to the disk first, so an acknowledged record survives a power cut.
    /// `normal`: handed to the operating system first and flushed by the next background WAL
    /// checkpoint (within about 50-200 ms), so it survives the process being killed but the
    /// commits since the last checkpoint can be lost in a power cut; saves a disk flush per
    /// commit. PostgreSQL follows the server's `synchronous_commit`.
    #[serde(default)]
    pub sqlite_sync: SqliteSyncMode,
}

/// `store.sqlite_sync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SqliteSyncMode {
    /// Flush every commit to the disk.
    #[default]
    Full,
    /// Flush at WAL checkpoints.
    Normal,
}

impl SqliteSyncMode {
    /// The store's option.
    pub fn to_store(self) -> store::SqliteSync {
        match self {
            SqliteSyncMode::Full => store::SqliteSync::Full,
            SqliteSyncMode::Normal => store::SqliteSync::Normal,
        }
    }
}

/// `audit:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Base64 of 32 or more bytes; keys the ledger's HMACs.
    pub hmac_key: Secret,
    /// Base64 of the 32-byte Ed25519 seed that signs checkpoints.
    pub signing_key: Secret,
    /// Seconds between signed checkpoints.
    #[serde(default = "default_checkpoint")]
    pub checkpoint_interval_secs: u64,
    /// The log's name: the first line of every checkpoint, and the name of the key that signs
    /// them. `phigate audit` (`--origin`, `PHIGATE_LEDGER_ORIGIN`) must use the same to verify.
    #[serde(default = "default_origin")]
    pub origin: String,
}

/// The ledger's name when the configuration gives none; also `phigate audit`'s default.
pub const DEFAULT_LEDGER_ORIGIN: &str = "phigate.local/ledger";

fn default_checkpoint() -> u64 {
    300
}

fn default_origin() -> String {
    DEFAULT_LEDGER_ORIGIN.to_string()
}

/// `vault:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Base64 of the 32-byte key-encryption key: it wraps every new data key.
    pub kek: Secret,
    /// Older KEKs, during a rotation: they only unwrap the data keys they wrapped, until
    /// `phigate vault rotate-kek` has re-wrapped those under `kek`.
    #[serde(default)]
    pub previous_keks: Vec<Secret>,
    /// Default lifetime of a conversation scope's data key.
    #[serde(default = "default_retention")]
    pub retention_secs: u64,
    /// How many stored vault rows (tokens, keyed fingerprints and ciphertexts; never a value in
    /// the clear) are kept in memory, so a conversation's known values need no store read
    /// (0: none).
    #[serde(default = "default_row_cache")]
    pub row_cache: usize,
    /// How long a data key's stored state (live, shredded, rotated) is trusted in memory, in
    /// milliseconds (0: read on every use). A shred by another replica or by `phigate vault
    /// shred` takes effect within this time; one by this process at once.
    #[serde(default = "default_key_state_ms")]
    pub key_state_ms: u64,
}

fn default_row_cache() -> usize {
    50_000
}
fn default_key_state_ms() -> u64 {
    1000
}

fn default_retention() -> u64 {
    30 * 24 * 3600
}

/// `redis:`. `Debug` masks a password in the URL.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port`.
    pub url: String,
    /// Loud opt-in: count per replica when Redis is down (otherwise refuse).
    #[serde(default)]
    pub allow_local_fallback: bool,
}

/// `organization:`: the ceiling every use case sits under.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organization {
    /// Categories that never leave, whatever a use case says (set by validation from the
    /// YAML's `blocked_categories`).
    #[serde(skip)]
    pub blocked_categories: Vec<Category>,
    #[serde(default, rename = "blocked_categories")]
    pub(crate) raw_blocked: Vec<String>,
    /// Minimum handling per category for every use case (set by validation from the YAML's
    /// `categories`).
    #[serde(skip)]
    pub categories: BTreeMap<Category, Handling>,
    #[serde(default, rename = "categories")]
    pub(crate) raw_categories: BTreeMap<String, Handling>,
    /// Always true in effect; `false` is refused.
    #[serde(default = "yes")]
    pub require_baa_for_phi: bool,
}

fn yes() -> bool {
    true
}

impl Default for Organization {
    fn default() -> Self {
        Organization {
            blocked_categories: Vec::new(),
            raw_blocked: Vec::new(),
            categories: BTreeMap::new(),
            raw_categories: BTreeMap::new(),
            require_baa_for_phi: true,
        }
    }
}

/// What happens to one PHI category. `Ord`: a later variant is stricter.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Handling {
    /// Replaced by a consistent typed token (`[NAME_1]`), values kept in the vault.
    Tokenize,
    /// Sent as is, but only to a provider with `hosting: private`.
    PrivateOnly,
    /// Replaced by its category (`[NAME]`).
    Redact,
    /// The request is refused.
    Block,
}

impl Handling {
    /// Every handling, least strict first.
    pub const ALL: [Handling; 4] =
        [Handling::Tokenize, Handling::PrivateOnly, Handling::Redact, Handling::Block];

    /// The configuration's name (`tokenize`, `private_only`, `redact`, `block`).
    pub fn as_str(self) -> &'static str {
        match self {
            Handling::Tokenize => "tokenize",
            Handling::PrivateOnly => "private_only",
            Handling::Redact => "redact",
            Handling::Block => "block",
        }
    }
}

impl std::fmt::Display for Handling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Handling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Handling::ALL.into_iter().find(|h| h.as_str() == s.trim().to_ascii_lowercase()).ok_or_else(
            || {
                format!(
                    "unknown handling {s:?}; expected one of block, redact, tokenize, private_only"
                )
            },
        )
    }
}

/// One upstream provider.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Unique name, referenced by deployments.
    pub name: String,
    /// API flavour.
    pub kind: ProviderKind,
    /// Base URL, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// API key sent upstream (optional).
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Azure only.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Where the model runs.
    pub hosting: Hosting,
    /// Business associate agreement.
    #[serde(default)]
    pub baa: Baa,
    /// Per-attempt timeout.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Retries after the first attempt.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_timeout() -> u64 {
    30_000
}
fn default_retries() -> u32 {
    1
}

/// The API a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI-compatible (`/chat/completions`, `/embeddings`): OpenAI, vLLM, Ollama, llama.cpp.
    Openai,
    /// Azure OpenAI (`api-version` query, `api-key` header).
    Azure,
}

/// Where a provider runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hosting {
    /// Inside the organization (may receive PHI without a BAA).
    Private,
    /// A vendor's cloud (needs a signed, unexpired BAA for PHI).
    Cloud,
}

/// A provider's BAA state.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baa {
    /// Signed by both parties.
    #[serde(default)]
    pub signed: bool,
    /// `YYYY-MM-DD` (00:00 UTC that day) or RFC 3339; from that instant on the BAA no longer
    /// covers PHI. `None`: no expiry.
    #[serde(default)]
    pub expires: Option<String>,
    /// Parsed `expires` (set by validation).
    #[serde(skip)]
    pub expires_at: Option<time::OffsetDateTime>,
}

/// A model name clients send.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// The name in requests' `model` field.
    pub name: String,
    /// Where it runs, in fallback order.
    pub deployments: Vec<DeploymentConfig>,
}

/// One deployment of a model.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// A provider's name.
    pub provider: String,
    /// The upstream's model id.
    pub model: String,
    /// Load-balancing weight (1 by default; 0 means standby).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// Why PHI is used (HIPAA's permitted purposes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Treatment.
    Treatment,
    /// Payment.
    Payment,
    /// Health care operations.
    Operations,
    /// Research.
    Research,
    /// Anything else.
    Other,
}

impl Purpose {
    /// The configuration's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Treatment => "treatment",
            Purpose::Payment => "payment",
            Purpose::Operations => "operations",
            Purpose::Research => "research",
            Purpose::Other => "other",
        }
    }
}

/// A use case: one scope statement.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UseCase {
    /// Unique name (keys, the `X-Phigate-Use-Case` header).
    pub name: String,
    /// Why.
    pub purpose: Purpose,
    /// User scope: roles allowed.
    pub roles: Vec<String>,
    /// System scope: model names allowed.
    pub models: Vec<String>,
    /// Data scope.
    pub phi: PhiScope,
    /// Output scope.
    #[serde(default)]
    pub output: OutputScope,
    /// Prompt-injection screening.
    #[serde(default)]
    pub prompt_injection: InjectionMode,
}

/// Data scope: what each PHI category becomes before it leaves.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhiScope {
    /// For categories not listed.
    pub default: Handling,
    /// Per category (set by validation from the YAML's `categories`).
    #[serde(skip)]
    pub categories: BTreeMap<Category, Handling>,
    #[serde(default, rename = "categories")]
    pub(crate) raw_categories: BTreeMap<String, Handling>,
}

/// Output scope.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputScope {
    /// Roles that see tokens restored to their values.
    #[serde(default)]
    pub reidentify_roles: Vec<String>,
    /// PHI in an answer that was not in the request.
    #[serde(default)]
    pub new_phi: NewPhi,
    /// How streamed answers are scanned.
    #[serde(default)]
    pub stream_scan: StreamScan,
}

/// What to do with PHI in an answer that was not in the request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NewPhi {
    /// Replace it by its category.
    #[default]
    Redact,
    /// Refuse the answer.
    Block,
}

/// How a streamed answer is scanned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamScan {
    /// Hold back a window of the longest placeholder's length.
    #[default]
    Holdback,
    /// No streaming: the whole answer is scanned first.
    Block,
}

/// Prompt-injection screening.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectionMode {
    /// Not screened.
    Off,
    /// Screened and recorded.
    #[default]
    Flag,
    /// Screened and refused.
    Block,
}

/// A rate limit for a role or a use case (exactly one of the two).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// A role's name.
    #[serde(default)]
    pub role: Option<String>,
    /// A use case's name.
    #[serde(default)]
    pub use_case: Option<String>,
    /// Requests per minute.
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute.
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
}

/// `oidc:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// `file:PATH` (relative to the config) or an `https://` URL (`http://` only to loopback).
    pub jwks: String,
    /// The claim that names the identity (`sub` by default); `user:` is put before a value
    /// without a `user:`/`svc:` prefix. It must be one the token's holder cannot edit.
    #[serde(default = "default_identity_claim")]
    pub identity_claim: String,
    /// Whether a token may name a service (`svc:...`) identity. Off by default: a token that
    /// claims one is refused, so that a person cannot pass as a service whose API key exists
    /// (its ledger actor, its limits, its conversations' vault scopes).
    #[serde(default)]
    pub service_identities: bool,
    /// The claim with the roles (an array of strings or a space-separated string).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// The claim with the default use case (optional).
    #[serde(default)]
    pub use_case_claim: Option<String>,
    /// Seconds a JWKS fetched from a URL is kept.
    #[serde(default = "default_jwks_ttl")]
    pub jwks_cache_secs: u64,
    /// Clock skew allowed on `exp`/`nbf`, seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

fn default_identity_claim() -> String {
    "sub".into()
}
fn default_roles_claim() -> String {
    "roles".into()
}
fn default_jwks_ttl() -> u64 {
    300
}
fn default_leeway() -> u64 {
    30
}

/// `scheme://user:***@host...` for `scheme://user:password@host...`.
pub(crate) fn mask_url_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((userinfo, host)) = rest.rsplit_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_string()
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.url.as_deref().map(mask_url_password))
            .field("sqlite_sync", &self.sqlite_sync)
            .finish()
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &mask_url_password(&self.url))
            .field("allow_local_fallback", &self.allow_local_fallback)
            .finish()
    }
}
