//! Identifiers after their cues as they are written in notes, forms, JSON, query strings and
//! logs: a `#`, `No.:` or a dash between cue and value, cues that end in `#`, and keys in
//! snake_case and camelCase; and a device's MAC address. Each value must be found with exactly
//! its span; codes, scores, times and small numbers after a `#` must stay clean.

use crate::{assert_clean, assert_found, found};
use phi::Category;

use Category::{Account, Date, Device, HealthPlan, Id, License, Location, Mrn};

#[test]
fn an_id_after_a_hash_no_or_a_dash_between_cue_and_value() {
    assert_found("MRN # 45821 admitted", Mrn, "45821");
    assert_found("MRN #: 45821", Mrn, "45821");
    assert_found("MRN No.: 45821", Mrn, "45821");
    assert_found("MRN No: 45821", Mrn, "45821");
    assert_found("MRN - 45821", Mrn, "45821");
    // An en dash, as a word processor writes it (read as `-`).
    assert_found("MRN \u{2013} 45821", Mrn, "45821");
    assert_found("Ref no. 44812", Id, "44812");
    assert_found("Passport no. 561234", Id, "561234");
}

#[test]
fn cues_that_end_in_a_hash() {
    assert_found("Employee badge #4471", Id, "4471");
    assert_found("Passport # 561234", Id, "561234");
    assert_found("Ref # 44812", Id, "44812");
    assert_found("Confirmation # ABX4412", Id, "ABX4412");
    assert_found("Employee # 44812", Id, "44812");
    assert_found("Rx #44812", Id, "44812");
}

#[test]
fn short_cues_and_a_credential_between_cue_and_number() {
    assert_found("UR number: 448120", Mrn, "448120");
    assert_found("Lic: 48213", License, "48213");
    assert_found("Nursing license RN 845512", License, "845512");
    assert_found("Driver's license CA D1234567", License, "D1234567");
}

/// Keys as cues. `_` and a capital inside a word are no word boundary for the cue pattern;
/// the same keys written with a space read the same.
#[test]
fn keys_of_json_query_strings_and_logs() {
    for sep in ["_", " "] {
        let t = format!(r#"{{"patient{sep}id": "45821", "dx": "CHF"}}"#);
        assert_found(&t, Mrn, "45821");
        let t = format!(r#"{{"member{sep}id": "55120", "policy{sep}number": "88213"}}"#);
        assert_found(&t, HealthPlan, "55120");
        assert_found(&t, HealthPlan, "88213");
        assert_found(&format!(r#"{{"account{sep}number": "55012"}}"#), Account, "55012");
        let t = format!("2026-01-02 INFO patient{sep}mrn=45821 loaded");
        assert_found(&t, Mrn, "45821");
        assert_found(&format!(r#"{{"mrn{sep}number": "448120"}}"#), Mrn, "448120");
        assert_found(&format!(r#"{{"postal{sep}code": "02139"}}"#), Location, "02139");
        assert_found(&format!(r#"{{"zip{sep}code":"02139"}}"#), Location, "02139");
    }
    assert_found(r#"{"mrn":"448120"}"#, Mrn, "448120");
    assert_found("mrn=45821", Mrn, "45821");
    assert_found(r#"{"postalCode": "02139"}"#, Location, "02139");
    assert_found(r#"{"memberId": "W55120"}"#, HealthPlan, "W55120");
    assert_found(r#"{"patientId":"45821"}"#, Mrn, "45821");
    assert_found(r#"{"patientMRN":"448120"}"#, Mrn, "448120");
    // JSON quoted once more, as a tool result inside a string.
    assert_found(r#"{\"patient_id\":\"45821\"}"#, Mrn, "45821");
}

#[test]
fn a_mac_address_is_a_device_identifier() {
    assert_found("MAC 00:1A:2B:3C:4D:5E", Device, "00:1A:2B:3C:4D:5E");
    assert_found("Bluetooth 3C:71:BF:AA:12:34 paired", Device, "3C:71:BF:AA:12:34");
    assert_found("device 00-1A-2B-3C-4D-5E seen", Device, "00-1A-2B-3C-4D-5E");
    assert_found("MAC address: 00:1A:2B:3C:4D:5E.", Device, "00:1A:2B:3C:4D:5E");
    assert_found("ac:de:48:00:11:22", Device, "ac:de:48:00:11:22");
}

#[test]
fn a_number_after_a_code_system_is_kept_but_not_an_id_or_a_date_beside_it() {
    assert_found("SNOMED CT 44054006, MRN 4471902", Mrn, "4471902");
    assert_found("NDC 0169-4132-12 given; record 4471902", Id, "4471902");
    assert_found("Seen 4.5.2021 and 04-05-2021", Date, "4.5.2021");
    assert_found("Seen 4.5.2021 and 04-05-2021", Date, "04-05-2021");
    assert_found("dated 3/14-2021", Date, "3/14-2021");
}

#[test]
fn codes_scores_times_and_small_numbers_stay_clean() {
    for t in [
        "SNOMED CT 44054006",
        "NDC 0169-4132-12",
        "PMID: 31415926",
        "Ref range 4.5-11.0",
        "WBC 4.5-11 K/uL",
        "Pain 10/10",
        "BP 120/80",
        "Room # 4",
        "Step # 2 of the protocol",
        "Order # 2 of 3",
        "ID - 3 days",
        "Rx 5 mg daily",
        "Rx #2",
        "Rx #100 tabs",
        "Lic: 500 mg",
        "Lic: pending",
        "at 10:22:31 today",
        // Separators that differ are no MAC address.
        "00:1A-2B:3C-4D:5E",
        r#"{"resource_type": "Observation", "value_quantity": 1.5}"#,
        r#"{"order_status": "active", "plan_of_care": "rest"}"#,
    ] {
        assert_clean(t);
    }
    // An IPv6 address stays one, also one of eight groups of two digits.
    let t = "addr fe80::1ff:fe23:4567:890a";
    assert_found(t, Category::Ip, "fe80::1ff:fe23:4567:890a");
    let t = "addr 00:1A:2B:3C:4D:5E:6F:70";
    assert_eq!(found(t), [(Category::Ip, "00:1A:2B:3C:4D:5E:6F:70")]);
}

/// Obstetric history, ventilator settings and codes after their system's name are no IDs.
#[test]
fn clinical_shorthand_and_named_codes_are_no_ids() {
    for t in [
        "G2P1001 at 28 weeks",
        "Pt is G3P2012 at 32w4d",
        "Vent AC 450x16, PEEP 8",
        "ICD-10-PCS 5A1955Z for ventilation",
        "UNII 9100L32L2N is metformin",
        "MedDRA PT 10012735 (diarrhoea)",
        "Ensembl ENSG00000141510 (TP53)",
    ] {
        assert_clean(t);
    }
    let f = found("Patient id X448120 seen");
    assert!(f.iter().any(|(_, v)| *v == "X448120"), "{f:?}");
}

/// A bare `id` after a system's word or a code system's is theirs ("request_id", "loinc_id");
/// a person's keys stay cues.
#[test]
fn system_and_code_ids_are_no_person_ids() {
    for t in [
        "INFO request_id=8f3a21 latency_ms=340",
        r#"{"span_id": "ff00aa11", "model_id": "llama-3-8b", "ticket_id": 4821}"#,
        r#"{"loinc_id": "2345-7", "rxnorm_id": "197361", "study_id": "NCT04280705"}"#,
        "ratio 10:20:30:40:50:60",
    ] {
        assert_clean(t);
    }
    assert_found(r#"{"patient_id": "45821"}"#, Category::Mrn, "45821");
}

/// A host with a path is an address whatever its top-level domain, and a known domain's path
/// keeps its underscores; a dose written with dots and a slash is none.
#[test]
fn hosts_with_paths_are_urls() {
    assert_found(
        "see portal.stjudes.example.de/patient/44812 now",
        Category::Url,
        "portal.stjudes.example.de/patient/44812",
    );
    assert_found("link bit.ly/3xYzAbC sent", Category::Url, "bit.ly/3xYzAbC");
    assert_found(
        "Instagram: instagram.com/marathon_mike_71 (patient)",
        Category::Url,
        "instagram.com/marathon_mike_71",
    );
    assert_clean("Rx: 5 mg.tab/day, BP 120/80, mL/kg/min");
}

/// Account handles with a digit, or after a network's name, are identifiers; "@ 5pm", "@home"
/// and dosing intervals are not.
#[test]
fn account_handles_are_identifiers() {
    assert_found("her twitter handle @grandmaBetty1931 posted", Category::Id, "@grandmaBetty1931");
    assert_found("IG @marathonmike", Category::Id, "@marathonmike");
    let f = found("meet @ 5pm, @home, @q6h, @q12hr; mail jo@x.com");
    assert!(f.iter().all(|(c, _)| *c == Category::Email), "{f:?}");
}
