//! Validated identifiers and reason codes. The ledger never holds free text, so every reason is a
//! closed set of codes, and scopes, tokens, categories and actors are checked before they reach the
//! store or the ledger.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// Longest scope, token, actor or KEK id accepted.
pub const MAX_ID_LEN: usize = 128;
/// Longest value accepted, in bytes.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

fn invalid(what: &'static str, rule: &'static str) -> Error {
    Error::Invalid { what, rule }
}

/// Scopes, key ids and KEK ids: 1..=128 of `[A-Za-z0-9._:/-]`.
pub(crate) fn validate_id(what: &'static str, s: &str) -> Result<(), Error> {
    if s.is_empty() || s.len() > MAX_ID_LEN {
        return Err(invalid(what, "must be 1 to 128 characters"));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b)) {
        return Err(invalid(what, "only A-Z a-z 0-9 . _ : / - are allowed"));
    }
    Ok(())
}

/// A scope (conversation, session or tenant id).
pub(crate) fn validate_scope(s: &str) -> Result<(), Error> {
    validate_id("scope", s)
}

/// Tokens (placeholders such as `[NAME_1]`): 1..=128 of `[A-Za-z0-9._:#-]` and brackets.
pub(crate) fn validate_token(s: &str) -> Result<(), Error> {
    if s.is_empty() || s.len() > MAX_ID_LEN {
        return Err(invalid("token", "must be 1 to 128 characters"));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:#-[]<>{}".contains(&b)) {
        return Err(invalid("token", "only A-Z a-z 0-9 . _ : # - and brackets are allowed"));
    }
    Ok(())
}

/// Values: non-empty, at most [`MAX_VALUE_LEN`] bytes.
pub(crate) fn validate_value(s: &str) -> Result<(), Error> {
    if s.is_empty() || s.len() > MAX_VALUE_LEN {
        return Err(invalid("value", "must be 1 byte to 64 KiB"));
    }
    Ok(())
}

/// Who asks: an organization identity (a user, service or agent id). It goes into the ledger, so
/// it follows the ledger's slug rules (lower-case `a-z 0-9 . _ : -`, starting with a letter, at
/// most 64 bytes, no long digit runs): no free text, no e-mail address, no number that could
/// identify a patient.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Actor(String);

impl Actor {
    /// Validates an actor id.
    pub fn new(id: &str) -> Result<Actor, Error> {
        match ledger::Slug::check(id) {
            Ok(()) => Ok(Actor(id.to_owned())),
            Err(p) => Err(invalid("actor", p.as_str())),
        }
    }

    /// The vault's own actor for the retention sweeper (a valid slug; a test checks it).
    pub(crate) fn sweeper() -> Actor {
        Actor(String::from("system:vault-sweeper"))
    }

    /// The actor id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Actor({})", self.0)
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! code_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every code, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The stable code written to the ledger.
            pub fn code(self) -> &'static str {
                match self {
                    $($name::$variant => $code,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.code())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                match s {
                    $($code => Ok($name::$variant),)*
                    _ => Err(invalid("reason", concat!("not a known ", stringify!($name), " code"))),
                }
            }
        }
    };
}

code_enum! {
    /// Why a caller re-identifies tokens (HIPAA's permitted purposes, as codes).
    RevealReason {
        /// Treatment of the patient.
        Treatment = "treatment",
        /// Payment for care.
        Payment = "payment",
        /// Health care operations (quality, training, administration).
        Operations = "operations",
        /// The patient (or their representative) asked for their own data.
        PatientRequest = "patient_request",
        /// Required by law, subpoena or court order.
        LegalRequirement = "legal_requirement",
        /// Public-health reporting.
        PublicHealth = "public_health",
        /// IRB- or privacy-board-approved research.
        ApprovedResearch = "approved_research",
        /// Security or privacy incident investigation.
        IncidentInvestigation = "incident_investigation",
        /// Returning an AI response to the requester whose own request held the values.
        ResponseRestore = "response_restore",
    }
}

code_enum! {
    /// Why a scope's data keys are crypto-shredded.
    ShredReason {
        /// The scope's retention period ended (the sweeper).
        RetentionExpired = "retention_expired",
        /// The conversation or session closed and its mappings are no longer needed.
        ScopeClosed = "scope_closed",
        /// The patient asked for their data to be deleted.
        PatientRequest = "patient_request",
        /// An administrator decided it.
        AdministratorRequest = "administrator_request",
        /// The key may be compromised.
        KeyCompromise = "key_compromise",
        /// Part of an incident response.
        IncidentResponse = "incident_response",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_validate() {
        assert!(validate_scope("conv-1:tenant/a.b_c").is_ok());
        for bad in ["", "has space", "ümlaut", &"x".repeat(129), "semi;colon"] {
            assert!(validate_scope(bad).is_err(), "{bad:?}");
        }
        assert!(validate_token("[NAME_1]").is_ok());
        assert!(validate_token("[NAME 1]").is_err());
        assert!(validate_value("").is_err());
        assert!(validate_value(&"x".repeat(MAX_VALUE_LEN + 1)).is_err());
        assert!(Actor::new("user:alice.example").is_ok());
        assert_eq!(Actor::new(Actor::sweeper().as_str()).ok(), Some(Actor::sweeper()));
        assert!(Actor::new("user:alice@example.org").is_err());
        let e = Actor::new("Jane Roe asked").expect_err("free text");
        assert!(!e.to_string().contains("Jane"));
    }

    #[test]
    fn codes_round_trip_and_refuse_free_text() {
        for r in RevealReason::ALL {
            assert_eq!(r.code().parse::<RevealReason>().expect("parses"), *r);
        }
        for r in ShredReason::ALL {
            assert_eq!(r.code().parse::<ShredReason>().expect("parses"), *r);
        }
        let e = "because the doctor said so".parse::<RevealReason>().expect_err("free text");
        assert!(!e.to_string().contains("doctor"));
    }
}
