//! Loading and validating configurations.

use policy::{Config, Handling, Hosting};

use crate::common::{example_setup, secrets, MINIMAL};

#[test]
fn the_shipped_example_loads() {
    let dir = tempfile::tempdir().unwrap();
    let text = example_setup(dir.path());
    let path = dir.path().join("phigate.yaml");
    std::fs::write(&path, &text).unwrap();
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.providers[0].base_url, "http://127.0.0.1:8000/v1");
    assert_eq!(c.providers[0].hosting, Hosting::Private);
    assert_eq!(c.use_cases.len(), 2);
    assert_eq!(
        c.use_cases[0].phi.categories.get(&phi::Category::Mrn),
        Some(&Handling::PrivateOnly)
    );
    assert_eq!(c.organization.blocked_categories, vec![phi::Category::Ssn]);
    assert!(c.store_url().ends_with("phigate-data/phigate.db"), "{}", c.store_url());
    assert!(c.store_url().starts_with(dir.path().to_str().unwrap()));
    let p = policy::Policy::new(c).unwrap();
    assert_eq!(p.version().len(), 16);
}

#[test]
fn minimal_loads() {
    let dir = tempfile::tempdir().unwrap();
    secrets(dir.path());
    let c = Config::from_yaml(MINIMAL, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.providers.len(), 3);
    assert_eq!(c.audit.hmac_key.to_string(), "[secret]");
    assert!(!format!("{c:?}").contains(&c.audit.hmac_key.expose().to_string()));
}

fn errors(yaml: &str) -> policy::ConfigErrors {
    let dir = tempfile::tempdir().unwrap();
    secrets(dir.path());
    Config::from_yaml(yaml, dir.path()).expect_err("must be refused")
}

#[test]
fn every_problem_is_reported_at_once_with_path_and_line() {
    let bad = MINIMAL
        .replace("models: [chat]\n", "models: [chat, gpt-9]\n")
        .replace("{ DATE: redact }", "{ DATE: redact, SSN: drop }")
        .replace("{ provider: nobaa, model: gpt-4o }", "{ provider: nowhere, model: gpt-4o }")
        .replace("expires: \"2027-01-01\"", "expires: \"soon\"")
        .replace("roles: [researcher]\n", "roles: [researcher, janitor]\n");
    let e = errors(&bad);
    let text = e.to_string();
    for (path, needle) in [
        ("use_cases[0].models[1]", "unknown model \"gpt-9\""),
        ("models[0].deployments[1].provider", "unknown provider \"nowhere\""),
        ("providers[1].baa.expires", "not a date"),
        ("use_cases[1].roles[1]", "unknown role \"janitor\""),
    ] {
        let p = e.0.iter().find(|p| p.path == path).unwrap_or_else(|| panic!("{path} in {text}"));
        assert!(p.message.contains(needle), "{p}");
        assert!(p.line.is_some(), "{p}");
    }
    // The bad handling is a parse error of that use case, reported with its full path.
    let h = e.0.iter().find(|p| p.path == "use_cases[0].phi.categories.SSN").expect(&text);
    assert!(h.message.contains("drop") && h.message.contains("block"), "{h}");
    assert!(e.0.len() >= 5, "{text}");
}

#[test]
fn lines_point_at_the_problem() {
    let e = errors(&MINIMAL.replace("models: [chat]\n", "models: [chat, gpt-9]\n"));
    let p = e.0.iter().find(|p| p.path == "use_cases[0].models[1]").unwrap();
    let want = MINIMAL.lines().position(|l| l.contains("models: [chat]")).unwrap() + 1;
    assert_eq!(p.line, Some(want), "{p}");
    assert!(
        e.render("phigate.yaml").starts_with(&format!(
            "phigate.yaml:{want}: use_cases[0].models[1]: unknown model \"gpt-9\""
        )),
        "{}",
        e.render("phigate.yaml")
    );
}

#[test]
fn unknown_fields_are_errors_everywhere() {
    let e = errors(&format!("{MINIMAL}\nextra: 1\n"));
    assert!(e.has_path("extra"), "{e}");
    let e = errors(&MINIMAL.replace("baa: { signed: true,", "baa: { signd: true, signed: true,"));
    assert!(
        e.0.iter()
            .any(|p| p.path == "providers[1].baa.signd" && p.message.contains("unknown field")),
        "{e}"
    );
    let e = errors(&MINIMAL.replace("purpose: research", "purpose: research\n    colour: blue"));
    assert!(e.has_path("use_cases[1].colour"), "{e}");
}

#[test]
fn syntax_errors_have_a_line() {
    let e = errors("providers: [\n  - oops: {\n");
    assert_eq!(e.0.len(), 1);
    assert!(e.0[0].line.is_some(), "{e}");
    let e = errors("");
    assert_eq!(e.0.len(), 1, "{e}");
}

#[test]
fn values_are_checked() {
    let bad = MINIMAL
        .replace("\"http://127.0.0.1:8000/v1\"", "\"not a url\"")
        .replace("https://api.example.com/v1", "http://api.example.com/v1")
        .replace("blocked_categories: [SSN]", "blocked_categories: [SSN, FINGERPRINTZ]")
        .replace("    api_version: \"2024-06-01\"\n", "")
        .replace("purpose: treatment", "purpose: fun")
        .replace(
            "signing_key: \"file:sign\" }",
            "signing_key: \"file:sign\", origin: \"our log\" }",
        );
    let e = errors(&bad);
    for path in [
        "audit.origin",
        "providers[0].base_url",
        "providers[2].base_url",
        "organization.blocked_categories[1]",
        "providers[1].api_version",
        "use_cases[0].purpose",
    ] {
        assert!(e.has_path(path), "{path} missing in:\n{e}");
    }
    // A use case that failed to parse is not reported again as unknown by the limits.
    let with_limit = format!("{bad}limits:\n  - {{ use_case: notes, requests_per_minute: 5 }}\n");
    assert!(
        !errors(&with_limit).to_string().contains("unknown use case"),
        "{}",
        errors(&with_limit)
    );
}

#[test]
fn references_of_limits_and_output_roles() {
    let extra = "limits:\n  - { role: nurse, requests_per_minute: 5 }\n  - { use_case: nope, tokens_per_minute: 5 }\n  - { role: clinician, use_case: notes, requests_per_minute: 1 }\n  - { role: clinician }\n";
    let e = errors(&format!("{MINIMAL}{extra}"));
    assert!(e.has_path("limits[0].role"), "{e}");
    assert!(e.has_path("limits[1].use_case"), "{e}");
    assert!(e.has_path("limits[2]"), "{e}");
    assert!(e.has_path("limits[3]"), "{e}");
    let e =
        errors(&MINIMAL.replace("reidentify_roles: [clinician]", "reidentify_roles: [researcher]"));
    assert!(e.has_path("use_cases[0].output.reidentify_roles[0]"), "{e}");
}

#[test]
fn every_problem_of_one_list_element_is_reported_missing_fields_too() {
    // One provider with a typo'd field, a value of the wrong type, and two required fields
    // missing (`kind`, `hosting`). The old loader stopped at the first missing field after it
    // had taken a bad field out, and reported no missing field at all.
    let bad = MINIMAL.replace(
        "  - { name: local, kind: openai, base_url: \"http://127.0.0.1:8000/v1\", hosting: private }",
        "  - { name: local, base_url: \"http://127.0.0.1:8000/v1\", hostng: private, timeout_ms: soon }",
    );
    let e = errors(&bad);
    let text = e.to_string();
    let at: Vec<&policy::ConfigProblem> =
        e.0.iter().filter(|p| p.path.starts_with("providers[0]")).collect();
    for needle in
        ["unknown field `hostng`", "timeout_ms", "missing field `kind`", "missing field `hosting`"]
    {
        assert!(
            at.iter().any(|p| p.message.contains(needle) || p.path.contains(needle)),
            "{needle} in {text}"
        );
    }
    // The element stays refused: its deployments' references to it are not reported twice.
    assert!(!text.contains("unknown provider \"local\""), "{text}");
    assert_eq!(at.len(), 4, "{text}");
}

#[test]
fn a_role_or_use_case_has_one_limit_entry() {
    // Two entries for one bucket would count every request twice in it.
    let extra = "limits:\n  - { role: clinician, requests_per_minute: 5 }\n  - { use_case: notes, tokens_per_minute: 5 }\n  - { role: clinician, tokens_per_minute: 100 }\n  - { use_case: notes, requests_per_minute: 9 }\n  - { role: researcher, requests_per_minute: 9 }\n";
    let e = errors(&format!("{MINIMAL}{extra}"));
    assert_eq!(e.0.len(), 2, "{e}");
    assert!(e.has_path("limits[2].role"), "{e}");
    assert!(e.has_path("limits[3].use_case"), "{e}");
    assert!(e.to_string().contains("already has a limit (limits[0])"), "{e}");
}

#[test]
fn secrets_are_checked_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    secrets(dir.path());
    std::fs::write(dir.path().join("short"), "c2hvcnQ=").unwrap();
    let yaml = MINIMAL
        .replace("hmac_key: \"file:hmac\"", "hmac_key: \"file:short\"")
        .replace("signing_key: \"file:sign\"", "signing_key: \"sk-inline-value\"")
        .replace("kek: \"file:kek\"", "kek: \"${POLICY_TEST_UNSET_KEK}\"");
    let e = Config::from_yaml(&yaml, dir.path()).unwrap_err();
    assert!(
        e.has_path("audit.hmac_key") && e.has_path("audit.signing_key") && e.has_path("vault.kek"),
        "{e}"
    );
    let text = e.to_string();
    assert!(!text.contains("sk-inline-value") && !text.contains("c2hvcnQ"), "{text}");
    // A secret pasted where a variable's name goes is not repeated either.
    let pasted = MINIMAL.replace("kek: \"file:kek\"", "kek: \"${sk-live-a1b2c3d4}\"");
    let e = Config::from_yaml(&pasted, dir.path()).unwrap_err();
    assert!(e.has_path("vault.kek"), "{e}");
    assert!(!e.to_string().contains("a1b2c3d4"), "{e}");
}

#[test]
fn urls_that_do_not_parse_are_not_echoed() {
    // Each URL holds a password and fails to parse (a space in the host, a port out of range,
    // an unknown scheme), so only the reason may be printed.
    let mut seen = Vec::new();
    for bad in [
        "https://svc:hunter2-pw@models .example.org/v1",
        "https://svc:hunter2-pw@models.example.org:99999/v1",
        "gopher://svc:hunter2-pw@models.example.org/v1",
    ] {
        let e = errors(&MINIMAL.replace("http://127.0.0.1:8000/v1", bad));
        let text = e.to_string();
        assert!(e.has_path("providers[0].base_url"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        seen.push(text);
    }
    assert!(seen[0].contains("invalid") || seen[0].contains("does not parse"), "{}", seen[0]);
    assert!(seen[1].contains("invalid port"), "{}", seen[1]);
    assert!(seen[2].contains("\"gopher\""), "{}", seen[2]);
}

#[test]
fn the_organization_cannot_turn_off_baa() {
    let e = errors(&MINIMAL.replace(
        "{ blocked_categories: [SSN] }",
        "{ blocked_categories: [SSN], require_baa_for_phi: false }",
    ));
    assert!(e.has_path("organization.require_baa_for_phi"), "{e}");
}

#[test]
fn missing_sections() {
    let e = errors("roles: [a]\n");
    let text = e.to_string();
    for s in ["audit", "vault", "providers", "models", "use_cases"] {
        assert!(text.contains(&format!("missing section `{s}`")), "{text}");
    }
}

#[test]
fn debug_masks_store_and_redis_passwords() {
    let dir = tempfile::tempdir().unwrap();
    secrets(dir.path());
    let yaml = format!(
        "{MINIMAL}store: {{ url: \"postgres://phigate:pg-pass-123@db/phigate\" }}\nredis: {{ url: \"redis://:redis-pass-456@127.0.0.1:6379\" }}\n"
    );
    let c = Config::from_yaml(&yaml, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("pg-pass-123") && !dbg.contains("redis-pass-456"), "{dbg}");
    assert_eq!(c.store_url(), "postgres://phigate:pg-pass-123@db/phigate");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
    /// Any edit of a valid configuration (a line dropped, duplicated or cut short) either
    /// loads or is refused with problems; it never panics, and no problem shows a secret.
    #[test]
    fn edited_configs_never_panic_nor_leak(line in 0usize..40, op in 0u8..3, cut in 0usize..30) {
        let dir = tempfile::tempdir().unwrap();
        secrets(dir.path());
        let lines: Vec<&str> = MINIMAL.lines().collect();
        let n = line % lines.len();
        let mut out: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        match op {
            0 => { out.remove(n); }
            1 => { out.insert(n, lines[n].to_string()); }
            _ => { let l = &lines[n]; out[n] = l.chars().take(cut.min(l.chars().count())).collect(); }
        }
        let yaml = out.join("\n");
        match Config::from_yaml(&yaml, dir.path()) {
            Ok(_) => {}
            Err(e) => {
                proptest::prop_assert!(!e.0.is_empty());
                let text = e.to_string();
                for f in ["hmac", "sign", "kek"] {
                    let v = std::fs::read_to_string(dir.path().join(f)).unwrap();
                    proptest::prop_assert!(!text.contains(v.trim()), "{}", text);
                }
            }
        }
    }
}

#[test]
fn several_problems_inside_one_list_element() {
    let bad = MINIMAL.replace(
        "      - { provider: nobaa, model: gpt-4o }",
        "      - { provider: nobaa, model: gpt-4o, wieght: 2 }\n      - { provider: nowhere, model: x, colour: red }",
    );
    let e = errors(&bad);
    assert!(e.has_path("models[0].deployments[1].wieght"), "{e}");
    assert!(e.has_path("models[0].deployments[2].colour"), "{e}");
    // Once the unknown fields are out, the references are checked too.
    assert!(e.has_path("models[0].deployments[2].provider"), "{e}");
}

#[test]
fn version_follows_the_file_and_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    secrets(dir.path());
    let v = |yaml: &str| {
        policy::Policy::new(Config::from_yaml(yaml, dir.path()).unwrap())
            .unwrap()
            .version()
            .to_string()
    };
    let a = v(MINIMAL);
    assert_eq!(a, v(MINIMAL));
    assert_ne!(a, v(&MINIMAL.replace("DATE: redact", "DATE: block")));
    std::fs::write(dir.path().join("kek"), "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").unwrap();
    assert_ne!(a, v(MINIMAL), "a new KEK is a new policy version");
}

#[test]
fn load_resolves_relative_to_the_file_and_refuses_huge_files() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("etc");
    std::fs::create_dir(&sub).unwrap();
    secrets(&sub);
    let path = sub.join("phigate.yaml");
    std::fs::write(&path, MINIMAL).unwrap();
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.base_dir, sub);
    assert_eq!(c.data_dir(), sub.join("./phigate-data"));
    std::fs::write(&path, vec![b'#'; (policy::MAX_CONFIG_BYTES + 1) as usize]).unwrap();
    assert!(Config::load(&path).unwrap_err().to_string().contains("larger than"));
}
