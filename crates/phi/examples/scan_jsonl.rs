//! Library usage example: reads `{"id","text"}` JSONL on stdin and prints each finding with
//! code-point offsets. (The `phigate scan` command is the supported tool; this shows the API.)

use std::io::{BufRead, Write};

fn main() {
    let scanner = phi::Scanner::new().expect("built-in recognizers compile");
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout());
    for line in stdin.lock().lines() {
        let line = line.expect("stdin is readable UTF-8");
        let v: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(_) => continue,
        };
        let text = v["text"].as_str().unwrap_or_default();
        let idx = phi::text::CharIndex::new(text);
        for f in scanner.scan(text) {
            let rec = serde_json::json!({
                "id": v["id"], "start": idx.char_offset(f.start), "end": idx.char_offset(f.end),
                "category": f.category.as_str(), "subtype": f.subtype, "score": f.score, "recognizer": f.recognizer,
            });
            writeln!(out, "{rec}").expect("stdout is writable");
        }
    }
}
