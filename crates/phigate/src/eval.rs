//! `phigate eval`: scores the engine against gold spans (JSONL `{"id","text","spans":[…]}`,
//! code-point offsets, end-exclusive).
//!
//! Character-level figures count alphanumeric characters only. An entity is caught when every
//! alphanumeric character of it is covered by some finding, whatever its category.

use std::collections::BTreeMap;
use std::io::Write;

use phi::{Category, Scanner};
use serde::Deserialize;

use crate::input::{self, DataError};

#[derive(Deserialize)]
struct GoldDoc {
    id: serde_json::Value,
    text: String,
    #[serde(default)]
    spans: Vec<GoldSpan>,
}

#[derive(Deserialize)]
struct GoldSpan {
    start: usize,
    end: usize,
    category: String,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    tp: u64,
    fp: u64,
    fn_: u64,
    entities: u64,
    caught: u64,
}

impl Counts {
    fn prf(&self) -> (f64, f64, f64) {
        let r = ratio(self.tp, self.tp + self.fn_);
        let p = ratio(self.tp, self.tp + self.fp);
        let f = if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
        (r, p, f)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// What `eval` prints and how it reads the gold.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// List missed entities.
    pub show_leaks: bool,
    /// List findings on documents without PHI.
    pub show_fps: bool,
    /// One JSON object instead of a table.
    pub json: bool,
    /// Score on the texts in capitals (offsets kept: a character whose capital is not one
    /// character stays as it is).
    pub uppercase: bool,
    /// Score the texts written all in lower case, as clinicians type in a chat (offsets kept).
    pub lowercase: bool,
}

/// Runs the evaluation and prints a table (or JSON) to `out`.
pub fn run(
    gold_path: &str,
    scanner: &Scanner,
    opts: Options,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let Options { show_leaks, show_fps, json, uppercase, lowercase } = opts;
    let name = input::display_name(gold_path);
    let mut r = input::open(gold_path).map_err(|e| DataError {
        file: name.clone(),
        line: 0,
        problem: format!("cannot open: {e}"),
    })?;
    let mut per: BTreeMap<Category, Counts> = BTreeMap::new();
    let mut all = Counts::default();
    let mut ignored: BTreeMap<String, u64> = BTreeMap::new();
    let (mut docs, mut neg_docs, mut neg_flagged) = (0u64, 0u64, 0u64);
    let mut leaks = Vec::new();
    let mut fps = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0;
    while input::next_line(&mut r, &mut buf)?.is_some() {
        line += 1;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let err = |problem: String| DataError { file: name.clone(), line, problem };
        let s = std::str::from_utf8(&buf)
            .map_err(|e| err(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
        let mut doc: GoldDoc = serde_json::from_str(s)
            .map_err(|e| err(format!("malformed gold record at column {}", e.column())))?;
        if uppercase || lowercase {
            // One char for one char, so the gold offsets still hold.
            doc.text = doc
                .text
                .chars()
                .map(|c| {
                    let mut u: Box<dyn Iterator<Item = char>> = if uppercase {
                        Box::new(c.to_uppercase())
                    } else {
                        Box::new(c.to_lowercase())
                    };
                    match (u.next(), u.next()) {
                        (Some(one), None) => one,
                        _ => c,
                    }
                })
                .collect();
        }
        docs += 1;
        let chars: Vec<char> = doc.text.chars().collect();
        let n = chars.len();
        // Gold categories per char (None: not PHI).
        let mut gold: Vec<Option<Category>> = vec![None; n];
        let mut entities = Vec::new();
        for sp in &doc.spans {
            if sp.start > sp.end || sp.end > n {
                return Err(err(format!(
                    "span {}..{} is outside the text ({} chars)",
                    sp.start, sp.end, n
                ))
                .into());
            }
            match sp.category.parse::<Category>() {
                Ok(c) => {
                    for g in &mut gold[sp.start..sp.end] {
                        *g = Some(c);
                    }
                    entities.push((sp.start, sp.end, c));
                }
                Err(_) => *ignored.entry(sp.category.clone()).or_default() += 1,
            }
        }
        let findings = scanner.scan(&doc.text);
        let idx = phi::text::CharIndex::new(&doc.text);
        let mut pred: Vec<Option<Category>> = vec![None; n];
        for f in &findings {
            let (s, e) = (idx.char_offset(f.start), idx.char_offset(f.end));
            for p in &mut pred[s..e] {
                *p = Some(f.category);
            }
        }
        for i in 0..n {
            if !chars[i].is_alphanumeric() {
                continue;
            }
            match (gold[i], pred[i]) {
                (Some(g), Some(p)) => {
                    all.tp += 1;
                    if g == p {
                        per.entry(g).or_default().tp += 1;
                    } else {
                        per.entry(g).or_default().fn_ += 1;
                        per.entry(p).or_default().fp += 1;
                    }
                }
                (Some(g), None) => {
                    all.fn_ += 1;
                    per.entry(g).or_default().fn_ += 1;
                }
                (None, Some(p)) => {
                    all.fp += 1;
                    per.entry(p).or_default().fp += 1;
                }
                (None, None) => {}
            }
        }
        for &(s, e, c) in &entities {
            let alnum: Vec<usize> = (s..e).filter(|&i| chars[i].is_alphanumeric()).collect();
            let covered = alnum.iter().filter(|&&i| pred[i].is_some()).count();
            let caught = covered == alnum.len();
            let cnt = per.entry(c).or_default();
            cnt.entities += 1;
            all.entities += 1;
            if caught {
                cnt.caught += 1;
                all.caught += 1;
            } else if show_leaks {
                let text: String = chars[s..e].iter().collect();
                let ctx: String = chars[s.saturating_sub(30)..(e + 20).min(n)]
                    .iter()
                    .collect::<String>()
                    .replace('\n', " ");
                leaks.push(format!(
                    "{}\t{}\t{:?}\t(covered {} of {} chars)\t…{}…",
                    doc.id,
                    c,
                    text,
                    covered,
                    alnum.len(),
                    ctx
                ));
            }
        }
        if entities.is_empty() {
            neg_docs += 1;
            if !findings.is_empty() {
                neg_flagged += 1;
                if show_fps {
                    for f in &findings {
                        fps.push(format!(
                            "{}\t{}\t{:?}\t{}",
                            doc.id,
                            f.category,
                            &doc.text[f.start..f.end],
                            f.recognizer
                        ));
                    }
                }
            }
        }
    }
    let over = ratio(neg_flagged, neg_docs.max(1));
    if json {
        let mut cats = serde_json::Map::new();
        for (c, k) in &per {
            let (r, p, f) = k.prf();
            cats.insert(c.as_str().into(), serde_json::json!({"recall": r, "precision": p, "f1": f, "entities": k.entities, "entity_recall": ratio(k.caught, k.entities)}));
        }
        let (r, p, f) = all.prf();
        let v = serde_json::json!({
            "documents": docs, "entities": all.entities, "entity_recall": ratio(all.caught, all.entities),
            "char_recall": r, "char_precision": p, "char_f1": f,
            "negative_documents": neg_docs, "negative_documents_flagged": neg_flagged, "over_redaction": if neg_docs == 0 { 0.0 } else { over },
            "categories": cats, "ignored_gold_categories": ignored,
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<12} {:>8} {:>8} {:>8} {:>9} {:>14}",
        "category", "recall", "prec", "F1", "entities", "entity recall"
    )?;
    for (c, k) in &per {
        let (r, p, f) = k.prf();
        writeln!(
            out,
            "{:<12} {:>8.4} {:>8.4} {:>8.4} {:>9} {:>14.4}",
            c.as_str(),
            r,
            p,
            f,
            k.entities,
            ratio(k.caught, k.entities)
        )?;
    }
    let (r, p, f) = all.prf();
    writeln!(
        out,
        "{:<12} {:>8.4} {:>8.4} {:>8.4} {:>9} {:>14.4}",
        "ALL",
        r,
        p,
        f,
        all.entities,
        ratio(all.caught, all.entities)
    )?;
    writeln!(
        out,
        "\ndocuments: {docs}; entity recall {}/{} = {:.4}",
        all.caught,
        all.entities,
        ratio(all.caught, all.entities)
    )?;
    if neg_docs > 0 {
        writeln!(out, "over-redaction: {neg_flagged} of {neg_docs} documents without PHI got a finding ({:.1}%)", over * 100.0)?;
    }
    if !ignored.is_empty() {
        let list: Vec<String> = ignored.iter().map(|(k, v)| format!("{k} ({v})")).collect();
        writeln!(out, "ignored gold categories (not PHI under Safe Harbor): {}", list.join(", "))?;
    }
    if show_leaks {
        writeln!(out, "\nmissed entities ({}):", leaks.len())?;
        for l in &leaks {
            writeln!(out, "  {l}")?;
        }
    }
    if show_fps {
        writeln!(out, "\nfindings on documents without PHI ({}):", fps.len())?;
        for l in &fps {
            writeln!(out, "  {l}")?;
        }
    }
    Ok(())
}
