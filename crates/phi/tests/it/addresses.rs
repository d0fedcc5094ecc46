//! Addresses and telephone numbers as they are written outside the one US street-suffix shape:
//! a city line's unlisted city and random ZIP, military addresses, unit lines, streets of other
//! countries, numbers in groups after a phone cue, and extensions. Each must be found with
//! exactly its span; clinical numbers and look-alike words must stay clean.

use crate::found;
use phi::Category;

#[track_caller]
fn assert_found(text: &str, want: &[(Category, &str)]) {
    let f = found(text);
    for w in want {
        assert!(f.contains(w), "{text:?}: expected {w:?}, got {f:?}");
    }
}

use Category::{Fax, Location, Phone};

#[test]
fn a_city_line_with_an_unlisted_city_and_zip() {
    assert_found(
        "Our offices are at 6556 106 Rue Ettatawer Apt. 409\nSOUTH NEWDEGATE, WA 16469",
        // The building's number before the street is part of the address.
        &[(Location, "6556 106 Rue Ettatawer Apt. 409"), (Location, "SOUTH NEWDEGATE, WA 16469")],
    );
    // The city's words stop at a lower-case word, a comma or the line's start.
    assert_found(
        "Mail it to him in Quarryville Heights, PA 17566.",
        &[(Location, "Quarryville Heights, PA 17566")],
    );
}

#[test]
fn military_addresses() {
    assert_found(
        "my new address is PSC 6293, Box 8158\nAPO AP 04336",
        &[(Location, "PSC 6293, Box 8158"), (Location, "APO AP 04336")],
    );
    assert_found("sent to uscgc healy\nfpo ae 44941?", &[(Location, "uscgc healy\nfpo ae 44941")]);
    // Adjacent parts of one address are one place.
    assert_found(
        "Unit 2050 Box 4190, DPO AE 09498",
        &[(Location, "Unit 2050 Box 4190, DPO AE 09498")],
    );
}

#[test]
fn unit_lines_and_streets_of_other_countries() {
    for (text, want) in [
        ("I live at Søndergade 52, Apt. 656.", "Søndergade 52, Apt. 656"),
        ("She moved to Augsburger Strasse 12 last year.", "Augsburger Strasse 12"),
        ("Mail goes to Rua do Arenque 1634 now.", "Rua do Arenque 1634"),
        ("He lives at ul. Północna 73 with his son.", "ul. Północna 73"),
        ("Their flat is at 12 rue de la Paix in town.", "12 rue de la Paix"),
        ("Write to Kiannonkatu 98 please.", "Kiannonkatu 98"),
    ] {
        assert_found(text, &[(Location, want)]);
    }
    assert_found("Suite 824", &[(Location, "Suite 824")]);
    // What follows the number may be any text (a char boundary is not a byte).
    assert_found("Apt 4 ÉÉÉ", &[(Location, "Apt 4")]);
}

#[test]
fn phone_numbers_in_groups_after_a_cue() {
    assert_found("Phone: 0490 75 40 81", &[(Phone, "0490 75 40 81")]);
    assert_found("Can someone call me on 450 0840?", &[(Phone, "450 0840")]);
    assert_found("Personal Info: Phone: (08) 8747 6301  E-mail", &[(Phone, "(08) 8747 6301")]);
    assert_found(
        "Mobile: 0688 843 79 56 Fax: +46 (0)8 928 571 38",
        &[(Phone, "0688 843 79 56"), (Fax, "+46 (0)8 928 571 38")],
    );
    // Short groups, as many countries write their numbers, right after a word that means a
    // telephone (elsewhere short groups in a row are readings: see below).
    assert_found("Name: Emilie Broberg Phone: 72 128 827", &[(Phone, "72 128 827")]);
    assert_found("Mobile: 723 813 266 Desk: +1-903-140-4567", &[(Phone, "723 813 266")]);
    assert_found("Tel. (72) 754-186", &[(Phone, "(72) 754-186")]);
}

#[test]
fn extensions_written_against_the_number() {
    assert_found(
        "Desk: (898)666-3621x0135 Fax: 259.735.7502x459 or +1-903-140-4508x769",
        &[(Phone, "(898)666-3621x0135"), (Fax, "259.735.7502x459"), (Phone, "+1-903-140-4508x769")],
    );
}

#[test]
fn clinical_numbers_and_look_alikes_stay_clean() {
    // Billing lines whose code is a real ZIP keep the code's finding, but not their words.
    let f = found("Physician Assistant, PA 99213; Head Without Contrast, CT 70450");
    assert!(!f.iter().any(|(_, v)| v.contains("Assistant") || v.contains("Contrast")), "{f:?}");
    for text in [
        "Called pt, BP 140 90, HR 72, Temp 98.6, resp 18, sat 97.",
        "Call back on 2012-10-01 with the results.",
        "Phone follow-up: labs 3.5 4.2 140 102 24.",
        "Fire Brigade 5 arrived; the suite of tests ran.",
        "Total Knee, OR 27447; Tumor Markers, CA 19999 units",
        "Number 457-55-5462 was written on the chart.",
        "Via IV push 2 mg, then home 3 times weekly.",
        "Home glucose 110 128 145 132 98 over 5 days.",
        "Home readings: 132 84 128 80 140 90",
        "Phone visit. BP 132 84 128 80 140 90",
        "Phone follow-up: 110 128 145 132 98 over 5 days.",
        // Found by review: readings after a telephone's word that is no label.
        "Phone visit 110 70 88 on home cuff. Tel visit 140 90 72. Tel: 128 78 64",
        "Phone: 98 112 140 sugars this week. Phone f/u 152 96 80 home readings",
        "Call schedule: 0700 1900. Contact hours 0900 1700.",
        "Cell counts 1200 1500 1800",
        "Home weight 180 182 185 lbs",
        "Endoscopy Suite 3 at 0900, then IR Suite 2; hybrid suite 1 after.",
        "pt has an apt 3 weeks from now; f/u apt 6 wks with pcp",
        "CSF WBC 3 /uL RBC 1200 /uL. CD4 350 cells/uL VL 20. Give 500 uL IV push.",
        "Irrigate 2x daily with saline. Navigate 2 steps with a walker.",
    ] {
        let f = found(text);
        assert!(
            f.iter().all(|(c, _)| !matches!(c, Location | Phone | Fax)),
            "{text:?}: expected no address or phone, got {f:?}"
        );
    }
}

/// Coordinates in decimal degrees are a place smaller than a state: with hemisphere letters,
/// or after a cue; lab values with three decimals are not.
#[test]
fn coordinates_are_places() {
    for (t, v) in [
        ("Lat/long 42.3601, -71.0589 from the ambulance", "42.3601, -71.0589"),
        ("GPS 42.3601,-71.0589", "42.3601,-71.0589"),
        ("found at 40.7128 N, 74.0060 W today", "40.7128 N, 74.0060 W"),
        ("at 42.3601°N 71.0589°W", "42.3601°N 71.0589°W"),
    ] {
        let f = found(t);
        assert!(f.contains(&(Category::Location, v)), "{t}: {f:?}");
    }
    for t in ["Na 135.000, K 4.100", "values 42.3601, -71.0589 in table", "pH 7.401, 7.352"] {
        crate::assert_clean(t);
    }
}

/// A street typed in lower case after "lives at" or "address", and the city line after it up
/// to a real ZIP; a dose after "at" is none.
#[test]
fn streets_typed_in_lower_case() {
    let t = "she lives at 1180 oak ave apt 3b peoria il 61602";
    let f = found(t);
    assert!(f.contains(&(Category::Location, "1180 oak ave apt 3b peoria il 61602")), "{f:?}");
    let f = found("address 5 maple court, newton ma 02458");
    assert!(f.contains(&(Category::Location, "5 maple court, newton ma 02458")), "{f:?}");
    for t in ["give it at 5 mg po daily", "lives at home with 2 dogs"] {
        crate::assert_clean(t);
    }
}

/// A postal code after a word that names it, in the shapes other countries write ("394 13",
/// "53-320", "7412 SL", "SW1A 1AA"), and short ones.
#[test]
fn postal_codes_after_a_cue() {
    for (text, want) in [
        ("ZIP: 394 13", "394 13"),
        ("my zip code is 610", "610"),
        ("My zip code is 2371.", "2371"),
        ("Postal code: 53-320", "53-320"),
        ("postcode 7412 SL", "7412 SL"),
        ("Post code SW1A 1AA", "SW1A 1AA"),
    ] {
        assert_found(text, &[(Location, want)]);
    }
    for text in ["Zip up the jacket, 2 layers.", "post op day 3, code status full", "zip 2 mg"] {
        crate::assert_clean(text);
    }
}

/// After a street or a unit line, an address's other parts as their own parts: the city and
/// the postal code, across line breaks, commas or runs of spaces; the building number before
/// the street. Countries and regions are passed over.
#[test]
fn address_blocks_after_a_street() {
    let f = found("Maureen Thibault  41086 Kiannonkatu 98  Suite 464  OULU   Finland 80896");
    for want in ["41086", "Kiannonkatu 98", "Suite 464", "OULU", "80896"] {
        assert!(f.iter().any(|(c, v)| *c == Location && v.contains(want)), "{want}: {f:?}");
    }
    assert!(!f.iter().any(|(_, v)| v.contains("Finland")), "{f:?}");
    let f = found("The address is Søndergade 52\nApt. 656\nBrønderslev\nDenmark 35018");
    for want in ["Apt. 656", "Brønderslev", "35018"] {
        assert!(f.iter().any(|(c, v)| *c == Location && v.contains(want)), "{want}: {f:?}");
    }
    assert_found(
        "Write to 42 Elm Street, Tujetsch 7188",
        &[(Location, "42 Elm Street, Tujetsch 7188")],
    );
    // A word the vocabulary knows is no city without a postal code or a country after it.
    for text in [
        "Lives at 42 Elm Street\nHistory: diabetes",
        "Suite 824\nFollow up in clinic",
        "Seen at 42 Elm Street, Plan  continue",
        "Endoscopy Suite 3\nBiopsy 120 mg",
        // A dose is no postal code: the drug on the next line is no city.
        "12 Oak Street\nMetformin 500 mg daily",
    ] {
        let f = found(text);
        assert!(
            !f.iter().any(|(_, v)| ["History", "Follow", "Plan", "Biopsy", "120", "Metformin"]
                .iter()
                .any(|w| v.contains(w))),
            "{text:?}: {f:?}"
        );
    }
}

/// Found by review: what follows an address line in a note is no city unless a postal code, a
/// country or a region follows it, and a short number is a postal code only after a city, a
/// country or a region.
#[test]
fn lines_after_an_address_stay_clinical() {
    for (text, word) in [
        ("Address: 12 Oak St\nSodium 138", "Sodium"),
        ("Address: 12 Oak St\nKeppra 500", "Keppra"),
        ("12 Oak Street\nMetformin 500\nLisinopril 10", "Metformin"),
        ("Address: 12 Oak St, Sodium 138, Potassium 4", "Sodium"),
        ("Address: 12 Oak St\nMRN\n123456", "MRN"),
        ("Address: 12 Oak St\nEnglish", "English"),
        ("Address: 12 Oak St\nRoom 412", "Room"),
        ("Address: 12 Oak St\nCOVID 2021", "COVID"),
        ("address,city,zip,glucose\n12 Oak St,Salem,01970,110", "110"),
    ] {
        let f = found(text);
        assert!(
            !f.iter().any(|(c, v)| *c == Location && v.contains(word)),
            "{text:?}: {word} in {f:?}"
        );
    }
    // Parts apart by two spaces: the city and the postal code after the unit.
    assert_found(
        "Addr 4 Hill St  Apt 9  Newton  02458",
        &[(Location, "Newton"), (Location, "02458")],
    );
}
