//! The ledger record: who did what to which resource, under which use case, with what decision,
//! which model and provider, which PHI categories (counts only) and keyed digests of the request
//! and of identifiers.
//!
//! A record cannot carry raw PHI or credentials, by construction: it has no free-text field.
//! Identifiers are [`Slug`]s (lower-case ASCII letters, digits and `.` `_` `:` `-`, starting
//! with a letter, at most 64 bytes, no long runs of digits), actions and decisions are enums,
//! categories are [`phi::Category`] with counts, and digests are [`Hmac256`] values that can only
//! be made by computing an HMAC-SHA256 under an [`HmacKey`]. The canonical encoding
//! ([`Record::canonical_bytes`]) is compact JSON with a fixed field order: that is what the
//! Merkle leaf hashes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use phi::Category;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::Error;

/// The encoding version written in every record (`"v":1`).
pub const RECORD_VERSION: u32 = 1;

/// Longest [`Slug`], in bytes.
pub const SLUG_MAX_LEN: usize = 64;

/// Most digits allowed in one run of digits and separators inside a [`Slug`]: enough for
/// `v2024-08` or `gpt-4o`, too few for an SSN, a phone number, a full date or an MRN.
pub const SLUG_MAX_DIGIT_RUN: usize = 6;

/// A validated identifier: an identity id, a use case, a model, a reason code…
///
/// Rules: 1 to 64 bytes of `a-z`, `0-9`, `.`, `_`, `:`, `-`; the first is a letter; no run of
/// digits and separators holds more than six digits. So no spaces (no free text), no upper
/// case, no `@` or `/` (no e-mail addresses, URLs or slashed dates), and no SSN, phone number,
/// full date or record number even when written with separators.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slug(String);

/// Why a string is not a [`Slug`]. Never holds the string itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlugProblem {
    /// Empty.
    Empty,
    /// Longer than [`SLUG_MAX_LEN`].
    TooLong,
    /// Does not start with a lower-case letter.
    BadStart,
    /// Holds a character outside `a-z 0-9 . _ : -`.
    BadChar,
    /// Holds a run of more than [`SLUG_MAX_DIGIT_RUN`] digits.
    DigitRun,
}

impl SlugProblem {
    /// A short safe description.
    pub const fn as_str(self) -> &'static str {
        match self {
            SlugProblem::Empty => "is empty",
            SlugProblem::TooLong => "is longer than 64 bytes",
            SlugProblem::BadStart => "must start with a lower-case letter",
            SlugProblem::BadChar => "may hold only a-z, 0-9, '.', '_', ':' and '-'",
            SlugProblem::DigitRun => {
                "holds a long run of digits (looks like a number that could identify someone)"
            }
        }
    }
}

impl Slug {
    /// Checks `s` against the rules.
    pub fn check(s: &str) -> Result<(), SlugProblem> {
        let b = s.as_bytes();
        if b.is_empty() {
            return Err(SlugProblem::Empty);
        }
        if b.len() > SLUG_MAX_LEN {
            return Err(SlugProblem::TooLong);
        }
        if !b[0].is_ascii_lowercase() {
            return Err(SlugProblem::BadStart);
        }
        let mut digits = 0usize;
        for &c in b {
            match c {
                b'a'..=b'z' => digits = 0,
                b'0'..=b'9' => {
                    digits += 1;
                    if digits > SLUG_MAX_DIGIT_RUN {
                        return Err(SlugProblem::DigitRun);
                    }
                }
                b'.' | b'_' | b':' | b'-' => {}
                _ => return Err(SlugProblem::BadChar),
            }
        }
        Ok(())
    }

    /// Validates `s` as the named field; the error names the field and the rule, never the value.
    pub fn for_field(field: &'static str, s: &str) -> Result<Slug, Error> {
        match Slug::check(s) {
            Ok(()) => Ok(Slug(s.to_string())),
            Err(p) => Err(Error::InvalidField { field, problem: p.as_str() }),
        }
    }

    /// The identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Slug {
    type Err = Error;
    fn from_str(s: &str) -> Result<Slug, Error> {
        Slug::for_field("identifier", s)
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A slug cannot hold PHI, so it is shown.
        write!(f, "{:?}", self.0)
    }
}

impl Serialize for Slug {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Slug {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Slug, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Slug::check(&s).map_err(|p| serde::de::Error::custom(p.as_str()))?;
        Ok(Slug(s.into_owned()))
    }
}

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $v:ident = $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum $name { $($(#[$vm])* $v,)* }

        impl $name {
            /// Every variant, in a stable order.
            pub const ALL: &'static [$name] = &[$($name::$v,)*];
            /// The stable snake_case name stored in records.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$v => $s,)* }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<$name, Error> {
                match s {
                    $($s => Ok($name::$v),)*
                    _ => Err(Error::InvalidField { field: $what, problem: concat!("is not a known ", $what) }),
                }
            }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                s.parse().map_err(|_| serde::de::Error::custom(concat!("unknown ", $what)))
            }
        }
    };
}

string_enum!(
    /// What happened.
    Action, "action" {
        /// An OpenAI-compatible chat completion passed through the gateway.
        ChatCompletion = "chat_completion",
        /// A text completion (legacy API).
        Completion = "completion",
        /// An embeddings request.
        Embedding = "embedding",
        /// A model listing.
        ModelList = "model_list",
        /// A de-identification through the API or the CLI.
        Deidentify = "deidentify",
        /// Tokens restored to values from the vault.
        VaultReidentify = "vault_reidentify",
        /// A data key crypto-shredded.
        VaultShred = "vault_shred",
        /// A data key or the key-encryption key rotated.
        VaultKeyRotate = "vault_key_rotate",
        /// Data keys expired by the retention rules.
        VaultRetention = "vault_retention",
        /// A signed checkpoint issued.
        CheckpointIssued = "checkpoint_issued",
        /// An export of the ledger written.
        LedgerExport = "ledger_export",
        /// A policy, use case, role or key changed.
        PolicyChange = "policy_change",
        /// A change request opened.
        ChangeRequest = "change_request",
        /// A change request approved.
        ChangeApproved = "change_approved",
        /// A change request rejected.
        ChangeRejected = "change_rejected",
        /// A change rolled back.
        ChangeRollback = "change_rollback",
        /// An authentication failed.
        AuthFailure = "auth_failure",
        /// A request refused by a rate limit.
        RateLimited = "rate_limited",
        /// An incident recorded.
        Incident = "incident",
        /// Another administrative action.
        Admin = "admin",
    }
);

string_enum!(
    /// What was decided.
    Decision, "decision" {
        /// Allowed as it was.
        Allow = "allow",
        /// Allowed after PHI was redacted.
        Redact = "redact",
        /// Allowed after PHI was replaced by vault tokens.
        Tokenize = "tokenize",
        /// Refused by policy.
        Deny = "deny",
        /// Refused because a check could not run (fail closed).
        Error = "error",
    }
);

/// A secret key for the record digests. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct HmacKey(Vec<u8>);

impl HmacKey {
    /// At least 16 bytes of secret.
    pub fn from_bytes(bytes: &[u8]) -> Result<HmacKey, Error> {
        if bytes.len() < 16 {
            return Err(Error::Key("the HMAC key must be at least 16 bytes".into()));
        }
        Ok(HmacKey(bytes.to_vec()))
    }

    /// A key from the base64 of at least 16 bytes (surrounding whitespace ignored).
    pub fn from_base64(b64: &str) -> Result<HmacKey, Error> {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| Error::Key("the HMAC key is not valid base64".into()))?;
        HmacKey::from_bytes(&raw)
    }

    /// 32 random bytes from the OS.
    pub fn generate() -> HmacKey {
        use rand::RngCore;
        let mut k = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        HmacKey(k)
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey(<redacted>)")
    }
}

/// An HMAC-SHA256 digest. The only way to make one is [`Hmac256::compute`]: a record cannot be
/// given arbitrary bytes in a digest field. Not `Clone`, so a digest read back from the ledger
/// cannot be moved into a new record either.
#[derive(PartialEq, Eq)]
pub struct Hmac256([u8; 32]);

/// The ledger's name for an organization identity (`user:…`, `svc:…`): the identity itself
/// when it is a slug already, else its kind and a keyed hash, `user:h.` and 26 letters (of
/// HMAC-SHA256 under the ledger's key), so that an identity the slug rules refuse (a numeric
/// staff id, a UUID with a run of digits, an e-mail address) is still told apart from every
/// other, never merged with one nor recorded as nobody. `phigate audit actor IDENTITY` prints
/// it for a search.
pub fn actor_name(key: &HmacKey, identity: &str) -> String {
    // An identity that is itself of the hashed form is hashed too: it could otherwise be
    // another identity's name.
    if Slug::check(identity).is_ok() && !hashed_form(identity) {
        return identity.to_string();
    }
    let kind = match identity.split_once(':') {
        Some((k, _)) if Slug::check(k).is_ok() && k.len() <= 16 => k,
        _ => "id",
    };
    let mut data = b"phigate-actor\0".to_vec();
    data.extend_from_slice(identity.as_bytes());
    let mac = Hmac256::compute(key, &data);
    let letters: String =
        mac.0[..13].iter().flat_map(|b| [b >> 4, b & 0x0f]).map(|n| char::from(b'a' + n)).collect();
    format!("{kind}:h.{letters}")
}

/// Whether `name` has the form [`actor_name`] gives a hashed identity: a kind, `:h.` and 26
/// letters `a` to `p`.
fn hashed_form(name: &str) -> bool {
    name.split_once(":h.")
        .is_some_and(|(_, l)| l.len() == 26 && l.bytes().all(|b| (b'a'..=b'p').contains(&b)))
}

impl Hmac256 {
    /// HMAC-SHA256 of `data` under `key`.
    pub fn compute(key: &HmacKey, data: &[u8]) -> Hmac256 {
        // new_from_slice accepts keys of any length for HMAC.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&key.0) {
            Ok(m) => m,
            Err(_) => unreachable_hmac(),
        };
        mac.update(data);
        Hmac256(mac.finalize().into_bytes().into())
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

#[cold]
fn unreachable_hmac() -> ! {
    // HMAC takes keys of any length: InvalidLength cannot happen.
    unreachable!("HMAC-SHA256 accepts keys of every length")
}

impl fmt::Debug for Hmac256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hmac256({})", self.to_hex())
    }
}

impl Serialize for Hmac256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// Only the record decoder reads digests back; it is private to this module.
struct WireDigest([u8; 32]);

impl<'de> Deserialize<'de> for WireDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<WireDigest, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        let mut out = [0u8; 32];
        if s.len() != 64 || s.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(serde::de::Error::custom("a digest is 64 lower-case hex digits"));
        }
        hex::decode_to_slice(s.as_bytes(), &mut out)
            .map_err(|_| serde::de::Error::custom("a digest is 64 lower-case hex digits"))?;
        Ok(WireDigest(out))
    }
}

/// The maximum number of identifier digests in one record.
pub const MAX_IDENTIFIER_HMACS: usize = 64;

/// One audit event. Built with [`Record::builder`]; read back with [`Record::decode`].
pub struct Record {
    ts_ms: i64,
    actor: Slug,
    action: Action,
    resource: Option<Slug>,
    use_case: Option<Slug>,
    purpose: Option<Slug>,
    decision: Decision,
    reason: Option<Slug>,
    model: Option<Slug>,
    model_version: Option<Slug>,
    provider: Option<Slug>,
    categories: BTreeMap<Category, u32>,
    latency_ms: Option<u32>,
    request_hmac: Option<Hmac256>,
    identifier_hmacs: Vec<Hmac256>,
    policy_version: Option<Slug>,
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Nothing in a record is PHI; the digests are keyed.
        f.debug_struct("Record")
            .field("ts_ms", &self.ts_ms)
            .field("actor", &self.actor)
            .field("action", &self.action)
            .field("resource", &self.resource)
            .field("use_case", &self.use_case)
            .field("purpose", &self.purpose)
            .field("decision", &self.decision)
            .field("reason", &self.reason)
            .field("model", &self.model)
            .field("model_version", &self.model_version)
            .field("provider", &self.provider)
            .field("categories", &self.categories)
            .field("latency_ms", &self.latency_ms)
            .field("request_hmac", &self.request_hmac)
            .field("identifier_hmacs", &self.identifier_hmacs.len())
            .field("policy_version", &self.policy_version)
            .finish()
    }
}

/// The canonical wire form, field order fixed. Shared by encoding and decoding.
#[derive(Serialize)]
struct WireOut<'a> {
    v: u32,
    ts_ms: i64,
    actor: &'a Slug,
    action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a Slug>,
    #[serde(skip_serializing_if = "Option::is_none")]
    use_case: Option<&'a Slug>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purpose: Option<&'a Slug>,
    decision: Decision,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a Slug>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a Slug>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: Option<&'a Slug>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a Slug>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    categories: BTreeMap<&'static str, u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_hmac: Option<&'a Hmac256>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    identifier_hmacs: &'a [Hmac256],
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_version: Option<&'a Slug>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireIn {
    v: u32,
    ts_ms: i64,
    actor: Slug,
    action: Action,
    resource: Option<Slug>,
    use_case: Option<Slug>,
    purpose: Option<Slug>,
    decision: Decision,
    reason: Option<Slug>,
    model: Option<Slug>,
    model_version: Option<Slug>,
    provider: Option<Slug>,
    #[serde(default)]
    categories: BTreeMap<String, u32>,
    latency_ms: Option<u32>,
    request_hmac: Option<WireDigest>,
    #[serde(default)]
    identifier_hmacs: Vec<WireDigest>,
    policy_version: Option<Slug>,
}

impl Record {
    /// Starts a record: who, what, and the decision. Everything else is optional.
    pub fn builder(actor: &str, action: Action, decision: Decision) -> RecordBuilder {
        RecordBuilder {
            actor: Slug::for_field("actor", actor),
            action,
            decision,
            ts_ms: None,
            resource: None,
            use_case: None,
            purpose: None,
            reason: None,
            model: None,
            model_version: None,
            provider: None,
            categories: BTreeMap::new(),
            latency_ms: None,
            request_hmac: None,
            identifier_hmacs: Vec::new(),
            policy_version: None,
            error: None,
        }
    }

    /// The canonical bytes: compact JSON, fixed field order, absent options omitted, categories
    /// sorted by name. This is what the leaf hash covers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let w = WireOut {
            v: RECORD_VERSION,
            ts_ms: self.ts_ms,
            actor: &self.actor,
            action: self.action,
            resource: self.resource.as_ref(),
            use_case: self.use_case.as_ref(),
            purpose: self.purpose.as_ref(),
            decision: self.decision,
            reason: self.reason.as_ref(),
            model: self.model.as_ref(),
            model_version: self.model_version.as_ref(),
            provider: self.provider.as_ref(),
            categories: self.categories.iter().map(|(c, n)| (c.as_str(), *n)).collect(),
            latency_ms: self.latency_ms,
            request_hmac: self.request_hmac.as_ref(),
            identifier_hmacs: &self.identifier_hmacs,
            policy_version: self.policy_version.as_ref(),
        };
        // Serialising plain structs of strings and numbers into a Vec cannot fail.
        serde_json::to_vec(&w).unwrap_or_default()
    }

    /// Decodes and validates canonical bytes. Refuses anything that does not re-encode to the
    /// very same bytes (so one record has exactly one encoding, and one leaf hash).
    pub fn decode(bytes: &[u8]) -> Result<Record, Error> {
        let w: WireIn = serde_json::from_slice(bytes).map_err(|e| {
            // serde_json's message can quote the offending input: keep only its category.
            Error::MalformedRecord(match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    "not valid JSON"
                }
                _ => "a field is missing, unknown or invalid",
            })
        })?;
        if w.v != RECORD_VERSION {
            return Err(Error::MalformedRecord("unsupported record version"));
        }
        let mut categories = BTreeMap::new();
        for (k, n) in w.categories {
            let c: Category =
                k.parse().map_err(|_| Error::MalformedRecord("unknown PHI category"))?;
            if c.as_str() != k || n == 0 {
                return Err(Error::MalformedRecord("category not canonical"));
            }
            categories.insert(c, n);
        }
        if w.identifier_hmacs.len() > MAX_IDENTIFIER_HMACS {
            return Err(Error::MalformedRecord("too many identifier digests"));
        }
        let r = Record {
            ts_ms: w.ts_ms,
            actor: w.actor,
            action: w.action,
            resource: w.resource,
            use_case: w.use_case,
            purpose: w.purpose,
            decision: w.decision,
            reason: w.reason,
            model: w.model,
            model_version: w.model_version,
            provider: w.provider,
            categories,
            latency_ms: w.latency_ms,
            request_hmac: w.request_hmac.map(|d| Hmac256(d.0)),
            identifier_hmacs: w.identifier_hmacs.into_iter().map(|d| Hmac256(d.0)).collect(),
            policy_version: w.policy_version,
        };
        if r.canonical_bytes() != bytes {
            return Err(Error::MalformedRecord("not in canonical form"));
        }
        Ok(r)
    }

    /// Milliseconds since the Unix epoch.
    pub fn ts_ms(&self) -> i64 {
        self.ts_ms
    }
    /// The identity that acted.
    pub fn actor(&self) -> &Slug {
        &self.actor
    }
    /// What happened.
    pub fn action(&self) -> Action {
        self.action
    }
    /// The resource acted on (a route, a vault scope, a key id…).
    pub fn resource(&self) -> Option<&Slug> {
        self.resource.as_ref()
    }
    /// The use case the request ran under.
    pub fn use_case(&self) -> Option<&Slug> {
        self.use_case.as_ref()
    }
    /// The purpose of use (treatment, payment, operations, research…).
    pub fn purpose(&self) -> Option<&Slug> {
        self.purpose.as_ref()
    }
    /// What was decided.
    pub fn decision(&self) -> Decision {
        self.decision
    }
    /// Why, as a code.
    pub fn reason(&self) -> Option<&Slug> {
        self.reason.as_ref()
    }
    /// The model.
    pub fn model(&self) -> Option<&Slug> {
        self.model.as_ref()
    }
    /// The model version.
    pub fn model_version(&self) -> Option<&Slug> {
        self.model_version.as_ref()
    }
    /// The provider (deployment) the request went to.
    pub fn provider(&self) -> Option<&Slug> {
        self.provider.as_ref()
    }
    /// PHI categories found, with counts (never the values).
    pub fn categories(&self) -> &BTreeMap<Category, u32> {
        &self.categories
    }
    /// Latency in milliseconds.
    pub fn latency_ms(&self) -> Option<u32> {
        self.latency_ms
    }
    /// The keyed digest of the request body.
    pub fn request_hmac(&self) -> Option<&Hmac256> {
        self.request_hmac.as_ref()
    }
    /// Keyed digests of identifiers (patient, encounter…).
    pub fn identifier_hmacs(&self) -> &[Hmac256] {
        &self.identifier_hmacs
    }
    /// The policy version in force.
    pub fn policy_version(&self) -> Option<&Slug> {
        self.policy_version.as_ref()
    }
}

/// Builds a [`Record`]. Every setter validates; [`RecordBuilder::build`] reports the first
/// invalid field by name (never its value).
#[must_use]
pub struct RecordBuilder {
    actor: Result<Slug, Error>,
    action: Action,
    decision: Decision,
    ts_ms: Option<i64>,
    resource: Option<Slug>,
    use_case: Option<Slug>,
    purpose: Option<Slug>,
    reason: Option<Slug>,
    model: Option<Slug>,
    model_version: Option<Slug>,
    provider: Option<Slug>,
    categories: BTreeMap<Category, u32>,
    latency_ms: Option<u32>,
    request_hmac: Option<Hmac256>,
    identifier_hmacs: Vec<Hmac256>,
    policy_version: Option<Slug>,
    error: Option<Error>,
}

impl fmt::Debug for RecordBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordBuilder").field("action", &self.action).finish_non_exhaustive()
    }
}

macro_rules! slug_setter {
    ($($(#[$m:meta])* $name:ident;)*) => {$(
        $(#[$m])*
        pub fn $name(mut self, value: &str) -> Self {
            match Slug::for_field(stringify!($name), value) {
                Ok(s) => self.$name = Some(s),
                Err(e) => { self.error.get_or_insert(e); }
            }
            self
        }
    )*};
}

impl RecordBuilder {
    /// The event time in milliseconds since the Unix epoch (default: now, at build time).
    pub fn ts_ms(mut self, ms: i64) -> Self {
        self.ts_ms = Some(ms);
        self
    }

    slug_setter! {
        /// The resource acted on (a route, a vault scope, a key id…).
        resource;
        /// The use case.
        use_case;
        /// The purpose of use.
        purpose;
        /// The reason code for the decision.
        reason;
        /// The model.
        model;
        /// The model version.
        model_version;
        /// The provider.
        provider;
        /// The policy version.
        policy_version;
    }

    /// Adds `count` findings of `category` (counts of one category add up; zero is ignored).
    pub fn category(mut self, category: Category, count: u32) -> Self {
        if count > 0 {
            let e = self.categories.entry(category).or_insert(0);
            *e = e.saturating_add(count);
        }
        self
    }

    /// The latency in milliseconds.
    pub fn latency_ms(mut self, ms: u32) -> Self {
        self.latency_ms = Some(ms);
        self
    }

    /// The keyed digest of the request body.
    pub fn request_hmac(mut self, d: Hmac256) -> Self {
        self.request_hmac = Some(d);
        self
    }

    /// Adds the keyed digest of one identifier.
    pub fn identifier_hmac(mut self, d: Hmac256) -> Self {
        if self.identifier_hmacs.len() >= MAX_IDENTIFIER_HMACS {
            self.error.get_or_insert(Error::InvalidField {
                field: "identifier_hmacs",
                problem: "holds more than 64 digests",
            });
        } else {
            self.identifier_hmacs.push(d);
        }
        self
    }

    /// Checks and returns the record.
    pub fn build(self) -> Result<Record, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let actor = self.actor?;
        let ts_ms = match self.ts_ms {
            Some(t) => t,
            None => now_ms(),
        };
        Ok(Record {
            ts_ms,
            actor,
            action: self.action,
            resource: self.resource,
            use_case: self.use_case,
            purpose: self.purpose,
            decision: self.decision,
            reason: self.reason,
            model: self.model,
            model_version: self.model_version,
            provider: self.provider,
            categories: self.categories,
            latency_ms: self.latency_ms,
            request_hmac: self.request_hmac,
            identifier_hmacs: self.identifier_hmacs,
            policy_version: self.policy_version,
        })
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_identity_gets_its_own_ledger_name() {
        let k = HmacKey::from_bytes(&[5u8; 32]).unwrap();
        assert_eq!(actor_name(&k, "user:jdoe"), "user:jdoe");
        let names: Vec<String> = [
            "user:1234567",
            "user:1234568",
            "user:a@b.org",
            "user:a-b.org",
            "user:JDoe",
            "svc:3f2a9c1e-0000-4000-8000-123456789012",
            "",
        ]
        .iter()
        .map(|id| actor_name(&k, id))
        .collect();
        for n in &names {
            assert!(Slug::check(n).is_ok(), "{n}");
            assert!(!n.contains("1234567") && !n.contains('@'), "{n}");
        }
        assert!(names[0].starts_with("user:h.") && names[5].starts_with("svc:h."), "{names:?}");
        assert!(names[6].starts_with("id:h."), "{names:?}");
        let distinct: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
        assert_eq!(actor_name(&k, "user:1234567"), names[0], "not stable");
        let other = HmacKey::from_bytes(&[6u8; 32]).unwrap();
        assert_ne!(actor_name(&other, "user:1234567"), names[0], "not keyed");
        // An identity spelled as another's hashed name does not become that name.
        assert_ne!(actor_name(&k, &names[0]), names[0]);
        assert!(actor_name(&k, &names[0]).starts_with("user:h."));
    }

    #[test]
    fn slug_rules() {
        for ok in [
            "svc-radiology",
            "gpt-4o",
            "v2024-08",
            "triage",
            "a",
            "reason:phi_blocked",
            "u.k_1:x-2",
        ] {
            assert!(Slug::check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Jane Doe",
            "jane doe",
            "123-45-6789",
            "ssn-123-45-6789",
            "03/14/1962",
            "d1962-03-14",
            "555-867-5309",
            "tel:5558675309",
            "a@b.com",
            "http://x",
            "mrn4471902",
            "Ärger",
            &"a".repeat(65),
        ] {
            assert!(Slug::check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn canonical_round_trip() {
        let k = HmacKey::from_bytes(&[7u8; 32]).unwrap();
        let r = Record::builder("svc-a", Action::ChatCompletion, Decision::Redact)
            .ts_ms(1_700_000_000_000)
            .use_case("triage")
            .model("gpt-4o")
            .category(Category::Name, 2)
            .category(Category::Date, 1)
            .request_hmac(Hmac256::compute(&k, b"body"))
            .identifier_hmac(Hmac256::compute(&k, b"id"))
            .build()
            .unwrap();
        let b = r.canonical_bytes();
        let s = std::str::from_utf8(&b).unwrap();
        assert!(s.starts_with(r#"{"v":1,"ts_ms":1700000000000,"actor":"svc-a","action":"chat_completion","use_case":"triage","decision":"redact","model":"gpt-4o","categories":{"DATE":1,"NAME":2},"request_hmac":""#), "{s}");
        let back = Record::decode(&b).unwrap();
        assert_eq!(back.canonical_bytes(), b);
        // A non-canonical spelling is refused.
        let spaced = s.replacen(",", ", ", 1);
        assert!(Record::decode(spaced.as_bytes()).is_err());
        let reordered =
            s.replacen(r#""v":1,"ts_ms":1700000000000"#, r#""ts_ms":1700000000000,"v":1"#, 1);
        assert!(Record::decode(reordered.as_bytes()).is_err());
    }
}
