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
    /// Sent as it is, only to private or BAA-covered deployments.
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
    out
}

/// A pointer to a text inside a request body.
#[derive(Clone, Debug)]
enum Slot {
    /// `messages[i].content` (string).
    Content(usize),
    /// `messages[i].content[j].text`.
    Part(usize, usize),
    /// `messages[i].tool_calls[j].function.arguments`.
    ToolArgs(usize, usize),
    /// `messages[i].function_call.arguments`.
    FunctionArgs(usize),
    /// `input` (string) of an embeddings request.
    Input,
    /// `input[j]` of an embeddings request.
    InputItem(usize),
}

fn slot_ref<'a>(body: &'a Value, slot: &Slot) -> Option<&'a str> {
    let m = |i: &usize| body.get("messages")?.get(*i);
    match slot {
        Slot::Content(i) => m(i)?.get("content"),
        Slot::Part(i, j) => m(i)?.get("content")?.get(*j)?.get("text"),
        Slot::ToolArgs(i, j) => m(i)?.get("tool_calls")?.get(*j)?.get("function")?.get("arguments"),
        Slot::FunctionArgs(i) => m(i)?.get("function_call")?.get("arguments"),
        Slot::Input => body.get("input"),
        Slot::InputItem(j) => body.get("input")?.get(*j),
    }?
    .as_str()
}

fn slot_mut<'a>(body: &'a mut Value, slot: &Slot) -> Option<&'a mut Value> {
    match slot {
        Slot::Content(i) => body.get_mut("messages")?.get_mut(*i)?.get_mut("content"),
        Slot::Part(i, j) => {
            body.get_mut("messages")?.get_mut(*i)?.get_mut("content")?.get_mut(*j)?.get_mut("text")
        }
        Slot::ToolArgs(i, j) => body
            .get_mut("messages")?
            .get_mut(*i)?
            .get_mut("tool_calls")?
            .get_mut(*j)?
            .get_mut("function")?
            .get_mut("arguments"),
        Slot::FunctionArgs(i) => {
            body.get_mut("messages")?.get_mut(*i)?.get_mut("function_call")?.get_mut("arguments")
        }
        Slot::Input => body.get_mut("input"),
        Slot::InputItem(j) => body.get_mut("input")?.get_mut(*j),
    }
}

/// Every text of a chat request: system, user, assistant history, tool results, string content
/// parts, tool-call and function-call arguments.
fn chat_slots(body: &Value) -> Result<Vec<Slot>, ApiError> {
    let msgs = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or(ApiError::InvalidRequest("messages must be an array"))?;
    let mut out = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        if !m.is_object() {
            return Err(ApiError::InvalidRequest("each message must be an object"));
        }
        match m.get("content") {
            None | Some(Value::Null) => {}
            Some(Value::String(_)) => out.push(Slot::Content(i)),
            Some(Value::Array(parts)) => {
                for (j, p) in parts.iter().enumerate() {
                    match p.get("text") {
                        Some(Value::String(_)) => out.push(Slot::Part(i, j)),
                        None => {}
                        Some(_) => {
                            return Err(ApiError::InvalidRequest("a text part must be a string"))
                        }
                    }
                }
            }
            Some(_) => {
                return Err(ApiError::InvalidRequest("content must be a string or an array"))
            }
        }
        if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
            for (j, c) in calls.iter().enumerate() {
                if c.pointer("/function/arguments").is_some_and(Value::is_string) {
                    out.push(Slot::ToolArgs(i, j));
                }
            }
        }
        if m.pointer("/function_call/arguments").is_some_and(Value::is_string) {
            out.push(Slot::FunctionArgs(i));
        }
    }
    Ok(out)
}

fn embedding_slots(body: &Value) -> Result<Vec<Slot>, ApiError> {
    match body.get("input") {
        Some(Value::String(_)) => Ok(vec![Slot::Input]),
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for (j, it) in items.iter().enumerate() {
                if it.is_string() {
                    out.push(Slot::InputItem(j));
                } else {
                    // Token-id arrays cannot be scanned: refuse rather than pass them unseen.
                    return Err(ApiError::InvalidRequest(
                        "input must be a string or an array of strings",
                    ));
                }
            }
            Ok(out)
        }
        _ => Err(ApiError::InvalidRequest("input must be a string or an array of strings")),
    }
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
    let slots = match kind {
        Kind::Chat => chat_slots(body)?,
        Kind::Embeddings => embedding_slots(body)?,
    };
    Ok(slots
        .into_iter()
        .filter_map(|slot| {
            let text = slot_ref(body, &slot)?;
            Some(Text { slot, text, digest: cache.digest(text) })
        })
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
        let s = t.slot.clone();
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
/// first). Tokenized values go to the vault under `scope`.
pub async fn apply(
    body: &mut Value,
    scanned: Scanned,
    act: &(dyn Fn(Category) -> Act + Sync),
    vault: &vault::Vault,
    scope: &str,
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
    for (slot, findings) in &scanned.slots {
        let Some(text) = slot_ref(body, slot) else { continue };
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
    let mut tokens: Vec<String> = Vec::new();
    if !to_tokenize.is_empty() {
        let started = std::time::Instant::now();
        tokens = tokenize(vault, scope, &to_tokenize).await?;
        crate::telemetry::stage("vault", started);
        if tokens.len() != to_tokenize.len() {
            return Err(ApiError::VaultUnavailable);
        }
    }
    let mut next_pair = pair_at.iter();
    for (slot, findings) in &scanned.slots {
        let Some(Value::String(text)) = slot_mut(body, slot) else { continue };
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
    }
    let tokens = tokens.into_iter().zip(to_tokenize).map(|(t, (_, v))| (t, v)).collect();
    present.sort();
    present.dedup();
    Ok(Applied { phi_present, present, tokens, request_values, strictest })
}

/// Tokens for `(category, value)` pairs: the scope's existing token of a value, or the next
/// `[CATEGORY_n]` of the scope (dense: a conversation's second name is `[NAME_2]`, whichever
/// turn it first appears in). A number taken at the same moment by a concurrent request of the
/// same conversation makes the vault refuse; the next try reads the numbers anew.
async fn tokenize(
    vault: &vault::Vault,
    scope: &str,
    items: &[(Category, String)],
) -> Result<Vec<String>, ApiError> {
    let items: Vec<(Category, &str)> = items.iter().map(|(c, v)| (*c, v.as_str())).collect();
    for _ in 0..12 {
        match vault.tokenize_numbered(scope, &items).await {
            Ok(t) => return Ok(t.into_iter().map(|t| t.token).collect()),
            Err(vault::Error::TokenInUse { .. }) => {}
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
