//! The answer side: new-PHI scanning, role-gated re-identification, and the SSE rewriter that
//! does both across chunks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use phi::transform::StreamRestorer;
use phi::Category;
use serde_json::Value;

use crate::error::ApiError;
use crate::phiops;

/// What to do with PHI in an answer that was not in the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewPhi {
    /// Replace by `[CATEGORY]`.
    Redact,
    /// Refuse the answer.
    Block,
}

/// How one answer is rewritten.
pub struct OutputRules {
    /// The scanner.
    pub scanner: Arc<dyn crate::Detector>,
    /// Values of the request (not "new").
    pub request_values: HashSet<String>,
    /// New PHI handling.
    pub new_phi: NewPhi,
    /// `token -> value` to restore (empty when the role may not re-identify).
    pub restore: HashMap<String, String>,
}

impl std::fmt::Debug for OutputRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputRules").field("new_phi", &self.new_phi).finish_non_exhaustive()
    }
}

/// What an answer held, for the ledger and metrics.
#[derive(Debug, Default, Clone)]
pub struct OutputReport {
    /// Categories of new PHI found (and redacted or blocked).
    pub new_phi: Vec<Category>,
}

/// Checks one answer text for new PHI: redacts it, or refuses.
pub fn check_text(
    rules: &OutputRules,
    text: &str,
    report: &mut OutputReport,
) -> Result<String, ApiError> {
    let found = phiops::new_phi(rules.scanner.as_ref(), text, &rules.request_values)?;
    if found.is_empty() {
        return Ok(text.to_string());
    }
    report.new_phi.extend(found.iter().map(|f| f.category));
    match rules.new_phi {
        NewPhi::Redact => Ok(phiops::redact(text, &found)),
        NewPhi::Block => {
            let mut cats: Vec<Category> = found.iter().map(|f| f.category).collect();
            cats.sort();
            cats.dedup();
            Err(ApiError::PhiBlocked { categories: cats, in_answer: true })
        }
    }
}

fn restore_all(restore: &HashMap<String, String>, text: &str) -> String {
    if restore.is_empty() {
        return text.to_string();
    }
    match StreamRestorer::new(restore.iter()) {
        Ok(mut r) => {
            let mut s = r.push(text);
            s.push_str(&r.finish());
            s
        }
        Err(_) => text.to_string(),
    }
}

/// Rewrites a non-streaming chat completion: new-PHI check then restoration of every choice's
/// `message.content` and tool-call arguments. Fails with `upstream_invalid_response` when the
/// body is not a chat completion.
pub fn rewrite_completion(
    rules: &OutputRules,
    body: &mut Value,
    client_model: &str,
) -> Result<OutputReport, ApiError> {
    let choices = body
        .get_mut("choices")
        .and_then(Value::as_array_mut)
        .ok_or(ApiError::UpstreamInvalidResponse)?;
    let mut report = OutputReport::default();
    for ch in choices.iter_mut() {
        let msg = ch.get_mut("message").ok_or(ApiError::UpstreamInvalidResponse)?;
        if !msg.is_object() {
            return Err(ApiError::UpstreamInvalidResponse);
        }
        match msg.get_mut("content") {
            Some(Value::String(s)) => {
                let checked = check_text(rules, s, &mut report)?;
                *s = restore_all(&rules.restore, &checked);
            }
            None | Some(Value::Null) => {}
            Some(_) => return Err(ApiError::UpstreamInvalidResponse),
        }
        if let Some(calls) = msg.get_mut("tool_calls").and_then(Value::as_array_mut) {
            for c in calls {
                if let Some(Value::String(a)) = c.pointer_mut("/function/arguments") {
                    let checked = check_text(rules, a, &mut report)?;
                    *a = restore_all(&rules.restore, &checked);
                }
            }
        }
        if let Some(Value::String(a)) = msg.pointer_mut("/function_call/arguments") {
            let checked = check_text(rules, a, &mut report)?;
            *a = restore_all(&rules.restore, &checked);
        }
    }
    if let Some(m) = body.get_mut("model") {
        *m = Value::String(client_model.to_string());
    }
    Ok(report)
}

/// How many bytes the stream holds back for the output scan (at least this, and at least the
/// longest placeholder).
pub const HOLDBACK_WINDOW: usize = 64;

/// One choice's state across the stream.
struct ChoiceState {
    /// Text received, not yet scanned and emitted.
    pending: String,
    /// The last emitted bytes (before restoration), kept as left context for the scan.
    context: String,
    restorer: Option<StreamRestorer>,
}

/// Rewrites an SSE chat stream event by event.
pub struct StreamRewriter {
    rules: OutputRules,
    window: usize,
    choices: HashMap<u64, ChoiceState>,
    client_model: String,
    /// New PHI seen so far.
    pub report: OutputReport,
    /// Id/created of the last chunk, to emit trailing text.
    template: Option<Value>,
}

impl std::fmt::Debug for StreamRewriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRewriter")
            .field("choices", &self.choices.len())
            .finish_non_exhaustive()
    }
}

impl StreamRewriter {
    /// A rewriter for one answer.
    pub fn new(rules: OutputRules, client_model: &str) -> StreamRewriter {
        let longest = rules.restore.keys().map(String::len).max().unwrap_or(0);
        StreamRewriter {
            window: HOLDBACK_WINDOW.max(longest),
            rules,
            choices: HashMap::new(),
            client_model: client_model.to_string(),
            report: OutputReport::default(),
            template: None,
        }
    }

    fn state(&mut self, i: u64) -> &mut ChoiceState {
        let restore = &self.rules.restore;
        self.choices.entry(i).or_insert_with(|| ChoiceState {
            pending: String::new(),
            context: String::new(),
            restorer: if restore.is_empty() {
                None
            } else {
                StreamRestorer::new(restore.iter()).ok()
            },
        })
    }

    /// Scans and emits what is safe of choice `i`'s pending text (everything when `last`).
    fn drain(&mut self, i: u64, last: bool) -> Result<String, ApiError> {
        let window = self.window;
        let scanner = self.rules.scanner.clone();
        let new_phi = self.rules.new_phi;
        let st = self.choices.get_mut(&i).ok_or(ApiError::UpstreamInvalidResponse)?;
        if st.pending.is_empty() && !last {
            return Ok(String::new());
        }
        // The scanned text: left context + pending.
        let ctx_len = st.context.len();
        let mut joined = String::with_capacity(ctx_len + st.pending.len());
        joined.push_str(&st.context);
        joined.push_str(&st.pending);
        let found = phiops::new_phi(scanner.as_ref(), &joined, &self.rules.request_values)?;
        // Where to cut: keep `window` bytes back, at a whitespace, never inside a finding.
        let mut cut = if last { joined.len() } else { joined.len().saturating_sub(window) };
        if !last {
            while cut > ctx_len && !joined.is_char_boundary(cut) {
                cut -= 1;
            }
            if let Some(ws) = joined[ctx_len..cut].rfind(char::is_whitespace) {
                cut = ctx_len + ws;
            } else if st.pending.len() < 8 * window {
                cut = ctx_len;
            }
            for f in &found {
                if f.start < cut && f.end > cut {
                    cut = f.start.max(ctx_len);
                }
            }
        }
        if cut <= ctx_len {
            return Ok(String::new());
        }
        let emit_findings: Vec<phi::Finding> =
            found.iter().filter(|f| f.start >= ctx_len && f.end <= cut).copied().collect();
        let raw = &joined[ctx_len..cut];
        let shifted: Vec<phi::Finding> = emit_findings
            .iter()
            .map(|f| phi::Finding { start: f.start - ctx_len, end: f.end - ctx_len, ..*f })
            .collect();
        let checked = if shifted.is_empty() {
            raw.to_string()
        } else {
            self.report.new_phi.extend(shifted.iter().map(|f| f.category));
            if new_phi == NewPhi::Block {
                let mut cats: Vec<Category> = shifted.iter().map(|f| f.category).collect();
                cats.sort();
                cats.dedup();
                return Err(ApiError::PhiBlocked { categories: cats, in_answer: true });
            }
            phiops::redact(raw, &shifted)
        };
        // New context: the tail of what was scanned up to the cut.
        let mut ctx_start = cut.saturating_sub(window);
        while !joined.is_char_boundary(ctx_start) {
            ctx_start -= 1;
        }
        st.context = joined[ctx_start..cut].to_string();
        st.pending = joined[cut..].to_string();
        let mut out = match &mut st.restorer {
            Some(r) => r.push(&checked),
            None => checked,
        };
        if last {
            if let Some(r) = &mut st.restorer {
                out.push_str(&r.finish());
            }
        }
        Ok(out)
    }

    /// Rewrites one upstream `data:` payload (not `[DONE]`) into the payload to send.
    pub fn event(&mut self, data: &str) -> Result<Value, ApiError> {
        let mut v: Value =
            serde_json::from_str(data).map_err(|_| ApiError::UpstreamInvalidResponse)?;
        if !v.is_object() {
            return Err(ApiError::UpstreamInvalidResponse);
        }
        if v.get("error").is_some() {
            // Never relay an upstream's error body.
            return Err(ApiError::UpstreamUnavailable);
        }
        if let Some(m) = v.get_mut("model") {
            *m = Value::String(self.client_model.clone());
        }
        let Some(choices) = v.get_mut("choices") else {
            return Ok(v);
        };
        let choices = choices.as_array_mut().ok_or(ApiError::UpstreamInvalidResponse)?;
        let mut items: Vec<(u64, Option<String>, bool)> = Vec::new();
        for ch in choices.iter() {
            let i = ch.get("index").and_then(Value::as_u64).unwrap_or(0);
            let content = match ch.pointer("/delta/content") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(ApiError::UpstreamInvalidResponse),
            };
            let finished = ch.get("finish_reason").is_some_and(|f| !f.is_null());
            items.push((i, content, finished));
        }
        let mut outs = Vec::with_capacity(items.len());
        for (i, content, finished) in items {
            let st = self.state(i);
            if let Some(c) = &content {
                st.pending.push_str(c);
            }
            outs.push((content.is_some(), self.drain(i, finished)?));
        }
        for (ch, (had, text)) in choices.iter_mut().zip(outs) {
            if had || !text.is_empty() {
                if let Some(d) = ch.get_mut("delta").and_then(Value::as_object_mut) {
                    d.insert("content".into(), Value::String(text));
                } else if let Some(o) = ch.as_object_mut() {
                    o.insert("delta".into(), serde_json::json!({ "content": text }));
                }
            }
        }
        let mut t = v.clone();
        if let Some(o) = t.as_object_mut() {
            o.remove("choices");
            o.remove("usage");
        }
        self.template = Some(t);
        Ok(v)
    }

    /// Ends the stream: the text still held back, as chunks to send before `[DONE]`.
    pub fn finish(&mut self) -> Result<Vec<Value>, ApiError> {
        let mut keys: Vec<u64> = self.choices.keys().copied().collect();
        keys.sort_unstable();
        let mut out = Vec::new();
        for i in keys {
            let text = self.drain(i, true)?;
            if text.is_empty() {
                continue;
            }
            let mut chunk = self.template.clone().unwrap_or_else(|| {
                serde_json::json!({"id": "chatcmpl-phigate", "object": "chat.completion.chunk", "created": 0, "model": self.client_model})
            });
            if let Some(o) = chunk.as_object_mut() {
                o.insert(
                    "choices".into(),
                    serde_json::json!([{ "index": i, "delta": { "content": text }, "finish_reason": null }]),
                );
            }
            out.push(chunk);
        }
        Ok(out)
    }
}

/// Splits an SSE byte stream into `data:` payloads.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    data: Vec<String>,
}

/// Largest SSE line or event accepted from an upstream.
pub const MAX_SSE_EVENT: usize = 4 * 1024 * 1024;

impl SseParser {
    /// Feeds bytes; returns the complete events' data (lines joined by `\n`).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, ApiError> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let mut line = &self.buf[start..start + nl];
            start += nl + 1;
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if line.is_empty() {
                if !self.data.is_empty() {
                    events.push(self.data.join("\n"));
                    self.data.clear();
                }
                continue;
            }
            let line = std::str::from_utf8(line).map_err(|_| ApiError::UpstreamInvalidResponse)?;
            if let Some(rest) = line.strip_prefix("data:") {
                self.data.push(rest.strip_prefix(' ').unwrap_or(rest).to_string());
            }
            // Comments (`:`), `event:`, `id:`, `retry:` are ignored.
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_SSE_EVENT
            || self.data.iter().map(String::len).sum::<usize>() > MAX_SSE_EVENT
        {
            return Err(ApiError::UpstreamInvalidResponse);
        }
        Ok(events)
    }

    /// The last event if the stream ended without a blank line.
    pub fn finish(&mut self) -> Option<String> {
        if !self.buf.is_empty() {
            if let Ok(line) = std::str::from_utf8(&self.buf) {
                if let Some(rest) = line.trim_end_matches('\r').strip_prefix("data:") {
                    self.data.push(rest.strip_prefix(' ').unwrap_or(rest).to_string());
                }
            }
            self.buf.clear();
        }
        if self.data.is_empty() {
            None
        } else {
            let d = self.data.join("\n");
            self.data.clear();
            Some(d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_parser_handles_split_lines() {
        let mut p = SseParser::default();
        let mut got = p.push(b"data: {\"a\"").unwrap();
        assert!(got.is_empty());
        got.extend(p.push(b":1}\r\n\r\ndata: [DONE]\n\n").unwrap());
        assert_eq!(got, ["{\"a\":1}", "[DONE]"]);
    }
}
