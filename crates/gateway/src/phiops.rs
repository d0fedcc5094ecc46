//! PHI handling of request and answer texts: scanning (a panic is a refusal), per-category
//! actions (block, redact, tokenize through the vault, pass to private deployments only),
//! detection of PHI in an answer that was not in the request, and re-identification.
//!
//! Values live only in memory for the time of one request, and in the vault (encrypted).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use phi::{Category, Finding};

use crate::Detector;
use serde_json::Value;

use crate::error::ApiError;

/// What happens to one category's values in a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Act {
    /// Sent as it is, only to private deployments (`hosting: private`).
    PrivateOnly,
    /// Replaced by a vault token (`[NAME_1]`), consistent across the conversation.
    Tokenize,
    /// Replaced by `[NAME]`.
    Redact,
    /// The request is refused.
    Block,
}

/// Scans one text; a panic inside the scanner becomes `scanner_unavailable`.
pub fn scan(scanner: &dyn Detector, text: &str) -> Result<Vec<Finding>, ApiError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let started = std::time::Instant::now();
    let out = catch_unwind(AssertUnwindSafe(|| scanner.detect(text))).map_err(|_| {
        tracing::error!("the PHI scanner panicked; refusing the request");
        ApiError::ScannerUnavailable
    });
    crate::telemetry::stage("scan", started);
    let found = out?;
    // The rewrite slices the text at these offsets: a detector (a plug-in) whose findings are
    // out of order, overlap or cut a character would make it panic, the text in the message.
    if !well_formed(text, &found) {
        tracing::error!("the PHI scanner returned findings that do not fit the text; refusing");
        return Err(ApiError::ScannerUnavailable);
    }
    Ok(found)
}

/// Findings sorted by start, not overlapping, non-empty, on character boundaries of `text`.
fn well_formed(text: &str, found: &[Finding]) -> bool {
    let mut last = 0;
    found.iter().all(|f| {
        let ok = f.start >= last
            && f.start < f.end
            && f.end <= text.len()
            && text.is_char_boundary(f.start)
            && text.is_char_boundary(f.end);
        last = f.end;
        ok
    })
}

/// A text of a request body: its place in the order [`each_text`] visits them (the rewrite
/// walks the body again in the same order; no path is copied per text).
type Slot = usize;

/// Most texts one request may hold (a body of a million one-letter strings would otherwise
/// cost a scan each).
pub const MAX_TEXTS: usize = 20_000;

/// Keys whose values are protocol words (`"role": "user"`, `"type": "function"`): such a value
/// is not scanned (a false finding there would break the request, not protect anything).
const STRUCTURAL_KEYS: &[&str] = &[
    "role",
    "type",
    "tool_choice",
    "encoding_format",
    "service_tier",
    "reasoning_effort",
    "verbosity",
    "detail",
];

/// Whether `(k, v)` is protocol, not text: `model` (decided against the configuration before
/// any scan), or a [`STRUCTURAL_KEYS`] key whose value is a lowercase word. The same keys
/// elsewhere (`metadata.type`) with any other value are scanned; ids (`id`, `tool_call_id`)
/// always are, consistently tokenized so that a call and its result still match.
fn is_protocol(k: &str, v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    k == "model"
        || (STRUCTURAL_KEYS.contains(&k)
            && s.len() <= 32
            && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-'))
}

/// Visits every non-empty string value of `v` (at any depth), except protocol words (see
/// [`is_protocol`]), in a fixed order: system, user, assistant and tool messages, content
/// parts (objects or bare strings), participant `name`s, tool-call arguments, tool descriptions
/// and schemas, `user`, `metadata`, `prediction`, and whatever field a client or a newer API
/// adds. Object keys are not texts.
pub(crate) fn each_text<'a>(v: &'a Value, f: &mut dyn FnMut(&'a str)) {
    match v {
        Value::String(s) if !s.is_empty() => f(s),
        Value::Array(items) => items.iter().for_each(|it| each_text(it, f)),
        Value::Object(map) => {
            for (k, it) in map {
                if !is_protocol(k, it) {
                    each_text(it, f);
                }
            }
        }
        _ => {}
    }
}

/// [`each_text`], mutably, in the same order.
fn each_text_mut(
    v: &mut Value,
    f: &mut dyn FnMut(&mut String) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    match v {
        Value::String(s) if !s.is_empty() => f(s),
        Value::Array(items) => items.iter_mut().try_for_each(|it| each_text_mut(it, f)),
        Value::Object(map) => {
            for (k, it) in map.iter_mut() {
                if !is_protocol(k, it) {
                    each_text_mut(it, f)?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Every text of `body`, in [`each_text`]'s order; refused past [`MAX_TEXTS`].
fn all_texts(body: &Value) -> Result<Vec<&str>, ApiError> {
    let mut out = Vec::new();
    each_text(body, &mut |t| out.push(t));
    if out.len() > MAX_TEXTS {
        return Err(ApiError::RequestTooLarge);
    }
    Ok(out)
}

/// Content part types that hold text; any other (`image_url`, `input_audio`, `file`, …)
/// cannot be scanned.
const TEXT_PART_TYPES: &[&str] = &["text", "refusal"];

/// Checks the shape of a chat request and refuses what cannot be scanned: image, audio and
/// file parts, and answers with log-probabilities (each token a piece of the answer that the
/// answer's scan cannot rewrite) or audio.
fn check_chat(body: &Value) -> Result<(), ApiError> {
    let msgs = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or(ApiError::InvalidRequest("messages must be an array"))?;
    for m in msgs {
        if !m.is_object() {
            return Err(ApiError::InvalidRequest("each message must be an object"));
        }
        match m.get("content") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(Value::Array(parts)) => {
                for p in parts {
                    match p {
                        Value::String(_) => {}
                        Value::Object(o) => {
                            let typed = o.get("type").and_then(Value::as_str);
                            let media = ["image_url", "input_audio", "file", "image"]
                                .iter()
                                .any(|k| o.contains_key(*k));
                            if media || typed.is_some_and(|t| !TEXT_PART_TYPES.contains(&t)) {
                                return Err(ApiError::Unscannable(
                                    "image, audio or file content parts",
                                ));
                            }
                            if let Some(t) = o.get("text") {
                                if !t.is_string() {
                                    return Err(ApiError::InvalidRequest(
                                        "a text part must be a string",
                                    ));
                                }
                            }
                        }
                        _ => {
                            return Err(ApiError::InvalidRequest(
                                "a content part must be an object",
                            ))
                        }
                    }
                }
            }
            Some(_) => {
                return Err(ApiError::InvalidRequest("content must be a string or an array"))
            }
        }
    }
    if body.get("logprobs").is_some_and(|v| v.as_bool() == Some(true))
        || body.get("top_logprobs").is_some_and(|v| v.as_u64().is_some_and(|n| n > 0))
    {
        return Err(ApiError::Unscannable("log-probabilities of the answer"));
    }
    let audio_out = body.get("audio").is_some_and(|v| !v.is_null())
        || body
            .get("modalities")
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|x| x.as_str() == Some("audio")));
    if audio_out {
        return Err(ApiError::Unscannable("an audio answer"));
    }
    Ok(())
}

/// Every text of a chat request (see [`each_text`]).
fn chat_texts(body: &Value) -> Result<Vec<&str>, ApiError> {
    check_chat(body)?;
    all_texts(body)
}

fn embedding_texts(body: &Value) -> Result<Vec<&str>, ApiError> {
    match body.get("input") {
        Some(Value::String(_)) => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
        // Token-id arrays cannot be scanned: refuse rather than pass them unseen.
        _ => return Err(ApiError::InvalidRequest("input must be a string or an array of strings")),
    }
    all_texts(body)
}

/// Which request body is being prepared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/embeddings`.
    Embeddings,
}

/// The result of scanning a request, before any change.
pub struct Scanned {
    slots: Vec<(Slot, Vec<Finding>)>,
    /// Findings per category.
    pub counts: BTreeMap<Category, u32>,
}

impl std::fmt::Debug for Scanned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanned").field("counts", &self.counts).finish_non_exhaustive()
    }
}

/// One text of a request body, with where it stands and its key in the text cache.
pub struct Text<'a> {
    slot: Slot,
    /// The text.
    pub text: &'a str,
    /// Its key in the text cache (worked out once, for the scan and the injection screen).
    pub digest: crate::textcache::Digest,
}

/// Every text of the body (for the token estimate, injection screening and the scan).
pub fn texts<'a>(
    body: &'a Value,
    kind: Kind,
    cache: &crate::textcache::TextCache,
) -> Result<Vec<Text<'a>>, ApiError> {
    let texts = match kind {
        Kind::Chat => chat_texts(body)?,
        Kind::Embeddings => embedding_texts(body)?,
    };
    Ok(texts
        .into_iter()
        .enumerate()
        .map(|(slot, text)| Text { slot, text, digest: cache.digest(text) })
        .collect())
}

/// Scans every text of the request (through `cache`: a text seen before is not scanned again).
pub fn scan_request(
    scanner: &dyn Detector,
    cache: &crate::textcache::TextCache,
    texts: &[Text<'_>],
) -> Result<Scanned, ApiError> {
    let mut out = Vec::with_capacity(texts.len());
    let mut counts = BTreeMap::new();
    for t in texts {
        let s = t.slot;
        let f = cache.findings(scanner, t.text, t.digest)?;
        for x in &f {
            *counts.entry(x.category).or_insert(0u32) += 1;
        }
        out.push((s, f));
    }
    Ok(Scanned { slots: out, counts })
}

/// What the request became.
pub struct Applied {
    /// Whether PHI was present after the handling (tokenized or passed values).
    pub phi_present: bool,
    /// The categories still present after the handling (tokenized or passed), sorted.
    pub present: Vec<Category>,
    /// `token -> value` of the tokens given in this request (consistent across the conversation).
    pub tokens: HashMap<String, String>,
    /// Every value found in the request (to tell new PHI in an answer).
    pub request_values: HashSet<String>,
    /// The strictest action taken, for the ledger's decision.
    pub strictest: Option<Act>,
    /// The vault scope the values went to.
    pub scope: String,
}

impl std::fmt::Debug for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applied")
            .field("phi_present", &self.phi_present)
            .field("tokens", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

/// The categories of `scanned` whose action is `Block`, sorted.
pub fn blocked(scanned: &Scanned, act: &dyn Fn(Category) -> Act) -> Vec<Category> {
    scanned.counts.keys().copied().filter(|c| act(*c) == Act::Block).collect()
}

/// Applies the per-category actions to `body` (no `Block` may be left: check [`blocked`]
/// first). Tokenized values go to the vault under `scopes.0`, or, when that scope has expired
/// or been shredded, under `scopes.1` if given (see `app::scope_of`).
pub async fn apply(
    body: &mut Value,
    scanned: Scanned,
    act: &(dyn Fn(Category) -> Act + Sync),
    vault: &vault::Vault,
    (mut scope, fallback): (String, Option<String>),
) -> Result<Applied, ApiError> {
    // Sized up front: grown from empty, each set rehashes its values several times.
    let found: usize = scanned.slots.iter().map(|(_, f)| f.len()).sum();
    let mut request_values = HashSet::with_capacity(found);
    // The distinct (category, value) pairs to tokenize, and for each finding to tokenize (in
    // order) the index of its pair: the rewrite below takes tokens by index, not by value.
    let mut to_tokenize: Vec<(Category, String)> = Vec::new();
    let mut pair_of: HashMap<(Category, &str), usize> = HashMap::with_capacity(found);
    let mut pair_at: Vec<usize> = Vec::with_capacity(found);
    let mut strictest = None;
    let mut phi_present = false;
    let mut present: Vec<Category> = Vec::new();
    let texts = all_texts(body)?;
    for (slot, findings) in &scanned.slots {
        // The findings were made on this walk's texts: a body changed in between would not
        // fit them, and is refused rather than sliced wrong.
        let text = texts.get(*slot).copied().unwrap_or("");
        if !well_formed(text, findings) {
            return Err(ApiError::ScannerUnavailable);
        }
        for f in findings {
            let v = &text[f.start..f.end];
            let a = act(f.category);
            strictest = strictest.max(Some(a));
            match a {
                Act::Tokenize => {
                    phi_present = true;
                    present.push(f.category);
                    let next = to_tokenize.len();
                    let i = *pair_of.entry((f.category, v)).or_insert(next);
                    if i == next {
                        to_tokenize.push((f.category, v.to_string()));
                    }
                    pair_at.push(i);
                }
                Act::PrivateOnly => {
                    phi_present = true;
                    present.push(f.category);
                }
                Act::Redact | Act::Block => {}
            }
            if !request_values.contains(v) {
                request_values.insert(v.to_string());
            }
        }
    }
    drop(pair_of);
    drop(texts);
    let mut tokens: Vec<String> = Vec::new();
    if !to_tokenize.is_empty() {
        let started = std::time::Instant::now();
        tokens = match (tokenize(vault, &scope, &to_tokenize).await, fallback) {
            (Err(ApiError::ConversationExpired), Some(f)) => {
                scope = f;
                tokenize(vault, &scope, &to_tokenize).await?
            }
            (r, _) => r?,
        };
        crate::telemetry::stage("vault", started);
        if tokens.len() != to_tokenize.len() {
            return Err(ApiError::VaultUnavailable);
        }
    }
    let mut next_pair = pair_at.iter();
    let mut slots = scanned.slots.iter().peekable();
    let mut at: Slot = 0;
    each_text_mut(body, &mut |text| {
        let here = at;
        at += 1;
        let Some((_, findings)) = slots.next_if(|(s, _)| *s == here) else { return Ok(()) };
        if findings.is_empty() {
            return Ok(());
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for f in findings {
            out.push_str(&text[last..f.start]);
            let v = &text[f.start..f.end];
            match act(f.category) {
                Act::PrivateOnly => out.push_str(v),
                Act::Redact | Act::Block => {
                    out.push('[');
                    out.push_str(f.category.as_str());
                    out.push(']');
                }
                Act::Tokenize => match next_pair.next().and_then(|i| tokens.get(*i)) {
                    Some(t) => out.push_str(t),
                    None => return Err(ApiError::VaultUnavailable),
                },
            }
            last = f.end;
        }
        out.push_str(&text[last..]);
        *text = out;
        Ok(())
    })?;
    let tokens = tokens.into_iter().zip(to_tokenize).map(|(t, (_, v))| (t, v)).collect();
    present.sort();
    present.dedup();
    Ok(Applied { phi_present, present, tokens, request_values, strictest, scope })
}

/// Tokens for `(category, value)` pairs: the scope's existing token of a value, or the next
/// `[CATEGORY_n]` of the scope (dense: a conversation's second name is `[NAME_2]`, whichever
/// turn it first appears in). A number taken at the same moment by a concurrent request of the
/// same conversation makes the vault refuse; the next try, after a short random wait, reads
/// the numbers anew.
async fn tokenize(
    vault: &vault::Vault,
    scope: &str,
    items: &[(Category, String)],
) -> Result<Vec<String>, ApiError> {
    let items: Vec<(Category, &str)> = items.iter().map(|(c, v)| (*c, v.as_str())).collect();
    for attempt in 0..12u32 {
        match vault.tokenize_numbered(scope, &items).await {
            Ok(t) => return Ok(t.into_iter().map(|t| t.token).collect()),
            Err(vault::Error::TokenInUse { .. }) => {
                // Requests of one conversation that collide again at once would collide
                // again: each waits a random while, longer after each try (at most 64 ms).
                let most = 1u64 << attempt.min(6);
                let wait = rand::random::<u64>() % (most + 1);
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::VaultUnavailable)
}

/// PHI findings of `text` whose value was not in the request (and is not a placeholder).
pub fn new_phi(
    scanner: &dyn Detector,
    text: &str,
    request_values: &HashSet<String>,
) -> Result<Vec<Finding>, ApiError> {
    let found = scan(scanner, text)?;
    Ok(found
        .into_iter()
        .filter(|f| {
            let v = &text[f.start..f.end];
            let placeholder = v.starts_with('[') && v.ends_with(']');
            !(request_values.contains(v) || placeholder)
        })
        .collect())
}

/// `text` with these findings replaced by `[CATEGORY]`.
pub fn redact(text: &str, findings: &[Finding]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for f in findings {
        if f.start < last {
            continue;
        }
        out.push_str(&text[last..f.start]);
        out.push('[');
        out.push_str(f.category.as_str());
        out.push(']');
        last = f.end;
    }
    out.push_str(&text[last..]);
    out
}

/// The tokens of `tokens` that occur in `text`.
pub fn tokens_in<'a>(text: &str, tokens: impl Iterator<Item = &'a String>) -> Vec<String> {
    tokens.filter(|t| text.contains(t.as_str())).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_counted_not_copied_and_capped() {
        // A long key over many strings costs no copy of the key per string (a path per text
        // once did: 400 KB x 200,000); empty strings are not texts; past MAX_TEXTS, refused.
        let key = "k".repeat(400_000);
        let mut many = serde_json::Map::new();
        many.insert(key, Value::Array(vec![Value::String(String::new()); 200_000]));
        let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "x": many});
        assert_eq!(chat_texts(&body).unwrap(), ["hi"]);
        let over = serde_json::json!({"model": "m", "messages": [],
            "x": vec!["a"; MAX_TEXTS + 1]});
        assert!(matches!(chat_texts(&over), Err(ApiError::RequestTooLarge)));
        let at = serde_json::json!({"model": "m", "messages": [], "x": vec!["a"; MAX_TEXTS]});
        assert_eq!(chat_texts(&at).unwrap().len(), MAX_TEXTS);
    }

    #[test]
    fn the_mutable_walk_visits_the_same_texts_in_the_same_order() {
        let mut body = serde_json::json!({"model": "m", "messages": [
            {"role": "system", "content": "a", "name": "b"},
            {"role": "user", "content": ["c", {"type": "text", "text": "d"}, ""]}],
            "user": "e", "metadata": {"k": "f", "id": "g", "type": "Alan Smith"},
            "tools": [{"type": "function", "function": {"name": "h", "description": "i"}}]});
        let seen: Vec<String> = all_texts(&body).unwrap().iter().map(|s| s.to_string()).collect();
        let mut sorted = seen.clone();
        sorted.sort();
        // Protocol words (role, type "function" and "text") are skipped; metadata's id and a
        // "type" holding a name are not.
        assert_eq!(sorted, ["Alan Smith", "a", "b", "c", "d", "e", "f", "g", "h", "i"], "{seen:?}");
        let mut again = Vec::new();
        each_text_mut(&mut body, &mut |s| {
            again.push(s.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(again, seen);
    }
}
