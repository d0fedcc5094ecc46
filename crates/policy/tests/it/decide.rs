//! Decisions: scopes, precedence (a request only tightens), BAA expiry and hosting.

use phi::Category;
use policy::{AuthKind, Config, Denial, Handling, Identity, Policy, RequestMeta};
use proptest::prelude::*;
use time::macros::datetime;
use time::OffsetDateTime;

use crate::common::{secrets, MINIMAL};

pub fn policy_from(yaml: &str) -> Policy {
    let dir = tempfile::tempdir().unwrap();
    secrets(dir.path());
    Policy::new(Config::from_yaml(yaml, dir.path()).unwrap_or_else(|e| panic!("{e}"))).unwrap()
}

fn who(roles: &[&str], uc: Option<&str>) -> Identity {
    Identity {
        id: "user:jdoe".into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        default_use_case: uc.map(str::to_string),
        key_id: None,
        via: AuthKind::ApiKey,
    }
}

fn req(model: &str, uc: Option<&str>, tighten: Option<Handling>) -> RequestMeta {
    RequestMeta { model: model.into(), use_case: uc.map(str::to_string), tighten }
}

const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

#[test]
fn scopes_are_enforced() {
    let p = policy_from(MINIMAL);
    let c = who(&["clinician"], Some("notes"));
    let d = p.decide(&c, &req("chat", None, None), NOW).unwrap();
    assert_eq!(d.use_case, "notes");
    assert_eq!(d.purpose, "treatment");
    assert!(d.reidentify);
    assert_eq!(d.policy_version, p.version());
    assert_eq!(d.handling_of(Category::Ssn), Handling::Block);
    assert_eq!(d.handling_of(Category::Date), Handling::Redact);
    assert_eq!(d.handling_of(Category::Name), Handling::Tokenize);
    assert_eq!(d.blocked(), vec![Category::Ssn]);
    // Model outside the use case's system scope.
    assert_eq!(p.decide(&c, &req("other", None, None), NOW), Err(Denial::ModelNotAllowed));
    assert_eq!(p.decide(&c, &req("gpt-9", None, None), NOW), Err(Denial::ModelNotAllowed));
    // Use case outside the caller's roles, unknown, or none at all.
    assert_eq!(
        p.decide(&c, &req("chat", Some("research"), None), NOW),
        Err(Denial::RoleNotAllowed)
    );
    assert_eq!(p.decide(&c, &req("chat", Some("nope"), None), NOW), Err(Denial::UseCaseNotAllowed));
    assert_eq!(
        p.decide(&who(&["clinician"], None), &req("chat", None, None), NOW),
        Err(Denial::UseCaseNotAllowed)
    );
    // A researcher with both roles' use cases; no re-identification outside reidentify_roles.
    let r = who(&["researcher"], Some("research"));
    let d = p.decide(&r, &req("other", None, None), NOW).unwrap();
    assert!(!d.reidentify);
    assert_eq!(d.handling_of(Category::Location), Handling::PrivateOnly);
    assert_eq!(d.handling_of(Category::Name), Handling::Redact);
    assert_eq!(p.use_cases_for(&r).len(), 1);
}

#[test]
fn a_request_only_tightens() {
    let p = policy_from(MINIMAL);
    let c = who(&["clinician"], Some("notes"));
    let d = p.decide(&c, &req("chat", None, Some(Handling::Redact)), NOW).unwrap();
    assert_eq!(d.handling_of(Category::Name), Handling::Redact);
    assert_eq!(d.handling_of(Category::Ssn), Handling::Block);
    // Asking for tokenize where the use case says redact changes nothing.
    let d = p.decide(&c, &req("chat", None, Some(Handling::Tokenize)), NOW).unwrap();
    assert_eq!(d.handling_of(Category::Date), Handling::Redact);
    assert_eq!(d.handling_of(Category::Ssn), Handling::Block);
}

const CLOUD_URL: &str = "https://example.openai.azure.com/openai";

#[test]
fn a_request_for_private_only_keeps_tokens_and_routes_privately() {
    let p = policy_from(MINIMAL);
    let c = who(&["clinician"], Some("notes"));
    let d = p.decide(&c, &req("chat", None, None), NOW).unwrap();
    assert!(!d.private_routing);
    assert_eq!(names(&p.eligible_for(&d, &[Category::Name], NOW)), ["cloud", "local"]);
    assert!(p.still_eligible(&d, &[Category::Name], "cloud", "gpt-4o", CLOUD_URL, NOW));
    // `private_only` from a request sends raw values where the use case tokenizes them: that
    // would loosen. A tokenized category stays tokenized, and the PHI goes to private
    // deployments only.
    let d = p.decide(&c, &req("chat", None, Some(Handling::PrivateOnly)), NOW).unwrap();
    assert!(d.private_routing);
    assert_eq!(d.handling_of(Category::Name), Handling::Tokenize);
    assert_eq!(d.handling_of(Category::Date), Handling::Redact);
    assert_eq!(d.handling_of(Category::Ssn), Handling::Block);
    assert_eq!(names(&p.eligible_for(&d, &[Category::Name], NOW)), ["local"]);
    assert_eq!(names(&p.eligible_for(&d, &[Category::Date], NOW)), ["local"]);
    assert_eq!(names(&p.eligible(&d, true, NOW)), ["local"]);
    assert!(p.still_eligible(
        &d,
        &[Category::Name],
        "local",
        "llama",
        "http://127.0.0.1:8000/v1",
        NOW
    ));
    assert!(!p.still_eligible(&d, &[Category::Name], "cloud", "gpt-4o", CLOUD_URL, NOW));
    // Without PHI left in the request, it may go anywhere.
    assert_eq!(names(&p.eligible_for(&d, &[], NOW)), ["cloud", "nobaa", "local"]);
}

/// An organization's `private_only` over a use case's `tokenize`: the values stay tokenized
/// (sending them as they are would undo the use case's choice) and go to private deployments
/// only (the organization's).
#[test]
fn an_organization_private_only_over_tokenize_keeps_tokens_and_routes_privately() {
    let yaml = MINIMAL.replace(
        "{ blocked_categories: [SSN] }",
        "{ blocked_categories: [SSN], categories: { NAME: private_only, DATE: private_only } }",
    );
    let p = policy_from(&yaml);
    let d = p.decide(&who(&["clinician"], Some("notes")), &req("chat", None, None), NOW).unwrap();
    assert_eq!(d.handling_of(Category::Name), Handling::Tokenize);
    assert!(d.private_tokens[Category::Name.index()]);
    // DATE is redacted by the use case: stricter than either, and nothing routes by it.
    assert_eq!(d.handling_of(Category::Date), Handling::Redact);
    assert!(!d.private_tokens[Category::Date.index()]);
    assert_eq!(names(&p.eligible_for(&d, &[Category::Name], NOW)), ["local"]);
    assert_eq!(names(&p.eligible_for(&d, &[Category::Location], NOW)), ["cloud", "local"]);
    assert_eq!(names(&p.eligible(&d, true, NOW)), ["local"]);
    assert!(!p.still_eligible(&d, &[Category::Name], "cloud", "gpt-4o", CLOUD_URL, NOW));
    // A request asking for tokens gets them still, privately.
    let d = p
        .decide(
            &who(&["clinician"], Some("notes")),
            &req("chat", None, Some(Handling::Tokenize)),
            NOW,
        )
        .unwrap();
    assert_eq!(d.handling_of(Category::Name), Handling::Tokenize);
    assert_eq!(names(&p.eligible_for(&d, &[Category::Name], NOW)), ["local"]);
}

fn names(v: &[policy::Deployment]) -> Vec<&str> {
    v.iter().map(|d| d.provider.as_str()).collect()
}

#[test]
fn baa_expiry_takes_a_provider_out_of_rotation_at_once() {
    let p = policy_from(MINIMAL);
    let d = p.decide(&who(&["clinician"], Some("notes")), &req("chat", None, None), NOW).unwrap();
    let expiry = datetime!(2027-01-01 00:00 UTC);
    let before = expiry - time::Duration::nanoseconds(1);
    // Without PHI every deployment is eligible, in fallback order.
    assert_eq!(names(&p.eligible(&d, false, expiry)), ["cloud", "nobaa", "local"]);
    // With PHI: the unsigned cloud provider never; the signed one up to its expiry, not at it.
    assert_eq!(names(&p.eligible(&d, true, before)), ["cloud", "local"]);
    assert_eq!(names(&p.eligible(&d, true, expiry)), ["local"]);
    assert_eq!(names(&p.eligible(&d, true, expiry + time::Duration::days(400))), ["local"]);
    let dep = &p.eligible(&d, true, before)[0];
    assert!(!dep.private);
    assert_eq!(dep.api_version.as_deref(), Some("2024-06-01"));
    assert_eq!(dep.timeout, std::time::Duration::from_secs(30));
}

#[test]
fn private_only_keeps_phi_on_private_providers() {
    let p = policy_from(MINIMAL);
    let d =
        p.decide(&who(&["researcher"], Some("research")), &req("chat", None, None), NOW).unwrap();
    // The decision has a private_only category: without knowing which categories were found,
    // only private providers.
    assert_eq!(names(&p.eligible(&d, true, NOW)), ["local"]);
    // Knowing them: a redacted NAME may go to the BAA-covered cloud; a LOCATION may not.
    assert_eq!(names(&p.eligible_for(&d, &[Category::Name], NOW)), ["cloud", "local"]);
    assert_eq!(names(&p.eligible_for(&d, &[Category::Name, Category::Location], NOW)), ["local"]);
    assert_eq!(names(&p.eligible_for(&d, &[], NOW)), ["cloud", "nobaa", "local"]);
}

#[test]
fn no_provider_left_is_an_empty_list() {
    let yaml = MINIMAL.replace(
        "      - { provider: local, model: llama }\n  - { name: other",
        "  - { name: other",
    );
    let p = policy_from(&yaml);
    let d = p.decide(&who(&["clinician"], Some("notes")), &req("chat", None, None), NOW).unwrap();
    assert!(p.eligible(&d, true, datetime!(2027-06-01 00:00 UTC)).is_empty());
}

fn handling() -> impl Strategy<Value = Handling> {
    prop::sample::select(Handling::ALL.to_vec())
}

fn category() -> impl Strategy<Value = Category> {
    prop::sample::select(Category::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    /// For every organization floor, use case handling and request: the decided handling per
    /// category is at least the organization's and the use case's, and at least the request's.
    #[test]
    fn decided_handling_is_never_looser(
        org_blocked in prop::collection::vec(category(), 0..4),
        org_floor in prop::collection::btree_map(category(), handling(), 0..5),
        uc_default in handling(),
        uc_cats in prop::collection::btree_map(category(), handling(), 0..8),
        tighten in prop::option::of(handling()),
    ) {
        let fmt_map = |m: &std::collections::BTreeMap<Category, Handling>| {
            m.iter().map(|(c, h)| format!("{c}: {}", h.as_str())).collect::<Vec<_>>().join(", ")
        };
        let blocked: Vec<String> = org_blocked.iter().map(|c| c.to_string()).collect();
        let yaml = MINIMAL
            .replace("{ blocked_categories: [SSN] }", &format!("{{ blocked_categories: [{}], categories: {{ {} }} }}", blocked.join(", "), fmt_map(&org_floor)))
            .replace("phi: { default: tokenize, categories: { DATE: redact } }", &format!("phi: {{ default: {}, categories: {{ {} }} }}", uc_default.as_str(), fmt_map(&uc_cats)));
        let p = policy_from(&yaml);
        let d = p.decide(&who(&["clinician"], Some("notes")), &req("chat", None, tighten), NOW).unwrap();
        for c in Category::ALL {
            let h = d.handling_of(c);
            let org = if org_blocked.contains(&c) { Handling::Block } else { org_floor.get(&c).copied().unwrap_or(Handling::Tokenize) };
            let uc = uc_cats.get(&c).copied().unwrap_or(uc_default);
            // private_only over tokenize: tokens, to private deployments only.
            let private_tokens = uc == Handling::Tokenize && org == Handling::PrivateOnly;
            let routed = private_tokens && h == Handling::Tokenize;
            prop_assert!(h >= org || routed, "{c}: {h:?} < organization {org:?}");
            prop_assert!(h >= uc, "{c}: {h:?} < use case {uc:?}");
            let floor = if private_tokens { Handling::Tokenize } else { org.max(uc) };
            let want = match tighten {
                // A request's private_only never turns tokenize into raw values.
                Some(Handling::PrivateOnly) if floor == Handling::Tokenize => Handling::Tokenize,
                t => floor.max(t.unwrap_or(Handling::Tokenize)),
            };
            prop_assert_eq!(h, want);
            prop_assert_eq!(d.private_tokens[c.index()], routed);
            prop_assert_eq!(d.private_routing, tighten == Some(Handling::PrivateOnly));
            prop_assert_eq!(p.organization_floor(c), org);
        }
    }
}

#[test]
fn limits_for_roles_and_use_cases() {
    let yaml = format!("{MINIMAL}limits:\n  - {{ role: clinician, requests_per_minute: 10 }}\n  - {{ use_case: notes, tokens_per_minute: 1000 }}\n  - {{ role: researcher, requests_per_minute: 5 }}\n");
    let p = policy_from(&yaml);
    let l = p.limits_for(&who(&["clinician"], None), "notes");
    assert_eq!(l.len(), 2);
    assert_eq!(l[0].requests_per_minute, Some(10));
    assert_eq!(l[1].tokens_per_minute, Some(1000));
    assert_eq!(p.limits_for(&who(&["researcher"], None), "research").len(), 1);
}

#[test]
fn handling_names_order_and_json() {
    assert!(Handling::Tokenize < Handling::PrivateOnly);
    assert!(Handling::PrivateOnly < Handling::Redact);
    assert!(Handling::Redact < Handling::Block);
    for h in Handling::ALL {
        assert_eq!(h.to_string().parse::<Handling>(), Ok(h));
        assert_eq!(serde_json::to_string(&h).unwrap(), format!("\"{h}\""));
    }
    assert_eq!(" BLOCK ".parse::<Handling>(), Ok(Handling::Block));
    assert!("drop".parse::<Handling>().unwrap_err().contains("expected one of"));
}
