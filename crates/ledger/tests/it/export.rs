//! The export file and the offline verifier: every kind of tampering is caught and named.

use ledger::record::HmacKey;
use ledger::{verify_export, Error, Ledger, NoteSigner};

use crate::common::{self, record, signer};

/// A log of 50 records with checkpoints at 20, 35 and 50, exported. Also returns the export
/// of a second log by the same key that shares the first 20 records and then forks.
async fn exports() -> (String, String) {
    let key = HmacKey::from_bytes(&[3u8; 32]).unwrap();
    let other = HmacKey::from_bytes(&[4u8; 32]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = common::ledger(common::sqlite(&dir).await).await;
    let dir_b = tempfile::tempdir().unwrap();
    let b = common::ledger(common::sqlite(&dir_b).await).await;
    for i in 0..50u64 {
        a.append(record(i, &key)).await.unwrap();
        if i < 35 {
            b.append(record(i, if i < 20 { &key } else { &other })).await.unwrap();
        }
        if i == 19 || i == 34 || i == 49 {
            a.checkpoint().await.unwrap();
            if i < 35 {
                b.checkpoint().await.unwrap();
            }
        }
    }
    (export(&a).await, export(&b).await)
}

async fn export(l: &Ledger) -> String {
    let mut out = Vec::new();
    l.export(&mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

fn verify(s: &str) -> Result<ledger::ExportSummary, Error> {
    verify_export(s.as_bytes(), &signer().verifier())
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

fn join(l: &[String]) -> String {
    let mut s = l.join("\n");
    s.push('\n');
    s
}

fn record_line(l: &[String], index: u64) -> usize {
    l.iter().position(|x| x.starts_with(&format!("R {index} "))).unwrap()
}

fn bad_record(r: Result<ledger::ExportSummary, Error>) -> u64 {
    match r {
        Err(Error::BadRecord { index, .. }) => index,
        other => panic!("expected a bad record, got {other:?}"),
    }
}

fn bad_checkpoint(r: Result<ledger::ExportSummary, Error>) -> (u64, u64) {
    match r {
        Err(Error::BadCheckpoint { number, tree_size, .. }) => (number, tree_size),
        other => panic!("expected a bad checkpoint, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifier_catches_every_kind_of_tampering() {
    let (good, fork) = exports().await;
    let s = verify(&good).unwrap();
    assert_eq!((s.records, s.checkpoints), (50, 3));
    verify(&fork).unwrap();
    let l = lines(&good);

    // A changed byte in a record: named by index.
    let mut t = l.clone();
    let i = record_line(&t, 10);
    t[i] = t[i].replacen("treatment", "treatmenu", 1);
    assert_eq!(bad_record(verify(&join(&t))), 10);

    // A changed record whose leaf hash was recomputed to match: the checkpoint over it fails.
    let mut t = l.clone();
    let i = record_line(&t, 25);
    let body = t[i].splitn(4, ' ').nth(3).unwrap().replacen("\"p3\"", "\"p4\"", 1);
    t[i] = format!("R 25 {} {body}", hex::encode(ledger::merkle::leaf_hash(body.as_bytes())));
    assert_eq!(bad_checkpoint(verify(&join(&t))), (2, 35));

    // A deleted record.
    let mut t = l.clone();
    t.remove(record_line(&t, 7));
    assert_eq!(bad_record(verify(&join(&t))), 7);

    // An inserted record (a copy of an earlier one).
    let mut t = l.clone();
    let dup = t[record_line(&t, 3)].clone();
    t.insert(record_line(&t, 6), dup);
    assert_eq!(bad_record(verify(&join(&t))), 6);

    // Two records swapped.
    let mut t = l.clone();
    let (x, y) = (record_line(&t, 11), record_line(&t, 12));
    t.swap(x, y);
    assert_eq!(bad_record(verify(&join(&t))), 11);

    // Two records' contents swapped, indexes kept: the checkpoint over them fails.
    let mut t = l.clone();
    let (x, y) = (record_line(&t, 11), record_line(&t, 12));
    let rest = |s: &str| s.splitn(3, ' ').nth(2).unwrap().to_string();
    let (rx, ry) = (rest(&t[x]), rest(&t[y]));
    t[x] = format!("R 11 {ry}");
    t[y] = format!("R 12 {rx}");
    assert_eq!(bad_checkpoint(verify(&join(&t))), (1, 20));

    // Truncated: in the middle of a line, at a line boundary, after a checkpoint.
    assert!(matches!(verify(&good[..good.len() / 2]), Err(Error::Truncated { .. })));
    let cut = record_line(&l, 40);
    assert!(matches!(verify(&join(&l[..cut])), Err(Error::Truncated { .. })));
    let after_cp = l.iter().rposition(|x| x.starts_with("P ")).unwrap();
    assert!(matches!(verify(&join(&l[..=after_cp])), Err(Error::Truncated { .. })));
    // Truncated consistently, with the last checkpoint and the trailer rewritten: the records
    // past the last checkpoint are not covered by a signature.
    let mut t: Vec<String> = l[..cut].to_vec();
    t.push("END 40 2".into());
    assert_eq!(bad_record(verify(&join(&t))), 35);

    // Cut back to checkpoint 2 and made whole again (records, checkpoint 3 and its proof gone,
    // trailer rewritten): the file alone verifies, but not against the checkpoint the auditor
    // kept from before.
    let c3 = l.iter().enumerate().filter(|(_, x)| x.starts_with("C ")).nth(2).unwrap().0;
    let note: String = serde_json::from_str(&l[c3][2..]).unwrap();
    let held = ledger::Checkpoint::open(&note, &signer().verifier()).unwrap();
    let mut t: Vec<String> = l[..record_line(&l, 35)].to_vec();
    t.push("END 35 2".into());
    verify(&join(&t)).unwrap();
    match ledger::verify_export_with(
        join(&t).as_bytes(),
        &signer().verifier(),
        std::slice::from_ref(&held),
    ) {
        Err(Error::Truncated { problem, .. }) => assert!(problem.contains("size 50"), "{problem}"),
        other => panic!("expected a truncation, got {other:?}"),
    }
    ledger::verify_export_with(good.as_bytes(), &signer().verifier(), std::slice::from_ref(&held))
        .unwrap();
    // A held checkpoint of a forked log: the records do not reproduce it.
    let fork_note: String = serde_json::from_str(
        &lines(&fork).iter().filter(|x| x.starts_with("C ")).nth(1).unwrap()[2..],
    )
    .unwrap();
    let forked = ledger::Checkpoint::open(&fork_note, &signer().verifier()).unwrap();
    assert_eq!(
        bad_record(ledger::verify_export_with(good.as_bytes(), &signer().verifier(), &[forked])),
        34
    );

    // A fork: a checkpoint of the same size but another root, signed by the same key.
    let f = lines(&fork);
    let fork_cp = f.iter().filter(|x| x.starts_with("C ")).nth(1).unwrap().clone();
    let mut t = l.clone();
    let c2 = t.iter().enumerate().filter(|(_, x)| x.starts_with("C ")).nth(1).unwrap().0;
    t.insert(c2 + 2, fork_cp.clone()); // after checkpoint 2 and its proof
    assert_eq!(bad_checkpoint(verify(&join(&t))), (3, 35));
    // The forked checkpoint in place of the real one.
    let mut t = l.clone();
    t[c2] = fork_cp;
    assert_eq!(bad_checkpoint(verify(&join(&t))), (2, 35));
    // A consistency proof that does not link the checkpoints.
    let mut t = l.clone();
    let p = c2 + 1;
    assert!(t[p].starts_with("P 20 35 "));
    t[p] = t[p].replacen("P 20 35 ", "P 20 35 A", 1).replacen("A", "", 1);
    let mut parts: Vec<String> = t[p].splitn(4, ' ').map(str::to_string).collect();
    let mut hashes: Vec<String> = parts[3].split(',').map(str::to_string).collect();
    hashes.swap(0, 1);
    parts[3] = hashes.join(",");
    t[p] = parts.join(" ");
    assert_eq!(bad_checkpoint(verify(&join(&t))), (2, 35));

    // The wrong key.
    let other = NoteSigner::from_seed(common::ORIGIN, &[9u8; 32]).unwrap().verifier();
    assert!(matches!(
        verify_export(good.as_bytes(), &other),
        Err(Error::BadCheckpoint { number: 1, .. })
    ));

    // Errors name the line too.
    let mut t = l.clone();
    t.remove(record_line(&t, 7));
    let msg = verify(&join(&t)).unwrap_err().to_string();
    assert!(msg.contains("record 7") && msg.contains("line 10"), "{msg}");
}
