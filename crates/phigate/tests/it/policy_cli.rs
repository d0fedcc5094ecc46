//! `phigate config check` and `phigate keys create|list|revoke`, run as the built binary.

use std::path::Path;
use std::process::Output;

fn phigate(args: &[&str], envs: &[(&str, &str)]) -> Output {
    crate::run::run(args, envs, None)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const HMAC: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// The shipped example with its secret files in `dir`.
fn example(dir: &Path) -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy/examples/phigate.yaml");
    std::fs::create_dir_all(dir.join("phigate-data")).unwrap();
    std::fs::write(
        dir.join("phigate-data/ledger.key"),
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    )
    .unwrap();
    std::fs::write(
        dir.join("phigate-data/vault.kek"),
        "HwEeAh0DHAQbBRoGGQcYCBcJFgoVCxQMEw0SDhEPEBA=",
    )
    .unwrap();
    let cfg = dir.join("phigate.yaml");
    std::fs::copy(src, &cfg).unwrap();
    cfg.to_str().unwrap().to_string()
}

#[test]
fn config_check_accepts_the_example() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = example(dir.path());
    let out = phigate(&["config", "check", "--config", &cfg], &[("PHIGATE_AUDIT_HMAC_KEY", HMAC)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("ok") && stdout.contains("2 use cases"), "{stdout}");
    assert!(!stdout.contains(HMAC));
}

#[test]
fn config_check_warns_of_cloud_providers_that_get_no_phi() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = example(dir.path());
    let text_of = std::fs::read_to_string(&cfg).unwrap();
    let cloud = |name: &str, baa: &str| {
        format!(
            "  - name: {name}\n    kind: openai\n    base_url: https://{name}.example.com/v1\n    \
             hosting: cloud\n    baa: {baa}\n"
        )
    };
    let extra = format!(
        "{}{}{}",
        cloud("unsigned", "{ signed: false }"),
        cloud("lapsed", "{ signed: true, expires: 2020-01-31 }"),
        cloud("current", "{ signed: true, expires: 2999-01-01 }"),
    );
    let oidc = "oidc:\n  issuer: https://login.example.org/\n  audience: phigate\n  \
                jwks: https://login.example.org/jwks\n  identity_claim: email\n";
    let with = text_of.replacen("providers:\n", &format!("providers:\n{extra}"), 1);
    std::fs::write(&cfg, format!("{with}\n{oidc}")).unwrap();
    let out = phigate(&["config", "check", "--config", &cfg], &[("PHIGATE_AUDIT_HMAC_KEY", HMAC)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let warnings: Vec<&str> = stdout.lines().filter(|l| l.contains(": warning: ")).collect();
    assert_eq!(warnings.len(), 3, "{stdout}");
    assert!(warnings[2].contains("oidc.identity_claim: email can be edited"), "{stdout}");
    assert!(warnings[0].ends_with("provider unsigned: cloud, no signed BAA: it receives no PHI"));
    assert!(
        warnings[1].ends_with("provider lapsed: its BAA expired on 2020-01-31: it receives no PHI")
    );
}

#[test]
fn config_check_prints_every_problem_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = example(dir.path());
    let good = std::fs::read_to_string(&cfg).unwrap();
    let bad = good
        .replace("models: [clinical-chat]        # system scope", "models: [clinical-chat, gpt-9]")
        .replace("DATE: redact,", "DATE: drop,")
        .replace("roles: [researcher]", "roles: [researcher, nurse]");
    std::fs::write(&cfg, &bad).unwrap();
    // The HMAC variable is not set either: four problems.
    let out = phigate(&["config", "check", "--config", &cfg], &[]);
    assert_eq!(out.status.code(), Some(64));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    let line_of = |needle: &str| bad.lines().position(|l| l.contains(needle)).unwrap() + 1;
    for want in [
        format!(
            "{cfg}:{}: audit.hmac_key: environment variable PHIGATE_AUDIT_HMAC_KEY is not set",
            line_of("hmac_key")
        ),
        format!("{cfg}:{}: use_cases[0].models[1]: unknown model \"gpt-9\"", line_of("gpt-9")),
        format!("{cfg}:{}: use_cases[1].roles[1]: unknown role \"nurse\"", line_of("nurse")),
    ] {
        assert!(lines.contains(&want.as_str()), "{want}\nnot in\n{stdout}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("use_cases[0].phi.categories.DATE: unknown variant `drop`")),
        "{stdout}"
    );
    // A missing file is a bad configuration too.
    let out = phigate(&["config", "check", "--config", "/nonexistent/phigate.yaml"], &[]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn keys_create_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keys.db");
    let store = db.to_str().unwrap();
    let out = phigate(
        &[
            "keys",
            "create",
            "--identity",
            "svc:triage-bot",
            "--roles",
            "service,clinician",
            "--use-case",
            "clinical-notes",
            "--expires",
            "2099-01-01",
            "--store",
            store,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = text(&out.stdout).trim().to_string();
    let (id, secret) = policy::parse_key(&key).expect("one well-formed key on stdout");
    assert!(text(&out.stderr).contains("shown only once"), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains(secret));

    let out = phigate(&["keys", "list", "--store", store], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("ID"), "{table}");
    let row = table.lines().find(|l| l.starts_with(id)).expect("the key is listed");
    assert!(
        row.contains("svc:triage-bot")
            && row.contains("clinician,service")
            && row.contains("2099-01-01")
            && row.ends_with("live"),
        "{row}"
    );
    assert!(!table.contains(secret));

    // Revoking by the whole key uses its id and never echoes the secret.
    let out = phigate(&["keys", "revoke", &key, "--store", store], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), format!("revoked {id}"));
    let out = phigate(&["keys", "revoke", id, "--store", store], &[]);
    assert!(!out.status.success());
    let out = phigate(&["keys", "list", "--store", store], &[]);
    assert!(text(&out.stdout).lines().any(|l| l.starts_with(id) && l.ends_with("revoked")));
    // An id typed in capitals is the same id.
    let create = ["keys", "create", "--identity", "svc:other", "--roles", "service"];
    let out =
        phigate(&[&create[..], &["--use-case", "clinical-notes", "--store", store]].concat(), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let other = text(&out.stdout).trim().to_string();
    let (other_id, _) = policy::parse_key(&other).unwrap();
    let out = phigate(&["keys", "revoke", &other_id.to_uppercase(), "--store", store], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), format!("revoked {other_id}"));

    // Bad identities and dates are refused; nothing new is stored.
    for args in [
        vec!["--identity", "jdoe", "--roles", "service", "--use-case", "x"],
        vec![
            "--identity",
            "svc:x",
            "--roles",
            "service",
            "--use-case",
            "x",
            "--expires",
            "tomorrow",
        ],
        vec![
            "--identity",
            "svc:x",
            "--roles",
            "service",
            "--use-case",
            "x",
            "--expires",
            "2001-01-01",
        ],
    ] {
        let mut a = vec!["keys", "create", "--store", store];
        a.extend(args);
        let out = phigate(&a, &[]);
        assert!(!out.status.success(), "{a:?}");
        assert!(out.stdout.is_empty());
    }
    let out = phigate(&["keys", "list", "--store", store], &[]);
    assert_eq!(text(&out.stdout).lines().count(), 3);
}

#[test]
fn keys_are_checked_against_the_configuration_and_use_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = example(dir.path());
    let env = [("PHIGATE_AUDIT_HMAC_KEY", HMAC)];
    let out = phigate(
        &[
            "keys",
            "create",
            "--config",
            &cfg,
            "--identity",
            "user:jdoe",
            "--roles",
            "researcher",
            "--use-case",
            "clinical-notes",
        ],
        &env,
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("none of these roles"), "{}", text(&out.stderr));
    let out = phigate(
        &[
            "keys",
            "create",
            "--config",
            &cfg,
            "--identity",
            "user:jdoe",
            "--roles",
            "clinician",
            "--use-case",
            "clinical-notes",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The configuration's store (store.url relative to the config file).
    assert!(dir.path().join("phigate-data/phigate.db").exists());
    let out = phigate(&["keys", "list", "--config", &cfg], &env);
    assert_eq!(text(&out.stdout).lines().count(), 2, "{}", text(&out.stdout));
}
