//! The decision for one request: use case, roles, model, handling per PHI category after
//! precedence (organization over use case over key over request), output rules, and which
//! deployments may receive the request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use phi::Category;
use time::OffsetDateTime;

use crate::model::*;
use crate::{ConfigErrors, Denial, Secret};

/// Number of PHI categories.
pub const CATEGORIES: usize = Category::ALL.len();

/// Who is calling: an organization identity (`user:jdoe`, `svc:triage-bot`), never a patient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The organization identity.
    pub id: String,
    /// Roles (only roles the configuration declares).
    pub roles: Vec<String>,
    /// The key's or the token's default use case.
    pub default_use_case: Option<String>,
    /// The API key's id, when authenticated by a key.
    pub key_id: Option<String>,
    /// How the caller was authenticated.
    pub via: AuthKind,
}

/// How an identity was authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    /// A `pg_...` API key.
    ApiKey,
    /// An OIDC JWT.
    Jwt,
}

/// What the request asks for. Not `Debug`: `model` is the client's unchecked text.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    /// The `model` field.
    pub model: String,
    /// `X-Phigate-Use-Case`, if given (else the identity's default).
    pub use_case: Option<String>,
    /// `X-Phigate-Phi-Handling`: may only make every category's handling stricter. A request's
    /// `private_only` keeps a tokenized category tokenized and sends the request's PHI to
    /// private deployments only ([`Decision::private_routing`]): raw values never leave where
    /// the policy would have tokenized them.
    pub tighten: Option<Handling>,
}

/// Everything the gateway needs to handle one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The use case in force.
    pub use_case: String,
    /// Its purpose (`treatment`, ...).
    pub purpose: String,
    /// The model name the client asked for.
    pub model: String,
    /// Handling per category (index: `Category::index()`), after precedence.
    pub handling: [Handling; CATEGORIES],
    /// The request asked (`X-Phigate-Phi-Handling: private_only`) that its PHI, tokenized
    /// included, go to private deployments only.
    pub private_routing: bool,
    /// Tokenized categories that go to private deployments only when present (index:
    /// `Category::index()`): the organization's floor says `private_only` and the use case
    /// `tokenize`. Both hold: the values are tokenized (the use case's word) and the request
    /// goes to private deployments (the organization's).
    pub private_tokens: [bool; CATEGORIES],
    /// Whether this caller may see tokens restored to their values.
    pub reidentify: bool,
    /// PHI in the answer that was not in the request.
    pub new_phi: NewPhi,
    /// How streamed answers are scanned.
    pub stream_scan: StreamScan,
    /// Prompt-injection screening.
    pub prompt_injection: InjectionMode,
    /// [`Policy::version`] of the policy that decided.
    pub policy_version: String,
}

impl Decision {
    /// The handling of one category.
    pub fn handling_of(&self, c: Category) -> Handling {
        self.handling[c.index()]
    }

    /// Categories that are blocked.
    pub fn blocked(&self) -> Vec<Category> {
        Category::ALL.into_iter().filter(|c| self.handling_of(*c) == Handling::Block).collect()
    }

    /// Whether a request in which `present` categories remain (after handling) may go to
    /// private deployments only: one of them is `private_only`, or the request asked for it.
    pub fn private_only_for(&self, present: &[Category]) -> bool {
        !present.is_empty()
            && (self.private_routing
                || present.iter().any(|c| {
                    self.handling_of(*c) == Handling::PrivateOnly || self.private_tokens[c.index()]
                }))
    }
}

/// One place a request may go.
#[derive(Clone, Debug)]
pub struct Deployment {
    /// The provider's name.
    pub provider: String,
    /// Its API flavour.
    pub kind: ProviderKind,
    /// Its base URL.
    pub base_url: String,
    /// The upstream's model id.
    pub model: String,
    /// The key sent upstream.
    pub api_key: Option<Secret>,
    /// Azure's `api-version`.
    pub api_version: Option<String>,
    /// `hosting: private`.
    pub private: bool,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
    /// Load-balancing weight.
    pub weight: u32,
}

/// The policy: a validated configuration with its indexes, cheap to clone and share.
#[derive(Clone)]
pub struct Policy {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    use_cases: HashMap<String, usize>,
    models: HashMap<String, usize>,
    providers: HashMap<String, usize>,
    pub(crate) oidc: Option<crate::oidc::Verifier>,
    pub(crate) keys: crate::keys::KeyCache,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("version", &self.version()).finish_non_exhaustive()
    }
}

impl Policy {
    /// Builds the policy (loads a JWKS file if one is configured).
    pub fn new(config: Config) -> Result<Policy, ConfigErrors> {
        let index = |names: Vec<&String>| {
            names.into_iter().enumerate().map(|(i, n)| (n.clone(), i)).collect::<HashMap<_, _>>()
        };
        let use_cases = index(config.use_cases.iter().map(|u| &u.name).collect());
        let models = index(config.models.iter().map(|m| &m.name).collect());
        let providers = index(config.providers.iter().map(|p| &p.name).collect());
        let oidc = match &config.oidc {
            Some(o) => Some(crate::oidc::Verifier::new(o, &config.base_dir).map_err(|m| {
                ConfigErrors(vec![crate::ConfigProblem {
                    path: "oidc.jwks".into(),
                    line: None,
                    message: m,
                }])
            })?),
            None => None,
        };
        let keys = crate::keys::KeyCache::new(std::time::Duration::from_secs(
            config.server.key_cache_secs,
        ));
        Ok(Policy { inner: Arc::new(Inner { config, use_cases, models, providers, oidc, keys }) })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A hash of the resolved configuration (16 hex digits): changes when the file or a secret
    /// changes.
    pub fn version(&self) -> &str {
        &self.inner.config.version
    }

    /// The use case named `name`.
    pub fn use_case(&self, name: &str) -> Option<&UseCase> {
        self.inner.use_cases.get(name).map(|&i| &self.inner.config.use_cases[i])
    }

    /// The provider named `name`.
    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.inner.providers.get(name).map(|&i| &self.inner.config.providers[i])
    }

    /// The use cases this identity may use (one of its roles is in the use case's roles).
    pub fn use_cases_for(&self, who: &Identity) -> Vec<&UseCase> {
        self.inner
            .config
            .use_cases
            .iter()
            .filter(|u| u.roles.iter().any(|r| who.roles.contains(r)))
            .collect()
    }

    /// The limits that apply to a request of `who` under `use_case`: those of any of its
    /// roles and those of the use case (the gateway enforces each one).
    pub fn limits_for(&self, who: &Identity, use_case: &str) -> Vec<&Limit> {
        self.inner
            .config
            .limits
            .iter()
            .filter(|l| {
                l.role.as_ref().is_some_and(|r| who.roles.contains(r))
                    || l.use_case.as_deref() == Some(use_case)
            })
            .collect()
    }

    /// The organization's floor for one category (before any use case).
    pub fn organization_floor(&self, c: Category) -> Handling {
        let org = &self.inner.config.organization;
        if org.blocked_categories.contains(&c) {
            return Handling::Block;
        }
        org.categories.get(&c).copied().unwrap_or(Handling::Tokenize)
    }

    /// Everything the gateway needs to handle one request, or why not.
    ///
    /// Order of checks: use case (from the request, else the identity's default) must exist,
    /// one of the identity's roles must be in its roles, the model must be in its models.
    /// Handling per category = the strictest of the organization's floor, the use case's
    /// handling and the request's `tighten`, except where `private_only` meets `tokenize`
    /// (`private_only` sends values as they are, which tokenize does not: stricter in where
    /// they go, looser in what goes). A request's `private_only` leaves a tokenized category
    /// tokenized and sets [`Decision::private_routing`]; an organization's `private_only` over
    /// a use case's `tokenize` leaves the category tokenized and sets
    /// [`Decision::private_tokens`] for it.
    pub fn decide(
        &self,
        who: &Identity,
        req: &RequestMeta,
        _now: OffsetDateTime,
    ) -> Result<Decision, Denial> {
        let name = req
            .use_case
            .as_deref()
            .or(who.default_use_case.as_deref())
            .ok_or(Denial::UseCaseNotAllowed)?;
        let uc = self.use_case(name).ok_or(Denial::UseCaseNotAllowed)?;
        if !uc.roles.iter().any(|r| who.roles.contains(r)) {
            return Err(Denial::RoleNotAllowed);
        }
        if !uc.models.contains(&req.model) || !self.inner.models.contains_key(&req.model) {
            return Err(Denial::ModelNotAllowed);
        }
        let mut handling = [Handling::Block; CATEGORIES];
        let mut private_tokens = [false; CATEGORIES];
        let private_routing = req.tighten == Some(Handling::PrivateOnly);
        for c in Category::ALL {
            let from_uc = uc.phi.categories.get(&c).copied().unwrap_or(uc.phi.default);
            let floor = self.organization_floor(c);
            let mut h = from_uc.max(floor);
            // An organization's private_only over a use case's tokenize: tokens, to private
            // deployments only (sending the values as they are would undo the use case's
            // tokenize).
            if from_uc == Handling::Tokenize && floor == Handling::PrivateOnly {
                h = Handling::Tokenize;
                private_tokens[c.index()] = true;
            }
            match req.tighten {
                Some(Handling::PrivateOnly) if h == Handling::Tokenize => {}
                Some(t) => h = h.max(t),
                None => {}
            }
            handling[c.index()] = h;
            private_tokens[c.index()] &= h == Handling::Tokenize;
        }
        let reidentify = uc
            .output
            .reidentify_roles
            .iter()
            .any(|r| who.roles.contains(r) && uc.roles.contains(r));
        Ok(Decision {
            use_case: uc.name.clone(),
            purpose: uc.purpose.as_str().to_string(),
            model: req.model.clone(),
            handling,
            private_routing,
            private_tokens,
            reidentify,
            new_phi: uc.output.new_phi,
            stream_scan: uc.output.stream_scan,
            prompt_injection: uc.prompt_injection,
            policy_version: self.version().to_string(),
        })
    }

    /// Deployments of the decision's model that may receive this request now, in fallback
    /// order. With `phi_present`, a provider needs `hosting: private` or a signed BAA that has
    /// not expired at `now`; and since the categories are not known here, a decision with any
    /// `private_only` category keeps only private providers (see [`Policy::eligible_for`] for
    /// the exact rule when the categories found are known).
    pub fn eligible(
        &self,
        d: &Decision,
        phi_present: bool,
        now: OffsetDateTime,
    ) -> Vec<Deployment> {
        if !phi_present {
            return self.deployments(d, |_| true);
        }
        let private_only = d.private_routing
            || d.handling.contains(&Handling::PrivateOnly)
            || d.private_tokens.contains(&true);
        self.deployments(d, |p| phi_allowed(p, private_only, now))
    }

    /// Like [`Policy::eligible`], given the categories actually present in the request after
    /// handling: only private providers if one of them is `private_only` (or the request asked
    /// for it, [`Decision::private_routing`]); private or BAA-covered
    /// providers if any is present; every deployment if none is.
    pub fn eligible_for(
        &self,
        d: &Decision,
        present: &[Category],
        now: OffsetDateTime,
    ) -> Vec<Deployment> {
        if present.is_empty() {
            return self.deployments(d, |_| true);
        }
        let private_only = d.private_only_for(present);
        self.deployments(d, |p| phi_allowed(p, private_only, now))
    }

    /// Whether the deployment of `d`'s model on `provider` (upstream model `model`, at
    /// `base_url`) may still receive this request at `now`, under this policy: it is still
    /// configured, at the same address, and, with
    /// PHI `present`, its provider's BAA still covers it (or it is private). Checked again
    /// before each attempt, so that a BAA that lapses, or a reload that takes a provider out of
    /// rotation, stops requests already in flight from falling back or retrying onto it.
    pub fn still_eligible(
        &self,
        d: &Decision,
        present: &[Category],
        provider: &str,
        model: &str,
        base_url: &str,
        now: OffsetDateTime,
    ) -> bool {
        let Some(&mi) = self.inner.models.get(&d.model) else { return false };
        let private_only = d.private_only_for(present);
        self.inner.config.models[mi].deployments.iter().any(|dep| {
            dep.provider == provider
                && dep.model == model
                && self.provider(&dep.provider).is_some_and(|p| {
                    p.base_url == base_url
                        && (present.is_empty() || phi_allowed(p, private_only, now))
                })
        })
    }

    fn deployments(&self, d: &Decision, keep: impl Fn(&Provider) -> bool) -> Vec<Deployment> {
        let Some(&mi) = self.inner.models.get(&d.model) else { return Vec::new() };
        let model = &self.inner.config.models[mi];
        model
            .deployments
            .iter()
            .filter_map(|dep| {
                let p = self.provider(&dep.provider)?;
                keep(p).then(|| Deployment {
                    provider: p.name.clone(),
                    kind: p.kind,
                    base_url: p.base_url.clone(),
                    model: dep.model.clone(),
                    api_key: p.api_key.clone(),
                    api_version: p.api_version.clone(),
                    private: p.hosting == Hosting::Private,
                    timeout: Duration::from_millis(p.timeout_ms),
                    retries: p.retries,
                    weight: dep.weight,
                })
            })
            .collect()
    }
}

/// Whether a provider's BAA covers PHI at `now`: signed, and `now` before its expiry.
pub fn baa_valid(p: &Provider, now: OffsetDateTime) -> bool {
    p.baa.signed
        && match p.baa.expires_at {
            Some(e) => now < e,
            None => true,
        }
}

fn phi_allowed(p: &Provider, private_only: bool, now: OffsetDateTime) -> bool {
    match p.hosting {
        Hosting::Private => true,
        Hosting::Cloud => !private_only && baa_valid(p, now),
    }
}
