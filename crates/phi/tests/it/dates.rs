//! Dates and ages over 89: the forms Safe Harbor removes (every element of a date but the
//! year, ages over 89), and the numbers that look like them and stay (ratios, lab ranges,
//! fractions, scores, temperatures, distances, ages of 89 and under).

use crate::found;
use phi::Category;

#[track_caller]
fn assert_found(text: &str, cat: Category, value: &str) {
    let f = found(text);
    assert!(f.contains(&(cat, value)), "{text:?}: expected {cat:?} {value:?}, got {f:?}");
}

#[track_caller]
fn assert_none_of(text: &str, cats: &[Category]) {
    let f = found(text);
    assert!(f.iter().all(|(c, _)| !cats.contains(c)), "{text:?}: expected no {cats:?}, got {f:?}");
}

#[test]
fn a_numeric_date_uses_one_separator() {
    for text in [
        "ABG 7.28/58/62/26 on 2L",
        "WBC ref range 4.5-11.0 K/uL",
        "Ferritin goal 1.5-12 ng/mL",
        "Version 1.5-12.3 released",
    ] {
        assert_none_of(text, &[Category::Date]);
    }
    assert_found("Seen 03/14/2021.", Category::Date, "03/14/2021");
    assert_found("Seen 03-14-21.", Category::Date, "03-14-21");
    assert_found("Seen 14.03.2021.", Category::Date, "14.03.2021");
    assert_found("DOB 2021-03-14", Category::Date, "2021-03-14");
}

#[test]
fn an_iso_timestamp_is_a_date() {
    let t = r#"{"effectiveDateTime":"2021-03-04T10:22:31Z"}"#;
    assert_found(t, Category::Date, "2021-03-04T10:22:31Z");
    assert_found("Event log: 2021-03-04T10:22", Category::Date, "2021-03-04T10:22");
    assert_found(
        "at 2021-03-04T10:22:31.250+05:30.",
        Category::Date,
        "2021-03-04T10:22:31.250+05:30",
    );
}
