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

    /// Scans and emits what is safe of one text's pending part (everything when `last`).
    fn drain(&mut self, key: u64, last: bool) -> Result<String, ApiError> {
        let window = self.window;
        let scanner = self.rules.scanner.clone();
        let new_phi = self.rules.new_phi;
        let Some(st) = self.choices.get_mut(&key) else { return Ok(String::new()) };
        let mut out = String::new();
        if !st.pending.is_empty() {
            // The scanned text: left context + pending.
            let ctx_len = st.context.len();
            let mut joined = String::with_capacity(ctx_len + st.pending.len());
            joined.push_str(&st.context);
            joined.push_str(&st.pending);
            let found = phiops::new_phi(scanner.as_ref(), &joined, &self.rules.request_values)?;
            // Where to cut: keep `window` bytes back, at a whitespace, never inside a finding.
            let cut = if last {
                joined.len()
            } else {
                let mut c = joined.len().saturating_sub(window).max(ctx_len);
                while c > ctx_len && !joined.is_char_boundary(c) {
                    c -= 1;
                }
                if let Some(ws) = joined[ctx_len..c].rfind(char::is_whitespace) {
                    c = ctx_len + ws;
                } else if st.pending.len() < 8 * window {
                    c = ctx_len;
                }
                for f in &found {
                    if f.start < c && f.end > c {
                        c = f.start.max(ctx_len);
                    }
                }
                c
            };
            if cut > ctx_len {
                let raw = &joined[ctx_len..cut];
                let shifted: Vec<phi::Finding> = found
                    .iter()
                    .filter(|f| f.start >= ctx_len && f.end <= cut)
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
                out = match &mut st.restorer {
                    Some(r) => r.push(&checked),
                    None => checked,
                };
            }
        }
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
        for (pos, ch) in choices.iter_mut().enumerate() {
            self.rewrite_choice(pos, ch)?;
        }
        let mut t = v.clone();
        if let Some(o) = t.as_object_mut() {
            o.remove("choices");
            o.remove("usage");
        }
        self.template = Some(t);
        Ok(v)
    }

    /// Rewrites one choice of a chunk: its `delta.content` and each
    /// `delta.tool_calls[].function.arguments`, each text held back and scanned on its own.
    fn rewrite_choice(&mut self, pos: usize, ch: &mut Value) -> Result<(), ApiError> {
        let i = ch.get("index").and_then(Value::as_u64).unwrap_or(pos as u64);
        let base = i.checked_mul(TEXTS_PER_CHOICE).ok_or(ApiError::UpstreamInvalidResponse)?;
        let finished = ch.get("finish_reason").is_some_and(|f| !f.is_null());
        let content = match ch.pointer("/delta/content") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ApiError::UpstreamInvalidResponse),
        };
        let had_content = content.is_some();
        if let Some(c) = content {
            self.state(base).pending.push_str(&c);
        }
        // Tool-call argument pieces in this chunk: (position in the array, key).
        let mut tools: Vec<(usize, u64)> = Vec::new();
        if let Some(calls) = ch.pointer("/delta/tool_calls") {
            let calls = calls.as_array().ok_or(ApiError::UpstreamInvalidResponse)?;
            for (p, call) in calls.iter().enumerate() {
                let j = call.get("index").and_then(Value::as_u64).unwrap_or(p as u64);
                if j + 1 >= TEXTS_PER_CHOICE {
                    return Err(ApiError::UpstreamInvalidResponse);
                }
                match call.pointer("/function/arguments") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(a)) => {
                        let key = base + 1 + j;
                        self.state(key).pending.push_str(a);
                        tools.push((p, key));
                    }
                    Some(_) => return Err(ApiError::UpstreamInvalidResponse),
                }
            }
        }
        let text = self.drain(base, finished)?;
        if had_content || !text.is_empty() {
            match ch.get_mut("delta").and_then(Value::as_object_mut) {
                Some(d) => {
                    d.insert("content".into(), Value::String(text));
                }
                None => {
                    if let Some(o) = ch.as_object_mut() {
                        o.insert("delta".into(), serde_json::json!({ "content": text }));
                    }
                }
            }
        }
        for (p, key) in &tools {
            let t = self.drain(*key, finished)?;
            if let Some(a) = ch.pointer_mut(&format!("/delta/tool_calls/{p}/function/arguments")) {
                *a = Value::String(t);
            }
        }
        if finished {
            // Arguments of this choice's other tool calls still held back.
            let mut rest: Vec<u64> = self
                .choices
                .keys()
                .copied()
                .filter(|k| *k > base && *k < base + TEXTS_PER_CHOICE)
                .filter(|k| !tools.iter().any(|(_, t)| t == k))
                .collect();
            rest.sort_unstable();
            for key in rest {
                let t = self.drain(key, true)?;
                if t.is_empty() {
                    continue;
                }
                let entry =
                    serde_json::json!({"index": key - base - 1, "function": {"arguments": t}});
                if let Some(d) = ch.get_mut("delta").and_then(Value::as_object_mut) {
                    match d.get_mut("tool_calls").and_then(Value::as_array_mut) {
                        Some(a) => a.push(entry),
                        None => {
                            d.insert("tool_calls".into(), Value::Array(vec![entry]));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Ends the stream: the text still held back, as chunks to send before `[DONE]`.
    pub fn finish(&mut self) -> Result<Vec<Value>, ApiError> {
        let mut keys: Vec<u64> = self.choices.keys().copied().collect();
        keys.sort_unstable();
        let mut out = Vec::new();
        for key in keys {
            let text = self.drain(key, true)?;
            if text.is_empty() {
                continue;
            }
            let (i, slot) = (key / TEXTS_PER_CHOICE, key % TEXTS_PER_CHOICE);
            let delta = if slot == 0 {
                serde_json::json!({ "content": text })
            } else {
                serde_json::json!({ "tool_calls": [{ "index": slot - 1, "function": { "arguments": text } }] })
            };
            let mut chunk = self.template.clone().unwrap_or_else(|| {
                serde_json::json!({"id": "chatcmpl-phigate", "object": "chat.completion.chunk", "created": 0, "model": self.client_model})
            });
            if let Some(o) = chunk.as_object_mut() {
                o.insert(
                    "choices".into(),
                    serde_json::json!([{ "index": i, "delta": delta, "finish_reason": null }]),
                );
            }
            out.push(chunk);
        }
        Ok(out)
    }
}

/// Texts tracked per choice: its content and up to 1023 tool calls' arguments.
const TEXTS_PER_CHOICE: u64 = 1024;

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

    fn rules(restore: &[(&str, &str)]) -> OutputRules {
        OutputRules {
            scanner: Arc::new(phi::Scanner::new().unwrap()),
            request_values: HashSet::new(),
            new_phi: NewPhi::Redact,
            restore: restore.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        }
    }

    fn chunk(content: Option<&str>, args: Option<&str>, finish: bool) -> String {
        let mut delta = serde_json::json!({});
        if let Some(c) = content {
            delta["content"] = Value::String(c.into());
        }
        if let Some(a) = args {
            delta["tool_calls"] = serde_json::json!([{"index": 0, "function": {"arguments": a}}]);
        }
        let fr = if finish { Value::String("stop".into()) } else { Value::Null };
        serde_json::json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "up",
            "choices": [{"index": 0, "delta": delta, "finish_reason": fr}]})
        .to_string()
    }

    /// Feeds pieces (content or arguments), returns (content, arguments) as a client joins them.
    fn run(rw: &mut StreamRewriter, pieces: &[&str], as_args: bool) -> (String, String) {
        let mut events: Vec<Value> = Vec::new();
        for p in pieces {
            let c = if as_args { chunk(None, Some(p), false) } else { chunk(Some(p), None, false) };
            events.push(rw.event(&c).unwrap());
        }
        events.push(rw.event(&chunk(None, None, true)).unwrap());
        events.extend(rw.finish().unwrap());
        let (mut content, mut args) = (String::new(), String::new());
        for e in events {
            assert_eq!(e["model"], "client");
            for ch in e["choices"].as_array().unwrap() {
                content.push_str(ch["delta"]["content"].as_str().unwrap_or(""));
                if let Some(calls) = ch["delta"]["tool_calls"].as_array() {
                    for c in calls {
                        args.push_str(c["function"]["arguments"].as_str().unwrap_or(""));
                    }
                }
            }
        }
        (content, args)
    }

    #[test]
    fn long_answers_restore_at_every_split() {
        let text = "The patient [NAME_1] was reviewed today with the team; vitals stable, plan to continue the current regimen and follow up with [NAME_1] next week at the clinic.";
        let want = text.replace("[NAME_1]", "Alan Smith");
        for at in 0..=text.len() {
            let mut rw = StreamRewriter::new(rules(&[("[NAME_1]", "Alan Smith")]), "client");
            let (c, _) = run(&mut rw, &[&text[..at], &text[at..]], false);
            assert_eq!(c, want, "split at {at}");
        }
        let mut rw = StreamRewriter::new(rules(&[("[NAME_1]", "Alan Smith")]), "client");
        let singles: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = singles.iter().map(String::as_str).collect();
        assert_eq!(run(&mut rw, &refs, false).0, want);
    }

    #[test]
    fn tool_call_arguments_are_restored_and_scanned_while_streaming() {
        let args = r#"{"patient": "[NAME_1]", "callback": "(617) 555-0199"}"#;
        for at in 0..=args.len() {
            let mut rw = StreamRewriter::new(rules(&[("[NAME_1]", "Alan Smith")]), "client");
            let (_, got) = run(&mut rw, &[&args[..at], &args[at..]], true);
            assert!(got.contains("Alan Smith"), "split at {at}: {got}");
            assert!(!got.contains("555-0199"), "split at {at}: {got}");
        }
    }

    #[test]
    fn sse_parser_handles_split_lines() {
        let mut p = SseParser::default();
        let mut got = p.push(b"data: {\"a\"").unwrap();
        assert!(got.is_empty());
        got.extend(p.push(b":1}\r\n\r\ndata: [DONE]\n\n").unwrap());
        assert_eq!(got, ["{\"a\":1}", "[DONE]"]);
    }
}
