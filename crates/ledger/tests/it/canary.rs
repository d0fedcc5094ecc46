//! Canary PHI must not get into a record, whatever field it is smuggled into.

use ledger::record::{Action, Decision, Record, Slug};

/// Names, SSNs, dates, phone numbers, e-mail, MRNs and free text, as a careless caller might
/// pass them.
pub const CANARIES: &[&str] = &[
    "Jane Doe",
    "jane doe",
    "DOE, JANE",
    "123-45-6789",
    "123456789",
    "ssn-123-45-6789",
    "03/14/1962",
    "1962-03-14",
    "dob-1962-03-14",
    "March 14, 1962",
    "(555) 867-5309",
    "555-867-5309",
    "tel:5558675309",
    "jane.doe@example.com",
    "mrn:4471902",
    "patient has chest pain since tuesday",
    "Bearer sk-live-abc123",
];

#[test]
fn every_slug_field_refuses_every_canary() {
    type Setter = fn(ledger::RecordBuilder, &str) -> ledger::RecordBuilder;
    let setters: &[(&str, Setter)] = &[
        ("resource", |b, v| b.resource(v)),
        ("use_case", |b, v| b.use_case(v)),
        ("purpose", |b, v| b.purpose(v)),
        ("reason", |b, v| b.reason(v)),
        ("model", |b, v| b.model(v)),
        ("model_version", |b, v| b.model_version(v)),
        ("provider", |b, v| b.provider(v)),
        ("policy_version", |b, v| b.policy_version(v)),
    ];
    for canary in CANARIES {
        // actor
        let e =
            Record::builder(canary, Action::ChatCompletion, Decision::Allow).build().unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("actor"), "{msg}");
        assert!(!msg.contains(canary), "the error must not echo the value: {msg}");
        for (field, set) in setters {
            let b = Record::builder("svc-a", Action::ChatCompletion, Decision::Allow);
            let e = set(b, canary).build().unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(field), "{field}: {msg}");
            assert!(!msg.contains(canary), "{field}: the error echoes the value");
        }
        assert!(canary.parse::<Slug>().is_err());
        // Enums and categories refuse them too.
        assert!(canary.parse::<Action>().is_err());
        assert!(canary.parse::<Decision>().is_err());
        assert!(canary.parse::<phi::Category>().is_err());
    }
}

#[test]
fn decode_refuses_canaries_in_any_field() {
    let good = Record::builder("svc-a", Action::ChatCompletion, Decision::Allow)
        .ts_ms(1)
        .resource("r")
        .use_case("u")
        .purpose("p")
        .reason("x")
        .model("m")
        .model_version("mv")
        .provider("pr")
        .policy_version("pv")
        .build()
        .unwrap();
    let bytes = good.canonical_bytes();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let fields: Vec<String> =
        v.as_object().unwrap().keys().filter(|k| *k != "v" && *k != "ts_ms").cloned().collect();
    for canary in CANARIES {
        for f in &fields {
            let mut w = v.clone();
            w[f.as_str()] = serde_json::Value::String(canary.to_string());
            let b = serde_json::to_vec(&w).unwrap();
            let e = Record::decode(&b).unwrap_err().to_string();
            assert!(!e.contains(canary), "{e}");
        }
        // Free text in the categories map or a digest field.
        for (f, val) in [
            ("categories", serde_json::json!({ canary.to_string(): 1 })),
            ("request_hmac", serde_json::json!(canary)),
            ("identifier_hmacs", serde_json::json!([canary])),
            ("note", serde_json::json!(canary)),
        ] {
            let mut w = v.clone();
            w[f] = val;
            assert!(Record::decode(&serde_json::to_vec(&w).unwrap()).is_err(), "{f}");
        }
    }
}

/// Records made from canary inputs through the HMAC path leave no trace of them in the SQLite
/// files (database, WAL) or in the export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_reaches_the_database_or_the_export() {
    use ledger::record::{Hmac256, HmacKey};
    let dir = tempfile::tempdir().unwrap();
    let key = HmacKey::generate();
    let export_path = dir.path().join("ledger.export");
    {
        let l = crate::common::ledger(crate::common::sqlite(&dir).await).await;
        for (i, canary) in CANARIES.iter().enumerate() {
            let r = Record::builder("svc-intake", Action::ChatCompletion, Decision::Redact)
                .use_case("triage")
                .resource("chat")
                .category(phi::Category::Name, 1)
                .request_hmac(Hmac256::compute(
                    &key,
                    format!("Patient {canary} seen today").as_bytes(),
                ))
                .identifier_hmac(Hmac256::compute(&key, canary.as_bytes()))
                .latency_ms(i as u32)
                .build()
                .unwrap();
            l.append(r).await.unwrap();
        }
        l.checkpoint().await.unwrap();
        let f = std::fs::File::create(&export_path).unwrap();
        let s = l.export(std::io::BufWriter::new(f)).await.unwrap();
        assert_eq!(s.records, CANARIES.len() as u64);
        // Close before reading the files: dropping the pool closes its connections in the
        // background, so the WAL could still hold the records while the database file is read.
        l.store().close().await;
    }
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        // Closing folded the WAL into the database file; any file left over is read too.
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{e}"),
        };
        if p.ends_with("phigate.db") || p.ends_with("ledger.export") {
            files += 1;
            // The search does see record content: the actor is there in clear.
            assert!(bytes.windows(10).any(|w| w == b"svc-intake"), "{}", p.display());
        }
        let lower = bytes.to_ascii_lowercase();
        for canary in CANARIES {
            for needle in [canary.as_bytes().to_vec(), canary.to_ascii_lowercase().into_bytes()] {
                assert!(
                    !lower
                        .windows(needle.len())
                        .any(|w| w == needle.to_ascii_lowercase().as_slice()),
                    "a canary is in {}",
                    p.display()
                );
            }
        }
    }
    assert_eq!(files, 2, "the database and the export were searched");
}
