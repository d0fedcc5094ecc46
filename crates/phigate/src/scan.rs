//! `phigate scan`: one JSON line per finding, `{"id","start","end","category","subtype","score"}`,
//! offsets in Unicode code points, end-exclusive.

use phi::text::CharIndex;
use phi::Scanner;

use crate::input::{DataError, Record};
use crate::run::{Processor, Stats};

/// Prints findings of each record.
pub struct ScanProcessor<'a> {
    /// The engine.
    pub scanner: &'a Scanner,
}

impl Processor for ScanProcessor<'_> {
    fn process(&self, _file: &str, rec: &Record, stats: &mut Stats) -> Result<Vec<u8>, DataError> {
        let findings = self.scanner.scan(&rec.text);
        stats.add(rec.text.len(), &findings);
        Ok(render(&rec.id, &rec.text, &findings))
    }

    fn needs_object(&self) -> bool {
        false
    }
}

/// The exact output contract, one line per finding.
pub fn render(id: &serde_json::Value, text: &str, findings: &[phi::Finding]) -> Vec<u8> {
    let mut out = Vec::with_capacity(findings.len() * 96);
    if findings.is_empty() {
        return out;
    }
    let idx = CharIndex::new(text);
    let id = serde_json::to_string(id).unwrap_or_else(|_| "null".into());
    let mut num = itoa::Buffer::new();
    for f in findings {
        out.extend_from_slice(b"{\"id\":");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b",\"start\":");
        out.extend_from_slice(num.format(idx.char_offset(f.start)).as_bytes());
        out.extend_from_slice(b",\"end\":");
        out.extend_from_slice(num.format(idx.char_offset(f.end)).as_bytes());
        out.extend_from_slice(b",\"category\":\"");
        out.extend_from_slice(f.category.as_str().as_bytes());
        out.extend_from_slice(b"\",\"subtype\":");
        match f.subtype {
            // Subtypes are the engine's own identifiers (lower-case ASCII, no quotes).
            Some(s) => {
                out.push(b'"');
                out.extend_from_slice(s.as_bytes());
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"score\":");
        push_score(&mut out, f.score);
        out.extend_from_slice(b"}\n");
    }
    out
}

/// The score rounded to two decimals, written as JSON writes that `f32` ("0.9", "0.85", "1").
fn push_score(out: &mut Vec<u8>, score: f32) {
    let n = (score.clamp(0.0, 1.0) * 100.0).round() as u32;
    match n {
        0 => out.push(b'0'),
        100.. => out.push(b'1'),
        _ => {
            out.extend_from_slice(b"0.");
            out.push(b'0' + (n / 10) as u8);
            if !n.is_multiple_of(10) {
                out.push(b'0' + (n % 10) as u8);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_print_as_json_numbers_did() {
        for n in 0..=100u32 {
            let score = n as f32 / 100.0;
            let mut out = Vec::new();
            push_score(&mut out, score);
            let want = format!("{}", (score * 100.0).round() / 100.0);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{score}");
        }
    }
}
