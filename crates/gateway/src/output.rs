//! The answer side: new-PHI scanning, role-gated re-identification, and the SSE rewriter that
//! does both across chunks.

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use phi::transform::StreamRestorer;
use phi::Category;
use serde_json::Value;

use crate::error::ApiError;
use crate::phiops;

/// What to do with PHI in an answer that was not in the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewPhi {
    /// Replace by `[CATEGORY]` (in an id, its digits by letters: see `check_token`).
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
    /// The answer's `content` is a JSON document (`response_format` `json_object` or
    /// `json_schema`): values restored into it are JSON-escaped, as in arguments.
    pub json_content: bool,
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
    check_reading(rules, text, text, report)
}

/// [`check_text`] of `text` as `read` (the same offsets) reads.
fn check_reading(
    rules: &OutputRules,
    text: &str,
    read: &str,
    report: &mut OutputReport,
) -> Result<String, ApiError> {
    let found = find_new_phi(rules, read)?;
    if found.is_empty() {
        return Ok(text.to_string());
    }
    report.new_phi.extend(found.iter().map(|f| f.category));
    match rules.new_phi {
        NewPhi::Redact => Ok(phiops::redact(text, &found)),
        NewPhi::Block => Err(blocked(&found)),
    }
}

/// Checks a function's name (or an id that is no protocol token) as [`check_text`] does, read
/// with its `_` and `.` as spaces (same offsets): a name holds no space, so
/// `notify_415-555-0123_now` or `lookup_219-09-9999` say a number that `_` would make one
/// word with the letters around it. Placeholders (`[NAME_1]`) are read as written.
fn check_name(
    rules: &OutputRules,
    text: &str,
    report: &mut OutputReport,
) -> Result<String, ApiError> {
    let mut spaced = text.as_bytes().to_vec();
    let mut in_brackets = false;
    for c in &mut spaced {
        match *c {
            b'[' => in_brackets = true,
            b']' => in_brackets = false,
            b'_' | b'.' if !in_brackets => *c = b' ',
            _ => {}
        }
    }
    // Only ASCII bytes were replaced, by spaces.
    let spaced = String::from_utf8(spaced).map_err(|_| ApiError::ScannerUnavailable)?;
    check_reading(rules, text, &spaced, report)
}

/// An answer refused for new PHI of `found`'s categories.
fn blocked(found: &[phi::Finding]) -> ApiError {
    let mut cats: Vec<Category> = found.iter().map(|f| f.category).collect();
    cats.sort();
    cats.dedup();
    ApiError::PhiBlocked { categories: cats, in_answer: true }
}

/// `restore` with each value escaped for the inside of a JSON string, for function-call
/// arguments (a JSON text whose placeholders sit inside its strings), or `None` when no value
/// needs it (a quote, a backslash or a control character: a line break of an address).
fn json_escaped(restore: &HashMap<String, String>) -> Option<HashMap<String, String>> {
    let needs = |v: &String| v.chars().any(|c| c == '"' || c == '\\' || c.is_control());
    if !restore.values().any(needs) {
        return None;
    }
    Some(
        restore
            .iter()
            .map(|(t, v)| {
                let quoted = serde_json::to_string(v).unwrap_or_default();
                let inner = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or("");
                (t.clone(), inner.to_string())
            })
            .collect(),
    )
}

/// New PHI in `text` ([`phiops::new_phi`], which reads it through its escapes, see
/// [`phiops::Decoded`]): the findings' offsets are `text`'s own.
fn find_new_phi(rules: &OutputRules, text: &str) -> Result<Vec<phi::Finding>, ApiError> {
    phiops::new_phi(rules.scanner.as_ref(), text, &rules.request_values)
}

/// Most name parts a streamed choice keeps ([`StreamRewriter`]'s names said before): past it
/// the stream ends (an answer of thousands of new names is no answer to relay piece by piece).
pub const MAX_NAME_PARTS: usize = 4096;

/// Adds to `parts` the words of the names among `found` (new PHI in `text`, offsets as
/// written), each read as its value reads ([`phiops::plain_value`]): what marks a name where
/// the answer says it again later without a cue ([`crate::Detector::name_parts`]). A panic
/// is a refusal.
fn add_name_parts<'f>(
    rules: &OutputRules,
    text: &str,
    found: impl Iterator<Item = &'f phi::Finding>,
    parts: &mut Vec<phi::NamePart>,
) -> Result<(), ApiError> {
    let before = parts.len();
    for f in found.filter(|f| f.category == Category::Name) {
        let Some(raw) = text.get(f.start..f.end) else { continue };
        let value = phiops::plain_value(raw);
        let one = [phi::Finding { start: 0, end: value.len(), ..*f }];
        let more = catch_unwind(AssertUnwindSafe(|| rules.scanner.name_parts(&value, &one)))
            .map_err(|_| {
                tracing::error!("the PHI scanner panicked on an answer's names; ending it");
                ApiError::ScannerUnavailable
            })?;
        parts.extend(more);
    }
    if parts.len() > before {
        phi::NamePart::dedup(parts);
        if parts.len() > MAX_NAME_PARTS {
            return Err(ApiError::UpstreamInvalidResponse);
        }
    }
    Ok(())
}

/// Adds to `found` (new PHI in `text`, sorted and apart, offsets as written) the words of
/// `text` that say again a name of `parts` ([`crate::Detector::repeats`], on the text as it
/// reads through its escapes), outside what is found already and unless the request holds
/// them (a bare surname of a name the caller sent is not new). A panic, or findings that do
/// not fit the text, are a refusal.
fn add_said_again(
    rules: &OutputRules,
    text: &str,
    dec: Option<&phiops::Decoded>,
    parts: &[phi::NamePart],
    found: &mut Vec<phi::Finding>,
) -> Result<(), ApiError> {
    let plain = dec.map_or(text, |d| d.plain.as_str());
    let mut more = Vec::new();
    let added = catch_unwind(AssertUnwindSafe(|| rules.scanner.repeats(plain, parts, &mut more)))
        .map_err(|_| {
        tracing::error!("the PHI scanner panicked on an answer's names; ending it");
        ApiError::ScannerUnavailable
    })?;
    if !added {
        return Ok(());
    }
    let misfit = || {
        tracing::error!("the PHI scanner returned names that do not fit the answer; ending it");
        ApiError::ScannerUnavailable
    };
    let mut last = 0;
    let mut any = false;
    for f in more {
        let fits = f.start >= last
            && f.start < f.end
            && f.end <= plain.len()
            && plain.is_char_boundary(f.start)
            && plain.is_char_boundary(f.end);
        if !fits {
            return Err(misfit());
        }
        last = f.end;
        let (start, end) = match dec {
            Some(d) => (d.raw_of(f.start), d.raw_of(f.end)),
            None => (f.start, f.end),
        };
        if start >= end || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            return Err(misfit());
        }
        if found.iter().any(|g| g.start < end && start < g.end)
            || phiops::in_request(&rules.request_values, &plain[f.start..f.end])
        {
            continue;
        }
        found.push(phi::Finding { start, end, ..f });
        any = true;
    }
    if any {
        found.sort_by_key(|f| f.start);
    }
    Ok(())
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

/// Keys of an answer whose string values are protocol words or ids: not scanned nor restored
/// when they look like one ([`protocol_token`]); any other value there is checked like free
/// text. A function's `name` is always checked and restored: a model writes it.
const ANSWER_STRUCTURAL_KEYS: &[&str] = &["role", "id", "type", "finish_reason"];

/// A protocol word, id or name (`assistant`, `chatcmpl-9x..`, `call_1`, `get_chart`, `stop`):
/// at most 128 ASCII letters, digits and `-_.:`. Relayed as it is, never restored; one that
/// holds a digit is checked first ([`check_token`]).
fn protocol_token(s: &str) -> bool {
    s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Whether `v` under key `k` is a structural value passed as it is.
fn structural(k: &str, v: &Value) -> bool {
    ANSWER_STRUCTURAL_KEYS.contains(&k) && v.as_str().is_some_and(protocol_token)
}

/// Most texts one stream may hold back at once (choices times their fields and tool calls).
pub const MAX_STREAM_TEXTS: usize = 1024;

/// Most bytes one streamed text may hold back: a finding that keeps growing (a URL or a run
/// of digits without end) holds its text back until it ends, and each chunk scans it again.
pub const MAX_HELD_BYTES: usize = 16 * 1024;

/// Categories an id is checked for ([`check_token`]): identifiers of a strict form. Random
/// ids read now and then as an account, a device or a date number, and every id is "an id".
const TOKEN_CATEGORIES: &[Category] =
    &[Category::Ssn, Category::Phone, Category::Fax, Category::Mrn];

/// Checks a protocol token (an id, a fingerprint, a protocol word) that holds six digits or
/// more, without restoring it: an SSN, a phone number or an MRN standing apart in it (between
/// its ends and `-_.:`: `"id": "call_123-45-6789"`) is PHI all the same. `None` when it stays
/// as it is. Such a finding is redacted by replacing its digits with letters from a keyed hash
/// of the token (the id keeps its form, `^[A-Za-z0-9_-]+$`, is the same wherever it appears,
/// and two of them stay apart), or refused under a block rule. `assistant`, `stop` or `chatcmpl-bench0001` are not scanned.
fn check_token(
    rules: &OutputRules,
    s: &str,
    report: &mut OutputReport,
) -> Result<Option<String>, ApiError> {
    if s.bytes().filter(u8::is_ascii_digit).count() < 6 {
        return Ok(None);
    }
    // Read with its underscores as spaces (same offsets): `call_123-45-6789` holds an SSN,
    // though `_` and `1` make one word.
    // Words of letters alone are blanked too: an id's `call`, `tool` or `mrn` is no cue
    // (`call_1765112521` is no phone number).
    let mut spaced = s.replace('_', " ").into_bytes();
    let mut i = 0;
    while i < spaced.len() {
        let end =
            spaced[i..].iter().position(|c| b" -.:".contains(c)).map_or(spaced.len(), |n| i + n);
        if spaced[i..end].iter().all(u8::is_ascii_alphabetic) {
            spaced[i..end].fill(b' ');
        }
        i = end + 1;
    }
    // Only ASCII bytes were replaced, by spaces.
    let spaced = String::from_utf8(spaced).map_err(|_| ApiError::ScannerUnavailable)?;
    let b = s.as_bytes();
    let apart = |f: &phi::Finding| {
        let sep = |c: u8| b"-_.:".contains(&c);
        (f.start == 0 || sep(b[f.start - 1])) && (f.end == b.len() || sep(b[f.end]))
    };
    let mut found = find_new_phi(rules, &spaced)?;
    found.retain(|f| TOKEN_CATEGORIES.contains(&f.category) && apart(f));
    if found.is_empty() {
        return Ok(None);
    }
    report.new_phi.extend(found.iter().map(|f| f.category));
    if rules.new_phi == NewPhi::Block {
        return Err(blocked(&found));
    }
    // Letters from a keyed hash of the token (the key drawn once a process): the same id gets
    // the same letters in every chunk and answer, two ids stay apart, and no one without the
    // key can tell the digits from them.
    static KEY: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(std::hash::RandomState::new);
    let mut out = s.as_bytes().to_vec();
    for (n, f) in found.iter().enumerate() {
        let mut h = std::hash::BuildHasher::hash_one(key, (s, n));
        for c in &mut out[f.start..f.end] {
            if c.is_ascii_digit() {
                *c = b'a' + (h % 26) as u8;
                h = (h / 26) ^ h.rotate_left(17);
            }
        }
    }
    // Only ASCII digits were replaced, by ASCII letters.
    String::from_utf8(out).map(Some).map_err(|_| ApiError::ScannerUnavailable)
}

/// The envelope's fields that are protocol tokens (see [`envelope`]).
const ENVELOPE_TOKENS: &[&str] = &["id", "object", "system_fingerprint", "service_tier"];

/// The keys of `usage` the API defines, each with the keys of its `*_details` object (none:
/// a number). Only these are relayed (as the embeddings answer's `usage` is rebuilt): a
/// server's own figures under other keys (Groq's `queue_time`, DeepSeek's cache counts) are
/// dropped, since a key is text no scan can be sure of (`adaeze_okonkwo` reads as a plain
/// word).
const USAGE_KEYS: &[(&str, &[&str])] = &[
    ("prompt_tokens", &[]),
    ("completion_tokens", &[]),
    ("total_tokens", &[]),
    ("prompt_tokens_details", &["cached_tokens", "audio_tokens"]),
    (
        "completion_tokens_details",
        &[
            "reasoning_tokens",
            "audio_tokens",
            "accepted_prediction_tokens",
            "rejected_prediction_tokens",
        ],
    ),
];

/// Checks the keys of a part of `usage` that is not relayed ([`key_has_phi`], at any depth):
/// one holding new PHI refuses the answer under a block rule and is counted; it goes anyway.
fn check_dropped_keys(
    rules: &OutputRules,
    k: &str,
    v: &Value,
    report: &mut OutputReport,
) -> Result<(), ApiError> {
    key_has_phi(rules, k, report)?;
    if let Value::Object(m) = v {
        for (k, x) in m {
            check_dropped_keys(rules, k, x, report)?;
        }
    }
    Ok(())
}

/// An answer's `usage` rebuilt from [`USAGE_KEYS`]: their numbers, and their `*_details`
/// objects' numbers under their known keys. Any other key is dropped with its value, checked
/// first ([`check_dropped_keys`]: refused under a block rule when it holds new PHI). `None`
/// when `v` is no object.
fn usage(
    rules: &OutputRules,
    v: &Value,
    report: &mut OutputReport,
) -> Result<Option<Value>, ApiError> {
    let Value::Object(m) = v else { return Ok(None) };
    let mut out = serde_json::Map::new();
    for (k, x) in m {
        let known = USAGE_KEYS.iter().find(|(name, _)| name == k).map(|(_, inner)| *inner);
        match (known, x) {
            (Some(&[]), Value::Number(_)) => {
                out.insert(k.clone(), x.clone());
            }
            (Some(inner), Value::Object(d)) if !inner.is_empty() => {
                let mut kept = serde_json::Map::new();
                for (dk, dx) in d {
                    if inner.contains(&dk.as_str()) && dx.is_number() {
                        kept.insert(dk.clone(), dx.clone());
                    } else {
                        check_dropped_keys(rules, dk, dx, report)?;
                    }
                }
                out.insert(k.clone(), Value::Object(kept));
            }
            _ => check_dropped_keys(rules, k, x, report)?,
        }
    }
    Ok(Some(Value::Object(out)))
}

/// The envelope of a chat answer or chunk, rebuilt from what the API defines: `id`, `object`,
/// `system_fingerprint` and `service_tier` when they are protocol words, a numeric `created`,
/// the model the client named, `usage` ([`usage`]: the numbers the API defines), and `choices`
/// (rewritten on their own). Any other field an upstream adds is not relayed, since none of it
/// is scanned.
fn envelope(
    rules: &OutputRules,
    v: Value,
    client_model: &str,
    report: &mut OutputReport,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let Value::Object(m) = v else { return Err(ApiError::UpstreamInvalidResponse) };
    let mut out = serde_json::Map::new();
    for (k, x) in m {
        let x = match k.as_str() {
            "id" | "object" | "system_fingerprint" | "service_tier"
                if x.is_null() || x.as_str().is_some_and(protocol_token) =>
            {
                x
            }
            "created" if x.is_number() => x,
            "choices" => x,
            "model" => Value::String(client_model.to_string()),
            "usage" if x.is_null() => x,
            "usage" => match usage(rules, &x, report)? {
                Some(u) => u,
                None => continue,
            },
            _ => continue,
        };
        out.insert(k, x);
    }
    Ok(out)
}

/// Checks and restores every string of `v` (at any depth) but those of
/// [`ANSWER_STRUCTURAL_KEYS`]; `arguments` strings (and `content` in JSON mode) are JSON texts:
/// values go back into them escaped. An object key holding new PHI ([`key_has_phi`]) is
/// dropped with its value, or refused under a block rule. Numbers are relayed: servers put
/// their own there (Together's `token_id` in every chunk, a 19-digit `seed`), which a reading
/// with the key would call identifiers.
fn rewrite_strings(
    rules: &OutputRules,
    v: &mut Value,
    report: &mut OutputReport,
) -> Result<(), ApiError> {
    rewrite_strings_in(rules, v, report, false, None)
}

/// [`rewrite_strings`], adding to `parts` (when given) the words of the new-PHI names its
/// texts say ([`add_name_parts`]).
fn rewrite_strings_in(
    rules: &OutputRules,
    v: &mut Value,
    report: &mut OutputReport,
    json: bool,
    mut parts: Option<&mut Vec<phi::NamePart>>,
) -> Result<(), ApiError> {
    match v {
        Value::String(s) => {
            let found = find_new_phi(rules, s)?;
            let checked = if found.is_empty() {
                std::mem::take(s)
            } else {
                report.new_phi.extend(found.iter().map(|f| f.category));
                if rules.new_phi == NewPhi::Block {
                    return Err(blocked(&found));
                }
                if let Some(parts) = parts {
                    add_name_parts(rules, s, found.iter(), parts)?;
                }
                phiops::redact(s, &found)
            };
            let escaped = if json { json_escaped(&rules.restore) } else { None };
            *s = restore_all(escaped.as_ref().unwrap_or(&rules.restore), &checked);
        }
        Value::Array(items) => {
            for it in items {
                rewrite_strings_in(rules, it, report, false, parts.as_deref_mut())?;
            }
        }
        Value::Object(map) => {
            // A key is a server's (not the model's): one holding new PHI goes with its value.
            let mut dropped = Vec::new();
            for (k, it) in map.iter_mut() {
                if key_has_phi(rules, k, report)? {
                    dropped.push(k.clone());
                    continue;
                }
                if structural(k, it) {
                    if let Value::String(t) = it {
                        if let Some(c) = check_token(rules, t, report)? {
                            *t = c;
                        }
                    }
                    continue;
                }
                // A function's name, read as a name ([`check_name`]).
                if let (true, Value::String(t)) = (k == "name", &mut *it) {
                    *t = restore_all(&rules.restore, &check_name(rules, t, report)?);
                    continue;
                }
                let json = k == "arguments" || (rules.json_content && k == "content");
                rewrite_strings_in(rules, it, report, json, parts.as_deref_mut())?;
            }
            for k in dropped {
                map.remove(&k);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// Redacts in every string of `v` [`rewrite_strings`] checked (once checked and restored) the
/// words that say again a name of `parts` ([`add_said_again`]): a whole answer's choice that
/// names someone in one field (`reasoning_content`) and says the surname alone in another
/// (`content: "Okonkwo responded well"`), as a stream does.
fn redact_said_again(
    rules: &OutputRules,
    v: &mut Value,
    parts: &[phi::NamePart],
    report: &mut OutputReport,
) -> Result<(), ApiError> {
    match v {
        Value::String(s) => {
            let dec = phiops::Decoded::of(s);
            let mut found = Vec::new();
            add_said_again(rules, s, dec.as_ref(), parts, &mut found)?;
            if !found.is_empty() {
                report.new_phi.extend(found.iter().map(|f| f.category));
                if rules.new_phi == NewPhi::Block {
                    return Err(blocked(&found));
                }
                *s = phiops::redact(s, &found);
            }
        }
        Value::Array(items) => {
            for it in items {
                redact_said_again(rules, it, parts, report)?;
            }
        }
        Value::Object(map) => {
            for (k, it) in map.iter_mut() {
                if !structural(k, it) {
                    redact_said_again(rules, it, parts, report)?;
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// Whether the object key `k` of an answer holds new PHI (a server's code writes keys, not the
/// model; a plain lowercase word is not read): refused under a block rule, else `true` (the
/// caller drops the key with its value).
fn key_has_phi(rules: &OutputRules, k: &str, report: &mut OutputReport) -> Result<bool, ApiError> {
    if phiops::plain_word(k) {
        return Ok(false);
    }
    let found = find_new_phi(rules, k)?;
    if found.is_empty() {
        return Ok(false);
    }
    report.new_phi.extend(found.iter().map(|f| f.category));
    match rules.new_phi {
        NewPhi::Block => Err(blocked(&found)),
        NewPhi::Redact => Ok(true),
    }
}

/// Drops what an answer may carry that cannot be scanned: log-probabilities (each token a
/// piece of the text, which the scan cannot rewrite) and audio. The request side refuses to
/// ask for them; an upstream that sends them anyway has them removed.
fn drop_unscannable(choice: &mut Value, message_key: &str) {
    if let Some(o) = choice.as_object_mut() {
        if o.get("logprobs").is_some_and(|l| !l.is_null()) {
            o.insert("logprobs".into(), Value::Null);
        }
        if let Some(m) = o.get_mut(message_key).and_then(Value::as_object_mut) {
            m.remove("audio");
        }
    }
}

/// Rewrites a non-streaming chat completion: new-PHI check then restoration of every text of
/// every choice's `message` (content, refusal, reasoning, tool-call and function-call
/// arguments, and any other string but ids and names), then a second pass over each choice's
/// texts for the words of the new names any of them said ([`redact_said_again`], as the
/// stream does with [`StreamRewriter`]'s names). Outside `choices` only the
/// [`envelope`] is relayed. Fails with `upstream_invalid_response` when the body is not a chat
/// completion.
pub fn rewrite_completion(
    rules: &OutputRules,
    body: &mut Value,
    client_model: &str,
) -> Result<OutputReport, ApiError> {
    let mut report = OutputReport::default();
    let mut env = envelope(rules, std::mem::take(body), client_model, &mut report)?;
    for k in ENVELOPE_TOKENS {
        if let Some(Value::String(t)) = env.get_mut(*k) {
            if let Some(c) = check_token(rules, t, &mut report)? {
                *t = c;
            }
        }
    }
    *body = Value::Object(env);
    let choices = body
        .get_mut("choices")
        .and_then(Value::as_array_mut)
        .ok_or(ApiError::UpstreamInvalidResponse)?;
    for ch in choices.iter_mut() {
        drop_unscannable(ch, "message");
        let msg = ch.get("message").ok_or(ApiError::UpstreamInvalidResponse)?;
        if !msg.is_object() {
            return Err(ApiError::UpstreamInvalidResponse);
        }
        match msg.get("content") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => return Err(ApiError::UpstreamInvalidResponse),
        }
        // The whole choice: its message, and whatever else a server puts beside it (vLLM's
        // `stop_reason` is the stop string that ended the answer), keys included.
        let mut parts = Vec::new();
        rewrite_strings_in(rules, ch, &mut report, false, Some(&mut parts))?;
        // Then the names it said, in all its texts: a surname said again without a cue in
        // another field (or farther on in the same one) is new PHI there too.
        if !parts.is_empty() {
            redact_said_again(rules, ch, &parts, &mut report)?;
        }
    }
    Ok(report)
}

/// Puts values back for their placeholders in every string of each choice of a whole answer
/// (the strings [`rewrite_completion`] checked), JSON-escaped inside function-call arguments
/// and, with `json_content`, inside `content` (a JSON document then).
pub fn restore_completion(body: &mut Value, restore: &HashMap<String, String>, json_content: bool) {
    if restore.is_empty() {
        return;
    }
    let escaped = json_escaped(restore);
    if let Some(choices) = body.get_mut("choices").and_then(Value::as_array_mut) {
        for ch in choices {
            restore_in(ch, restore, escaped.as_ref(), false, json_content);
        }
    }
}

fn restore_in(
    v: &mut Value,
    restore: &HashMap<String, String>,
    escaped: Option<&HashMap<String, String>>,
    as_json: bool,
    json_content: bool,
) {
    match v {
        Value::String(s) => {
            let map = if as_json { escaped.unwrap_or(restore) } else { restore };
            *s = restore_all(map, s);
        }
        Value::Array(items) => {
            for it in items {
                restore_in(it, restore, escaped, false, json_content);
            }
        }
        Value::Object(map) => {
            for (k, it) in map.iter_mut() {
                if structural(k, it) {
                    continue;
                }
                let as_json = k == "arguments" || (json_content && k == "content");
                restore_in(it, restore, escaped, as_json, json_content);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// How many bytes the stream holds back for the output scan (at least this, and at least the
/// longest placeholder).
pub const HOLDBACK_WINDOW: usize = 64;

/// One streamed text of a choice, held back and scanned on its own.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Field {
    /// A string of `delta` itself: `content`, `refusal`, `reasoning_content`, …
    Text(String),
    /// `delta.function_call.arguments`.
    FunctionArgs,
    /// `delta.tool_calls[index = j].function.arguments`.
    ToolArgs(u64),
    /// `delta.tool_calls[index = j].custom.input` (a custom tool's free-form input).
    ToolInput(u64),
}

impl Field {
    /// Where the text sits in a tool call entry, for a tool call's field.
    fn in_call(&self) -> Option<&'static str> {
        match self {
            Field::ToolArgs(_) => Some("/function/arguments"),
            Field::ToolInput(_) => Some("/custom/input"),
            _ => None,
        }
    }

    /// The delta that carries `text` in this field.
    fn delta(&self, text: String) -> Value {
        match self {
            Field::Text(k) => {
                let mut d = serde_json::Map::new();
                d.insert(k.clone(), Value::String(text));
                Value::Object(d)
            }
            Field::FunctionArgs => serde_json::json!({ "function_call": { "arguments": text } }),
            Field::ToolArgs(j) => {
                serde_json::json!({ "tool_calls": [{ "index": j, "function": { "arguments": text } }] })
            }
            Field::ToolInput(j) => {
                serde_json::json!({ "tool_calls": [{ "index": j, "custom": { "input": text } }] })
            }
        }
    }
}

/// Adds `text` of `field` to a delta object that may already hold other fields.
fn merge_into_delta(delta: &mut serde_json::Map<String, Value>, field: &Field, text: String) {
    match field {
        Field::Text(k) => {
            delta.insert(k.clone(), Value::String(text));
        }
        Field::FunctionArgs => {
            match delta.get_mut("function_call").and_then(Value::as_object_mut) {
                Some(f) => {
                    f.insert("arguments".into(), Value::String(text));
                }
                None => {
                    delta.insert("function_call".into(), serde_json::json!({ "arguments": text }));
                }
            }
        }
        Field::ToolArgs(j) | Field::ToolInput(j) => {
            let entry = match field {
                Field::ToolInput(_) => serde_json::json!({"index": j, "custom": {"input": text}}),
                _ => serde_json::json!({"index": j, "function": {"arguments": text}}),
            };
            match delta.get_mut("tool_calls").and_then(Value::as_array_mut) {
                Some(a) => a.push(entry),
                None => {
                    delta.insert("tool_calls".into(), Value::Array(vec![entry]));
                }
            }
        }
    }
}

/// One text's state across the stream.
struct TextState {
    /// Text received, not yet scanned and emitted.
    pending: String,
    /// The last emitted bytes (before restoration), kept as left context for the scan.
    context: String,
    restorer: Option<StreamRestorer>,
}

/// A tool call's `id` or a function's `name` as a client has it so far (clients join a tool
/// call's string fields across chunks: openai-python's `accumulate_delta`), and what of it
/// went out.
#[derive(Default)]
struct Joined {
    /// The upstream's pieces, joined.
    raw: String,
    /// What the client was sent, joined (checked, restored for a name).
    sent: String,
    /// Whether new PHI was reported in it already (counted once).
    reported: bool,
    /// Whether a piece was withheld: every later piece is too (the client's join would be
    /// what was sent, then later pieces, a text no check has read).
    stopped: bool,
    /// Whether a piece came that repeats the whole value (Fireworks, DeepSeek and Qwen send
    /// the whole `id` in every chunk): after one, a piece that is no repeat is withheld.
    repeated: bool,
}

impl Joined {
    /// Adds a check's new PHI to the answer's `total`, once for the value (each piece checks
    /// the whole join again). Returns whether the check found new PHI.
    fn count(&mut self, total: &mut OutputReport, report: OutputReport) -> bool {
        let found = !report.new_phi.is_empty();
        if found && !self.reported {
            total.new_phi.extend(report.new_phi);
            self.reported = true;
        }
        found
    }
}

/// Checks a joined tool call `id` or function `name` whole ([`StreamRewriter::check_joined`]):
/// a name is read as a name ([`check_name`]) and restored; an id that is a protocol token as
/// [`check_token`] does, any other as a name without restoring.
fn check_joined_text(
    rules: &OutputRules,
    raw: &str,
    name: bool,
    report: &mut OutputReport,
) -> Result<String, ApiError> {
    if name {
        check_name(rules, raw, report).map(|checked| restore_all(&rules.restore, &checked))
    } else if protocol_token(raw) {
        check_token(rules, raw, report).map(|c| c.unwrap_or_else(|| raw.to_string()))
    } else {
        check_name(rules, raw, report)
    }
}

/// Which joined string of a stream: (choice, tool call index or `None` for `function_call`,
/// the field: `id`, `function.name`, `custom.name`, `function_call.name`).
type JoinedKey = (u64, Option<u64>, &'static str);

/// Rewrites an SSE chat stream event by event.
pub struct StreamRewriter {
    rules: OutputRules,
    window: usize,
    /// The restore map for function-call arguments, when it differs (see [`json_escaped`]).
    args_restore: Option<HashMap<String, String>>,
    texts: HashMap<(u64, Field), TextState>,
    /// Choices seen, and whether each has finished (a non-empty `finish_reason`).
    finished: HashMap<u64, bool>,
    client_model: String,
    /// New PHI seen so far.
    pub report: OutputReport,
    /// Id/created of the last chunk, to emit trailing text.
    template: Option<Value>,
    /// The upstream's `usage.total_tokens`, when a chunk carried it
    /// (`stream_options.include_usage`).
    pub usage: Option<u64>,
    /// Bytes of answer text received (the answer's size when no usage comes).
    pub text_bytes: u64,
    /// Protocol tokens checked already, as they went out (every chunk repeats the answer's id).
    tokens: Vec<(String, String)>,
    /// Per choice, the words of the new-PHI names its texts said so far
    /// ([`crate::Detector::name_parts`]): said again later, past the held-back window, each is
    /// a name all the same ([`add_said_again`]). Never in Debug output.
    names: HashMap<u64, Vec<phi::NamePart>>,
    /// Tool call ids and function names as clients join them ([`StreamRewriter::check_joined`]).
    joined: HashMap<JoinedKey, Joined>,
}

impl std::fmt::Debug for StreamRewriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRewriter").field("texts", &self.texts.len()).finish_non_exhaustive()
    }
}

impl StreamRewriter {
    /// A rewriter for one answer.
    pub fn new(rules: OutputRules, client_model: &str) -> StreamRewriter {
        let longest = rules.restore.keys().map(String::len).max().unwrap_or(0);
        StreamRewriter {
            window: HOLDBACK_WINDOW.max(longest),
            args_restore: json_escaped(&rules.restore),
            rules,
            texts: HashMap::new(),
            finished: HashMap::new(),
            client_model: client_model.to_string(),
            report: OutputReport::default(),
            template: None,
            usage: None,
            text_bytes: 0,
            tokens: Vec::new(),
            names: HashMap::new(),
            joined: HashMap::new(),
        }
    }

    /// A protocol token as it goes out ([`check_token`]), remembered: a stream's chunks
    /// repeat their id, `system_fingerprint` and role.
    fn check_token(&mut self, t: &mut String) -> Result<(), ApiError> {
        if let Some((_, out)) = self.tokens.iter().find(|(raw, _)| raw == t) {
            t.clone_from(out);
            return Ok(());
        }
        let out = check_token(&self.rules, t, &mut self.report)?.unwrap_or_else(|| t.clone());
        if self.tokens.len() >= 16 {
            self.tokens.remove(0);
        }
        self.tokens.push((std::mem::replace(t, out.clone()), out));
        Ok(())
    }

    /// Whether every choice seen has finished (an upstream that closes the stream without
    /// `[DONE]` is complete only then).
    pub fn complete(&self) -> bool {
        !self.finished.is_empty() && self.finished.values().all(|f| *f)
    }

    fn push(&mut self, key: (u64, Field), text: &str) -> Result<(), ApiError> {
        if self.texts.len() >= MAX_STREAM_TEXTS && !self.texts.contains_key(&key) {
            return Err(ApiError::UpstreamInvalidResponse);
        }
        let json_content = self.rules.json_content;
        let restore = match (&key.1, &self.args_restore) {
            (Field::ToolArgs(_) | Field::FunctionArgs, Some(escaped)) => escaped,
            (Field::Text(k), Some(escaped)) if json_content && k == "content" => escaped,
            _ => &self.rules.restore,
        };
        let st = self.texts.entry(key).or_insert_with(|| TextState {
            pending: String::new(),
            context: String::new(),
            restorer: if restore.is_empty() {
                None
            } else {
                StreamRestorer::new(restore.iter()).ok()
            },
        });
        st.pending.push_str(text);
        self.text_bytes = self.text_bytes.saturating_add(text.len() as u64);
        Ok(())
    }

    /// Scans and emits what is safe of one text's pending part (everything when `last`).
    fn drain(&mut self, key: &(u64, Field), last: bool) -> Result<String, ApiError> {
        let window = self.window;
        let new_phi = self.rules.new_phi;
        let Some(st) = self.texts.get_mut(key) else { return Ok(String::new()) };
        let mut out = String::new();
        if !st.pending.is_empty() {
            // The scanned text: left context + pending.
            let ctx_len = st.context.len();
            let mut joined = String::with_capacity(ctx_len + st.pending.len());
            joined.push_str(&st.context);
            joined.push_str(&st.pending);
            let dec = phiops::Decoded::of(&joined);
            let mut found = find_new_phi(&self.rules, &joined)?;
            // A new name said before (its first mention long emitted, out of this window) is a
            // name here too, said again without a cue: "Okonkwo responded well".
            if let Some(parts) = self.names.get(&key.0).filter(|p| !p.is_empty()) {
                add_said_again(&self.rules, &joined, dec.as_ref(), parts, &mut found)?;
            }
            // Where to cut: keep `window` bytes of what the text reads back (more as written
            // when it has escapes), just after a whitespace, never inside a finding, never
            // inside an escape.
            let back = match &dec {
                Some(d) => {
                    let mut p = d.plain.len().saturating_sub(window);
                    while !d.plain.is_char_boundary(p) {
                        p -= 1;
                    }
                    d.raw_of(p)
                }
                None => joined.len().saturating_sub(window),
            };
            let cut = if last {
                joined.len()
            } else {
                let mut c = back.max(ctx_len);
                while c > ctx_len && !joined.is_char_boundary(c) {
                    c -= 1;
                }
                if let Some(ws) = joined[ctx_len..c].rfind(char::is_whitespace) {
                    // After the whitespace: a cut before it would emit nothing when the held
                    // text starts with one, and the text would be held to the end.
                    let w = joined[ctx_len + ws..].chars().next().map_or(1, char::len_utf8);
                    c = ctx_len + ws + w;
                } else if st.pending.len() < 8 * window {
                    c = ctx_len;
                }
                for f in &found {
                    if f.start < c && f.end > c {
                        c = f.start.max(ctx_len);
                    }
                }
                match &dec {
                    Some(d) => d.snap(c).max(ctx_len),
                    None => c,
                }
            };
            if cut > ctx_len {
                let raw = &joined[ctx_len..cut];
                // A finding that began in text already emitted still has its rest redacted
                // (or the answer blocked): only what was sent before the finding was whole
                // could not be taken back.
                let shifted: Vec<phi::Finding> = found
                    .iter()
                    .filter(|f| f.end > ctx_len && f.end <= cut)
                    .map(|f| phi::Finding {
                        start: f.start.saturating_sub(ctx_len),
                        end: f.end - ctx_len,
                        ..*f
                    })
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
                    // The names emitted here: looked for in what this choice says later.
                    let emitted = found.iter().filter(|f| f.end > ctx_len && f.end <= cut);
                    let parts = self.names.entry(key.0).or_default();
                    add_name_parts(&self.rules, &joined, emitted, parts)?;
                    phiops::redact(raw, &shifted)
                };
                // New context: the tail of what was scanned up to the cut.
                // The context: as many bytes as written, six times as many with escapes (an
                // escape is at most six bytes a byte it stands for).
                let ctx_window = if dec.is_some() { window * 6 } else { window };
                let mut ctx_start = cut.saturating_sub(ctx_window);
                while !joined.is_char_boundary(ctx_start) {
                    ctx_start -= 1;
                }
                if let Some(d) = &dec {
                    ctx_start = d.snap(ctx_start);
                }
                st.context = joined[ctx_start..cut].to_string();
                st.pending = joined[cut..].to_string();
                out = match &mut st.restorer {
                    Some(r) => r.push(&checked),
                    None => checked,
                };
            }
            if st.pending.len() > MAX_HELD_BYTES {
                // A finding without end (a URL or a run of digits that keeps growing) is held
                // back whole, and scanned again with each chunk: the stream ends instead.
                return Err(ApiError::UpstreamInvalidResponse);
            }
        }
        if last {
            if let Some(r) = &mut st.restorer {
                out.push_str(&r.finish());
            }
        }
        Ok(out)
    }

    /// Rewrites one upstream `data:` payload (not `[DONE]`) into the payload to send: its
    /// [`envelope`] and its choices, each rebuilt by [`StreamRewriter::rewrite_choice`].
    pub fn event(&mut self, data: &str) -> Result<Value, ApiError> {
        let v: Value = serde_json::from_str(data).map_err(|_| ApiError::UpstreamInvalidResponse)?;
        if !v.is_object() {
            return Err(ApiError::UpstreamInvalidResponse);
        }
        if v.get("error").is_some() {
            // Never relay an upstream's error body.
            return Err(ApiError::UpstreamUnavailable);
        }
        if let Some(n) = v.pointer("/usage/total_tokens").and_then(Value::as_u64) {
            self.usage = Some(n);
        }
        let mut v = envelope(&self.rules, v, &self.client_model, &mut self.report)?;
        for k in ENVELOPE_TOKENS {
            if let Some(Value::String(t)) = v.get_mut(*k) {
                self.check_token(t)?;
            }
        }
        let Some(choices) = v.get_mut("choices") else {
            return Ok(Value::Object(v));
        };
        let choices = choices.as_array_mut().ok_or(ApiError::UpstreamInvalidResponse)?;
        for (pos, ch) in choices.iter_mut().enumerate() {
            self.rewrite_choice(pos, ch)?;
        }
        let mut t = v.clone();
        t.remove("choices");
        t.remove("usage");
        self.template = Some(Value::Object(t));
        Ok(Value::Object(v))
    }

    /// Checks a string of a chunk that is not streamed text (an id, a name, `stop_reason`):
    /// a protocol word as it is, anything else scanned whole, in this chunk.
    fn check_whole(&mut self, v: &mut Value) -> Result<(), ApiError> {
        if let Value::String(s) = v {
            if protocol_token(s) {
                self.check_token(s)?;
            } else {
                *s = check_text(&self.rules, s, &mut self.report)?;
            }
        }
        Ok(())
    }

    /// Checks a piece of a tool call's `id` or a function's `name` (`name`: checked as text and
    /// restored; an id as [`StreamRewriter::check_whole`] does) as the client has it once this
    /// piece is added: the pieces so far joined, checked whole each time, so that a number
    /// split over chunks (`notify_415-555-` then `0123`) is found as it would be in one. The
    /// piece becomes what the checked text adds to what was sent; when the check changed what
    /// was sent already (which cannot be taken back), the piece is not relayed (`false`: the
    /// caller drops the field), nor is any later one of that field ([`Joined::stopped`]).
    /// Names (and ids that are no protocol token) are read with `_` and `.` as spaces
    /// ([`check_name`]). A piece that is the whole value so far again (a provider that
    /// repeats the `id` in every chunk) goes out as that value went out, unjoined
    /// ([`Joined::repeated`]). Under a block rule, new PHI refuses.
    fn check_joined(
        &mut self,
        key: JoinedKey,
        x: &mut Value,
        name: bool,
    ) -> Result<bool, ApiError> {
        let Value::String(piece) = x else { return Err(ApiError::UpstreamInvalidResponse) };
        if !self.joined.contains_key(&key) && self.joined.len() >= MAX_STREAM_TEXTS {
            return Err(ApiError::UpstreamInvalidResponse);
        }
        let j = self.joined.entry(key).or_default();
        if j.stopped {
            return Ok(false);
        }
        if piece.is_empty() {
            return Ok(true);
        }
        if *piece == j.raw {
            // The whole value again (some providers send the whole `id`, or `name`, in every
            // chunk): relayed as it went out, not joined nor checked again, so a stream of
            // them costs a comparison a chunk. A client that replaces has the value; one that
            // joins has it twice or more, which the first repeat checks once, doubled.
            if !j.repeated {
                let doubled = j.raw.repeat(2);
                let mut report = OutputReport::default();
                let out = check_joined_text(&self.rules, &doubled, name, &mut report);
                if j.count(&mut self.report, report) {
                    out?;
                    j.stopped = true;
                    return Ok(false);
                }
                out?;
                j.repeated = true;
            }
            piece.clone_from(&j.sent);
            return Ok(true);
        }
        if j.repeated {
            // A value repeated, then added to: no provider does both; what a client would
            // join of it is not checked.
            j.stopped = true;
            return Ok(false);
        }
        j.raw.push_str(piece);
        if j.raw.len() > MAX_HELD_BYTES {
            return Err(ApiError::UpstreamInvalidResponse);
        }
        let mut report = OutputReport::default();
        let out = check_joined_text(&self.rules, &j.raw, name, &mut report);
        j.count(&mut self.report, report);
        let out = out?;
        match out.strip_prefix(j.sent.as_str()) {
            Some(rest) => {
                *piece = rest.to_string();
                j.sent = out;
                Ok(true)
            }
            None => {
                j.stopped = true;
                Ok(false)
            }
        }
    }

    /// Rebuilds a tool call (or `function_call`) entry of a delta from what the API defines:
    /// `index`, `id`, `type`, `function` with `name` and `arguments`, and a custom tool's
    /// `custom` with `name` and `input`. Returns the text to hold back (arguments or input) and
    /// whether it is a custom tool's input. Anything else an upstream adds is not relayed.
    /// `at`: the choice, and the call's index (`None` for `function_call`): its `id` and
    /// `name` are checked as the client joins them ([`StreamRewriter::check_joined`]).
    fn tool_call(
        &mut self,
        call: &mut Value,
        inner: Option<&'static str>,
        at: (u64, Option<u64>),
    ) -> Result<Option<(String, bool)>, ApiError> {
        let Value::Object(m) = std::mem::take(call) else {
            return Err(ApiError::UpstreamInvalidResponse);
        };
        let mut out = serde_json::Map::new();
        let mut held = None;
        for (k, mut x) in m {
            match (k.as_str(), inner) {
                (_, _) if x.is_null() => {}
                ("index", None) if x.is_number() => {}
                // A client replaces `type` (a discriminator), and joins `id` across chunks.
                ("type", None) => {
                    if !x.is_string() {
                        return Err(ApiError::UpstreamInvalidResponse);
                    }
                    self.check_whole(&mut x)?;
                }
                ("id", None) => {
                    if !self.check_joined((at.0, at.1, "id"), &mut x, false)? {
                        continue;
                    }
                }
                // A model writes a function's name: checked, and restored, as the client
                // joins it.
                ("name", Some(inner)) => {
                    let field = match (inner, at.1) {
                        ("input", _) => "custom.name",
                        (_, Some(_)) => "function.name",
                        (_, None) => "function_call.name",
                    };
                    if !self.check_joined((at.0, at.1, field), &mut x, true)? {
                        continue;
                    }
                }
                ("function" | "custom", None) => {
                    let custom = k == "custom";
                    let inner = Some(if custom { "input" } else { "arguments" });
                    let got = self.tool_call(&mut x, inner, at)?;
                    if got.is_some() && held.is_some() {
                        // Both a function and a custom tool in one call.
                        return Err(ApiError::UpstreamInvalidResponse);
                    }
                    held = got.map(|(t, _)| (t, custom)).or(held);
                }
                // Put back once drained (held back, it may be empty in this chunk).
                (key, Some(want)) if key == want => match std::mem::take(&mut x) {
                    Value::String(a) => {
                        held = Some((a, false));
                        x = Value::String(String::new());
                    }
                    _ => return Err(ApiError::UpstreamInvalidResponse),
                },
                _ => continue,
            }
            out.insert(k, x);
        }
        *call = Value::Object(out);
        Ok(held)
    }

    /// Rewrites one choice of a chunk, rebuilt from what the API defines (`index`, `delta`,
    /// `finish_reason`, and `stop_reason` / `matched_stop` checked whole): every string of its
    /// `delta` (content, refusal, reasoning, and any other) and the tool-call and
    /// function-call arguments are held back and scanned on their own; ids, types and names
    /// are checked whole; `annotations` (url citations, each whole in one chunk) are checked
    /// and restored whole, string by string; a delta's other structured fields (reasoning
    /// details, whose texts a stream cuts anywhere) are not relayed, since they cannot be held
    /// back.
    fn rewrite_choice(&mut self, pos: usize, ch: &mut Value) -> Result<(), ApiError> {
        let Value::Object(m) = std::mem::take(ch) else {
            return Err(ApiError::UpstreamInvalidResponse);
        };
        let mut o = serde_json::Map::new();
        for (k, mut x) in m {
            match k.as_str() {
                "index" if x.is_u64() => {}
                "delta" => {}
                // Some servers send `"finish_reason": ""` on every chunk: that is not an end.
                "finish_reason" => match &mut x {
                    Value::Null => {}
                    Value::String(r) if protocol_token(r) => self.check_token(r)?,
                    _ => return Err(ApiError::UpstreamInvalidResponse),
                },
                "logprobs" => x = Value::Null,
                "stop_reason" | "matched_stop" => {
                    rewrite_strings(&self.rules, &mut x, &mut self.report)?;
                }
                _ => continue,
            }
            o.insert(k, x);
        }
        *ch = Value::Object(o);
        let i = ch.get("index").and_then(Value::as_u64).unwrap_or(pos as u64);
        let finished =
            ch.get("finish_reason").and_then(Value::as_str).is_some_and(|r| !r.is_empty());
        if !self.finished.contains_key(&i) && self.finished.len() >= MAX_STREAM_TEXTS {
            return Err(ApiError::UpstreamInvalidResponse);
        }
        let seen = self.finished.entry(i).or_insert(false);
        *seen |= finished;
        drop_unscannable(ch, "delta");
        // The held texts touched by this chunk, and where each sits in it.
        let mut touched: Vec<((u64, Field), Option<usize>)> = Vec::new();
        match ch.get_mut("delta") {
            None | Some(Value::Null) => {}
            Some(Value::Object(delta)) => {
                let mut unheld: Vec<String> = Vec::new();
                for (k, val) in delta.iter_mut() {
                    if key_has_phi(&self.rules, k, &mut self.report)? {
                        unheld.push(k.to_string());
                        continue;
                    }
                    if structural(k, val) {
                        if let Value::String(t) = val {
                            self.check_token(t)?;
                        }
                        continue;
                    }
                    match (k.as_str(), &mut *val) {
                        (_, Value::Null | Value::Bool(_) | Value::Number(_)) => {}
                        (k, Value::String(s)) => {
                            let key = (i, Field::Text(k.to_string()));
                            self.push(key.clone(), s)?;
                            touched.push((key, None));
                        }
                        ("content", _) => return Err(ApiError::UpstreamInvalidResponse),
                        ("tool_calls", Value::Array(calls)) => {
                            for (p, call) in calls.iter_mut().enumerate() {
                                let j =
                                    call.get("index").and_then(Value::as_u64).unwrap_or(p as u64);
                                if let Some((a, custom)) =
                                    self.tool_call(call, None, (i, Some(j)))?
                                {
                                    let field = if custom {
                                        Field::ToolInput(j)
                                    } else {
                                        Field::ToolArgs(j)
                                    };
                                    let key = (i, field);
                                    self.push(key.clone(), &a)?;
                                    touched.push((key, Some(p)));
                                }
                            }
                        }
                        ("tool_calls", _) => return Err(ApiError::UpstreamInvalidResponse),
                        // Each annotation comes whole in one chunk: its strings are read whole.
                        ("annotations", Value::Array(_)) => {
                            rewrite_strings(&self.rules, val, &mut self.report)?;
                        }
                        ("function_call", f) => {
                            if let Some((a, _)) = self.tool_call(f, Some("arguments"), (i, None))? {
                                let key = (i, Field::FunctionArgs);
                                self.push(key.clone(), &a)?;
                                touched.push((key, None));
                            }
                        }
                        (k, _) => unheld.push(k.to_string()),
                    }
                }
                for k in unheld {
                    delta.remove(&k);
                }
            }
            Some(_) => return Err(ApiError::UpstreamInvalidResponse),
        }
        let mut drained = Vec::with_capacity(touched.len());
        for (key, _) in &touched {
            drained.push(self.drain(key, finished)?);
        }
        // Texts of this choice not in this chunk but still held back, flushed at its end.
        let mut rest: Vec<((u64, Field), String)> = Vec::new();
        if finished {
            let mut keys: Vec<(u64, Field)> = self
                .texts
                .keys()
                .filter(|k| k.0 == i && !touched.iter().any(|(t, _)| t == *k))
                .cloned()
                .collect();
            keys.sort_unstable();
            for key in keys {
                let t = self.drain(&key, true)?;
                if !t.is_empty() {
                    rest.push((key, t));
                }
            }
        }
        if touched.is_empty() && rest.is_empty() {
            return Ok(());
        }
        let o = ch.as_object_mut().ok_or(ApiError::UpstreamInvalidResponse)?;
        if !o.get("delta").is_some_and(Value::is_object) {
            o.insert("delta".into(), Value::Object(serde_json::Map::new()));
        }
        let Some(Value::Object(delta)) = o.get_mut("delta") else {
            return Err(ApiError::UpstreamInvalidResponse);
        };
        for (((_, field), p), text) in touched.iter().zip(drained) {
            match (field.in_call(), p) {
                (Some(at), Some(p)) => {
                    let a = delta
                        .get_mut("tool_calls")
                        .and_then(|c| c.get_mut(*p))
                        .and_then(|c| c.pointer_mut(at));
                    match a {
                        Some(a) => *a = Value::String(text),
                        None => merge_into_delta(delta, field, text),
                    }
                }
                _ => merge_into_delta(delta, field, text),
            }
        }
        for ((_, field), text) in rest {
            merge_into_delta(delta, &field, text);
        }
        Ok(())
    }

    /// Ends the stream: the text still held back, as chunks to send before `[DONE]`.
    pub fn finish(&mut self) -> Result<Vec<Value>, ApiError> {
        let mut keys: Vec<(u64, Field)> = self.texts.keys().cloned().collect();
        keys.sort_unstable();
        let mut out = Vec::new();
        for key in keys {
            let text = self.drain(&key, true)?;
            if text.is_empty() {
                continue;
            }
            let (i, field) = key;
            let mut chunk = self.template.clone().unwrap_or_else(|| {
                serde_json::json!({"id": "chatcmpl-phigate", "object": "chat.completion.chunk", "created": 0, "model": self.client_model})
            });
            if let Some(o) = chunk.as_object_mut() {
                o.insert(
                    "choices".into(),
                    serde_json::json!([{ "index": i, "delta": field.delta(text), "finish_reason": null }]),
                );
            }
            out.push(chunk);
        }
        Ok(out)
    }
}

/// Splits an SSE byte stream into `data:` payloads.
#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    data: Vec<String>,
    /// Whether the stream's start was looked at for a byte-order mark.
    started: bool,
}

impl std::fmt::Debug for SseParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The buffer holds answer text not yet scanned: its size only.
        f.debug_struct("SseParser").field("buffered", &self.buf.len()).finish_non_exhaustive()
    }
}

/// Largest SSE line or event accepted from an upstream.
pub const MAX_SSE_EVENT: usize = 4 * 1024 * 1024;

impl SseParser {
    /// Feeds bytes; returns the complete events' data (lines joined by `\n`).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, ApiError> {
        self.buf.extend_from_slice(bytes);
        if !self.started && self.buf.len() >= 3 {
            // A UTF-8 byte-order mark before the first field is not part of it.
            if self.buf.starts_with(b"\xEF\xBB\xBF") {
                self.buf.drain(..3);
            }
            self.started = true;
        }
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
            json_content: false,
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
    fn a_new_name_said_again_past_the_window_is_redacted_in_a_stream() {
        // The first mention goes out long before the second: the window alone would not see it.
        let filler =
            "The course was uneventful and the antibiotics were well tolerated. ".repeat(4);
        let text = format!(
            "Discharge summary for Adaeze Okonkwo, a 54 year old woman. {filler}Okonkwo responded \
             well. {filler}\\u004fkonkwo will follow up. Smith agreed."
        );
        for n in [1, 4, 13] {
            let mut r = rules(&[]);
            r.request_values.insert("Alan Smith".into());
            let mut rw = StreamRewriter::new(r, "client");
            let pieces: Vec<String> =
                text.as_bytes().chunks(n).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
            let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
            let (got, _) = run(&mut rw, &refs, false);
            assert!(!got.contains("konkwo") && !got.contains("Adaeze"), "{n}: {got}");
            assert_eq!(got.matches("[NAME]").count(), 3, "{n}: {got}");
            assert!(got.ends_with("Smith agreed."), "{n}: {got}");
            assert!(!format!("{rw:?}").contains("konkwo"));
        }
    }

    #[test]
    fn a_whole_answer_is_checked_everywhere_and_restored_everywhere() {
        // The check (on placeholders) covers every string of each choice, `stop_reason` too;
        // the restoration covers refusal and reasoning as well as content, and escapes values
        // inside function-call arguments.
        let mut body = serde_json::json!({"id": "x", "model": "up", "choices": [{
            "index": 0, "finish_reason": "stop", "stop_reason": "call (617) 555-0199",
            "message": {"role": "assistant", "content": "For [NAME_1].",
                "refusal": "Not about [NAME_1].", "reasoning_content": "[NAME_1] again",
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f",
                    "arguments": "{\"who\": \"[NAME_1]\"}"}}]}}]});
        let report = rewrite_completion(&rules(&[]), &mut body, "client").unwrap();
        assert!(!report.new_phi.is_empty());
        assert!(!body.to_string().contains("555-0199"), "{body}");
        let restore: HashMap<String, String> =
            [("[NAME_1]".to_string(), "Ann \"Nan\" O'Neil".to_string())].into();
        restore_completion(&mut body, &restore, false);
        let m = &body["choices"][0]["message"];
        for k in ["content", "refusal", "reasoning_content"] {
            assert!(m[k].as_str().unwrap().contains("Ann \"Nan\" O'Neil"), "{k}: {body}");
        }
        let args = m["tool_calls"][0]["function"]["arguments"].as_str().unwrap();
        let parsed: Value = serde_json::from_str(args).expect("arguments stay JSON");
        assert_eq!(parsed["who"], "Ann \"Nan\" O'Neil");
        assert_eq!(body["model"], "client");
    }

    #[test]
    fn answer_keys_with_new_phi_are_dropped_or_refused() {
        // A server's code, not the model, writes keys: one naming a patient is dropped, whole
        // or streamed. Numbers are the server's own (Together's `token_id`, a long `seed`) and
        // pass.
        let body = || {
            serde_json::json!({"id": "x", "model": "up", "choices": [{
                "index": 0, "finish_reason": "stop", "stop_reason": 128009,
                "seed": 2387155844510162400u64,
                "message": {"role": "assistant", "content": "ok", "Jane Doe 219-09-9999": 1,
                    "meta": {"token_id": 791, "tokens": 45}}}]})
        };
        let mut b = body();
        let report = rewrite_completion(&rules(&[]), &mut b, "client").unwrap();
        assert!(!report.new_phi.is_empty());
        let m = &b["choices"][0]["message"];
        assert!(m.get("Jane Doe 219-09-9999").is_none(), "{b}");
        assert_eq!(m["meta"]["token_id"], 791, "{b}");
        assert_eq!(b["choices"][0]["seed"], 2387155844510162400u64, "{b}");
        assert_eq!(b["choices"][0]["stop_reason"], 128009, "a token id stays: {b}");
        let mut strict = rules(&[]);
        strict.new_phi = NewPhi::Block;
        let mut b = body();
        assert!(matches!(
            rewrite_completion(&strict, &mut b, "client"),
            Err(ApiError::PhiBlocked { in_answer: true, .. })
        ));
        // Without such a key, a block rule passes the server's numbers.
        let mut b = body();
        b["choices"][0]["message"].as_object_mut().unwrap().remove("Jane Doe 219-09-9999");
        rewrite_completion(&strict, &mut b, "client").unwrap();
        // Streamed: the delta's key; Together's token_id passes under a block rule.
        let mut rw = StreamRewriter::new(rules(&[]), "client");
        let c = serde_json::json!({"id": "x", "object": "chat.completion.chunk", "created": 1,
            "model": "up", "choices": [{"index": 0, "delta": {"content": "ok", "token_id": 791,
            "Jane Doe": "x"}, "finish_reason": null}]});
        let e = rw.event(&c.to_string()).unwrap();
        let d = &e["choices"][0]["delta"];
        assert_eq!(d["token_id"], 791, "{e}");
        assert!(d.get("Jane Doe").is_none(), "{e}");
        let mut rw = StreamRewriter::new(rules(&[]), "client");
        rw.rules.new_phi = NewPhi::Block;
        assert!(rw.event(&c.to_string()).is_err());
        let plain = serde_json::json!({"id": "x", "object": "chat.completion.chunk", "created": 1,
            "model": "up", "choices": [{"index": 0, "delta": {"content": "The", "token_id": 791},
            "finish_reason": null}]});
        let mut rw = StreamRewriter::new(strict, "client");
        rw.event(&plain.to_string()).unwrap();
    }

    #[test]
    fn streamed_annotations_are_checked_and_restored_whole() {
        let mut rw = StreamRewriter::new(rules(&[("[NAME_1]", "Alan Smith")]), "client");
        let c = serde_json::json!({"id": "x", "object": "chat.completion.chunk", "created": 1,
            "model": "up", "choices": [{"index": 0, "delta": {"annotations": [{"type":
            "url_citation", "url_citation": {"url": "https://example.org/a", "title":
            "Notes on [NAME_1], call 617-555-0199", "start_index": 0, "end_index": 5}}],
            "reasoning_details": [{"type": "reasoning.text", "text": "x"}]},
            "finish_reason": null}]});
        let e = rw.event(&c.to_string()).unwrap();
        let d = &e["choices"][0]["delta"];
        let title = d["annotations"][0]["url_citation"]["title"].as_str().unwrap();
        assert!(title.starts_with("Notes on Alan Smith, call ") && !title.contains("555-0199"));
        assert_eq!(d["annotations"][0]["url_citation"]["end_index"], 5);
        assert!(d.get("reasoning_details").is_none(), "{e}");
    }

    #[test]
    fn a_json_mode_answer_stays_json_when_values_come_back() {
        // response_format json_object: the content is a document, and a value with a quote, a
        // backslash or a line break must not break it, whole or streamed.
        let value = "Ann \"Nan\" O'Neil\n12 Elm St\\B";
        let doc = r#"{"patient": "[NAME_1]", "note": "seen"}"#;
        let restore: HashMap<String, String> = [("[NAME_1]".to_string(), value.to_string())].into();
        let mut body = serde_json::json!({"model": "up", "choices": [{"index": 0,
            "finish_reason": "stop", "message": {"role": "assistant", "content": doc}}]});
        restore_completion(&mut body, &restore, true);
        let got: Value =
            serde_json::from_str(body["choices"][0]["message"]["content"].as_str().unwrap())
                .expect("whole: still JSON");
        assert_eq!(got["patient"], value);

        for at in (0..=doc.len()).step_by(5) {
            let mut r = rules(&[("[NAME_1]", value)]);
            r.json_content = true;
            let mut rw = StreamRewriter::new(r, "client");
            let (content, _) = run(&mut rw, &[&doc[..at], &doc[at..]], false);
            let got: Value = serde_json::from_str(&content)
                .unwrap_or_else(|e| panic!("split at {at}: {e}: {content}"));
            assert_eq!(got["patient"], value, "split at {at}");
        }
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

    fn ev(choice: Value) -> String {
        serde_json::json!({"id": "x", "object": "chat.completion.chunk", "created": 1,
            "model": "up", "choices": [choice]})
        .to_string()
    }

    /// The texts a client joins from these events: field name -> text.
    fn joined(events: &[Value]) -> HashMap<String, String> {
        let mut out: HashMap<String, String> = HashMap::new();
        for e in events {
            for ch in e["choices"].as_array().unwrap() {
                let Some(d) = ch["delta"].as_object() else { continue };
                for (k, v) in d {
                    if let Some(s) = v.as_str() {
                        out.entry(k.clone()).or_default().push_str(s);
                    }
                }
                for c in d.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let s = c["function"]["arguments"].as_str().unwrap_or("");
                    out.entry(format!("tool{}", c["index"])).or_default().push_str(s);
                }
                if let Some(s) = d.get("function_call").and_then(|f| f["arguments"].as_str()) {
                    out.entry("function_call".into()).or_default().push_str(s);
                }
            }
        }
        out
    }

    #[test]
    fn an_empty_finish_reason_is_not_an_end() {
        // SGLang and Ollama send `"finish_reason": ""` on every chunk: the hold-back must stay.
        let text = "Spoke with [NAME_1]; call back on (617) 555-0199 tomorrow.";
        for at in 1..text.len() {
            let mut rw = StreamRewriter::new(rules(&[("[NAME_1]", "Alan Smith")]), "client");
            let mut events = Vec::new();
            for piece in [&text[..at], &text[at..]] {
                let c = ev(
                    serde_json::json!({"index": 0, "delta": {"content": piece}, "finish_reason": ""}),
                );
                events.push(rw.event(&c).unwrap());
            }
            assert!(!rw.complete());
            let end = ev(serde_json::json!({"index": 0, "delta": {}, "finish_reason": "stop"}));
            events.push(rw.event(&end).unwrap());
            assert!(rw.complete());
            events.extend(rw.finish().unwrap());
            let got = joined(&events).remove("content").unwrap();
            assert!(got.contains("Alan Smith"), "split at {at}: {got}");
            assert!(!got.contains("555-0199"), "split at {at}: {got}");
        }
    }

    #[test]
    fn reasoning_refusal_and_function_call_are_held_scanned_and_restored() {
        let text =
            "Think about [NAME_1], reachable at (617) 555-0199, before answering the question.";
        for field in ["reasoning_content", "reasoning", "refusal", "function_call"] {
            for at in (0..=text.len()).step_by(7) {
                let mut rw = StreamRewriter::new(rules(&[("[NAME_1]", "Alan Smith")]), "client");
                let mut events = Vec::new();
                for piece in [&text[..at], &text[at..]] {
                    let delta = if field == "function_call" {
                        serde_json::json!({"function_call": {"arguments": piece}})
                    } else {
                        serde_json::json!({ field: piece })
                    };
                    let c =
                        ev(serde_json::json!({"index": 0, "delta": delta, "finish_reason": null}));
                    events.push(rw.event(&c).unwrap());
                }
                // The end comes in a chunk with no delta at all.
                events.push(
                    rw.event(&ev(serde_json::json!({"index": 0, "finish_reason": "stop"})))
                        .unwrap(),
                );
                events.extend(rw.finish().unwrap());
                let got = joined(&events).remove(field).unwrap_or_default();
                assert!(got.contains("Alan Smith"), "{field} split at {at}: {got}");
                assert!(!got.contains("555-0199"), "{field} split at {at}: {got}");
                assert!(got.ends_with("the question."), "{field} split at {at}: {got}");
            }
        }
    }

    #[test]
    fn tool_arguments_held_at_the_end_survive_a_chunk_without_delta() {
        let args = r#"{"patient": "[NAME_1]", "reason": "follow-up"}"#;
        let mut rw = StreamRewriter::new(rules(&[("[NAME_1]", "Alan Smith")]), "client");
        let mut events = Vec::new();
        let c = ev(
            serde_json::json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1",
            "type": "function", "function": {"name": "lookup", "arguments": args}}]}, "finish_reason": null}),
        );
        events.push(rw.event(&c).unwrap());
        let end = ev(serde_json::json!({"index": 0, "delta": null, "finish_reason": "tool_calls"}));
        events.push(rw.event(&end).unwrap());
        events.extend(rw.finish().unwrap());
        assert_eq!(joined(&events)["tool0"], args.replace("[NAME_1]", "Alan Smith"));
        assert_eq!(events[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"], "lookup");
    }

    #[test]
    fn a_chunk_relays_only_what_the_api_defines_and_scans_names() {
        let phone = "555-0199";
        let mut rw = StreamRewriter::new(rules(&[]), "client");
        // Text outside `delta` (a completion's `text`, a top-level field, an event of another
        // shape), a nested delta field (scanned one chunk at a time, it could not be held
        // back) and a tool call's fields other than the function's name and arguments.
        let c = serde_json::json!({"id": "x", "object": "chat.completion.chunk", "created": 1,
            "model": "up", "note": format!("call (617) {phone}"), "system_fingerprint": "fp 1 (617) 555-0199",
            "usage": {"total_tokens": 9, "label": "(617) 555-0199", "details": {"cached": 1},
                "prompt_tokens_details": {"cached_tokens": 1, "x": 2}},
            "choices": [{"index": 0, "text": format!("Pt at (617) {phone}"), "finish_reason": null,
                "stop_reason": format!("(617) {phone}"),
                "delta": {"role": "assistant", "reasoning_details": [{"type": "reasoning.text",
                    "text": format!("(617) {phone}")}],
                    "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "extra": phone,
                        "function": {"name": format!("John Smith (617) {phone}"), "extra": phone,
                            "arguments": "{}"}}]}}]})
        .to_string();
        let e = rw.event(&c).unwrap();
        let other = rw
            .event(&format!(
                "{{\"type\": \"content_block_delta\", \"delta\": {{\"text\": \"(617) {phone}\"}}}}"
            ))
            .unwrap();
        assert!(!e.to_string().contains(phone), "{e}");
        assert!(!other.to_string().contains(phone), "{other}");
        assert_eq!(other, serde_json::json!({}));
        assert_eq!(e["model"], "client");
        // Only the usage numbers the API defines.
        assert_eq!(
            e["usage"],
            serde_json::json!({"total_tokens": 9, "prompt_tokens_details": {"cached_tokens": 1}})
        );
        let ch = &e["choices"][0];
        assert_eq!(ch["delta"]["role"], "assistant");
        assert!(ch["delta"].get("reasoning_details").is_none());
        let call = &ch["delta"]["tool_calls"][0];
        assert_eq!(call["id"], "call_1");
        assert!(call.get("extra").is_none() && call["function"].get("extra").is_none());
        assert!(call["function"]["name"].as_str().unwrap().contains("[PHONE]"), "{call}");
        // A `function` or `function_call` that is not an object is refused, not relayed.
        for delta in [
            serde_json::json!({"tool_calls": [{"index": 0, "function": format!("(617) {phone}")}]}),
            serde_json::json!({"function_call": [format!("(617) {phone}")]}),
            serde_json::json!({"tool_calls": [format!("(617) {phone}")]}),
            serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": "{}"},
                "custom": {"input": phone}}]}),
        ] {
            let mut rw = StreamRewriter::new(rules(&[]), "client");
            let c = ev(serde_json::json!({"index": 0, "delta": delta, "finish_reason": null}));
            assert!(rw.event(&c).is_err(), "{delta}");
        }
        // The whole answer: only the envelope outside `choices`.
        let mut body = serde_json::json!({"id": "x", "object": "chat.completion", "model": "up",
            "prompt_filter_results": [{"text": format!("(617) {phone}")}], "note": phone,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
                "content": "ok", "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": format!("Smith (617) {phone}"), "arguments": "{}"}}]}}]});
        rewrite_completion(&rules(&[]), &mut body, "client").unwrap();
        assert!(!body.to_string().contains(phone), "{body}");
        assert_eq!(body["object"], "chat.completion");
        assert!(body.get("prompt_filter_results").is_none());
    }

    #[test]
    fn ids_and_protocol_words_that_hold_phi_are_checked() {
        // An id is a protocol token, relayed as it is, but one made of an SSN or a phone number
        // is PHI all the same: checked (redacted here; refused under a block rule).
        let ssn = "123-45-6789";
        let phone = "617-555-0199";
        let mut rw = StreamRewriter::new(rules(&[]), "client");
        let first = serde_json::json!({"id": ssn, "object": "chat.completion.chunk", "created": 1,
            "system_fingerprint": format!("fp_{phone}"),
            "choices": [{"index": 0, "finish_reason": null, "delta": {"role": phone,
                "tool_calls": [{"index": 0, "id": format!("call_{ssn}"), "type": "function",
                    "function": {"name": "lookup", "arguments": "{}"}}]}}]});
        let mut out = vec![rw.event(&first.to_string()).unwrap()];
        let last = serde_json::json!({"id": ssn, "object": "chat.completion.chunk", "created": 1,
            "choices": [{"index": 0, "finish_reason": phone, "delta": {}}]});
        out.push(rw.event(&last.to_string()).unwrap());
        out.extend(rw.finish().unwrap());
        for e in &out {
            let text = e.to_string();
            assert!(!text.contains(ssn) && !text.contains(phone), "{text}");
        }
        // A redacted id keeps an id's form, the same in every chunk.
        let id = out[0]["choices"][0]["delta"]["tool_calls"][0]["id"].as_str().unwrap();
        assert!(id.starts_with("call_") && id.len() == 16, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{id}");
        assert_eq!(out[0]["id"], out[1]["id"]);
        // Random ids that read as an account or a device number, or hold a number inside
        // letters, pass as they are.
        for id in [
            "call_Pn23ZYrpZVT0B184VTrT6px1",
            "chatcmpl-ea255e3318615a0651407a4481799af7",
            "sN90TNfzQ",
            "chatcmpl-zp879oXRc7JOK6AqcjDbEW9gW4Tgl",
            "tool_1_2024-05-13",
            "call_1765112521",
            "call_9876543210",
            "call_0_1765112521",
        ] {
            let mut body = serde_json::json!({"id": id, "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
                    "content": "ok", "tool_calls": [{"id": id, "type": "function",
                        "function": {"name": "lookup", "arguments": "{}"}}]}}]});
            let mut block = rules(&[]);
            block.new_phi = NewPhi::Block;
            rewrite_completion(&block, &mut body, "client").unwrap();
            assert_eq!(body["id"], id);
        }
        // Ordinary ids pass as they are, chunk after chunk.
        let mut rw = StreamRewriter::new(rules(&[]), "client");
        for _ in 0..3 {
            let c = serde_json::json!({"id": "chatcmpl-9xK2fL0aB3cD4eF5gH6iJ7kL8m",
                "object": "chat.completion.chunk", "created": 1, "system_fingerprint": "fp_44709d6fcb",
                "choices": [{"index": 0, "finish_reason": null, "delta": {"role": "assistant",
                    "tool_calls": [{"index": 0, "id": "call_3f9d9a2e1c0b4a5d8e7f", "type": "function",
                        "function": {"name": "lookup", "arguments": "{}"}}]}}]});
            let e = rw.event(&c.to_string()).unwrap();
            assert_eq!(e["id"], c["id"]);
            assert_eq!(e["system_fingerprint"], c["system_fingerprint"]);
            assert_eq!(
                e["choices"][0]["delta"]["tool_calls"][0]["id"],
                "call_3f9d9a2e1c0b4a5d8e7f"
            );
        }
        // A whole answer: the same, and under a block rule the answer is refused.
        let body = serde_json::json!({"id": ssn, "object": "chat.completion", "model": "up",
            "system_fingerprint": format!("fp_{phone}"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
                "content": "ok", "tool_calls": [{"id": format!("call_{ssn}"), "type": "function",
                    "function": {"name": "lookup", "arguments": "{}"}}]}}]});
        let mut redacted = body.clone();
        rewrite_completion(&rules(&[]), &mut redacted, "client").unwrap();
        let text = redacted.to_string();
        assert!(!text.contains(ssn) && !text.contains(phone), "{text}");
        let mut block = rules(&[]);
        block.new_phi = NewPhi::Block;
        let mut refused = body.clone();
        assert!(matches!(
            rewrite_completion(&block, &mut refused, "client"),
            Err(ApiError::PhiBlocked { in_answer: true, .. })
        ));
    }

    #[test]
    fn json_unicode_escapes_are_read_as_the_client_decodes_them() {
        let cases = [
            (r"617\u002d555\u002d0199", "617-555-0199"),
            (r"Jos\u00e9 Garc\u00EDa", "José García"),
            (r"smile \ud83d\ude00!", "smile 😀!"),
            (r#"a\u0022b\u005cc\u000ad"#, "a\"b\\c\nd"),
            (r"03\/14\/1962 617\t555\t0199", "03/14/1962 617\t555\t0199"),
            // An escaped backslash before `u0041` is not an escape of `A`.
            (r#"x\\u0041 \" \n \/ é\é"#, "x\\u0041 \" \n / é\\é"),
            // A lone surrogate, something that is not JSON, an escape cut off: as they are.
            (r"\ud800 \uZZZZ \u00", r"\ud800 \uZZZZ \u00"),
            (r"end \", r"end \"),
        ];
        for (raw, want) in cases {
            let d = phiops::Decoded::of(raw).expect("a backslash");
            assert_eq!(d.plain, want, "{raw}");
            assert_eq!(d.raw_of(d.plain.len()), raw.len(), "{raw}");
            let bounds: Vec<usize> = (0..=d.plain.len())
                .filter(|p| d.plain.is_char_boundary(*p))
                .map(|p| d.raw_of(p))
                .collect();
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{raw}: {bounds:?}");
            assert!(bounds.iter().all(|b| raw.is_char_boundary(*b)), "{raw}");
        }
        assert!(phiops::Decoded::of("no escapes here").is_none());
        let d = phiops::Decoded::of(r"617\u002d555").unwrap();
        assert_eq!((d.snap(3), d.snap(5), d.snap(8), d.snap(9), d.snap(10)), (3, 3, 3, 9, 10));
        // What is found in the decoded text is redacted in the text as written.
        let r = rules(&[]);
        let text = r"call (617) 555\u002d0199 today";
        let found = find_new_phi(&r, text).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(text[found[0].start..found[0].end].ends_with(r"\u002d0199"), "{found:?}");
        // A phone number written with escapes is found, in a stream's arguments and in a whole
        // answer's, and the arguments stay JSON.
        let args = r#"{"callback": "(617) 555\u002d0199", "drink": "caf\u00e9 au lait"}"#;
        for at in 0..=args.len() {
            let mut rw = StreamRewriter::new(rules(&[]), "client");
            let (_, got) = run(&mut rw, &[&args[..at], &args[at..]], true);
            assert!(!got.contains("0199"), "split at {at}: {got}");
            let v: Value =
                serde_json::from_str(&got).unwrap_or_else(|e| panic!("{at}: {e}: {got}"));
            assert_eq!(v["drink"], "café au lait");
        }
        let mut body = serde_json::json!({"choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": null, "tool_calls": [{"id": "c1",
                "type": "function", "function": {"name": "f", "arguments": args}}]}}]});
        rewrite_completion(&rules(&[]), &mut body, "client").unwrap();
        assert!(!body.to_string().contains("0199"), "{body}");
    }

    #[test]
    fn a_custom_tools_input_is_held_scanned_and_restored() {
        let input = "Page [NAME_1] on (617) 555-0199 about the results.";
        for at in 0..=input.len() {
            let mut rw = StreamRewriter::new(rules(&[("[NAME_1]", "Alan Smith")]), "client");
            let mut events = Vec::new();
            let first = ev(serde_json::json!({"index": 0, "delta": {"tool_calls": [{"index": 0,
                "id": "call_1", "type": "custom", "custom": {"name": "pager", "input": &input[..at]}}]},
                "finish_reason": null}));
            events.push(rw.event(&first).unwrap());
            let second = ev(serde_json::json!({"index": 0, "delta": {"tool_calls": [{"index": 0,
                "custom": {"input": &input[at..]}}]}, "finish_reason": null}));
            events.push(rw.event(&second).unwrap());
            let end =
                ev(serde_json::json!({"index": 0, "delta": {}, "finish_reason": "tool_calls"}));
            events.push(rw.event(&end).unwrap());
            events.extend(rw.finish().unwrap());
            let mut got = String::new();
            for e in &events {
                for ch in e["choices"].as_array().unwrap() {
                    for c in ch["delta"]["tool_calls"].as_array().into_iter().flatten() {
                        got.push_str(c["custom"]["input"].as_str().unwrap_or(""));
                    }
                }
            }
            assert!(got.contains("Alan Smith"), "split at {at}: {got}");
            assert!(!got.contains("555-0199"), "split at {at}: {got}");
            assert!(got.ends_with("the results."), "split at {at}: {got}");
            assert_eq!(
                events[0]["choices"][0]["delta"]["tool_calls"][0]["custom"]["name"],
                "pager"
            );
        }
    }

    #[test]
    fn a_phone_number_written_in_escapes_is_held_back_whole() {
        // Compact arguments, no whitespace, a long value first: the hold-back must keep the
        // escaped number whole (an escape is six bytes a character), and never cut an escape.
        let phone: String =
            "(617) 555-0199".chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
        let args =
            format!(r#"{{"k":"{}","p":"{phone}","q":"{}"}}"#, "a".repeat(600), "b".repeat(40));
        let start = args.find("\"p\"").unwrap();
        for at in (start - 20..args.len()).step_by(3) {
            let mut rw = StreamRewriter::new(rules(&[]), "client");
            let (_, got) = run(&mut rw, &[&args[..at], &args[at..]], true);
            let v: Value =
                serde_json::from_str(&got).unwrap_or_else(|e| panic!("{at}: {e}: {got}"));
            let p = v["p"].as_str().unwrap();
            assert!(!p.contains("0199") && !p.contains("617"), "split at {at}: {p}");
        }
        // Piece by piece, a byte at a time.
        let mut rw = StreamRewriter::new(rules(&[]), "client");
        let singles: Vec<String> = args.chars().map(String::from).collect();
        let refs: Vec<&str> = singles.iter().map(String::as_str).collect();
        let (_, got) = run(&mut rw, &refs, true);
        let v: Value = serde_json::from_str(&got).unwrap_or_else(|e| panic!("{e}: {got}"));
        assert!(!v["p"].as_str().unwrap().contains("0199"), "{v}");
    }

    #[test]
    fn held_back_text_and_texts_are_bounded() {
        // A URL that never ends is held back whole: past the bound the stream ends.
        let mut rw = StreamRewriter::new(rules(&[]), "client");
        let mut ended = false;
        let first = ev(serde_json::json!({"index": 0, "delta": {"content": "See https://ex.com/"},
            "finish_reason": null}));
        rw.event(&first).unwrap();
        for _ in 0..(MAX_HELD_BYTES / 100 + 2) {
            let c = ev(serde_json::json!({"index": 0, "delta": {"content": "a".repeat(100)},
                "finish_reason": null}));
            if rw.event(&c).is_err() {
                ended = true;
                break;
            }
        }
        assert!(ended, "held back without bound");
        // One text per tool index: past the bound the stream ends.
        let mut rw = StreamRewriter::new(rules(&[]), "client");
        let mut ended = false;
        for j in 0..=MAX_STREAM_TEXTS {
            let c = ev(serde_json::json!({"index": 0, "delta": {"tool_calls": [{"index": j,
                "function": {"arguments": "x".repeat(300)}}]}, "finish_reason": null}));
            if rw.event(&c).is_err() {
                ended = true;
                break;
            }
        }
        assert!(ended, "texts without bound");
    }

    #[test]
    fn log_probabilities_and_audio_never_pass() {
        let mut rw = StreamRewriter::new(rules(&[]), "client");
        let c = ev(
            serde_json::json!({"index": 0, "delta": {"content": "Call (617) 555-0199 today please.",
            "audio": {"transcript": "Call (617) 555-0199"}},
            "logprobs": {"content": [{"token": "555", "logprob": -0.1}]}, "finish_reason": "stop"}),
        );
        let v = rw.event(&c).unwrap();
        let s = v.to_string();
        assert!(!s.contains("555"), "{s}");
        let mut body = serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant",
            "content": "Call (617) 555-0199.", "refusal": "Not for (617) 555-0199.",
            "reasoning_content": "[NAME_1] has phone (617) 555-0199.",
            "audio": {"transcript": "(617) 555-0199"}},
            "logprobs": {"content": [{"token": "0199"}]}, "finish_reason": "stop"}]});
        rewrite_completion(&rules(&[("[NAME_1]", "Alan Smith")]), &mut body, "client").unwrap();
        let s = body.to_string();
        assert!(!s.contains("555") && !s.contains("0199"), "{s}");
        assert!(s.contains("Alan Smith has phone [PHONE]"), "{s}");
    }

    #[test]
    fn text_after_a_whitespace_is_not_held_to_the_end() {
        // "key: " then a long run without spaces, four bytes a chunk: what is emitted before
        // the end must keep up (held back: a bounded amount, not everything after the space).
        let run = "QUJD".repeat(500);
        let text = format!("Here is the key: {run}");
        let mut rw = StreamRewriter::new(rules(&[]), "client");
        let mut events = Vec::new();
        for piece in text.as_bytes().chunks(4) {
            let p = std::str::from_utf8(piece).unwrap();
            events.push(
                rw.event(&ev(
                    serde_json::json!({"index": 0, "delta": {"content": p}, "finish_reason": null}),
                ))
                .unwrap(),
            );
        }
        let before_end = joined(&events).remove("content").unwrap_or_default().len();
        assert!(
            before_end + 9 * HOLDBACK_WINDOW >= text.len(),
            "held {} bytes",
            text.len() - before_end
        );
        events.push(
            rw.event(&ev(serde_json::json!({"index": 0, "delta": {}, "finish_reason": "stop"})))
                .unwrap(),
        );
        events.extend(rw.finish().unwrap());
        assert_eq!(joined(&events)["content"], text);
    }

    #[test]
    fn values_restored_into_arguments_keep_them_json() {
        let value = "12 Elm St\nApt \"B\"";
        let args = r#"{"address": "[LOCATION_1]"}"#;
        let mut rw = StreamRewriter::new(rules(&[("[LOCATION_1]", value)]), "client");
        let (content, got) = run(&mut rw, &[&args[..20], &args[20..]], true);
        assert!(content.is_empty());
        let parsed: Value = serde_json::from_str(&got).unwrap_or_else(|e| panic!("{e}: {got}"));
        assert_eq!(parsed["address"], value);
        let mut body = serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant",
            "content": "See [LOCATION_1].", "tool_calls": [{"id": "c", "type": "function",
            "function": {"name": "f", "arguments": args}}]}}]});
        rewrite_completion(&rules(&[("[LOCATION_1]", value)]), &mut body, "client").unwrap();
        let a = body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"].as_str();
        let parsed: Value = serde_json::from_str(a.unwrap()).unwrap();
        assert_eq!(parsed["address"], value);
        assert_eq!(body["choices"][0]["message"]["content"], format!("See {value}."));
    }

    #[test]
    fn sse_parser_drops_a_byte_order_mark() {
        let mut p = SseParser::default();
        let mut got = p.push(b"\xEF\xBB").unwrap();
        got.extend(p.push(b"\xBFdata: {\"a\":1}\n\n").unwrap());
        assert_eq!(got, ["{\"a\":1}"]);
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
