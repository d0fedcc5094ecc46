//! `phigate vault …` end to end on a real SQLite store: KEK generation, check, sweep, shred,
//! rotation, a wrong KEK refused, and every shred in the ledger.

use std::process::Output;
use std::time::Duration;

use vault::{Keyring, LocalKek, Vault, VaultConfig};

use crate::run::{fails, ok};

fn phigate(args: &[&str], data_dir: &std::path::Path) -> Output {
    crate::run::at(data_dir, args)
}

/// Puts one canary value in each scope through the library, as the gateway would.
fn tokenize(data: &std::path::Path, kek: &std::path::Path, scopes: &[(&str, Duration)]) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = store::Store::open(data.join("phigate.db").to_str().unwrap()).await.unwrap();
        let ledger =
            ledger::Ledger::open(store.clone(), ledger::LedgerConfig::new("phigate.local/ledger"))
                .await
                .unwrap();
        let keyring = Keyring::new(std::sync::Arc::new(LocalKek::from_file(kek).unwrap()));
        let v = Vault::new(store.clone(), ledger, keyring, VaultConfig::default());
        for (scope, retention) in scopes {
            v.open_scope(scope, Some(*retention)).await.unwrap();
            // A scope already past its retention refuses new values (it only awaits the sweep).
            if *retention > Duration::from_secs(1) {
                v.tokenize(scope, phi::Category::Name, "Imogen Hargreaves", None).await.unwrap();
            }
        }
        store.close().await;
    });
}

#[test]
fn operators_shred_sweep_and_rotate_with_the_ledger_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let kek = data.join("vault.kek");
    let id = ok(&phigate(&["vault", "keygen", "--out", kek.to_str().unwrap()], &data));
    assert!(id.trim().starts_with("local-"), "{id}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&kek).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Never overwritten by accident.
    assert!(fails(&phigate(&["vault", "keygen", "--out", kek.to_str().unwrap()], &data))
        .contains("--force"));
    // --force over a key file others can read: replaced, and narrowed to the owner.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let spare = dir.path().join("spare.kek");
        std::fs::write(&spare, "old\n").unwrap();
        std::fs::set_permissions(&spare, std::fs::Permissions::from_mode(0o644)).unwrap();
        ok(&phigate(&["vault", "keygen", "--out", spare.to_str().unwrap(), "--force"], &data));
        assert_ne!(std::fs::read_to_string(&spare).unwrap(), "old\n");
        assert_eq!(std::fs::metadata(&spare).unwrap().permissions().mode() & 0o777, 0o600);
    }

    tokenize(
        &data,
        &kek,
        &[("conv-expiring", Duration::from_millis(1)), ("conv-kept", Duration::from_secs(3600))],
    );
    std::thread::sleep(Duration::from_millis(20));
    assert!(ok(&phigate(&["vault", "check"], &data)).contains("OK: 2 live data keys unwrap"));

    let out = ok(&phigate(&["vault", "sweep"], &data));
    assert!(out.contains("shredded 1 expired data keys"), "{out}");

    let shred = ["vault", "shred", "--scope", "conv-kept", "--reason", "patient_request"];
    assert!(ok(&phigate(&shred, &data)).contains("shredded 1 data keys"));
    assert!(fails(&phigate(&shred, &data)).contains("nothing to shred"));
    let bad_reason = ["vault", "shred", "--scope", "conv-kept", "--reason", "because I said so"];
    assert!(fails(&phigate(&bad_reason, &data)).contains("--reason"));

    // Both shreds are in the ledger, before anything else.
    let records =
        ok(&phigate(&["audit", "search", "--action", "vault_shred", "--format", "jsonl"], &data));
    assert_eq!(records.lines().count(), 2, "{records}");
    assert!(!records.contains("Imogen") && !records.contains("conv-kept"));

    // Rotation: a new KEK takes over; the old one is needed no more.
    tokenize(&data, &kek, &[("conv-live", Duration::from_secs(3600))]);
    let new = data.join("new.kek");
    ok(&phigate(&["vault", "keygen", "--out", new.to_str().unwrap()], &data));
    let new_spec = format!("file:{}", new.display());
    let out = ok(&phigate(&["vault", "rotate-kek", "--new-kek", &new_spec], &data));
    assert!(out.contains("re-wrapped 1 data keys"), "{out}");
    assert!(ok(&phigate(&["vault", "check", "--kek", &new_spec], &data)).contains("OK: 1 live"));
    // The old KEK alone no longer opens the vault, and a wrong key is refused outright.
    fails(&phigate(&["vault", "check"], &data));
    let wrong = "base64:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let e = fails(&phigate(&["vault", "check", "--kek", wrong], &data));
    assert!(e.contains("does not open"), "{e}");
}

#[test]
fn scope_names_a_gateway_conversation_for_a_shred() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.hmac");
    std::fs::write(&file, "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n").unwrap();
    let out = ok(&phigate(
        &[
            "vault",
            "scope",
            "--identity",
            "user:dr-a",
            "--conversation",
            "visit-42",
            "--hmac-key-file",
            file.to_str().unwrap(),
        ],
        dir.path(),
    ));
    assert_eq!(out.trim(), gateway::app::conversation_scope(&[7u8; 32], "user:dr-a", "visit-42"));
    let help = ok(&phigate(&["vault", "scope", "--help"], dir.path()));
    assert!(help.contains("phigate vault shred --reason patient_request"), "{help}");
}

/// Run beside a gateway's configuration with no store named, the operator commands act on the
/// gateway's store (its `store.url`), with its KEK, ledger name and signing key; they do not
/// make and act on an empty `./phigate-data/phigate.db` of their own (a shred there would
/// report success and destroy nothing).
#[test]
fn operator_commands_use_the_store_and_keys_of_the_configuration_beside_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // In `d`, with no store or data directory in the environment.
    let phigate = |args: &[&str], d: &std::path::Path| {
        crate::run::command(&[]).args(args).current_dir(d).output().unwrap()
    };
    std::fs::create_dir_all(d.join("secrets")).unwrap();
    ok(&phigate(&["vault", "keygen", "--out", "secrets/vault.kek"], d));
    ok(&phigate(
        &["audit", "keygen", "--out", "secrets/ledger.key", "--origin", "hospital.example/gw"],
        d,
    ));
    std::fs::write(
        d.join("phigate.yaml"),
        "store:\n  url: sqlite://./elsewhere/gateway.db\naudit:\n  hmac_key: ${NOT_NEEDED_HERE}\n  \
         signing_key: file:./secrets/ledger.key\n  origin: hospital.example/gw\nvault:\n  \
         kek: file:./secrets/vault.kek\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("elsewhere")).unwrap();
    // The gateway's vault has a conversation.
    let gw_db = d.join("elsewhere/gateway.db");
    tokenize_into(&gw_db, &d.join("secrets/vault.kek"), "conv-cfg");

    ok(&phigate(&["vault", "check"], d));
    let shred =
        phigate(&["vault", "shred", "--scope", "conv-cfg", "--reason", "patient_request"], d);
    ok(&shred);
    assert!(!d.join("phigate-data/phigate.db").exists(), "a store of its own was made");
    // The shred reached the gateway's store: the scope's key is gone there.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let live = rt.block_on(async {
        let store = store::Store::open(gw_db.to_str().unwrap()).await.unwrap();
        let key = store.data_key_latest("conv-cfg").await.unwrap().expect("the scope's key");
        store.close().await;
        key.shredded_ms
    });
    assert!(live.is_some(), "the shred did not reach the configured store");

    // The ledger there is signed under the configuration's name and key.
    let cp = phigate(&["audit", "checkpoint"], d);
    ok(&cp);
    assert!(String::from_utf8_lossy(&cp.stdout).starts_with("hospital.example/gw\n"));
    ok(&phigate(&["audit", "verify"], d));
    // The signing key as the configuration may also name it: `${VAR}`.
    let cfg = std::fs::read_to_string(d.join("phigate.yaml")).unwrap();
    std::fs::write(
        d.join("phigate.yaml"),
        cfg.replace("signing_key: file:./secrets/ledger.key", "signing_key: ${GW_LEDGER_KEY}"),
    )
    .unwrap();
    let seed = std::fs::read_to_string(d.join("secrets/ledger.key")).unwrap();
    let with_env = crate::run::command(&[("GW_LEDGER_KEY", seed.trim())])
        .args(["audit", "checkpoint"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(ok(&with_env).starts_with("hospital.example/gw\n"));
    let unset = phigate(&["audit", "checkpoint"], d);
    assert!(crate::run::fails(&unset).contains("${GW_LEDGER_KEY}, which is not set"));
    // A store named explicitly still wins.
    let other = d.join("other.db");
    ok(&phigate(&["audit", "search", "--limit", "1", "--store", other.to_str().unwrap()], d));
    assert!(other.exists());
}

/// One value in `scope` of the store at `db`, under the KEK in `kek`.
fn tokenize_into(db: &std::path::Path, kek: &std::path::Path, scope: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = store::Store::open(db.to_str().unwrap()).await.unwrap();
        let ledger =
            ledger::Ledger::open(store.clone(), ledger::LedgerConfig::new("hospital.example/gw"))
                .await
                .unwrap();
        let keyring = Keyring::new(std::sync::Arc::new(LocalKek::from_file(kek).unwrap()));
        let v = Vault::new(store.clone(), ledger, keyring, VaultConfig::default());
        v.tokenize(scope, phi::Category::Name, "Imogen Hargreaves", None).await.unwrap();
        store.close().await;
    });
}
