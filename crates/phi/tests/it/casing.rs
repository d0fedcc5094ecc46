//! Text typed all in lower case, as clinicians type in a chat: a line with no capital where no
//! sentence starts reads as if written in capitals, so names and places are told by the word
//! lists and cues, not by case. Lines that hold a capital elsewhere read as before.

use crate::found;
use phi::Category;

#[track_caller]
fn assert_found(text: &str, want: &[(Category, &str)]) {
    let f = found(text);
    for w in want {
        assert!(f.contains(w), "{text:?}: expected {w:?}, got {f:?}");
    }
}

#[test]
fn names_and_places_typed_in_lower_case() {
    assert_found(
        "what's the dose of apixaban for john smith, 67, seen at mercy hospital in dayton?",
        &[(Category::Name, "john smith"), (Category::Location, "mercy hospital in dayton")],
    );
    assert_found(
        "pt alan okafor 67yo m w chest pain, mrn 4471902",
        &[(Category::Name, "alan okafor")],
    );
    assert_found("patient name: mary johnson", &[(Category::Name, "mary johnson")]);
    // Once the text shows it is typed without capitals (a sentence starting in lower case, or
    // "i"), a sentence that starts with a capital is read so too.
    assert_found(
        "Seen today. pt alan okafor 67yo m w chest pain",
        &[(Category::Name, "alan okafor")],
    );
    assert_found("i think robert brown needs a statin", &[(Category::Name, "robert brown")]);
}

#[test]
fn clinical_lower_case_stays_clean() {
    for text in [
        "best antibiotic for cap in a 70 yo with copd? allergic to penicillin. lives alone.",
        "summarize: 45 yo f with sle on hydroxychloroquine, recent flare, seen by rheum.",
        "will follow up in two weeks, mark the chart and bill the insurer.",
        // Sentence case: few capitals, but every sentence starts with one.
        "Called pharmacy to clarify the vancomycin dose.",
        "Disposition: will likely go home tomorrow if she continues to do well.",
        "Plan:\n- continue home meds, recheck labs in the morning\n- drew labs at 0500",
        "Patient will follow up with her primary care doctor next week.",
        // A weak facility head after an ordinary word, where case says nothing.
        "hi team, pt in bed 4 needs labs before the scan.",
    ] {
        let f = found(text);
        assert!(
            f.iter().all(|(c, _)| !matches!(c, Category::Name | Category::Location)),
            "{text:?}: expected no name or place, got {f:?}"
        );
    }
}

/// Records write names in capitals as LAST, FIRST after a field's cue, also on a line too short
/// to read as capitals; a vital sign after "PT" is none.
#[test]
fn last_comma_first_in_capitals_after_a_cue() {
    for (t, v) in [
        ("PATIENT: SMITH, JOHN", "SMITH, JOHN"),
        ("NAME: OKONKWO, ADAEZE", "OKONKWO, ADAEZE"),
        ("PATIENT: SMITH, JOHN SEEN TODAY FOR FOLLOW UP OF CHF", "SMITH, JOHN"),
        // Without the comma: a given name and a surname, in either order.
        ("Patient: SMITH JOHN", "SMITH JOHN"),
        ("PATIENT: MARY BROWN, 93, F", "MARY BROWN"),
        ("Patient,Age,Sex\nSMITH JOHN,93,M", "SMITH JOHN"),
    ] {
        let f = found(t);
        assert!(f.contains(&(Category::Name, v)), "{t}: {f:?}");
    }
    for t in [
        "PT STABLE, AFEBRILE",
        "PT WELL, EATING",
        "name,score\nWells,4.5\nPERC,0",
        "PATIENT: LONG STANDING HTN",
        "PATIENT: WILL CALL BACK",
        "PT: BILL SENT",
        "PT: NEW ONSET AF",
    ] {
        crate::assert_clean(t);
    }
}
