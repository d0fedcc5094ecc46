//! A name found by its cue is a name where the text, or another text, says it again without
//! one ("Patient Alan Smith ..." then "What dose for Smith?").

use crate::scanner;
use phi::{Category, Scanner};

fn names(text: &str) -> Vec<&str> {
    let found = scanner().scan(text);
    found.iter().filter(|f| f.category == Category::Name).map(|f| &text[f.start..f.end]).collect()
}

#[test]
fn a_surname_said_again_is_a_name() {
    let t = "Patient Alan Smith was seen today. Later, Smith said the pain eased. \
             What dose for Smith? Then Smith's wife agreed. SMITH denied pain.";
    assert_eq!(names(t), ["Alan Smith", "Smith", "Smith", "Smith", "SMITH"], "{t}");
    // A word no list knows is a name in lower case too; a given name alone as well.
    let t = "Spoke with Chidi Okafor at noon. okafor asked about discharge; Chidi agreed.";
    assert_eq!(names(t), ["Chidi Okafor", "okafor", "Chidi"], "{t}");
}

#[test]
fn a_common_word_is_a_name_only_where_capitals_mark_one() {
    // "Hope" and "Young" are words too: capitalised, even at a sentence's start, they name
    // (recall first); in lower case, or on a line in capitals, they say nothing.
    let t = "Mother Hope Young visited. Young asked about meds. We hope so; young adults \
             differ. Later Hope called.\nPLAN: FOLLOW UP IN CLINIC, HOPE FOR IMPROVEMENT";
    assert_eq!(names(t), ["Hope Young", "Young", "Hope"], "{t}");
    // Titles, initials and stop words of a name are never looked for again.
    let t = "Seen by Dr. J. Rivera. Dr follow-up later; J returned. The Rivera clinic called.";
    assert_eq!(names(t), ["Dr. J. Rivera", "Rivera"], "{t}");
}

#[test]
fn only_names_on_good_evidence_are_looked_for_again() {
    // A run of unknown capitalised words (a product's name) may read as a name, weakly: its
    // words are looked for again only capitalised, with the same low confidence.
    let t = "The team deployed Zorblax Quentara yesterday. Zorblax was fast, and zorblax logs \
             are clean.";
    let found = scanner().scan(t);
    let got: Vec<(&str, f32)> = found.iter().map(|f| (&t[f.start..f.end], f.score)).collect();
    assert_eq!(got, [("Zorblax Quentara", 0.6), ("Zorblax", 0.6)]);
    // Repeats are kept only where the scanner keeps their confidence, and come only from names
    // it keeps.
    let strict = Scanner::builder().min_score(0.8).build().unwrap();
    let t = "Patient Alan Smith was seen. What dose for Smith?";
    let found = strict.scan(t);
    let got: Vec<&str> = found.iter().map(|f| &t[f.start..f.end]).collect();
    assert_eq!(got, ["Alan Smith"]);
    assert!(strict.name_parts(t, &found).is_empty());
}

#[test]
fn nothing_is_repeated_without_a_name() {
    let t = "Smith fracture of the left radius. Smith was splinted.";
    let before = names(t);
    let parts = scanner().name_parts(t, &scanner().scan(t));
    assert_eq!(before.is_empty(), parts.is_empty(), "{before:?} {parts:?}");
}

#[test]
fn another_texts_names_are_found_again() {
    let first = "Patient Alan Smith, MRN 4471902.";
    let parts = scanner().name_parts(first, &scanner().scan(first));
    let words: Vec<&str> = parts.iter().map(|p| p.lower.as_str()).collect();
    assert_eq!(words, ["alan", "smith"]);
    let second = "What dose for Smith? The smith forged iron.";
    let mut found = scanner().scan(second);
    assert!(found.is_empty(), "{found:?}");
    assert!(scanner().repeats(second, &parts, &mut found));
    let got: Vec<&str> = found.iter().map(|f| &second[f.start..f.end]).collect();
    assert_eq!(got, ["Smith"]);
    assert!(found.iter().all(|f| f.category == Category::Name && f.recognizer == "name.repeat"));
    // Nothing to add: false, and nothing changes.
    let mut again = found.clone();
    assert!(!scanner().repeats(second, &parts, &mut again));
    assert_eq!(again, found);
    // Found spans stay sorted and apart around what is added.
    let third = "Call 617-555-0199 for Smith, then Alan.";
    let mut found = scanner().scan(third);
    assert!(scanner().repeats(third, &parts, &mut found));
    assert!(found.windows(2).all(|w| w[0].end <= w[1].start), "{found:?}");
}
