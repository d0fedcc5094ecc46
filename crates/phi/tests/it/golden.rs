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
