//! `phigate scan`: one JSON line per finding, `{"id","start","end","category","subtype","score"}`,
//! offsets in Unicode code points, end-exclusive.

use std::io::Write;

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
    fn process(&self, rec: &Record, stats: &mut Stats) -> Result<Vec<u8>, DataError> {
        let findings = self.scanner.scan(&rec.text);
        stats.add(rec.text.len(), &findings);
        Ok(render(&rec.id, &rec.text, &findings))
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
    for f in findings {
        let subtype = match f.subtype {
            Some(s) => format!("\"{s}\""),
            None => "null".into(),
        };
        let _ = writeln!(
            out,
            "{{\"id\":{id},\"start\":{},\"end\":{},\"category\":\"{}\",\"subtype\":{subtype},\"score\":{}}}",
            idx.char_offset(f.start),
            idx.char_offset(f.end),
            f.category.as_str(),
            (f.score * 100.0).round() / 100.0
        );
    }
    out
}
