//! Person names in ordinary prose that no US list knows: after conversational cues, spelled
//! with letters English never uses, and as a speaker's label. Clinical words, eponyms and field
//! names beside them stay clean.

use crate::{assert_clean, assert_found, assert_none_of};
use phi::Category;

#[test]
fn names_after_conversational_cues() {
    let n = Category::Name;
    assert_found("What's your name? Sölvi Salómonsson", n, "Sölvi Salómonsson");
    assert_found("What's your last name? Turgeon", n, "Turgeon");
    assert_found("Everyone calls me Csanád at home.", n, "Csanád");
    assert_found("She wants to remove her kid Tadzio from the will.", n, "Tadzio");
    assert_found("She named him Timmie after his grandfather.", n, "Timmie");
    assert_found("Hi Vinicio, I'm contacting you about the results.", n, "Vinicio");
    assert_found("Dear Oluwaseun, your labs are back.", n, "Oluwaseun");
}

#[test]
fn names_after_quoted_speech() {
    let n = Category::Name;
    assert_found("\"We are moving in that direction,\" says Bergqvist.", n, "Bergqvist");
    assert_found("\"It hurts again!\" said Ifeoma to the nurse.", n, "Ifeoma");
    assert_found("I'm so tired! said Maslin to his wife.", n, "Maslin");
    assert_found("\"She missed her dose,\" says Mrs. Okafor.", n, "Mrs. Okafor");
}

#[test]
fn words_spelled_with_diacritics_are_not_the_english_words_they_fold_to() {
    let n = Category::Name;
    // "Ján" is no month "Jan", "Bašić" no "basic".
    assert_found("My name is Ján M. Novák but everyone calls me Ján.", n, "Ján M. Novák");
    assert_found("My name is Ján M. Novák but everyone calls me Ján.", n, "Ján");
    assert_found("Songwriter Samantha Bašić visited the clinic.", n, "Samantha Bašić");
}

#[test]
fn names_with_diacritics_at_a_sentences_start() {
    let n = Category::Name;
    assert_found("Esat Jeknić called the clinic today.", n, "Esat Jeknić");
    assert_found("Follow-up done. Wisława Szczepańska called back.", n, "Wisława Szczepańska");
    assert_found("Julcsa Kárpáthy\n50668 Main St", n, "Julcsa Kárpáthy");
    // The contraction before a name is no part of it.
    assert_found("I'm Bojka Žilih, originally from Ohio.", n, "Bojka Žilih");
}

#[test]
fn speaker_labels_with_diacritics() {
    let n = Category::Name;
    assert_found("Koppány: \"Who are you?\"", n, "Koppány");
    assert_found("Nurse: Hello.\nHalldór: What a day.", n, "Halldór");
}

#[test]
fn clinical_text_beside_these_rules_stays_clean() {
    for text in [
        "Sjögren syndrome suspected. Ménière disease, follow up.",
        "Guillain-Barré Syndrome workup. Henoch-Schönlein Purpura resolved.",
        "Chédiak-Higashi Syndrome. Hürthle Cell carcinoma. Behçet Disease flare.",
        "Löffler Syndrome. Bárány Test negative. Schönlein Purpura.",
        "Plan: Continue Lasix.\nNeuro: Intact.\nDispo: Home.",
        "\"Pain is 5/10,\" said Patient. \"Better,\" says Nursing.",
        "Hi Team, labs attached. Dear Colleague, thank you. Hello Doctor.",
        // Found by CI: a greeting's name follows it with a space, not after a stop.
        "Noted: Hi. Re: the labs you sent.",
        "Call me Monday about the Lasix dose. She called me Friday.",
        "Naïve T cells. Café au lait spots.",
        "Sjögren Syndrome Foundation. Ménière Disease. Behçet Uveitis.",
    ] {
        assert_clean(text);
    }
    assert_none_of("What's your name? Unable to answer.", &[Category::Name]);
    assert_clean("\"Stable,\" said Lasix.");
}

#[test]
fn a_subject_that_lives_somewhere_is_a_person() {
    let n = Category::Name;
    assert_found("Timotea lives on Via dei Fiori 12.", n, "Timotea");
    assert_found("Tomomi Nishiyama lives at 86036 Rua Augusta.", n, "Tomomi Nishiyama");
    assert_found("Thriller. Directed By:    Arquímedes Ballesteros", n, "Arquímedes Ballesteros");
    for text in [
        "Patient lives at home with her husband.",
        "Lives alone. Neuro intact. Pt lives in a group home.",
        "Take as directed by physician.",
    ] {
        assert_none_of(text, &[n]);
    }
}
