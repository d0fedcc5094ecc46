//! Runs the built binary on temporary files.

use std::io::Write;
use std::process::{Output, Stdio};

use crate::run::command;

fn phigate(args: &[&str], stdin: Option<&str>) -> Output {
    crate::run::run(args, &[], stdin)
}

fn write(dir: &tempfile::TempDir, name: &str, content: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, content).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn scan_prints_the_exact_contract_in_code_points() {
    let dir = tempfile::tempdir().unwrap();
    let text = "Zoë était là. Seen by Dr. Alan Smith on 03/14/2021, MRN: 4471902.";
    let f = write(
        &dir,
        "n.jsonl",
        &format!("{}\n", serde_json::json!({"id": 7, "text": text, "other": 1})),
    );
    let out = phigate(&["scan", &f], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["id", "start", "end", "category", "subtype", "score"]);
        assert_eq!(v["id"], 7);
        let (s, e) = (v["start"].as_u64().unwrap() as usize, v["end"].as_u64().unwrap() as usize);
        found.push((
            v["category"].as_str().unwrap().to_string(),
            chars[s..e].iter().collect::<String>(),
        ));
    }
    assert!(found.contains(&("NAME".into(), "Dr. Alan Smith".into())), "{found:?}");
    assert!(found.contains(&("DATE".into(), "03/14/2021".into())), "{found:?}");
    assert!(found.contains(&("MRN".into(), "4471902".into())), "{found:?}");
}

#[test]
fn scan_reads_stdin_and_text_files() {
    let out = phigate(&["scan"], Some("{\"id\":\"a\",\"text\":\"Call 614-555-0142.\"}\n"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"category\":\"PHONE\""));
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "note.txt", "Email jo@example.org today.");
    let out = phigate(&["scan", &f], None);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("\"category\":\"EMAIL\"") && s.contains("note.txt"), "{s}");
}

#[test]
fn malformed_line_names_file_and_line_not_content() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "bad.jsonl",
        "{\"id\":1,\"text\":\"ok\"}\n{\"id\":2,\"text\":\"Secret Name 219-45-6712\"\n",
    );
    let out = phigate(&["scan", &f], None);
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.jsonl:2:"), "{err}");
    assert!(!err.contains("Secret") && !err.contains("219-45"), "the error leaked content: {err}");

    let f = write(&dir, "missing.jsonl", "{\"id\":1,\"body\":\"x\"}\n");
    let out = phigate(&["scan", &f], None);
    assert_eq!(out.status.code(), Some(65));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing.jsonl:1: field \"text\" is missing")
    );

    let p = dir.path().join("utf8.jsonl");
    std::fs::write(&p, b"{\"id\":1,\"text\":\"\xff\"}\n").unwrap();
    let out = phigate(&["scan", p.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid UTF-8"));
}

#[test]
fn skip_invalid_reports_counts_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "mixed.jsonl", "{\"id\":1,\"text\":\"SSN 219-45-6712\"}\nnot json\n{\"id\":3,\"text\":\"SSN 219-45-6713\"}\n");
    let out = phigate(&["scan", &f, "--skip-invalid"], None);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mixed.jsonl:2:") && err.contains("1 invalid records skipped"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
}

#[test]
fn deid_jsonl_keeps_other_fields_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "n.jsonl",
        "{\"z\":1,\"text\":\"Seen by Dr. Alan Smith on 03/14/2021.\",\"a\":\"keep\"}\n",
    );
    let out = phigate(&["deid", &f, "--mode", "redact"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"z\":1,\"text\":\"Seen by [NAME] on [DATE].\",\"a\":\"keep\"}\n"
    );
    // What was copied as it is, by name and count, is told: never its value, nor a key that
    // is not a plain word.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not de-identified (records): a (1), z (1);"), "{err}");
    let f = write(&dir, "k.jsonl", "{\"text\":\"hi\",\"Alan Smith\":\"x\",\"e\":\"\"}\n");
    let out = phigate(&["deid", &f, "--mode", "redact"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(records): (fields of other names) (1);") && !err.contains("Alan"),
        "{err}"
    );
    // A plain word that reads as a name is not printed either.
    let f = write(&dir, "n.jsonl", "{\"text\":\"hi\",\"Alan-Smith\":\"x\",\"mrn\":\"4\"}\n");
    let out = phigate(&["deid", &f, "--mode", "redact"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(fields of other names) (1), mrn (1);") && !err.contains("Smith"),
        "{err}"
    );
    let f = write(&dir, "all.jsonl", "{\"text\":\"hi\",\"e\":\"\"}\n");
    let out = phigate(&["deid", &f, "--mode", "redact"], None);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
}

/// Fields not rewritten are copied byte for byte: a number parsed and written again would
/// change (`1.50` as `1.5`, `1e2` as `100.0`, an integer past 64 bits as a float).
#[test]
fn deid_jsonl_copies_other_fields_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let line = "{\"id\": 12345678901234567890123, \"text\":\"Seen by Dr. Alan Smith.\",\
                \"score\":1.50,\"n\":{\"a\":1e2,\"b\":[1.0, \"\\u00e9\"]}}\n";
    let f = write(&dir, "b.jsonl", line);
    let out = phigate(&["deid", &f, "--mode", "redact"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"id\":12345678901234567890123,\"text\":\"Seen by [NAME].\",\"score\":1.50,\
         \"n\":{\"a\":1e2,\"b\":[1.0, \"\\u00e9\"]}}\n"
    );
    // A key given twice: the parsed object (the last) is written, never the first's value.
    let f = write(&dir, "d.jsonl", "{\"text\":\"Dr. Alan Smith\",\"text\":\"Dr. Maria Lopez\"}\n");
    let out = phigate(&["deid", &f, "--mode", "redact"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{\"text\":\"[NAME]\"}\n");
}

#[test]
fn deid_output_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "n.txt", "Seen by Dr. Alan Smith on 03/14/2021.\n");
    // -o onto a file that exists with a wider mode: written, and narrowed.
    let out = write(&dir, "out.txt", "old\n");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = phigate(&["deid", &f, "--mode", "redact", "-o", &out], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "Seen by [NAME] on [DATE].\n");
    assert_eq!(mode(std::path::Path::new(&out)), 0o600);
    // --output-dir: each new file.
    let g = write(&dir, "m.txt", "Call 614-555-0142.\n");
    let outdir = dir.path().join("deid");
    let o = phigate(&["deid", &f, &g, "--output-dir", outdir.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for name in ["n.txt", "m.txt"] {
        assert_eq!(mode(&outdir.join(name)), 0o600, "{name}");
    }
}

#[test]
fn deid_csv_rewrites_chosen_columns_only() {
    let dir = tempfile::tempdir().unwrap();
    let f =
        write(&dir, "v.csv", "visit,note,code\n1,\"Seen by Dr. Alan Smith, MRN: 4471902\",I10\n");
    let out = phigate(&["deid", &f, "--columns", "note", "--mode", "redact"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "visit,note,code\n1,\"Seen by [NAME], MRN: [MRN]\",I10\n"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not de-identified (records): code (1), visit (1);"), "{err}");
    let out = phigate(&["deid", &f, "--columns", "notes"], None);
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown column \"notes\"") && err.contains("visit, note, code"), "{err}");
    let out = phigate(&["deid", &f], None);
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--columns is required") && err.contains("visit, note, code"), "{err}");
    let p = dir.path().join("u.csv");
    std::fs::write(&p, b"visit,note\n1,\xff\n").unwrap();
    let out = phigate(&["deid", p.to_str().unwrap(), "--columns", "note"], None);
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("u.csv:2: invalid UTF-8 in column \"note\" at byte 0"), "{err}");
}

/// A CSV file without a header row starts with a record: its values are never printed as column
/// names, and the error says what to do.
#[test]
fn deid_csv_without_a_header_row_prints_no_value() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "h.csv",
        "Alan Smith,219-45-6712,03/14/2021\nMaria Lopez,219-45-6713,04/02/2020\n",
    );
    for args in [vec!["deid", &f], vec!["deid", &f, "--columns", "note"]] {
        let out = phigate(&args, None);
        assert_eq!(out.status.code(), Some(65), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        for value in ["Alan", "Smith", "219-45", "03/14/2021"] {
            assert!(!err.contains(value), "the error leaked {value:?}: {err}");
        }
        assert!(err.contains("h.csv:1:"), "{err}");
        assert!(err.contains("may not be a header row (3 columns)"), "{err}");
        assert!(err.contains("give the file a header row that names its columns"), "{err}");
    }
    // A first row the scanner finds nothing in, but with a number in a cell, is a record too.
    let f = write(&dir, "r.csv", "12,Smith,hypertension\n13,Okafor,asthma\n");
    let out = phigate(&["deid", &f, "--columns", "note"], None);
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("Smith") && !err.contains("hypertension"), "leaked: {err}");
    assert!(err.contains("the first line holds a number, so it may not be a header row"), "{err}");
    // Year columns are names.
    let f = write(&dir, "y.csv", "region,2021,2022\nnorth,3,4\n");
    let out = phigate(&["deid", &f, "--columns", "note"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the header has: region, 2021, 2022"), "{err}");
    // A column chosen by a name that reads as PHI is named by its position in errors.
    let p = dir.path().join("v.csv");
    std::fs::write(&p, b"visit,Dr. Alan Smith\n1,\xff\n").unwrap();
    let out = phigate(&["deid", p.to_str().unwrap(), "--columns", "Dr. Alan Smith"], None);
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("v.csv:2: invalid UTF-8 in column 2 at byte 0"), "{err}");
    assert!(!err.contains("Alan") && !err.contains("Smith"), "the error leaked a name: {err}");
}

#[test]
fn deid_tsv_splits_on_tabs_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "v.tsv", "visit\tnote\n1\tSeen by Dr. Alan Smith, MRN: 4471902\n");
    let out = phigate(&["deid", &f, "--columns", "note", "--mode", "redact"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "visit\tnote\n1\tSeen by [NAME], MRN: [MRN]\n"
    );
    // .tab read as CSV: a tab too.
    let t = write(&dir, "v.tab", "visit\tnote\n1\tSeen by Dr. Alan Smith\n");
    let out =
        phigate(&["deid", &t, "--format", "csv", "--columns", "note", "--mode", "redact"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "visit\tnote\n1\tSeen by [NAME]\n");
    // A delimiter given wins over the extension.
    let c = write(&dir, "c.tsv", "visit;note\n1;Seen by Dr. Alan Smith\n");
    let out =
        phigate(&["deid", &c, "--delimiter", ";", "--columns", "note", "--mode", "redact"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "visit;note\n1;Seen by [NAME]\n");
    let help = String::from_utf8_lossy(&phigate(&["deid", "--help"], None).stdout).into_owned();
    assert!(help.contains("a tab for .tsv and .tab files"), "{help}");
}

#[test]
fn deid_jsonl_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "n.jsonl",
        "{\"id\":1,\"text\":\"Seen by Dr. Alan Smith\",\"summary\":5}\n{\"id\":2,\"text\":\"x\"}\n",
    );
    let out = phigate(&["deid", &f, "--also-field", "summary"], None);
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{f}:1: field \"summary\" is not a string")), "{err}");
    let out = phigate(&["deid", &f, "--also-field", "summary", "--skip-invalid"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{f}:2: field \"summary\" is missing")), "{err}");
    assert!(!err.contains("<record>") && !err.contains("Alan"), "{err}");
}

#[test]
fn hash_mode_needs_a_key() {
    let out = phigate(&["deid", "--mode", "hash"], Some("{\"id\":1,\"text\":\"x\"}\n"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a key"));
}

#[test]
fn eval_prints_recall_and_over_redaction() {
    let dir = tempfile::tempdir().unwrap();
    let gold = "{\"id\":\"a\",\"text\":\"Call 614-555-0142 now\",\"spans\":[{\"start\":5,\"end\":17,\"category\":\"PHONE_NUMBER\",\"text\":\"614-555-0142\"}]}\n{\"id\":\"b\",\"text\":\"BP 120/80, HR 72.\",\"spans\":[]}\n";
    let f = write(&dir, "gold.jsonl", gold);
    let out = phigate(&["eval", "--gold", &f], None);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("entity recall 1/1 = 1.0000"), "{s}");
    assert!(s.contains("over-redaction: 0 of 1"), "{s}");
    let bad = write(&dir, "badgold.jsonl", "{\"id\":\"a\",\"text\":\"abc\",\"spans\":[{\"start\":1,\"end\":9,\"category\":\"NAME\"}]}\n");
    let out = phigate(&["eval", "--gold", &bad], None);
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("badgold.jsonl:1: span 1..9 is outside the text"));
}

#[test]
fn eval_uppercase_scores_the_capitalised_text_with_the_same_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let gold = "{\"id\":\"a\",\"text\":\"Daughter Maria Lopez called 614-555-0142.\",\"spans\":[{\"start\":9,\"end\":20,\"category\":\"NAME\"},{\"start\":28,\"end\":40,\"category\":\"PHONE\"}]}\n";
    let f = write(&dir, "gold.jsonl", gold);
    let out = phigate(&["eval", "--gold", &f, "--uppercase", "--show-leaks"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("entity recall 2/2 = 1.0000"), "{s}");
}

/// Every command runs without transparent huge pages: a batch run's resident memory stays what
/// its work needs (docs/ENGINE.md). Read from the running process while it waits for stdin.
#[cfg(target_os = "linux")]
#[test]
fn batch_commands_run_without_transparent_huge_pages() {
    let mut child = command(&[])
        .args(["deid", "--format", "text", "--mode", "placeholder", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    // The process sets it first thing in `main`; until then it shows the kernel's default.
    let on = loop {
        match crate::run::thp_enabled(child.id()) {
            Some(true) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            on => break on,
        }
    };
    let mut si = child.stdin.take().unwrap();
    si.write_all(b"Seen by Dr. Alan Smith on 03/14/2021.\n").unwrap();
    drop(si);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[NAME_"), "the run did its work");
    assert_ne!(on, Some(true), "THP_enabled is still 1 after 20 s");
}

/// The names under a help text's `Commands:` heading (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// Every command's examples fit a 100-column help (clap wraps wider lines, which breaks a
/// command a reader copies).
#[test]
fn help_examples_fit_without_wrapping() {
    let help = |args: &[String]| -> String {
        let out = command(&[]).args(args).arg("--help").env("COLUMNS", "400").output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    let mut seen = 0;
    while let Some(args) = todo.pop() {
        let text = help(&args);
        seen += 1;
        for line in text.lines().skip_while(|l| !l.starts_with("Examples:")) {
            assert!(line.chars().count() <= 100, "phigate {} --help: {line:?}", args.join(" "));
        }
        for sub in subcommands(&text) {
            let mut next = args.clone();
            next.push(sub);
            todo.push(next);
        }
    }
    assert!(seen >= 29, "only {seen} help texts were found");
}

/// `deid` never writes over one of its inputs (by the same path, another spelling of it, a
/// hard or symbolic link), nor two inputs to one file of --output-dir: it refuses before it
/// creates or truncates anything. A device such as /dev/null is still an output.
#[test]
fn deid_never_writes_over_its_own_input() {
    let dir = tempfile::tempdir().unwrap();
    let note = "{\"id\":1,\"text\":\"Seen by Dr. Alan Smith on 03/14/2021.\"}\n";
    let f = write(&dir, "notes.jsonl", note);
    let d = dir.path().to_str().unwrap();
    std::fs::hard_link(&f, dir.path().join("hard.jsonl")).unwrap();
    std::os::unix::fs::symlink(&f, dir.path().join("soft.jsonl")).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let other = write(&dir, "other.txt", "Call 614-555-0142.\n");
    let same_spellings = [
        f.clone(),
        format!("{d}/./notes.jsonl"),
        format!("{d}/sub/../notes.jsonl"),
        format!("{d}/hard.jsonl"),
        format!("{d}/soft.jsonl"),
    ];
    for out in &same_spellings {
        for args in [
            vec!["deid", f.as_str(), "-o", out],
            vec!["deid", other.as_str(), f.as_str(), "--output", out],
        ] {
            let o = phigate(&args, None);
            assert!(!o.status.success(), "{args:?}");
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("is the input") && err.contains("notes.jsonl"), "{args:?}: {err}");
            assert!(!err.contains("Alan"), "{err}");
            assert_eq!(std::fs::read_to_string(&f).unwrap(), note, "{args:?} truncated the input");
        }
    }
    // stdin read from the file is that file too.
    let o = crate::run::command(&[])
        .args(["deid", "-", "-o", &f])
        .stdin(std::fs::File::open(&f).unwrap())
        .output()
        .unwrap();
    assert!(!o.status.success(), "stdin from the output file");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), note);
    // --output-dir onto the inputs' own directory.
    for out_dir in [d.to_string(), format!("{d}/sub/..")] {
        let o = phigate(&["deid", &f, "--output-dir", &out_dir], None);
        assert!(!o.status.success(), "--output-dir {out_dir}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("is the input"), "{err}");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), note);
    }
    // Two inputs of one name would both be written to one file: nothing is written.
    std::fs::create_dir(dir.path().join("a")).unwrap();
    std::fs::create_dir(dir.path().join("b")).unwrap();
    let a = write(&dir, "a/n.txt", "Seen by Dr. Alan Smith.\n");
    let b = write(&dir, "b/n.txt", "Call 614-555-0142.\n");
    let out_dir = dir.path().join("out");
    let o = phigate(&["deid", &a, &b, "--output-dir", out_dir.to_str().unwrap()], None);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("would both be written to") && err.contains("n.txt"), "{err}");
    assert!(!out_dir.join("n.txt").exists(), "an output was written");
    // What is not a regular file (/dev/null) and stdin keep working, and so do other outputs.
    let o = phigate(&["deid", &f, "-o", "/dev/null"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = phigate(&["deid", "-o", "/dev/null"], Some(note));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = dir.path().join("elsewhere.jsonl");
    let o =
        phigate(&["deid", &f, "-", "-o", out.to_str().unwrap(), "--mode", "redact"], Some(note));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 2);
    assert_eq!(std::fs::read_to_string(&f).unwrap(), note);
}

/// `scan` and `deid` refuse a standard output that is one of their inputs (`>> notes.jsonl`):
/// the run would read what it writes.
#[test]
fn standard_output_onto_an_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let note = "{\"id\":1,\"text\":\"Seen by Dr. Alan Smith on 03/14/2021.\"}\n";
    let f = write(&dir, "notes.jsonl", note);
    for cmd in ["scan", "deid"] {
        let append = std::fs::OpenOptions::new().append(true).open(&f).unwrap();
        let o = crate::run::command(&[]).args([cmd, &f]).stdout(append).output().unwrap();
        assert!(!o.status.success(), "{cmd}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("is the input"), "{cmd}: {err}");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), note, "{cmd}");
    }
}

/// `scan` reads a CSV or TSV file as one plain-text document (its help says any file that is
/// not JSONL is); `deid` guesses CSV from .csv, .tsv and .tab.
#[test]
fn scan_reads_csv_files_as_text_and_deid_guesses_tab_files_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["v.csv", "v.tsv", "v.tab"] {
        let sep = if name == "v.csv" { ',' } else { '\t' };
        let f = write(&dir, name, &format!("visit{sep}note\n1{sep}Call 614-555-0142.\n"));
        let o = phigate(&["scan", &f], None);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(s.contains("\"category\":\"PHONE\"") && s.contains(name), "{name}: {s}");
    }
    // Asked for in so many words, CSV is still deid's only.
    let f = dir.path().join("v.csv");
    let o = phigate(&["scan", "--format", "csv", f.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&o.stderr).contains("only for `phigate deid`"));
    // deid: a .tab file is CSV with tabs without --format.
    let t = dir.path().join("v.tab");
    let o = phigate(&["deid", t.to_str().unwrap(), "--columns", "note", "--mode", "redact"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "visit\tnote\n1\tCall [PHONE].\n");
    let help = String::from_utf8_lossy(&phigate(&["scan", "--help"], None).stdout).into_owned();
    assert!(help.contains(".csv, .tsv and .tab files included"), "{help}");
}

#[test]
fn deid_writes_dash_to_stdout_and_says_how_to_read_plain_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "note.txt", "Seen by Dr. Alan Smith, MRN: 4471902.");
    let out = command(&[]).args(["deid", &f, "-o", "-"]).current_dir(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("[NAME_1]") && !stdout.contains("Smith"), "{stdout}");
    assert!(!dir.path().join("-").exists(), "`-o -` made a file named -");
    // Plain text on stdin is read as JSONL unless told: the error says how to read it.
    let out = phigate(&["deid"], Some("Seen by Dr. Alan Smith.\n"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("<stdin>:1: malformed JSON") && err.contains("--format text"), "{err}");
}
