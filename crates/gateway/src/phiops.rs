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

/// One escape of a text, as [`Decoded`] read it: where it starts in the decoded text and in
/// the text as written, and its length in each.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Esc {
    plain: usize,
    raw: usize,
    plain_len: usize,
    raw_len: usize,
}

/// A text read as a client that decodes it as a JSON string would read it: its escapes
/// (`\uXXXX`, surrogate pairs, `\"`, `\\`, `\/`, `\n`, `\t`, ...) written as the characters
/// they stand for. A model may write `617\u002d555\u002d0199`, `03\/14\/1962`,
/// `617\t555\t0199` or `Jos\u00e9` (Python's `json.dumps` escapes every accented letter) in
/// tool-call arguments, in a JSON answer, or in any text its client then decodes. The scan
/// reads the decoded text, and what it finds is redacted in the text as written, over whole
/// escapes. A lone surrogate, or a backslash before anything else, is read as it is.
pub(crate) struct Decoded {
    /// The decoded text.
    pub(crate) plain: String,
    /// The escapes, in order.
    escapes: Vec<Esc>,
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The text may hold PHI: its size and escapes only.
        f.debug_struct("Decoded")
            .field("plain_len", &self.plain.len())
            .field("escapes", &self.escapes.len())
            .finish()
    }
}

impl Decoded {
    /// `None` when `text` has no backslash (it reads as it is).
    pub(crate) fn of(text: &str) -> Option<Decoded> {
        if !text.contains('\\') {
            return None;
        }
        let b = text.as_bytes();
        let unit = |at: usize| -> Option<u32> {
            let h = text.get(at + 2..at + 6)?;
            (b.get(at + 1) == Some(&b'u') && h.bytes().all(|c| c.is_ascii_hexdigit()))
                .then(|| u32::from_str_radix(h, 16).ok())
                .flatten()
        };
        let mut plain = String::with_capacity(text.len());
        let mut escapes = Vec::new();
        let mut i = 0;
        while let Some(off) = text[i..].find('\\') {
            plain.push_str(&text[i..i + off]);
            i += off;
            let short = match b.get(i + 1) {
                Some(b'"') => Some('"'),
                Some(b'\\') => Some('\\'),
                Some(b'/') => Some('/'),
                Some(b'b') => Some('\u{8}'),
                Some(b'f') => Some('\u{c}'),
                Some(b'n') => Some('\n'),
                Some(b'r') => Some('\r'),
                Some(b't') => Some('\t'),
                _ => None,
            };
            let (c, n) = match (short, unit(i)) {
                (Some(c), _) => (Some(c), 2),
                (None, Some(u)) => match (u, b.get(i + 6), unit(i + 6)) {
                    (0xD800..=0xDBFF, Some(b'\\'), Some(lo @ 0xDC00..=0xDFFF)) => {
                        (char::from_u32(0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)), 12)
                    }
                    _ => (char::from_u32(u), 6),
                },
                (None, None) => (None, 1),
            };
            match c {
                Some(c) => {
                    escapes.push(Esc {
                        plain: plain.len(),
                        raw: i,
                        plain_len: c.len_utf8(),
                        raw_len: n,
                    });
                    plain.push(c);
                }
                // A lone surrogate or a backslash before anything else: as it is.
                None => plain.push_str(&text[i..i + n]),
            }
            i += n;
        }
        plain.push_str(&text[i..]);
        Some(Decoded { plain, escapes })
    }

    /// The offset in the text as written of `p`, a character boundary of the decoded text.
    pub(crate) fn raw_of(&self, p: usize) -> usize {
        let k = self.escapes.partition_point(|e| e.plain <= p);
        let Some(e) = k.checked_sub(1).map(|k| self.escapes[k]) else { return p };
        if p < e.plain + e.plain_len {
            e.raw
        } else {
            e.raw + e.raw_len + (p - e.plain - e.plain_len)
        }
    }

    /// `text` (the text as written) with each escape's bytes turned into spaces: the same
    /// offsets, nothing to read across an escape's edge.
    pub(crate) fn masked(&self, text: &str) -> String {
        let mut b = text.as_bytes().to_vec();
        for e in &self.escapes {
            b[e.raw..e.raw + e.raw_len].fill(b' ');
        }
        // Escapes are ASCII: the rest is `text`'s own UTF-8.
        String::from_utf8(b).unwrap_or_else(|_| " ".repeat(text.len()))
    }

    /// `c`, an offset in the text as written, moved back to the start of the escape it falls
    /// inside, if any: a cut there never splits an escape.
    pub(crate) fn snap(&self, c: usize) -> usize {
        let k = self.escapes.partition_point(|e| e.raw <= c);
        match k.checked_sub(1).map(|k| self.escapes[k]) {
            Some(e) if c < e.raw + e.raw_len => e.raw,
            _ => c,
        }
    }
}

/// Scans one text, read through its escapes ([`Decoded`]: what a model or a client decoding
/// JSON reads), with the findings' offsets in `text` as written, over whole escapes; a panic
/// inside the scanner becomes `scanner_unavailable`.
pub fn scan(scanner: &dyn Detector, text: &str) -> Result<Vec<Finding>, ApiError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let started = std::time::Instant::now();
    let found = match Decoded::of(text) {
        None => detect(scanner, text),
        Some(d) => detect(scanner, &d.plain).and_then(|mut found| {
            for f in &mut found {
                (f.start, f.end) = (d.raw_of(f.start), d.raw_of(f.end));
            }
            // The text as written too (what a reader that does not decode sees), its escapes
            // blanked so that nothing is read into or out of one (`\t536-22-8741` is no
            // `t536..` identifier), and the union.
            let merged = union(found, detect(scanner, &d.masked(text))?);
            if !well_formed(text, &merged) {
                tracing::error!("PHI findings through escapes do not fit the text; refusing");
                return Err(ApiError::ScannerUnavailable);
            }
            Ok(merged)
        }),
    };
    crate::telemetry::stage("scan", started);
    found
}

/// One run of the detector over `text`: a panic becomes `scanner_unavailable`, and so do
/// findings that do not fit the text (the rewrite slices the text at these offsets: a detector,
/// a plug-in, whose findings are out of order, overlap or cut a character would make it panic,
/// the text in the message).
fn detect(scanner: &dyn Detector, text: &str) -> Result<Vec<Finding>, ApiError> {
    let found = catch_unwind(AssertUnwindSafe(|| scanner.detect(text))).map_err(|_| {
        tracing::error!("the PHI scanner panicked; refusing the request");
        ApiError::ScannerUnavailable
    })?;
    if !well_formed(text, &found) {
        tracing::error!("the PHI scanner returned findings that do not fit the text; refusing");
        return Err(ApiError::ScannerUnavailable);
    }
    Ok(found)
}

/// The findings of two scans of one text as one list: sorted, overlapping ones merged into
/// one over both, with the category of the more confident (on a tie, `a`'s: the decoded
/// scan's).
fn union(a: Vec<Finding>, b: Vec<Finding>) -> Vec<Finding> {
    union_by(a, b, &|x, y| x.score > y.score)
}

/// [`union`], where a finding's category takes over an overlapping one's when `better` says
/// so (on a tie, `a`'s).
fn union_by(
    mut a: Vec<Finding>,
    b: Vec<Finding>,
    better: &dyn Fn(&Finding, &Finding) -> bool,
) -> Vec<Finding> {
    if b.is_empty() {
        return a;
    }
    let from_a = a.len();
    a.extend(b);
    // Stable: on equal spans, `a`'s come first.
    let mut order: Vec<usize> = (0..a.len()).collect();
    order.sort_by_key(|&i| (a[i].start, std::cmp::Reverse(a[i].end)));
    let mut out: Vec<(Finding, bool)> = Vec::with_capacity(a.len());
    for i in order {
        let f = a[i];
        let first = i < from_a;
        match out.last_mut() {
            Some((last, last_first)) if f.start < last.end => {
                let end = last.end.max(f.end);
                let tie = !better(&f, last) && !better(last, &f);
                if better(&f, last) || (tie && first && !*last_first) {
                    *last = Finding { start: last.start, end, ..f };
                    *last_first = first;
                } else {
                    last.end = end;
                }
            }
            _ => out.push((f, first)),
        }
    }
    out.into_iter().map(|(f, _)| f).collect()
}

/// A finding's value as it reads (its escapes decoded, see [`Decoded`]): what the vault keeps
/// and what an answer is compared with.
pub(crate) fn plain_value(raw: &str) -> std::borrow::Cow<'_, str> {
    match Decoded::of(raw) {
        Some(d) => std::borrow::Cow::Owned(d.plain),
        None => std::borrow::Cow::Borrowed(raw),
    }
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

/// Whether `(k, v)` is protocol, not text: the top-level `model` (decided against the
/// configuration before any scan, and replaced by the deployment's), or a [`STRUCTURAL_KEYS`]
/// key whose value is a lowercase word. A `model` anywhere else (`metadata.model`) is text;
/// the same keys elsewhere (`metadata.type`) with any other value are scanned; ids (`id`,
/// `tool_call_id`) always are, consistently tokenized so that a call and its result still
/// match.
///
/// A `role` is protocol only when it is one the API defines: servers such as vLLM take any
/// role and write it into the prompt (`"role": "okafor"` would reach the model as it is).
fn is_protocol(k: &str, v: &Value, root: bool) -> bool {
    let Some(s) = v.as_str() else { return false };
    if k == "role" {
        return ROLES.contains(&s);
    }
    (root && k == "model")
        || (STRUCTURAL_KEYS.contains(&k)
            && s.len() <= 32
            && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-'))
}

/// The message roles of the chat API.
const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool", "function"];

/// Visits every non-empty string value of `v` (at any depth), except protocol words (see
/// [`is_protocol`]), in a fixed order: system, user, assistant and tool messages, content
/// parts (objects or bare strings), participant `name`s, tool-call arguments, tool descriptions
/// and schemas, `user`, `metadata`, `prediction`, and whatever field a client or a newer API
/// adds. Object keys and numbers are not texts: [`phi_in_keys_and_numbers`] looks at them.
pub(crate) fn each_text<'a>(v: &'a Value, f: &mut dyn FnMut(&'a str)) {
    each_text_at(v, f, true);
}

fn each_text_at<'a>(v: &'a Value, f: &mut dyn FnMut(&'a str), root: bool) {
    match v {
        Value::String(s) if !s.is_empty() => f(s),
        Value::Array(items) => items.iter().for_each(|it| each_text_at(it, f, false)),
        Value::Object(map) => {
            for (k, it) in map {
                if !is_protocol(k, it, root) {
                    each_text_at(it, f, false);
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
    each_text_mut_at(v, f, true)
}

fn each_text_mut_at(
    v: &mut Value,
    f: &mut dyn FnMut(&mut String) -> Result<(), ApiError>,
    root: bool,
) -> Result<(), ApiError> {
    match v {
        Value::String(s) if !s.is_empty() => f(s),
        Value::Array(items) => items.iter_mut().try_for_each(|it| each_text_mut_at(it, f, false)),
        Value::Object(map) => {
            for (k, it) in map.iter_mut() {
                if !is_protocol(k, it, root) {
                    each_text_mut_at(it, f, false)?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// JSON Schema keywords whose numbers are bounds, not data (inside a schema only).
const SCHEMA_NUMBER_KEYS: &[&str] = &[
    "maximum",
    "minimum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "maxItems",
    "minItems",
    "maxProperties",
    "minProperties",
    "maxContains",
    "minContains",
    "multipleOf",
];

/// Keys under which a JSON Schema sits (a tool's `parameters`, `response_format`'s
/// `json_schema.schema`, and what nests in one).
const SCHEMA_KEYS: &[&str] = &[
    "parameters",
    "schema",
    "properties",
    "items",
    "$defs",
    "definitions",
    "additionalProperties",
];

/// Top-level request parameters whose numbers are settings, not data.
const NUMERIC_PARAMETERS: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "n",
    "seed",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "top_logprobs",
    "dimensions",
    "best_of",
    "length_penalty",
    "min_tokens",
];

/// Keys that say nothing of what their value is (a schema's `default`, `enum`, `examples`):
/// a value under one is read with the key above it (`"age": {"default": 92}` as `age: 92`).
const TRANSPARENT_KEYS: &[&str] = &[
    "default",
    "enum",
    "const",
    "examples",
    "example",
    "items",
    "prefixItems",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "if",
    "then",
    "else",
];

/// Keys whose values are no field of a record: prose, code, ids, protocol and participant
/// names (each read its own way). A value under one has no label reading.
const UNLABELLED_KEYS: &[&str] = &[
    "content",
    "text",
    "refusal",
    "description",
    "arguments",
    "input",
    "instructions",
    "prompt",
    "title",
    "summary",
    "name",
    "user",
    "model",
    "id",
    "tool_call_id",
    "call_id",
    "role",
    "type",
    "format",
    "pattern",
    "$ref",
    "$schema",
    "$id",
    "required",
    "stop",
    "safety_identifier",
    "prompt_cache_key",
    "previous_response_id",
];

/// Words of a label that make an `ID` found by a label reading an identifier of a person
/// (`patient_id`, `member_id`): other keys ending in `id` (`token_id`, `user_id` of a schema's
/// example, `session_id`) name a system's ids, which a reading would otherwise call IDs.
const PERSON_ID_WORDS: &[&str] = &[
    "patient",
    "pt",
    "member",
    "subscriber",
    "beneficiary",
    "person",
    "resident",
    "enrollee",
    "insured",
    "guarantor",
    "chart",
    "record",
    "encounter",
    "visit",
    "admission",
    "case",
    "medicaid",
    "medicare",
    "insurance",
    "policy",
];

/// Whether a finding of `category` in a label reading ([`label_reading`], the value at `at`)
/// counts: any but a generic `ID`, which counts only under a label that names a person's
/// record ([`PERSON_ID_WORDS`]).
fn label_keeps(reading: &str, at: usize, category: Category) -> bool {
    category != Category::Id
        || reading[..at.saturating_sub(2)].split(' ').any(|w| PERSON_ID_WORDS.contains(&w))
}

/// Most bytes of a value given a label reading: a field's value, not prose (which carries its
/// own cues).
const MAX_LABELLED: usize = 80;

/// The label of a value under key `k`, when the label above it was `above`: `k`, unless `k`
/// is a [`TRANSPARENT_KEYS`] key.
fn label_under<'a>(k: &'a str, above: Option<&'a str>) -> Option<&'a str> {
    if TRANSPARENT_KEYS.contains(&k) {
        above
    } else {
        Some(k)
    }
}

/// A value read with its label, as a form shows it (`"zip": 94110` as `zip: 94110`; `lastName`
/// and `last_name` as `last name`), and where the value starts in that reading. `None` when the
/// label says nothing ([`UNLABELLED_KEYS`], a key that is not a plain word of at most 40 ASCII
/// letters, digits, `_` and `-`) or the value is longer than [`MAX_LABELLED`] bytes.
fn label_reading(label: &str, value: &str) -> Option<(String, usize)> {
    let plain = !label.is_empty()
        && label.len() <= 40
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && label.bytes().any(|b| b.is_ascii_alphabetic());
    if !plain || value.len() > MAX_LABELLED || UNLABELLED_KEYS.contains(&label) {
        return None;
    }
    let mut out = String::with_capacity(label.len() + 4 + value.len());
    let b = label.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| b[p]);
        if c.is_ascii_uppercase() && prev.is_some_and(|p| p.is_ascii_lowercase()) {
            out.push(' ');
        }
        out.push(match c {
            b'_' | b'-' => ' ',
            c => c.to_ascii_lowercase() as char,
        });
    }
    out.push_str(": ");
    let at = out.len();
    out.push_str(value);
    Some((out, at))
}

/// Whether an object key is a plain lowercase word (letters, `_`, `-`: `messages`,
/// `patient_name`), which no scan reads: any other may hold PHI (`"Jane Doe": ...`).
pub(crate) fn plain_word(k: &str) -> bool {
    k.len() <= 64 && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-')
}

/// The readings of a JSON number to scan, each with where its value starts: alone when it has
/// 7 digits or more (`4471902.0` as `4471902`), and with `label` ([`label_reading`]) when it
/// has one that names something.
fn number_probes(label: Option<&str>, n: &serde_json::Number) -> Vec<(String, usize)> {
    // A float with nothing after the point (`4471902.0`, `4.471902e6`) is read as the integer
    // it is.
    let text = match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e18 => format!("{}", f as i64),
        _ => n.to_string(),
    };
    let mut out = Vec::new();
    if let Some(reading) = label.and_then(|l| label_reading(l, &text)) {
        out.push(reading);
    }
    if text.bytes().filter(u8::is_ascii_digit).count() >= 7 {
        out.push((text, 0));
    }
    out
}

/// The object keys and numbers of a request that could hold PHI, distinct, to be scanned by
/// [`phi_in_keys_and_numbers`]: every key but a plain lowercase word (letters, `_`, `-`:
/// `messages`, `patient_name`), and every number but the top-level settings
/// ([`NUMERIC_PARAMETERS`]), `logit_bias`'s values and a schema's bounds
/// ([`SCHEMA_NUMBER_KEYS`] inside a schema). A number of 7 digits or more is read alone; any
/// number is also read with its label ([`label_reading`]: `"age": {"default": 92}` as
/// `age: 92`, `"zip": {"enum": [94110]}` as `zip: 94110`), since a shorter one reads as PHI
/// only by what names it. Each comes with where its value starts (0 but for a label reading).
/// `logit_bias` keys must be token ids.
fn keys_and_numbers(body: &Value) -> Result<Vec<(String, usize)>, ApiError> {
    fn token_id(k: &str) -> bool {
        !k.is_empty() && k.len() <= 6 && k.bytes().all(|b| b.is_ascii_digit())
    }
    struct Walk {
        out: std::collections::BTreeSet<(String, usize)>,
    }
    impl Walk {
        fn add(&mut self, s: String) -> Result<(), ApiError> {
            self.add_at(s, 0)
        }
        fn add_at(&mut self, s: String, at: usize) -> Result<(), ApiError> {
            self.out.insert((s, at));
            if self.out.len() > MAX_TEXTS {
                return Err(ApiError::RequestTooLarge);
            }
            Ok(())
        }
        fn walk(
            &mut self,
            v: &Value,
            parent: Option<&str>,
            label: Option<&str>,
            root: bool,
            schema: bool,
        ) -> Result<(), ApiError> {
            match v {
                Value::Number(n) => {
                    // A float with nothing after the point (`4471902.0`, `4.471902e6`) is read
                    // as the integer it is.
                    let bound = schema && parent.is_some_and(|k| SCHEMA_NUMBER_KEYS.contains(&k));
                    if bound {
                        return Ok(());
                    }
                    for (probe, at) in number_probes(label, n) {
                        self.add_at(probe, at)?;
                    }
                    Ok(())
                }
                Value::Array(items) => {
                    items.iter().try_for_each(|it| self.walk(it, parent, label, false, schema))
                }
                Value::Object(map) => {
                    for (k, it) in map {
                        if root && NUMERIC_PARAMETERS.contains(&k.as_str()) && it.is_number() {
                            continue;
                        }
                        if root && k == "logit_bias" {
                            if let Value::Object(biases) = it {
                                // Token ids to biases in -100..=100: anything else is scanned.
                                for (id, bias) in biases {
                                    if !token_id(id) {
                                        self.add(id.clone())?;
                                    }
                                    let small = bias.as_f64().is_some_and(|b| b.abs() <= 100.0);
                                    if !small {
                                        self.walk(bias, Some(id), None, false, false)?;
                                    }
                                }
                                continue;
                            }
                        }
                        if !plain_word(k) {
                            self.add(k.clone())?;
                        }
                        let schema = schema || SCHEMA_KEYS.contains(&k.as_str());
                        self.walk(it, Some(k), label_under(k, label), false, schema)?;
                    }
                    Ok(())
                }
                _ => Ok(()),
            }
        }
    }
    let mut w = Walk { out: std::collections::BTreeSet::new() };
    w.walk(body, None, None, true, false)?;
    Ok(w.out.into_iter().collect())
}

/// The PHI found in a request's object keys and numbers ([`keys_and_numbers`]): each
/// finding's category and value. Neither can take a placeholder: the caller refuses the
/// request unless each category's handling sends it as it is (`private_only`, which then
/// routes privately, and whose values an answer may then repeat).
pub fn phi_in_keys_and_numbers(
    scanner: &dyn Detector,
    body: &Value,
) -> Result<Vec<(Category, String)>, ApiError> {
    let mut found = Vec::new();
    for (text, at) in keys_and_numbers(body)? {
        // In a label reading, only what falls in the value counts (the key is read alone).
        let keeps = |f: &Finding| f.end > at && (at == 0 || label_keeps(&text, at, f.category));
        for f in scan(scanner, &text)?.into_iter().filter(keeps) {
            let value = &text[f.start.max(at)..f.end];
            found.push((f.category, plain_value(value).into_owned()));
        }
    }
    Ok(found)
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

/// The keys a text part may hold; a part with any other key may carry media (or anything a
/// server reads by its key) and is refused, unless [`trim_text_parts`] took the key off.
const TEXT_PART_KEYS: &[&str] = &["type", "text", "refusal", "cache_control"];

/// Takes off a typed text part (`"type": "text"` or `"refusal"`) every key but
/// [`TEXT_PART_KEYS`]: frameworks add their own (LangChain's `id`, `index`, `annotations`,
/// `extras`), which the model does not read, and a server could read media from any other
/// (vLLM reads `audio_url`, `video_url`, ... beside a text part's `text`). What is left is
/// all scanned. A part without a type keeps its keys, and [`check_chat`] refuses it if it has
/// any other.
pub fn trim_text_parts(body: &mut Value) {
    let Some(msgs) = body.get_mut("messages").and_then(Value::as_array_mut) else { return };
    for m in msgs {
        let Some(parts) = m.get_mut("content").and_then(Value::as_array_mut) else { continue };
        for p in parts.iter_mut().filter_map(Value::as_object_mut) {
            if p.get("type").and_then(Value::as_str).is_some_and(|t| TEXT_PART_TYPES.contains(&t)) {
                p.retain(|k, _| TEXT_PART_KEYS.contains(&k.as_str()));
            }
        }
    }
}

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
                            // An allow-list: servers read media by its key, typed or not
                            // (vLLM takes `audio_url`, `video_url`, `image_embeds`, ... on a
                            // part without a type, and beside a text part's `text`).
                            let media = o.keys().any(|k| !TEXT_PART_KEYS.contains(&k.as_str()));
                            if media || typed.is_some_and(|t| !TEXT_PART_TYPES.contains(&t)) {
                                return Err(ApiError::Unscannable(
                                    "a content part that is not text (an image, audio, video or \
                                     file, or a part without a type holding a key other than \
                                     text) cannot be scanned for PHI",
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
        return Err(ApiError::Unscannable(
            "log-probabilities of the answer cannot be scanned for PHI",
        ));
    }
    let audio_out = body.get("audio").is_some_and(|v| !v.is_null())
        || body
            .get("modalities")
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|x| x.as_str() == Some("audio")));
    if audio_out {
        return Err(ApiError::Unscannable("an audio answer cannot be scanned for PHI"));
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
    /// The slots of participant names (`name`, `user`): rewritten to a name's form.
    names: HashSet<Slot>,
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
    /// Where it stands among the messages, when that matters to [`scan_request`].
    place: Option<Place>,
    /// The key that names it, when it is a field's short value ([`labels`]).
    label: Option<&'a str>,
}

/// Where a text of a chat request stands, for the readings across texts ([`scan_request`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// In message `n`'s content: its string, or one of its parts.
    Content(usize),
    /// A participant's name: a message's `name`, or the request's `user`.
    Name,
}

/// The places of a chat request's texts (by address: each non-empty string of the body is its
/// own allocation).
fn places(body: &Value) -> HashMap<*const u8, Place> {
    let mut places = HashMap::new();
    fn name(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str).filter(|s| !s.is_empty())
    }
    if let Some(u) = name(body.get("user")) {
        places.insert(u.as_ptr(), Place::Name);
    }
    let Some(msgs) = body.get("messages").and_then(Value::as_array) else { return places };
    for (n, m) in msgs.iter().enumerate() {
        if let Some(c) = m.get("content") {
            each_text_at(c, &mut |t| _ = places.insert(t.as_ptr(), Place::Content(n)), false);
        }
        // A tool or function message's `name` is its function's.
        let role = m.get("role").and_then(Value::as_str);
        if let Some(nm) = name(m.get("name")).filter(|_| !matches!(role, Some("tool" | "function")))
        {
            places.insert(nm.as_ptr(), Place::Name);
        }
    }
    places
}

/// The labels of a body's short string values that could take a label reading (see
/// [`label_reading`]), by address: `"zip": "94110"` is read as `zip: 94110` too.
fn labels(body: &Value) -> HashMap<*const u8, &str> {
    fn walk<'a>(v: &'a Value, label: Option<&'a str>, out: &mut HashMap<*const u8, &'a str>) {
        match v {
            Value::String(s) if !s.is_empty() && s.len() <= MAX_LABELLED => {
                if let Some(l) = label.filter(|l| !UNLABELLED_KEYS.contains(l)) {
                    out.insert(s.as_ptr(), l);
                }
            }
            Value::Array(items) => items.iter().for_each(|it| walk(it, label, out)),
            Value::Object(map) => {
                map.iter().for_each(|(k, it)| walk(it, label_under(k, label), out))
            }
            _ => {}
        }
    }
    let mut out = HashMap::new();
    walk(body, None, &mut out);
    out
}

/// Every text of the body (for the token estimate, injection screening and the scan).
pub fn texts<'a>(
    body: &'a Value,
    kind: Kind,
    cache: &crate::textcache::TextCache,
) -> Result<Vec<Text<'a>>, ApiError> {
    // An embeddings call's `user` is a participant's name and its fields have labels, as a
    // chat's (it has no messages).
    let texts = match kind {
        Kind::Chat => chat_texts(body)?,
        Kind::Embeddings => embedding_texts(body)?,
    };
    let (places, labels) = (places(body), labels(body));
    Ok(texts
        .into_iter()
        .enumerate()
        .map(|(slot, text)| Text {
            slot,
            text,
            digest: cache.digest(text),
            place: places.get(&text.as_ptr()).copied(),
            label: labels.get(&text.as_ptr()).copied(),
        })
        .collect())
}

/// A piece of one of the request's texts: `texts[at].text[start..end]`.
#[derive(Clone, Copy)]
struct Segment {
    at: usize,
    start: usize,
    end: usize,
}

impl Segment {
    fn whole(at: usize, text: &str) -> Segment {
        Segment { at, start: 0, end: text.len() }
    }
}

/// Most bytes of a message's end and of the next one's start read together (see
/// [`scan_request`]): a cue and its value sit close to where one message meets the next.
const SEAM: usize = 256;

/// Categories found by their words (a capital word after "the patient." reads as a name):
/// looked for across a seam only after a question or a label.
const WORDS: &[Category] = &[Category::Name, Category::Location];

/// Most seams between messages read in one request (each a scan of up to twice [`SEAM`]
/// bytes).
const MAX_SEAMS: usize = 1_000;

/// The end of `text` (at most [`SEAM`] bytes), from a word's start when it is cut.
fn tail(text: &str) -> usize {
    let mut start = text.len().saturating_sub(SEAM);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    if start > 0 {
        if let Some(w) = text[start..].find(char::is_whitespace) {
            start += w;
        }
    }
    start
}

/// The start of `text` (at most [`SEAM`] bytes), to a word's end when it is cut.
fn head(text: &str) -> usize {
    let mut end = text.len().min(SEAM);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() {
        if let Some(w) = text[..end].rfind(char::is_whitespace) {
            end = w;
        }
    }
    end
}

/// Findings of the request's texts gathered from readings across texts, before they are
/// merged with each text's own.
struct Extra {
    found: Vec<Vec<Finding>>,
    /// `(text, start, category)` of pieces that continue a finding begun in an earlier text:
    /// counted once, where it began.
    continued: HashSet<(usize, usize, Category)>,
}

impl Extra {
    /// Reads `segs` as one text (`sep` between them) and gives each text the findings that
    /// fall in its segment, cut to it (a value split over two texts is found in both).
    fn read(
        &mut self,
        scanner: &dyn Detector,
        cache: &crate::textcache::TextCache,
        texts: &[Text<'_>],
        segs: &[Segment],
        sep: &str,
        keep: fn(Category) -> bool,
    ) -> Result<(), ApiError> {
        let mut joined = String::new();
        for (i, s) in segs.iter().enumerate() {
            if i > 0 {
                joined.push_str(sep);
            }
            joined.push_str(&texts[s.at].text[s.start..s.end]);
        }
        let found = cache.findings(scanner, &joined, cache.digest(&joined))?;
        // The findings are sorted and apart: one pass over them and the segments together.
        let (mut at, mut first) = (0, 0);
        for (i, s) in segs.iter().enumerate() {
            let end = at + (s.end - s.start);
            while found.get(first).is_some_and(|f| f.end <= at) {
                first += 1;
            }
            for f in
                found[first..].iter().take_while(|f| f.start < end).filter(|f| keep(f.category))
            {
                let start = f.start.max(at) - at + s.start;
                // Begun in an earlier segment (not in the separator before this one).
                if i > 0 && f.start + sep.len() < at {
                    self.continued.insert((s.at, start, f.category));
                }
                self.found[s.at].push(Finding { start, end: f.end.min(end) - at + s.start, ..*f });
            }
            at = end + sep.len();
        }
        Ok(())
    }
}

/// A participant's name as a name reads (`jane_doe`, `jane.doe`, `JaneDoe` as `Jane Doe`: OpenAI allows
/// no space in a `name`), with the byte of `name` each of its bytes stands for; `None` when
/// that changes nothing.
fn name_reading(name: &str) -> Option<(String, Vec<usize>)> {
    let (out, map) = if name.is_ascii() {
        let b = name.as_bytes();
        let mut out = String::with_capacity(name.len() + 8);
        let mut map = Vec::with_capacity(name.len() + 8);
        for (i, &c) in b.iter().enumerate() {
            let prev = i.checked_sub(1).map(|p| b[p]);
            if c.is_ascii_uppercase() && prev.is_some_and(|p| p.is_ascii_lowercase()) {
                out.push(' ');
                map.push(i);
            }
            let word_start = prev.is_none_or(|p| !p.is_ascii_alphabetic());
            out.push(match c {
                b'_' | b'-' | b'.' => ' ',
                c if word_start => c.to_ascii_uppercase() as char,
                c => c as char,
            });
            map.push(i);
        }
        (out, map)
    } else {
        // Same length: `_`, `-` and `.` become spaces, nothing else moves.
        (name.replace(['_', '-', '.'], " "), (0..name.len()).collect())
    };
    // One word is no full name, and a lone `alice` or `claude` is a bot's as often.
    (out != name && out.split_whitespace().count() >= 2).then_some((out, map))
}

/// The words of a request's names, each with the text it came from (`None`: several), to tell
/// whether a text says a word of another text's name ([`SaidIn::in_other`]).
struct SaidIn<'t> {
    /// A word's length and first letter, as one bit of 64 ([`word_bit`]; all bits when a word
    /// is not ASCII): most words of a text are no name's, and this tells them apart without a
    /// copy or a hash.
    bloom: u64,
    /// Few words (the usual request): compared one by one, with the texts they came from.
    few: Vec<(&'t str, usize)>,
    /// Many: by their lower case.
    many: HashMap<String, Option<usize>>,
}

impl<'t> SaidIn<'t> {
    /// Most words compared one by one.
    const FEW: usize = 64;

    fn new(words: &[Vec<&'t str>]) -> SaidIn<'t> {
        let all = || words.iter().enumerate().flat_map(|(j, ws)| ws.iter().map(move |w| (*w, j)));
        let bloom = all().fold(0u64, |b, (w, _)| b | if w.is_ascii() { word_bit(w) } else { !0 });
        let mut said = SaidIn { bloom, few: Vec::new(), many: HashMap::new() };
        if all().nth(Self::FEW).is_none() {
            said.few = all().collect();
        } else {
            for (w, j) in all() {
                said.many
                    .entry(w.to_lowercase())
                    .and_modify(|s| *s = s.filter(|&i| i == j))
                    .or_insert(Some(j));
            }
        }
        said
    }

    /// Whether `text` (the `k`th) says a word of another text's name.
    fn in_other(&self, text: &str, k: usize) -> bool {
        let mut lower = String::new();
        phi::NamePart::words(text).any(|w| {
            if w.is_ascii() && self.bloom & word_bit(w) == 0 {
                return false;
            }
            if self.many.is_empty() {
                return self.few.iter().any(|(n, j)| *j != k && same_word(w, n));
            }
            lower.clear();
            lower.extend(w.chars().flat_map(char::to_lowercase));
            self.many.get(lower.as_str()).is_some_and(|s| *s != Some(k))
        })
    }
}

/// Whether two words are the same in any case.
fn same_word(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.chars().flat_map(char::to_lowercase).eq(b.chars().flat_map(char::to_lowercase))
    }
}

/// One bit of 64 for an ASCII word, by its length and its first letter in any case.
fn word_bit(w: &str) -> u64 {
    let first = u64::from(w.as_bytes().first().map_or(0, u8::to_ascii_lowercase));
    1 << ((w.len() as u64 * 7 + first) % 64)
}

/// The words of the names among `found` (findings in `text`), as slices of it.
fn name_words<'t>(text: &'t str, found: &[Finding]) -> Vec<&'t str> {
    found
        .iter()
        .filter(|f| f.category == Category::Name)
        .filter_map(|f| text.get(f.start..f.end))
        .flat_map(phi::NamePart::words)
        .collect()
}

/// The words of the names among `found` (findings in `text`): [`Detector::name_parts`], a
/// panic a refusal.
fn names_in(
    scanner: &dyn Detector,
    text: &str,
    found: &[Finding],
) -> Result<Vec<phi::NamePart>, ApiError> {
    if !found.iter().any(|f| f.category == Category::Name) {
        return Ok(Vec::new());
    }
    catch_unwind(AssertUnwindSafe(|| scanner.name_parts(text, found)))
        .map_err(|_| ApiError::ScannerUnavailable)
}

/// The words of `names` (values a conversation's vault scope holds as names) to look for in
/// a later turn: each value read as one name.
pub fn name_parts_of(
    scanner: &dyn Detector,
    names: &[vault::PlainValue],
) -> Result<Vec<phi::NamePart>, ApiError> {
    let mut all = Vec::new();
    for v in names {
        let text = v.expose();
        let whole = [Finding::new(0, text.len(), Category::Name, 0.9, "vault")];
        let mut parts = names_in(scanner, text, &whole)?;
        // A one-word name (a lone given name, "Grace") may have been found on weak evidence,
        // which the vault does not keep: its word is looked for only capitalised ("Grace
        // called", not "grace period").
        if phi::NamePart::words(text).nth(1).is_none() {
            parts.iter_mut().for_each(|p| p.capitalised_only = true);
        }
        all.extend(parts);
    }
    phi::NamePart::dedup(&mut all);
    Ok(all)
}

/// [`Detector::repeats`] of `parts` in `text`, a panic or a finding out of place a refusal.
fn repeats_in(
    scanner: &dyn Detector,
    text: &str,
    parts: &[phi::NamePart],
    found: &mut Vec<Finding>,
) -> Result<(), ApiError> {
    let added = catch_unwind(AssertUnwindSafe(|| scanner.repeats(text, parts, found)))
        .map_err(|_| ApiError::ScannerUnavailable)?;
    if added && !well_formed(text, found) {
        return Err(ApiError::ScannerUnavailable);
    }
    Ok(())
}

/// Scans every text of the request (through `cache`: a text seen before is not scanned again),
/// and reads some texts together, as the model reads them:
/// - the content parts of one message, joined as they are (`"219-09-"`, `"9999"` is an SSN
///   split in two) and with a space between (`"Patient SSN"`, `"219099999"`: the cue of one
///   part names the value of the next);
/// - where one message meets the next: its last content text's last [`SEAM`] bytes and the
///   next one's first, a space between (`"Last name:"` then `"Doe"`), for at most
///   [`MAX_SEAMS`] seams; when the first asks nothing (ends in neither `?` nor `:`), only for
///   a number among the next one's first three words, and names and places found there are
///   dropped;
/// - a participant's name as a name reads ([`name_reading`]): `jane_doe` (a tool or function
///   message's `name` is its function's, not read so). Such a name keeps OpenAI's form once
///   rewritten (`NAME_1_Doe`, see [`apply`]);
/// - a field's short value with the key that names it ([`labels`], [`label_reading`]):
///   `"zip": "94110"` as `zip: 94110`, `"lastName": "Doe"` as `last name: Doe`. Alone, such a
///   value has no cue to read it by;
/// - a name found in one text, wherever another says one of its words again
///   ([`Detector::repeats`]): "Patient Alan Smith, ..." then "What dose for Smith?";
/// - a name of an earlier turn that the client did not send again (`earlier`: the words of
///   the names the conversation's vault scope holds, [`name_parts_of`]), wherever a text says
///   one of its words.
///
/// Each text keeps its own findings and those of the joined readings that fall in it. Where
/// two overlap, the category whose handling is strictest under `act` wins (a blocked SSN that
/// another reading calls an MRN stays blocked), then the more confident. A finding split over
/// two texts counts once.
pub fn scan_request(
    scanner: &dyn Detector,
    cache: &crate::textcache::TextCache,
    texts: &[Text<'_>],
    act: &dyn Fn(Category) -> Act,
    earlier: &[phi::NamePart],
) -> Result<Scanned, ApiError> {
    let mut out = Vec::with_capacity(texts.len());
    for t in texts {
        out.push((t.slot, cache.findings(scanner, t.text, t.digest)?));
    }
    let mut extra = Extra { found: vec![Vec::new(); texts.len()], continued: HashSet::new() };
    // Content texts by message, in order.
    let mut messages: Vec<(usize, Vec<usize>)> = Vec::new();
    for (k, t) in texts.iter().enumerate() {
        match t.place {
            Some(Place::Content(n)) => match messages.last_mut() {
                Some((m, ks)) if *m == n => ks.push(k),
                _ => messages.push((n, vec![k])),
            },
            Some(Place::Name) => {
                if let Some((reading, map)) = name_reading(t.text) {
                    let found = cache.findings(scanner, &reading, cache.digest(&reading))?;
                    // A name is two words or more: "Alice Bot" (`alice_bot`) is a bot's.
                    let two_words = |f: &Finding| reading[f.start..f.end].trim().contains(' ');
                    for f in
                        found.into_iter().filter(|f| f.category != Category::Name || two_words(f))
                    {
                        let (start, end) = (map[f.start], map[f.end - 1] + 1);
                        if t.text.is_char_boundary(start) && t.text.is_char_boundary(end) {
                            extra.found[k].push(Finding { start, end, ..f });
                        }
                    }
                }
            }
            None => {
                if let Some((reading, at)) = t.label.and_then(|l| label_reading(l, t.text)) {
                    // Only what falls in the value counts (the key is read on its own).
                    let found = cache.findings(scanner, &reading, cache.digest(&reading))?;
                    let keeps = |f: &Finding| f.end > at && label_keeps(&reading, at, f.category);
                    for f in found.into_iter().filter(keeps) {
                        let (start, end) = (f.start.max(at) - at, f.end - at);
                        extra.found[k].push(Finding { start, end, ..f });
                    }
                }
            }
        }
    }
    let mut seams = 0;
    for (i, (n, ks)) in messages.iter().enumerate() {
        if ks.len() >= 2 {
            let segs: Vec<Segment> = ks.iter().map(|&k| Segment::whole(k, texts[k].text)).collect();
            for sep in ["", " "] {
                extra.read(scanner, cache, texts, &segs, sep, |_| true)?;
            }
        }
        if let Some((_, kn)) = messages.get(i + 1).filter(|(m, _)| *m == n + 1) {
            let (a, b) = (ks[ks.len() - 1], kn[0]);
            let (ta, tb) = (texts[a].text, texts[b].text);
            // A question or a label asks for what the next message says. After anything else
            // ("... for the patient." then "Good morning") a capital word would read as a name:
            // there only a number is looked for ("... send the patient's SSN." then
            // "219099999"), and only when one is among the next message's first three words
            // (a reply to what was asked).
            // (Read without what closes it: `**Last name:**` as `**Last name:`.)
            let closed = ta.trim_end_matches(|c: char| c.is_whitespace() || "*_\"')".contains(c));
            let asks = closed.ends_with([':', '?', '\u{ff1a}', '\u{ff1f}']);
            let (start, end) = (tail(ta), head(tb));
            let number =
                tb.split_whitespace().take(3).any(|w| w.bytes().any(|c| c.is_ascii_digit()));
            if !(asks || number) || seams >= MAX_SEAMS {
                continue;
            }
            seams += 1;
            let a_end = if asks { closed.len().max(start) } else { ta.len() };
            let segs = [Segment { at: a, start, end: a_end }, Segment { at: b, start: 0, end }];
            let keep = if asks { |_: Category| true } else { |c: Category| !WORDS.contains(&c) };
            extra.read(scanner, cache, texts, &segs, " ", keep)?;
        }
    }
    let stricter = |x: &Finding, y: &Finding| {
        let (ax, ay) = (act(x.category), act(y.category));
        ax > ay || (ax == ay && x.score > y.score)
    };
    for (k, more) in extra.found.into_iter().enumerate() {
        if !more.is_empty() {
            let own = std::mem::take(&mut out[k].1);
            out[k].1 = union_by(own, more, &stricter);
        }
    }
    // A name found in one text is a name where another says it again without a cue
    // ("Patient Alan Smith, ..." then "What dose for Smith?"). First a cheap test of each
    // text's words against the names' (linear in the request); the detector's rules only in a
    // text that says a word of another text's name.
    let words: Vec<Vec<&str>> =
        out.iter().zip(texts).map(|((_, found), t)| name_words(t.text, found)).collect();
    let mut sources = words.iter().enumerate().filter(|(_, w)| !w.is_empty()).map(|(j, _)| j);
    let (first, more) = (sources.next(), sources.next().is_some());
    if !earlier.is_empty() {
        // Earlier turns' names: every text may say one again, the request's own names with them.
        let mut all = earlier.to_vec();
        for (j, t) in texts.iter().enumerate() {
            all.extend(names_in(scanner, t.text, &out[j].1)?);
        }
        phi::NamePart::dedup(&mut all);
        // The detector's rules only in a text that says one of the words (an ASCII text is
        // tested word by word first; another may say one in a form that folds to it).
        let wanted: HashSet<&str> = all.iter().map(|p| p.lower.as_str()).collect();
        let mut lower = String::new();
        for (k, t) in texts.iter().enumerate() {
            let says = !t.text.is_ascii()
                || phi::NamePart::words(t.text).any(|w| {
                    lower.clear();
                    lower.push_str(w);
                    lower.make_ascii_lowercase();
                    wanted.contains(lower.as_str())
                });
            if says {
                repeats_in(scanner, t.text, &all, &mut out[k].1)?;
            }
        }
    } else if let Some(first) = first.filter(|_| texts.len() > 1) {
        let said = SaidIn::new(&words);
        let mut parts: Option<Vec<phi::NamePart>> = None;
        for (k, t) in texts.iter().enumerate() {
            // A lone source's own words were looked for by its own scan (the usual request:
            // one note names the patient, and is not read again).
            if (!more && k == first) || !said.in_other(t.text, k) {
                continue;
            }
            if parts.is_none() {
                let mut all = Vec::new();
                for (j, t) in texts.iter().enumerate() {
                    all.extend(names_in(scanner, t.text, &out[j].1)?);
                }
                phi::NamePart::dedup(&mut all);
                parts = Some(all);
            }
            if let Some(parts) = &parts {
                repeats_in(scanner, t.text, parts, &mut out[k].1)?;
            }
        }
    }
    let mut counts = BTreeMap::new();
    for (k, (_, found)) in out.iter().enumerate() {
        for f in found {
            if !extra.continued.contains(&(k, f.start, f.category)) {
                *counts.entry(f.category).or_insert(0u32) += 1;
            }
        }
    }
    let names = texts.iter().filter(|t| t.place == Some(Place::Name)).map(|t| t.slot).collect();
    Ok(Scanned { slots: out, names, counts })
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
    /// The least protective action taken on a value found, for the ledger's decision: what
    /// left says more than what was held back (values sent as they are to a private deployment
    /// beside redacted ones are recorded as sent as they are).
    pub loosest: Option<Act>,
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

/// A vault scope named on demand (the fallback scope of a request without a conversation id:
/// needed only once the shared one has expired).
pub struct LazyScope(Box<dyn FnOnce() -> String + Send>);

impl LazyScope {
    /// A scope that `name` names when asked.
    pub fn new(name: impl FnOnce() -> String + Send + 'static) -> LazyScope {
        LazyScope(Box::new(name))
    }

    /// The scope's name.
    pub fn name(self) -> String {
        (self.0)()
    }
}

impl std::fmt::Debug for LazyScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LazyScope")
    }
}

/// Applies the per-category actions to `body` (no `Block` may be left: check [`blocked`]
/// first). Tokenized values go to the vault under `scopes.0`, or, when that scope has expired
/// or been shredded, under `scopes.1` if given (see `app::scope_of`).
pub async fn apply(
    body: &mut Value,
    scanned: Scanned,
    act: &(dyn Fn(Category) -> Act + Sync),
    vault: &vault::Vault,
    (mut scope, fallback): (String, Option<LazyScope>),
) -> Result<Applied, ApiError> {
    // Sized up front: grown from empty, each set rehashes its values several times.
    let found: usize = scanned.slots.iter().map(|(_, f)| f.len()).sum();
    let mut request_values = HashSet::with_capacity(found);
    // The distinct (category, value) pairs to tokenize, and for each finding to tokenize (in
    // order) the index of its pair: the rewrite below takes tokens by index, not by value.
    let mut to_tokenize: Vec<(Category, String)> = Vec::new();
    let mut pair_of: HashMap<(Category, std::borrow::Cow<'_, str>), usize> =
        HashMap::with_capacity(found);
    let mut pair_at: Vec<usize> = Vec::with_capacity(found);
    let mut loosest: Option<Act> = None;
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
            // As it reads: `03\/14\/1962` is the date 03/14/1962, one token with it.
            let v = plain_value(&text[f.start..f.end]);
            let a = act(f.category);
            loosest = Some(loosest.map_or(a, |l| l.min(a)));
            match a {
                Act::Tokenize => {
                    phi_present = true;
                    present.push(f.category);
                    let next = to_tokenize.len();
                    let i = *pair_of.entry((f.category, v.clone())).or_insert(next);
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
            if !request_values.contains(v.as_ref()) {
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
                scope = f.name();
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
        if scanned.names.contains(&here) {
            // OpenAI takes `^[a-zA-Z0-9_-]+$` there: `[NAME_1]_Doe` is `NAME_1_Doe`.
            out = out
                .chars()
                .filter(|c| !matches!(c, '[' | ']'))
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
                .collect();
        }
        *text = out;
        Ok(())
    })?;
    let tokens = tokens.into_iter().zip(to_tokenize).map(|(t, (_, v))| (t, v)).collect();
    present.sort();
    present.dedup();
    Ok(Applied { phi_present, present, tokens, request_values, loosest, scope })
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

/// PHI findings of `text` whose value was not in the request, nor part of a value that was,
/// and is not a placeholder.
pub fn new_phi(
    scanner: &dyn Detector,
    text: &str,
    request_values: &HashSet<String>,
) -> Result<Vec<Finding>, ApiError> {
    let found = scan(scanner, text)?;
    Ok(found
        .into_iter()
        .filter(|f| {
            let raw = &text[f.start..f.end];
            if raw.starts_with('[') && raw.ends_with(']') {
                return false;
            }
            !in_request(request_values, &plain_value(raw))
        })
        .collect())
}

/// Whether `v` (a value as it reads) is a value of the request or part of one (`Alan Smith`
/// of `Dr. Alan Smith`): an answer that says it tells the caller nothing it did not send.
pub(crate) fn in_request(request_values: &HashSet<String>, v: &str) -> bool {
    request_values.contains(v) || request_values.iter().any(|r| r.len() > v.len() && r.contains(v))
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
    fn keys_and_numbers_that_could_hold_phi() {
        let body = serde_json::json!({"model": "m", "max_tokens": 4471902, "seed": 12345678,
            "mrn": 4471902, "logit_bias": {"50256": -100, "Alan Smith": 5},
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                "properties": {"id": {"type": "integer", "minimum": 1000000, "maximum": 99999999,
                    "enum": [5550199, 42]}, "Jane Doe": {"type": "string"}},
                "additionalProperties": false}}}],
            "metadata": {"maximum": 7654321, "x": [1, 2.5, 3]}});
        let probes = keys_and_numbers(&body).unwrap();
        let got: Vec<&str> = probes.iter().map(|(t, _)| t.as_str()).collect();
        // Top-level mrn, the enum's long value, a bound outside a schema, the bias key that is
        // not a token id, the capitalised keys; not the settings, the schema's bounds, short
        // numbers alone nor plain keys.
        for want in
            ["4471902", "5550199", "7654321", "Alan Smith", "Jane Doe", "additionalProperties"]
        {
            assert!(got.contains(&want), "{want} not in {got:?}");
        }
        for not in ["12345678", "1000000", "99999999", "42", "50256", "messages", "properties"] {
            assert!(!got.contains(&not), "{not} in {got:?}");
        }
        assert_eq!(got.iter().filter(|g| **g == "4471902").count(), 1, "distinct");
        // Every number but a setting or a bound is also read with its label, the key above a
        // schema's `enum` or `default`; the value starts after the label.
        for (want, at) in [("mrn: 4471902", 5), ("x: 1", 3), ("maximum: 7654321", 9)] {
            assert!(probes.contains(&(want.to_string(), at)), "{want} not in {probes:?}");
        }
        // Not the settings, bounds, nor what an id or a transparent key names.
        for not in
            ["max tokens: 4471902", "seed: 12345678", "maximum: 99999999", "id: 42", "enum: 42"]
        {
            assert!(!got.contains(&not), "{not} in {got:?}");
        }
        // Past the cap, refused rather than scanned one by one.
        let many: Vec<u64> = (0..=MAX_TEXTS as u64).map(|i| 10_000_000 + i).collect();
        let big = serde_json::json!({"messages": [], "x": many});
        assert!(matches!(keys_and_numbers(&big), Err(ApiError::RequestTooLarge)));
    }

    /// The findings of each text of a chat `body`, as [`scan_request`] makes them under `act`,
    /// and the counts.
    /// Each text with the (category, value) of its findings.
    type Found = Vec<(String, Vec<(Category, String)>)>;

    fn scanned_under(
        body: &Value,
        act: &dyn Fn(Category) -> Act,
    ) -> (Found, BTreeMap<Category, u32>) {
        let scanner = phi::Scanner::new().unwrap();
        let cache = crate::textcache::TextCache::new(100);
        let texts = texts(body, Kind::Chat, &cache).unwrap();
        let scanned = scan_request(&scanner, &cache, &texts, act, &[]).unwrap();
        let found = texts
            .iter()
            .zip(&scanned.slots)
            .map(|(t, (_, f))| {
                let found = f.iter().map(|f| (f.category, t.text[f.start..f.end].to_string()));
                (t.text.to_string(), found.collect())
            })
            .collect();
        (found, scanned.counts)
    }

    fn scanned_texts(body: &Value) -> Found {
        scanned_under(body, &|_| Act::Tokenize).0
    }

    fn user(content: Value) -> Value {
        serde_json::json!({"model": "m", "messages": [{"role": "user", "content": content}]})
    }

    #[test]
    fn a_messages_content_parts_are_also_read_as_one() {
        // A cue in one part names the value in the next.
        let got = scanned_texts(&user(serde_json::json!(["Patient SSN",
            {"type": "text", "text": "219099999"}])));
        assert_eq!(got[1].1, [(Category::Ssn, "219099999".to_string())], "{got:?}");
        // A value split over two parts is found in both, and counted once.
        let (got, counts) = scanned_under(
            &user(serde_json::json!(["Call him at 617-55", "5-0199 today"])),
            &|_| Act::Tokenize,
        );
        assert_eq!(got[0].1, [(Category::Phone, "617-55".to_string())], "{got:?}");
        assert_eq!(got[1].1, [(Category::Phone, "5-0199".to_string())], "{got:?}");
        assert_eq!(counts.get(&Category::Phone), Some(&1), "{counts:?}");
        // Each part still has its own findings.
        let got = scanned_texts(&user(serde_json::json!(["a", "Jane Doe was seen on 03/14/2021"])));
        assert!(got[1].1.contains(&(Category::Date, "03/14/2021".to_string())), "{got:?}");
    }

    #[test]
    fn a_cue_at_the_end_of_one_message_names_the_value_in_the_next() {
        let body = serde_json::json!({"model": "m", "messages": [
            {"role": "assistant", "content": "Thanks. What is the patient's last name:"},
            {"role": "user", "content": "Doe"},
            {"role": "assistant", "content": [{"type": "text", "text": "And the SSN?"}]},
            {"role": "user", "content": ["219099999", "thanks"]}]});
        let got = scanned_texts(&body);
        assert_eq!(got[1].1, [(Category::Name, "Doe".to_string())], "{got:?}");
        assert_eq!(got[3].1, [(Category::Ssn, "219099999".to_string())], "{got:?}");
        // Only the seam is read together: a long message's start is not joined to the end of
        // the one before.
        let long = format!("SSN {} 219099999", "word ".repeat(100));
        let body = serde_json::json!({"model": "m", "messages": [
            {"role": "user", "content": "Patient"}, {"role": "user", "content": long}]});
        let got = scanned_texts(&body);
        assert!(got[1].1.iter().all(|(c, _)| *c != Category::Name), "{got:?}");
        // Nor is a seam read after a message that asks nothing: "the patient. Good" would read
        // as a name.
        for (end, next) in [
            ("Always be kind to the patient.", "Good morning, I have had a headache."),
            ("I will draft that note for the patient.", "Perfect, please do."),
            ("Ask Dr.", "Please summarize the visit."),
        ] {
            let body = serde_json::json!({"model": "m", "messages": [
                {"role": "system", "content": end}, {"role": "user", "content": next}]});
            let got = scanned_texts(&body);
            assert!(got[1].1.is_empty(), "{got:?}");
        }
        // A number after a message that names it, and a label in bold.
        for (end, next, cat, value) in [
            ("Please send the patient's SSN.", "219099999", Category::Ssn, "219099999"),
            ("Please send the patient's SSN.", "It is 219099999", Category::Ssn, "219099999"),
            ("**Last name:**", "Doe", Category::Name, "Doe"),
        ] {
            let body = serde_json::json!({"model": "m", "messages": [
                {"role": "assistant", "content": end}, {"role": "user", "content": next}]});
            let got = scanned_texts(&body);
            assert_eq!(got[1].1, [(cat, value.to_string())], "{got:?}");
        }
    }

    #[test]
    fn a_role_the_api_does_not_define_is_text() {
        // vLLM writes any role into the prompt: one that is no role is scanned as text.
        let body = serde_json::json!({"model": "m", "messages": [
            {"role": "okafor", "content": "hello"},
            {"role": "user", "content": "hello"}]});
        let got = scanned_texts(&body);
        assert!(got.iter().any(|(t, _)| t == "okafor"), "{got:?}");
        assert!(!got.iter().any(|(t, _)| t == "user"), "{got:?}");
    }

    #[test]
    fn a_participant_name_is_read_as_a_name() {
        for (name, want) in [
            ("jane_doe", "jane_doe"),
            ("JaneDoe", "JaneDoe"),
            ("John-Smith", "John-Smith"),
            ("jane.doe", "jane.doe"),
        ] {
            let body = serde_json::json!({"model": "m", "user": name, "messages": [
                {"role": "user", "name": name, "content": "hello"}]});
            let got = scanned_texts(&body);
            let names: Vec<_> = got.iter().filter(|(t, _)| t == name).collect();
            assert_eq!(names.len(), 2, "{got:?}");
            for (_, f) in names {
                assert_eq!(f, &[(Category::Name, want.to_string())], "{name}: {got:?}");
            }
        }
        // A bot's name, one word, or a function's name (on a tool message) is not read so.
        let body = serde_json::json!({"model": "m", "messages": [
            {"role": "user", "name": "triage_bot", "content": "hello"},
            {"role": "assistant", "name": "alice", "content": "hello"},
            {"role": "assistant", "name": "alice_bot", "content": "hello"},
            {"role": "assistant", "name": "claude_assistant", "content": "hello"},
            {"role": "tool", "name": "get_patient_record", "tool_call_id": "c1", "content": "ok"}]});
        assert!(
            scanned_texts(&body).iter().all(|(_, f)| f.is_empty()),
            "{:?}",
            scanned_texts(&body)
        );
    }

    #[test]
    fn a_field_value_is_read_with_its_key() {
        // Alone, "94110", "Doe" and "93" read as nothing; with their keys, as PHI.
        let body = serde_json::json!({"model": "m",
            "messages": [{"role": "user", "content": "Summarize."}],
            "metadata": {"zip": "94110", "lastName": "Doe", "patient_age": "93",
                "units": "mg", "age": "45", "status": "active"}});
        let got = scanned_texts(&body);
        let of = |t: &str| got.iter().find(|(x, _)| x == t).map(|(_, f)| f.clone()).unwrap();
        assert_eq!(of("94110"), [(Category::Location, "94110".to_string())], "{got:?}");
        assert_eq!(of("Doe"), [(Category::Name, "Doe".to_string())], "{got:?}");
        assert_eq!(of("93"), [(Category::Age, "93".to_string())], "{got:?}");
        for t in ["mg", "45", "active", "Summarize."] {
            assert!(of(t).is_empty(), "{t}: {got:?}");
        }
        // A schema's `enum` and `default` take the property's name.
        let schema = serde_json::json!({"model": "m",
            "messages": [{"role": "user", "content": "Summarize."}],
            "tools": [{"type": "function", "function": {"name": "lookup", "description": "Look up.",
                "parameters": {"type": "object", "properties": {
                    "surname": {"type": "string", "enum": ["Hargreaves"]},
                    "unit": {"type": "string", "enum": ["mg", "mL"], "default": "mg"}}}}}]});
        let got = scanned_texts(&schema);
        let of = |t: &str| got.iter().find(|(x, _)| x == t).map(|(_, f)| f.clone()).unwrap();
        assert_eq!(of("Hargreaves"), [(Category::Name, "Hargreaves".to_string())], "{got:?}");
        for t in ["mg", "mL", "lookup", "Look up.", "string", "object"] {
            assert!(got.iter().filter(|(x, _)| x == t).all(|(_, f)| f.is_empty()), "{t}: {got:?}");
        }
        // Prose, ids and names are not labelled: a tool call's id keeps its own reading.
        let body = serde_json::json!({"model": "m", "messages": [
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_Kd81x", "type":
                "function", "function": {"name": "lookup", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_Kd81x", "content": "ok"}]});
        assert!(
            scanned_texts(&body).iter().all(|(_, f)| f.is_empty()),
            "{:?}",
            scanned_texts(&body)
        );
    }

    #[test]
    fn a_name_said_again_in_another_message_is_found() {
        let body = serde_json::json!({"model": "m", "messages": [
            {"role": "system", "content": "You are a careful clinical assistant."},
            {"role": "user", "content": "Patient Alan Smith, MRN 4471902, DOB 03/14/1962."},
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": "What dose for Smith? Alan asked too."},
            {"role": "user", "name": "jane_doe", "content": "Doe here; the smith forged iron."}]});
        let got = scanned_texts(&body);
        let of = |t: &str| got.iter().find(|(x, _)| x == t).map(|(_, f)| f.clone()).unwrap();
        let name = |v: &str| (Category::Name, v.to_string());
        assert_eq!(of("What dose for Smith? Alan asked too."), [name("Smith"), name("Alan")]);
        // A participant's name is a source too; a word in lower case that is a word is not.
        assert_eq!(of("Doe here; the smith forged iron."), [name("Doe")], "{got:?}");
        for t in ["You are a careful clinical assistant.", "Noted."] {
            assert!(of(t).is_empty(), "{t}: {got:?}");
        }
        // Counted where found: three names more than the first message's one.
        let (_, counts) = scanned_under(&body, &|_| Act::Tokenize);
        assert_eq!(counts.get(&Category::Name), Some(&5), "{counts:?}");
    }

    #[test]
    fn a_generic_id_counts_in_a_label_reading_only_for_a_persons_record() {
        let body = serde_json::json!({"model": "m", "safety_identifier": "5f2a9c",
            "messages": [{"role": "user", "content": "Summarize."}],
            "metadata": {"session_id": "48213", "patient_id": "12345"}});
        let got = scanned_texts(&body);
        let of = |t: &str| got.iter().find(|(x, _)| x == t).map(|(_, f)| f.clone()).unwrap();
        assert!(of("5f2a9c").is_empty() && of("48213").is_empty(), "{got:?}");
        assert_eq!(of("12345").len(), 1, "{got:?}");
        let scanner = phi::Scanner::new().unwrap();
        let schema = |key: &str| {
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "Hi."}],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {
                    "type": "object", "properties": {key: {"type": "integer",
                    "examples": [12345]}}}}}]})
        };
        assert!(phi_in_keys_and_numbers(&scanner, &schema("user_id")).unwrap().is_empty());
        assert!(phi_in_keys_and_numbers(&scanner, &schema("token_id")).unwrap().is_empty());
        let got = phi_in_keys_and_numbers(&scanner, &schema("patient_id")).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].1, "12345");
    }

    /// Counts the name look-ups of a real scanner.
    struct CountingNames {
        inner: phi::Scanner,
        parts: std::sync::atomic::AtomicUsize,
        repeats: std::sync::atomic::AtomicUsize,
    }

    impl crate::Detector for CountingNames {
        fn detect(&self, text: &str) -> Vec<Finding> {
            self.inner.scan(text)
        }
        fn name_parts(&self, text: &str, found: &[Finding]) -> Vec<phi::NamePart> {
            self.parts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.name_parts(text, found)
        }
        fn repeats(&self, text: &str, parts: &[phi::NamePart], found: &mut Vec<Finding>) -> bool {
            self.repeats.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.repeats(text, parts, found)
        }
    }

    #[test]
    fn names_said_again_cost_is_linear_in_the_texts() {
        // 300 parts naming one patient and one asking about him: each text's names are read
        // once, and only the texts that say a name of another are searched.
        let mut parts: Vec<Value> = (0..300)
            .map(|i| serde_json::json!(format!("Seen by Dr. Alan Smith, visit {i}.")))
            .collect();
        parts.push(serde_json::json!("What dose for Smith?"));
        parts.push(serde_json::json!("Nothing else."));
        let body = user(Value::Array(parts));
        let d = CountingNames {
            inner: phi::Scanner::new().unwrap(),
            parts: 0.into(),
            repeats: 0.into(),
        };
        let cache = crate::textcache::TextCache::new(0);
        let texts = texts(&body, Kind::Chat, &cache).unwrap();
        let scanned = scan_request(&d, &cache, &texts, &|_| Act::Tokenize, &[]).unwrap();
        let n = texts.len();
        assert!(d.parts.load(std::sync::atomic::Ordering::Relaxed) <= n);
        assert!(d.repeats.load(std::sync::atomic::Ordering::Relaxed) <= n);
        let asked = texts.iter().position(|t| t.text == "What dose for Smith?").unwrap();
        let found: Vec<&str> =
            scanned.slots[asked].1.iter().map(|f| &texts[asked].text[f.start..f.end]).collect();
        assert_eq!(found, ["Smith"]);
    }

    #[test]
    fn a_short_number_is_read_with_its_key() {
        let scanner = phi::Scanner::new().unwrap();
        let body = serde_json::json!({"model": "m", "max_tokens": 92, "temperature": 0.2,
            "messages": [{"role": "user", "content": "Summarize."}],
            "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {
                "type": "object", "properties": {
                    "age": {"type": "integer", "default": 92, "minimum": 0, "maximum": 120},
                    "zip": {"type": "integer", "enum": [94110]},
                    "page": {"type": "integer", "default": 1},
                    "dose_mg": {"type": "number", "default": 500},
                    "year": {"type": "integer", "default": 2024}}}}}],
            "metadata": {"age": 45}});
        let mut got = phi_in_keys_and_numbers(&scanner, &body).unwrap();
        got.sort();
        assert_eq!(
            got,
            [(Category::Location, "94110".to_string()), (Category::Age, "92".to_string())],
            "{got:?}"
        );
    }

    #[test]
    fn where_readings_disagree_the_strictest_handling_wins() {
        // "MRN 123-45-6789" reads as an MRN, the number alone as an SSN: with SSN blocked the
        // request must still see an SSN.
        let body = user(serde_json::json!(["MRN", "123-45-6789"]));
        let block_ssn = |c: Category| if c == Category::Ssn { Act::Block } else { Act::Tokenize };
        let (got, counts) = scanned_under(&body, &block_ssn);
        assert_eq!(got[1].1, [(Category::Ssn, "123-45-6789".to_string())], "{got:?}");
        assert!(counts.contains_key(&Category::Ssn), "{counts:?}");
    }

    #[test]
    fn an_escaped_text_is_scanned_as_it_reads_and_as_written() {
        let scanner = phi::Scanner::new().unwrap();
        // Decoded: the date behind `\/`. As written: a phone number the decoding would join
        // to the letter after it.
        let text = r"seen 03\/14\/2021; call 617-555-0199\u0041 today";
        let found = scan(&scanner, text).unwrap();
        let values: Vec<&str> = found.iter().map(|f| &text[f.start..f.end]).collect();
        assert!(values.iter().any(|v| v.contains(r"03\/14\/2021")), "{values:?}");
        assert!(values.iter().any(|v| v.contains("617-555-0199")), "{values:?}");
        // Nothing is read into or out of an escape: an SSN after `\t` stays an SSN (not a
        // `t536..` identifier), and escaped text is no identifier.
        let text = r"SSN:\t536-22-8741";
        let found = scan(&scanner, text).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].category, Category::Ssn);
        assert_eq!(&text[found[0].start..found[0].end], "536-22-8741");
        for harmless in [r"a\n12345 b", r"rows\t125000", r"2019\u20132020", r"pages 10\u201312"] {
            assert!(scan(&scanner, harmless).unwrap().is_empty(), "{harmless}");
        }
    }

    #[test]
    fn keys_and_numbers_in_logit_bias_and_floats() {
        let body = serde_json::json!({"messages": [],
            "logit_bias": {"50256": -100, "4471902": 5, "123": 4471902, "7": {"Jane Doe": 1}},
            "x": [4471902.0, 4.471902e6, 12.5]});
        let probes = keys_and_numbers(&body).unwrap();
        let got: Vec<&str> = probes.iter().map(|(t, _)| t.as_str()).collect();
        for want in ["4471902", "Jane Doe"] {
            assert!(got.contains(&want), "{want} not in {got:?}");
        }
        assert!(!got.iter().any(|g| *g == "50256" || *g == "12.5"), "{got:?}");
        let odd = serde_json::json!({"messages": [], "logit_bias": [{"Alan Smith": 4471902}]});
        let probes = keys_and_numbers(&odd).unwrap();
        let got: Vec<&str> = probes.iter().map(|(t, _)| t.as_str()).collect();
        assert!(got.contains(&"Alan Smith") && got.contains(&"4471902"), "{got:?}");
    }

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
