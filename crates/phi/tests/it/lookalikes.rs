//! Identifiers written with look-alike characters, as text pasted from word processors, web
//! pages and EHR screens has them (and as a model reads them): fullwidth and other scripts'
//! digits, no-break spaces and hyphens, en dashes, and invisible characters inside a value.
//! Each is found as its ASCII form would be, with a span over the original characters.

use crate::{assert_clean, assert_found, scanner};
use phi::Category;

#[test]
fn other_digits_read_as_digits() {
    assert_found("Patient SSN ２１９-０９-９９９９.", Category::Ssn, "２１９-０９-９９９９");
    assert_found("Patient SSN ٢١٩-٠٩-٩٩٩٩ on file", Category::Ssn, "٢١٩-٠٩-٩٩٩٩");
    assert_found("SSN २१९-०९-९९९९", Category::Ssn, "२१९-०९-९९९९");
    assert_found("MRN ４４７１９０２", Category::Mrn, "４４７１９０２");
    assert_found("DOB ０３/１４/１９６２", Category::Date, "０３/１４/１９６２");
}

#[test]
fn invisible_characters_inside_a_value_are_skipped() {
    assert_found("Patient SSN 21\u{200b}9-09-9999.", Category::Ssn, "21\u{200b}9-09-9999");
    assert_found("SSN 219\u{2060}-09-9999", Category::Ssn, "219\u{2060}-09-9999");
    assert_found("MRN 44\u{200b}71\u{200b}902", Category::Mrn, "44\u{200b}71\u{200b}902");
    assert_found(
        "email mary.okonkwo\u{ad}@example.com today",
        Category::Email,
        "mary.okonkwo\u{ad}@example.com",
    );
}

#[test]
fn unicode_spaces_and_dashes_read_as_ascii() {
    assert_found(
        "Phone: 617\u{2011}555\u{2011}0199",
        Category::Phone,
        "617\u{2011}555\u{2011}0199",
    );
    assert_found(
        "Phone: 415\u{2013}555\u{2013}0123",
        Category::Phone,
        "415\u{2013}555\u{2013}0123",
    );
    assert_found("Fax: 617\u{a0}555\u{a0}0199", Category::Fax, "617\u{a0}555\u{a0}0199");
    assert_found("DOB: 02\u{2011}03\u{2011}1961", Category::Date, "02\u{2011}03\u{2011}1961");
    assert_found("DOB 03\u{2013}14\u{2013}1962", Category::Date, "03\u{2013}14\u{2013}1962");
    assert_found(
        "Lives at 42\u{a0}Elm\u{a0}Street now",
        Category::Location,
        "42\u{a0}Elm\u{a0}Street",
    );
}

#[test]
fn a_name_said_again_in_a_text_that_folds() {
    // The repeat is found in the folded reading and mapped back.
    let text =
        "Patient Adaeze Okonkwo, MRN ４４７１９０２. Later\u{a0}Okonkwo said she felt better.";
    let f = scanner().scan(text);
    let names: Vec<&str> =
        f.iter().filter(|f| f.category == Category::Name).map(|f| &text[f.start..f.end]).collect();
    assert!(names.contains(&"Okonkwo"), "{names:?}");
    for f in &f {
        assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
    }
}

#[test]
fn html_character_references_read_as_their_characters() {
    assert_found("Patient SSN &#50;&#49;&#57;-09-9999.", Category::Ssn, "&#50;&#49;&#57;-09-9999");
    assert_found("Phone: 617&nbsp;555&#x2011;0199", Category::Phone, "617&nbsp;555&#x2011;0199");
    assert_found("Call 415&#45;555&#45;0123 today", Category::Phone, "415&#45;555&#45;0123");
}

/// Words joined by `_` or by dots in a user name, and e-mail addresses written to dodge a
/// reader, are read as their parts and as the address.
#[test]
fn joined_words_and_spelled_out_addresses_are_read_apart() {
    assert_found("Attach scan SSN_536-22-8741 here", Category::Ssn, "536-22-8741");
    assert_found("DOB_03/14/1962 on file", Category::Date, "03/14/1962");
    assert_found("call_617-555-0199 failed", Category::Phone, "617-555-0199");
    assert_found("Chart for Maria_Garcia today", Category::Name, "Maria_Garcia");
    assert_found("login maria.garcia, please reset", Category::Name, "maria.garcia");
    assert_found("Patient Adaeze\u{0}Okonkwo seen", Category::Name, "Adaeze\u{0}Okonkwo");
    assert_found("Email: jdoe at gmail dot com", Category::Email, "jdoe at gmail dot com");
    assert_found("write to bob_t1962 (at) aol.com", Category::Email, "bob_t1962 (at) aol.com");
    assert_found("j.doe[at]yahoo[dot]com", Category::Email, "j.doe[at]yahoo[dot]com");
    // Placeholders, domains, addresses and abbreviations keep their joins.
    for t in
        ["[NAME_1] at [DATE_2]", "records at mercy.org", "e.g. b.i.d. dosing", "on DOT at home"]
    {
        let f = scanner().scan(t);
        assert!(f.iter().all(|f| f.category == Category::Url), "{t}: {f:?}");
    }
}

/// Titles of guidelines and references, and eponyms before `pupil`, are no places or people.
#[test]
fn references_and_guidelines_are_no_places_or_people() {
    for t in [
        "Per the ADA Standards of Care, metformin first.",
        "See the AHA Scientific Statement and KDIGO Clinical Practice guideline.",
        "Per Lexicomp, no interaction; Micromedex agrees.",
        "Left afferent defect (Gunn pupil).",
        // Lab tests named in a result's JSON.
        r#"{"name": "Creatinine", "value": 1.2}, {"name": "Troponin"}, {"name": "Lipase"}"#,
    ] {
        assert_clean(t);
    }
}

/// Found by review: a name right before an eponym head in another phrase is still a name, a
/// dotted handle with an initial is read whole, and code and file names keep their joins.
#[test]
fn names_beside_heads_handles_and_code() {
    assert_found("Patient: John Smith\nPupil: 3 mm reactive", Category::Name, "John Smith");
    assert_found("Patient Smith; pupil 4 mm", Category::Name, "Smith");
    assert_found("login alan.b.okafor", Category::Name, "alan.b.okafor");
    for t in ["crcl = cockcroft_gault(age, wt, scr)", "df = pd.read_csv('labs.csv')"] {
        assert_clean(t);
    }
}

#[test]
fn names_with_a_middle_initial_whatever_their_origin() {
    for (text, name) in [
        ("Juliusz A Kwiatkowski lives at 28919 Main St.", "Juliusz A Kwiatkowski"),
        ("Nikolaj N Møller will be talking in clinic.", "Nikolaj N Møller"),
        ("Referred by Alvir D. Pušaver, and the following", "Alvir D. Pušaver"),
        ("Hanne I. Kreutzmann from the clinic called.", "Hanne I. Kreutzmann"),
        ("Kate M Begum was seen today.", "Kate M Begum"),
    ] {
        crate::assert_found(text, Category::Name, name);
    }
    // Lab and genetics names written with a letter in the middle are no people.
    for text in [
        "Apolipoprotein E Genotype pending.",
        "Vitamin D Deficiency noted. Factor V Leiden mutation. Troponin I Level normal.",
        "Hepatitis B Surface antigen negative. Influenza A Virus detected. Protein C Deficiency.",
        "Coenzyme Q Supplement started. Cohort A Patients improved. Mobitz I Block.",
        "Yesterday I Went home.",
    ] {
        crate::assert_none_of(text, &[Category::Name]);
    }
}
