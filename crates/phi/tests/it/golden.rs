//! Runs every case of `tests/golden/cases.jsonl`: each listed PHI value must be covered by
//! findings of its category, and each `keep` string must be left untouched.
//! A fixed false negative becomes a case there, named for what it caught.

use phi::{Category, Finding, Scanner};

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    text: String,
    phi: Vec<Expect>,
    keep: Vec<String>,
}

#[derive(serde::Deserialize)]
struct Expect {
    text: String,
    category: String,
}

/// Whether every alphanumeric byte of `start..end` is covered by a finding (of `cat`).
fn covered(
    text: &str,
    findings: &[Finding],
    start: usize,
    end: usize,
    cat: Option<Category>,
) -> bool {
    let text_alnum = |i: usize| text.as_bytes()[i].is_ascii_alphanumeric();
    (start..end).filter(|&i| text_alnum(i)).all(|i| {
        findings.iter().any(|f| f.start <= i && i < f.end && cat.is_none_or(|c| f.category == c))
    })
}

#[test]
fn golden_corpus() {
    let scanner = Scanner::new().unwrap();
    let data = include_str!("../golden/cases.jsonl");
    let mut failures = Vec::new();
    let mut n = 0;
    for (lineno, line) in data.lines().enumerate() {
        let case: Case = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("cases.jsonl:{}: {e}", lineno + 1));
        n += 1;
        let found = scanner.scan(&case.text);
        for e in &case.phi {
            let cat: Category = e.category.parse().unwrap();
            let start = case.text.find(&e.text).unwrap();
            let end = start + e.text.len();
            if !covered(&case.text, &found, start, end, Some(cat)) {
                let got: Vec<String> = found
                    .iter()
                    .map(|f| {
                        format!("{} {:?} {}", f.category, &case.text[f.start..f.end], f.recognizer)
                    })
                    .collect();
                failures
                    .push(format!("{}: missed {} {:?}; found {:?}", case.name, cat, e.text, got));
            }
        }
        for k in &case.keep {
            let start = case.text.find(k.as_str()).unwrap();
            let end = start + k.len();
            if let Some(f) = found.iter().find(|f| f.start < end && start < f.end) {
                failures.push(format!(
                    "{}: {:?} should be kept but {} flagged {:?}",
                    case.name,
                    k,
                    f.recognizer,
                    &case.text[f.start..f.end]
                ));
            }
        }
    }
    assert!(n >= 40, "the golden corpus lost cases");
    assert!(failures.is_empty(), "{} golden failures:\n{}", failures.len(), failures.join("\n"));
}

/// The expected output of every mode on every golden case, in `tests/golden/outputs.jsonl`
/// (keyed modes use a fixed test key and date shift). After a deliberate change, review the
/// difference and rewrite the file with `PHIGATE_BLESS=1 cargo test -p phi --test it golden`.
#[test]
fn golden_outputs_per_mode() {
    use phi::transform::{Context, Mode, Transformer};
    use std::collections::BTreeMap;

    const MODES: [Mode; 5] =
        [Mode::Redact, Mode::Mask, Mode::Placeholder, Mode::Hash, Mode::Surrogate];
    let scanner = Scanner::new().unwrap();
    let mut actual = String::new();
    for line in include_str!("../golden/cases.jsonl").lines() {
        let case: Case = serde_json::from_str(line).unwrap();
        let found = scanner.scan(&case.text);
        let mut outputs = BTreeMap::new();
        for mode in MODES {
            let t = Transformer::new(mode).with_key(b"golden test key, not a secret");
            let mut ctx = Context::new().with_date_shift(-45);
            let out = t.apply(&case.text, &found, &mut ctx).unwrap();
            outputs.insert(mode.as_str(), out);
        }
        let row = serde_json::json!({ "name": case.name, "outputs": outputs });
        actual.push_str(&row.to_string());
        actual.push('\n');
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/outputs.jsonl");
    if std::env::var_os("PHIGATE_BLESS").is_some() {
        std::fs::write(path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    let mut diffs = Vec::new();
    for (i, (e, a)) in expected.lines().zip(actual.lines()).enumerate() {
        if e != a {
            diffs.push(format!("line {}:\n  expected {e}\n  actual   {a}", i + 1));
        }
    }
    assert_eq!(
        expected.lines().count(),
        actual.lines().count(),
        "outputs.jsonl does not have one line per case (bless it after review)"
    );
    assert!(diffs.is_empty(), "{} outputs differ:\n{}", diffs.len(), diffs.join("\n"));
}
