//! Cues read across the layouts of labelled fields: a tab, a line break, a run of spaces after
//! a `:`, and JSON keys (tool results, FHIR resources), as well as CSV rows. Each value named
//! here must be found with exactly its own span, and the harmless layouts must stay clean.

use crate::{assert_clean, assert_found, assert_none_of};
use phi::Category;

#[test]
fn a_name_after_a_label_and_a_tab() {
    assert_found("Last name:\tDoe", Category::Name, "Doe");
    assert_found("Name\tHargreaves\tDOB", Category::Name, "Hargreaves");
}

#[test]
fn a_name_on_the_line_after_its_label() {
    assert_found("Last name:\nDoe", Category::Name, "Doe");
    assert_found("Last name:\r\n    Doe\r\n", Category::Name, "Doe");
}

#[test]
fn a_name_after_a_label_and_a_run_of_spaces() {
    assert_found("Name:     Doe", Category::Name, "Doe");
}

#[test]
fn an_age_on_the_line_after_its_label() {
    assert_found("Age:\n92", Category::Age, "92");
    assert_found("Age:\t\t92", Category::Age, "92");
}

#[test]
fn a_tool_result_as_json() {
    let t = r#"{"first_name":"Jane","last_name":"Doe","age":92}"#;
    assert_found(t, Category::Name, "Jane");
    assert_found(t, Category::Name, "Doe");
    assert_found(t, Category::Age, "92");
    let t = r#"{"firstName": "Jane", "lastName": "Doe", "age": "92"}"#;
    assert_found(t, Category::Name, "Doe");
    assert_found(t, Category::Age, "92");
}

#[test]
fn a_fhir_human_name() {
    let t = r#"{"given":"Emeka","family":"Hargreaves"}"#;
    assert_found(t, Category::Name, "Emeka");
    assert_found(t, Category::Name, "Hargreaves");
    let t = r#"{"name":[{"family": "Doe", "given": ["Emeka"]}]}"#;
    assert_found(t, Category::Name, "Doe");
    assert_found(t, Category::Name, "Emeka");
}

#[test]
fn field_names_as_cues() {
    assert_found("Surname: Doe", Category::Name, "Doe");
    assert_found("Family: Hargreaves", Category::Name, "Hargreaves");
    assert_found("patient_name=Doe", Category::Name, "Doe");
    // JSON quoted once more, as a tool result inside a string.
    assert_found(r#"{\"family_name\":\"Doe\"}"#, Category::Name, "Doe");
}

#[test]
fn identifier_cues_read_json_keys_and_labels_on_their_own_line() {
    assert_found(r#"{"mrn": "SF-998877"}"#, Category::Mrn, "SF-998877");
    assert_found("Phone:\n555-1234", Category::Phone, "555-1234");
    assert_found("ZIP:\n02139", Category::Location, "02139");
}

#[test]
fn a_csv_row() {
    let t = "Jane,Doe,92\n";
    assert_found(t, Category::Name, "Jane");
    assert_found(t, Category::Name, "Doe");
    // Surname first, quoted cells, tab-separated; a common surname that is also an eponym.
    assert_found("Doe,Jane,F", Category::Name, "Doe");
    assert_found(r#""Jane","Doe","92""#, Category::Name, "Doe");
    assert_found("Jane\tDoe\t92", Category::Name, "Doe");
    assert_found("Smith,John,M", Category::Name, "Smith");
}

/// A cue word as an ordinary word and a tab or line break after a label are no evidence.
#[test]
fn harmless_layouts_stay_clean() {
    for t in [
        "Plan:\tcontinue metformin",
        "Plan:\tContinue metformin",
        "Dose:\n500 mg",
        "Dose:\t500 mg\nRoute:\tPO",
        "Name:\nMetformin 500 mg",
        "Family:\tSupportive, at bedside",
        "given Lasix 40 mg IV",
        "Last:\tMonday",
        "First:\tCheck labs",
        "Father\nDiabetes",
        "Weight:\n92 kg",
        r#"{"name":"Blood Pressure","value":92,"unit":"mmHg"}"#,
        r#"{"name":"Search","description":"Find a record"}"#,
        "Apples,Brown,Green\n",
        "Given:\tTylenol 650 mg",
        "Mother:\t\tAlive and well\nFather:\t\tDeceased, MI at 60",
        "Age:\n45",
        r#"{"name":"search_patients","arguments":{"query":"diabetes"}}"#,
        r#"{"family":"Supportive","given":"Lasix"}"#,
    ] {
        assert_none_of(t, &[Category::Name, Category::Age]);
    }
    // A label two lines up is no cue.
    assert_none_of("Age:\n\n92 mg", &[Category::Age]);
    assert_none_of("Last name:\n\nDoe", &[Category::Name]);
    assert_none_of("Phone:\n\n555-1234", &[Category::Phone]);
    assert_none_of("Phone\n555-1234", &[Category::Phone]);
}

/// A table's cells are read under their column's header: an MRN, a ZIP or an age says what it
/// is only there. Tables of words, doses and lab values stay as they are.
#[test]
fn table_cells_are_read_under_their_headers() {
    let t = "MRN,DOB,Sex,ZIP\n448120,1931-02-03,F,02139\n";
    assert_found(t, Category::Mrn, "448120");
    assert_found(t, Category::Location, "02139");
    let t = "MRN\tAge\tZIP\n448120\t93\t02139";
    assert_found(t, Category::Age, "93");
    assert_found("age,sex,dx\n45,F,COPD\n93,M,CHF", Category::Age, "93");
    assert_found("Name | Member ID\nJane Doe | \"XJH-447120\"", Category::HealthPlan, "XJH-447120");
    // Markdown tables, with outer pipes and an alignment row; a table of names and words.
    assert_found("| Name | Age |\n|---|--:|\n| Ethel Smith | 93 |", Category::Age, "93");
    assert_found("| MRN | Procedure |\n| 448120 | CABG |", Category::Mrn, "448120");
    assert_found("Name,Dx\nSmith,sepsis\nJones,pneumonia", Category::Name, "Jones");
    assert_found("Patient Name,Test,Result\nOkonkwo,Lipase,320", Category::Name, "Okonkwo");
    for t in [
        "Test Name,Result\nLipase,320\nAmylase,150",
        "NDC,Drug,Qty\n0093-7146-56,Atorvastatin,90",
        "name,dose,freq\nTylenol,650 mg,q6h\nColace,100 mg,bid",
        "Name,Dose\nPiperacillin,4.5 g",
        "Drug,Dose,Freq\nmetformin,500 mg,BID\nlisinopril,10 mg,daily",
        "Test|Value|Units\nNa|135|mmol/L\nK|4.1|mmol/L",
        "Allergies, none\nSmoking, never",
        "age,sex,dx\n45,F,COPD",
    ] {
        assert_clean(t);
    }
}
