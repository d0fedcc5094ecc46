//! The log itself, over a [`store::Store`]: group-committed appends, scheduled and on-demand
//! signed checkpoints, proofs, search, store verification and export.
//!
//! Appends go through one background task that gathers whatever callers are waiting into one
//! `ledger_append` transaction (up to [`LedgerConfig::max_batch`]) and acknowledges each caller
//! with its index only once that transaction is durable. Callers never wait on each other's
//! fsyncs: while one batch commits, the next one fills.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::task::JoinHandle;

use crate::checkpoint::{Checkpoint, NoteSigner, NoteVerifier};
use crate::export::{ExportSummary, ExportWriter};
use crate::journal::{self, Journal};
use crate::merkle::{self, leaf_hash, Frontier, Hash, ProofError};
use crate::record::{now_ms, Action, Decision, Record};
use crate::Error;

/// How many times a checkpoint is signed again when the store holds one signed later (another
/// issuer's clock ahead of this one's).
const CHECKPOINT_TRIES: usize = 5;

/// How many leaf hashes or records are read from the store at a time.
const READ_CHUNK: u64 = 65_536;

/// The most journaled records copied into the store in one transaction.
const FILL_BATCH: usize = 4096;

/// How long the filler gathers journaled records before it copies them into the store, unless
/// a reader waits for them: one SQLite commit (and its flush) for all of them, instead of one
/// per journal write competing with the journal's flushes for the disk.
const FILL_WINDOW: Duration = Duration::from_millis(20);

/// How a [`Ledger`] runs.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// The log's name, the first line of every checkpoint.
    pub origin: String,
    /// The checkpoint signing key; without one, checkpoints cannot be issued.
    pub signer: Option<NoteSigner>,
    /// Issue a checkpoint this often when the log has grown (None: only on demand).
    pub checkpoint_every: Option<Duration>,
    /// The most records per store transaction.
    pub max_batch: usize,
    /// How many appends may wait for the committer before `append` waits for room.
    pub queue: usize,
    /// A write-ahead journal file (see [`LedgerConfig::journal`]); None: appends commit to the
    /// store directly.
    pub journal: Option<PathBuf>,
}

impl LedgerConfig {
    /// Defaults: no signer, no schedule, batches of up to 512, a queue of 8192.
    pub fn new(origin: &str) -> LedgerConfig {
        LedgerConfig {
            origin: origin.to_string(),
            signer: None,
            checkpoint_every: None,
            max_batch: 512,
            queue: 8192,
            journal: None,
        }
    }

    /// Makes records durable in a write-ahead journal at `path` (one write and one `fdatasync`)
    /// and copies them into the store in batches behind it; reads wait until the store has
    /// caught up. For a SQLite store, whose commit costs more than a small flush, with one
    /// process appending through a journal per database (the file is locked). Other processes
    /// may still append to the store directly. Opening replays what the store lacks.
    pub fn journal(mut self, path: impl Into<PathBuf>) -> Self {
        self.journal = Some(path.into());
        self
    }

    /// Sets the signing key.
    pub fn signer(mut self, s: NoteSigner) -> Self {
        self.signer = Some(s);
        self
    }

    /// Issues checkpoints on this schedule.
    pub fn checkpoint_every(mut self, d: Duration) -> Self {
        self.checkpoint_every = Some(d);
        self
    }
}

/// One or more records that commit together, in one transaction, at consecutive indexes.
struct Pending {
    entries: Vec<store::NewLedgerEntry>,
    ack: Ack,
}

/// What the caller waits for.
enum Ack {
    /// The index of the first record, once the store has it.
    Index(oneshot::Sender<Result<u64, Error>>),
    /// Durability only (in the journal, when there is one).
    Durable(oneshot::Sender<Result<(), Error>>),
}

impl Ack {
    fn is_closed(&self) -> bool {
        match self {
            Ack::Index(s) => s.is_closed(),
            Ack::Durable(s) => s.is_closed(),
        }
    }

    fn fail(self, e: Error) {
        match self {
            Ack::Index(s) => {
                let _ = s.send(Err(e));
            }
            Ack::Durable(s) => {
                let _ = s.send(Err(e));
            }
        }
    }
}

/// How far the journal's frames have reached the store.
struct Progress {
    /// The journal, written by the committer; emptied by [`Ledger::close`].
    journal: std::sync::Mutex<Journal>,
    /// Frames written (and flushed) to the journal: the next `seq`.
    written: AtomicU64,
    /// Frames the store holds: the next `seq` to fill.
    filled: watch::Sender<u64>,
    /// Why the last attempt to fill the store failed, while it keeps failing; appends are
    /// refused meanwhile.
    failing: std::sync::Mutex<Option<String>>,
    /// Someone waits for the store to catch up: fill now rather than at the end of the window.
    hurry: tokio::sync::Notify,
    /// Why the journal's writer refuses every append until a restart, once it does.
    broken: std::sync::Mutex<Option<String>>,
}

/// Why appends are refused after the journal's writer panicked.
const STOPPED: &str = "the ledger journal's writer stopped";

impl Progress {
    /// The journal, locked; an error when a panic while it was held left it poisoned (what was
    /// written then is unknown: nothing is written again).
    fn journal(&self) -> std::io::Result<std::sync::MutexGuard<'_, Journal>> {
        self.journal.lock().map_err(|_| std::io::Error::other(STOPPED))
    }

    fn failing(&self) -> Option<String> {
        self.failing.lock().map_or_else(|_| Some("poisoned".into()), |f| f.clone())
    }

    fn set_broken(&self, why: &str) {
        if let Ok(mut b) = self.broken.lock() {
            *b = Some(why.to_string());
        }
    }

    fn broken(&self) -> Option<String> {
        self.broken.lock().map_or_else(|_| Some("poisoned".into()), |b| b.clone())
    }

    fn set_failing(&self, why: Option<String>) {
        if let Ok(mut f) = self.failing.lock() {
            *f = why;
        }
        // Wake readers waiting for the store, so they see the failure.
        self.filled.send_modify(|_| {});
    }
}

/// Journal frames on their way to the store, with the callers waiting for their indexes.
struct Fill {
    entries: Vec<store::NewLedgerEntry>,
    acks: Vec<(u64, oneshot::Sender<Result<u64, Error>>)>,
    /// The `seq` after the last frame.
    end: u64,
}

struct Inner {
    store: store::Store,
    tx: mpsc::Sender<Pending>,
    journal: Option<Arc<Progress>>,
    max_batch: usize,
    origin: String,
    signer: Option<NoteSigner>,
    /// The compact range of the log as far as the last checkpoint read it.
    frontier: Mutex<Frontier>,
    ticker: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut t) = self.ticker.lock() {
            if let Some(h) = t.take() {
                h.abort();
            }
        }
    }
}

/// The audit log. `Send + Sync`, cheap to clone (an `Arc` inside). Must be opened inside a
/// tokio runtime: it spawns the committer (and the checkpoint schedule, when configured).
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("origin", &self.inner.origin)
            .field("signer", &self.inner.signer)
            .finish_non_exhaustive()
    }
}

/// An inclusion proof of one record in a tree of a given size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    /// The record's index.
    pub index: u64,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// The record's leaf hash.
    pub leaf_hash: Hash,
    /// `PATH(index, D[0:tree_size])`.
    pub hashes: Vec<Hash>,
}

impl InclusionProof {
    /// Checks the proof against the root of the tree of `tree_size`.
    pub fn verify(&self, root: &Hash) -> Result<(), ProofError> {
        merkle::verify_inclusion(&self.leaf_hash, self.index, self.tree_size, &self.hashes, root)
    }
}

/// A consistency proof between two tree sizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The older size.
    pub old_size: u64,
    /// The newer size.
    pub new_size: u64,
    /// `PROOF(old_size, D[0:new_size])`.
    pub hashes: Vec<Hash>,
}

impl ConsistencyProof {
    /// Checks the proof against both roots.
    pub fn verify(&self, old_root: &Hash, new_root: &Hash) -> Result<(), ProofError> {
        merkle::verify_consistency(self.old_size, self.new_size, &self.hashes, old_root, new_root)
    }
}

/// A checkpoint with its signed note, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The parsed checkpoint.
    pub checkpoint: Checkpoint,
    /// The signed note, verbatim.
    pub note: String,
}

/// Filters for [`Ledger::search`]; every given filter must match.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// From this time (ms, inclusive).
    pub from_ms: Option<i64>,
    /// To this time (ms, exclusive).
    pub to_ms: Option<i64>,
    /// By this actor.
    pub actor: Option<crate::Slug>,
    /// Under this use case.
    pub use_case: Option<crate::Slug>,
    /// With this decision.
    pub decision: Option<Decision>,
    /// Of this action.
    pub action: Option<Action>,
    /// Finding this PHI category.
    pub category: Option<phi::Category>,
    /// Only records after this index (for paging).
    pub after_index: Option<u64>,
    /// At most this many (0: 1000).
    pub limit: u64,
}

impl Query {
    /// Whether `r` matches every filter of the query (`after_index` and `limit`, which page,
    /// aside).
    pub fn matches(&self, r: &Record) -> bool {
        self.from_ms.is_none_or(|t| r.ts_ms() >= t)
            && self.to_ms.is_none_or(|t| r.ts_ms() < t)
            && self.actor.as_ref().is_none_or(|a| r.actor() == a)
            && self.use_case.as_ref().is_none_or(|u| r.use_case() == Some(u))
            && self.decision.is_none_or(|d| r.decision() == d)
            && self.action.is_none_or(|a| r.action() == a)
            && self.category.is_none_or(|c| r.categories().contains_key(&c))
    }
}

/// What [`Ledger::verify_store`] checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreReport {
    /// Records read and re-hashed.
    pub records: u64,
    /// Checkpoints whose root was recomputed (and signature checked, given a verifier).
    pub checkpoints: u64,
    /// The root of the whole log.
    pub root: Hash,
}

fn entry_of(r: &Record) -> store::NewLedgerEntry {
    let body = r.canonical_bytes();
    let mut e = store::NewLedgerEntry {
        leaf_hash: leaf_hash(&body),
        body,
        ts_ms: 0,
        actor: String::new(),
        action: String::new(),
        use_case: String::new(),
        decision: String::new(),
        categories: Vec::new(),
    };
    set_copies(&mut e, r);
    e
}

/// Sets the entry's search copies from its record: the store's columns that searches filter on
/// (categories sorted by name, as the store keeps them).
fn set_copies(e: &mut store::NewLedgerEntry, r: &Record) {
    e.ts_ms = r.ts_ms();
    e.actor = r.actor().as_str().to_string();
    e.action = r.action().as_str().to_string();
    e.use_case = r.use_case().map_or_else(String::new, |u| u.as_str().to_string());
    e.decision = r.decision().as_str().to_string();
    e.categories = sorted_categories(r);
}

fn sorted_categories(r: &Record) -> Vec<String> {
    let mut c: Vec<String> = r.categories().keys().map(|c| c.as_str().to_string()).collect();
    c.sort_unstable();
    c
}

/// The first search column of a stored entry that does not hold what its record says, by name
/// (never the values).
fn copy_mismatch(stored: &store::NewLedgerEntry, r: &Record) -> Option<&'static str> {
    if stored.ts_ms != r.ts_ms() {
        return Some("ts_ms");
    }
    if stored.actor != r.actor().as_str() {
        return Some("actor");
    }
    if stored.action != r.action().as_str() {
        return Some("action");
    }
    if stored.use_case != r.use_case().map_or("", |u| u.as_str()) {
        return Some("use_case");
    }
    if stored.decision != r.decision().as_str() {
        return Some("decision");
    }
    if stored.categories != sorted_categories(r) {
        return Some("categories");
    }
    None
}

/// Which of the stored checkpoints (their signed timestamps, by tree size) are in time order:
/// the latest, and the most of the others that, with it, never go back in time as the size
/// grows (a longest non-decreasing run of timestamps that ends at the latest's). Checkpoints
/// out of that order (stored before the store kept them in order, when two issuers raced) are
/// left out of exports, whose verifier refuses a checkpoint signed earlier than the one before
/// it.
fn in_time_order(ts: &[i64]) -> Vec<bool> {
    let mut keep = vec![false; ts.len()];
    let Some((&last, rest)) = ts.split_last() else { return keep };
    // Patience sorting: tails[k] is the index ending the best run of length k + 1 found so
    // far (the one with the smallest timestamp); prev links each to the one before it.
    let mut tails: Vec<usize> = Vec::new();
    let mut prev: Vec<Option<usize>> = vec![None; rest.len()];
    for (i, &t) in rest.iter().enumerate() {
        if t > last {
            continue;
        }
        let at = tails.partition_point(|&k| rest[k] <= t);
        prev[i] = at.checked_sub(1).map(|k| tails[k]);
        if at == tails.len() {
            tails.push(i);
        } else {
            tails[at] = i;
        }
    }
    let mut at = tails.last().copied();
    while let Some(i) = at {
        keep[i] = true;
        at = prev[i];
    }
    keep[rest.len()] = true;
    keep
}

/// Takes what waits in the queue into `batch` (at most `max_batch` records; one message that
/// does not fit is kept in `carried` for the next batch), dropping callers that gave up.
/// False when the queue is closed and empty.
async fn gather(
    rx: &mut mpsc::Receiver<Pending>,
    carried: &mut Option<Pending>,
    batch: &mut Vec<Pending>,
    max_batch: usize,
    linger: bool,
) -> bool {
    let first = match carried.take() {
        Some(p) => p,
        None => match rx.recv().await {
            Some(p) => p,
            None => return false,
        },
    };
    let mut size = first.entries.len();
    batch.push(first);
    if linger {
        // Let the tasks that are about to append do so first: a bigger batch, fewer flushes.
        tokio::task::yield_now().await;
    }
    while size < max_batch {
        match rx.try_recv() {
            Ok(p) if size + p.entries.len() > max_batch => {
                *carried = Some(p);
                break;
            }
            Ok(p) => {
                size += p.entries.len();
                batch.push(p);
            }
            Err(_) => break,
        }
    }
    // Callers that gave up (dropped their future) are not written.
    batch.retain(|p| !p.ack.is_closed());
    true
}

/// Moves the batch's entries into `entries` and returns each caller's offset in them.
fn flatten(batch: &mut [Pending], entries: &mut Vec<store::NewLedgerEntry>) -> Vec<u64> {
    entries.clear();
    let mut starts = Vec::with_capacity(batch.len());
    for p in batch.iter_mut() {
        starts.push(entries.len() as u64);
        entries.append(&mut p.entries);
    }
    starts
}

/// Commits each batch to the store and acknowledges its callers.
async fn committer(store: store::Store, mut rx: mpsc::Receiver<Pending>, max_batch: usize) {
    let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
    let mut entries: Vec<store::NewLedgerEntry> = Vec::with_capacity(max_batch);
    let mut carried: Option<Pending> = None;
    while gather(&mut rx, &mut carried, &mut batch, max_batch, false).await {
        if batch.is_empty() {
            continue;
        }
        let starts = flatten(&mut batch, &mut entries);
        let started = std::time::Instant::now();
        let result = store.ledger_append(&entries).await;
        metrics::histogram!("phigate_ledger_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("phigate_ledger_batch_records").record(entries.len() as f64);
        match result {
            Ok(start) => {
                for (p, offset) in batch.drain(..).zip(starts) {
                    match p.ack {
                        Ack::Index(s) => {
                            let _ = s.send(Ok(start + offset));
                        }
                        Ack::Durable(s) => {
                            let _ = s.send(Ok(()));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = entries.len(), "ledger append failed");
                let msg = e.to_string();
                for p in batch.drain(..) {
                    p.ack.fail(Error::Store(msg.clone()));
                }
            }
        }
    }
}

/// Flushes each batch to the journal, acknowledges the callers that wait for durability only,
/// and hands the entries (and the callers that wait for an index) to the filler.
async fn journal_committer(
    store: store::Store,
    progress: Arc<Progress>,
    fills: mpsc::Sender<Fill>,
    mut rx: mpsc::Receiver<Pending>,
    max_batch: usize,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
    let mut carried: Option<Pending> = None;
    // Set after a failed write: the journal is not written again (fail closed until restart).
    let mut broken: Option<String> = None;
    // Whether the last batch held more than one caller's records (appends are concurrent).
    let mut busy = false;
    while gather(&mut rx, &mut carried, &mut batch, max_batch, busy).await {
        busy = batch.len() > 1;
        if batch.is_empty() {
            continue;
        }
        let refuse = broken.clone().or_else(|| progress.failing());
        if let Some(why) = refuse {
            for p in batch.drain(..) {
                p.ack.fail(Error::Store(why.clone()));
            }
            continue;
        }
        let wants_wrap = progress.journal().map(|j| j.wants_wrap().then(|| j.next_seq()));
        let Ok(wants_wrap) = wants_wrap else {
            broken = Some(STOPPED.into());
            progress.set_broken(STOPPED);
            for p in batch.drain(..) {
                p.ack.fail(Error::Store(STOPPED.into()));
            }
            continue;
        };
        if let Some(target) = wants_wrap {
            // Start again at offset 0 once the store holds every frame written so far.
            let waited = std::time::Instant::now();
            progress.hurry.notify_one();
            let mut filled = progress.filled.subscribe();
            let caught_up =
                filled.wait_for(|f| *f >= target || progress.failing().is_some()).await.is_ok();
            if caught_up && progress.failing().is_none() {
                // The filler's commits are not flushed one by one (the journal holds their
                // records): flush them all before the journal's copy is overwritten.
                match store.sync().await {
                    Ok(()) => {
                        if let Ok(mut j) = progress.journal() {
                            j.wrap();
                        }
                        metrics::histogram!("phigate_ledger_wrap_seconds")
                            .record(waited.elapsed().as_secs_f64());
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "flushing the ledger's store failed");
                        let msg = format!("the ledger's store cannot be flushed: {e}");
                        for p in batch.drain(..) {
                            p.ack.fail(Error::Store(msg.clone()));
                        }
                        progress.set_broken(&msg);
                        broken = Some(msg);
                        continue;
                    }
                }
            }
        }
        let mut entries = Vec::new();
        let starts = flatten(&mut batch, &mut entries);
        let started = std::time::Instant::now();
        let shared = progress.clone();
        let (entries, result) = match tokio::task::spawn_blocking(move || {
            let r = match shared.journal() {
                Ok(mut j) => j
                    .write(entries.iter().map(|e| (&e.leaf_hash, e.body.as_slice())))
                    .map(|()| j.next_seq()),
                Err(e) => Err(e),
            };
            (entries, r)
        })
        .await
        {
            Ok(done) => done,
            Err(_) => {
                // The write panicked: the journal went with it. Refuse everything from here on.
                tracing::error!("{STOPPED}");
                progress.set_broken(STOPPED);
                for p in batch.drain(..) {
                    p.ack.fail(Error::Store(STOPPED.into()));
                }
                rx.close();
                while let Some(p) = rx.recv().await {
                    p.ack.fail(Error::Store(STOPPED.into()));
                }
                return;
            }
        };
        metrics::histogram!("phigate_ledger_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("phigate_ledger_batch_records").record(entries.len() as f64);
        let end = match result {
            Ok(end) => end,
            Err(e) => {
                tracing::error!(error = %e, records = entries.len(), "ledger journal write failed");
                let msg = format!("the ledger journal cannot be written: {}", e.kind());
                for p in batch.drain(..) {
                    p.ack.fail(Error::Store(msg.clone()));
                }
                progress.set_broken(&msg);
                broken = Some(msg);
                continue;
            }
        };
        let mut acks = Vec::new();
        let mut durable = Vec::new();
        for (p, offset) in batch.drain(..).zip(starts) {
            match p.ack {
                Ack::Durable(s) => durable.push(s),
                Ack::Index(s) => acks.push((offset, s)),
            }
        }
        // The filler has the frames before `written` counts them, and `written` counts them
        // before their callers hear back: a caller's `flush` then waits for its own records.
        if fills.send(Fill { entries, acks, end }).await.is_err() {
            return;
        }
        progress.written.store(end, Ordering::Release);
        for s in durable {
            let _ = s.send(Ok(()));
        }
    }
}

/// Copies journal frames into the store in batches (of up to [`FILL_BATCH`] records), in
/// order. A failure is retried until it succeeds; meanwhile appends are refused.
async fn filler(store: store::Store, progress: Arc<Progress>, mut rx: mpsc::Receiver<Fill>) {
    let mut fills: Vec<Fill> = Vec::new();
    let mut entries: Vec<store::NewLedgerEntry> = Vec::with_capacity(FILL_BATCH);
    while let Some(first) = rx.recv().await {
        let mut size = first.entries.len();
        fills.push(first);
        let deadline = tokio::time::Instant::now() + FILL_WINDOW;
        let mut hurry = false;
        while size < FILL_BATCH {
            if hurry {
                match rx.try_recv() {
                    Ok(f) => {
                        size += f.entries.len();
                        fills.push(f);
                        continue;
                    }
                    Err(_) => break,
                }
            }
            tokio::select! {
                biased;
                () = progress.hurry.notified() => hurry = true,
                f = rx.recv() => match f {
                    Some(f) => {
                        size += f.entries.len();
                        fills.push(f);
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        entries.clear();
        let mut bases = Vec::with_capacity(fills.len());
        for f in fills.iter_mut() {
            bases.push(entries.len() as u64);
            entries.append(&mut f.entries);
        }
        let mut pause = Duration::from_millis(50);
        let start = loop {
            let started = std::time::Instant::now();
            // Not flushed to the disk here: the journal holds these records until it wraps,
            // and the wrap flushes the store first.
            match store.ledger_append_deferred(&entries).await {
                Ok(start) => {
                    metrics::histogram!("phigate_ledger_fill_seconds")
                        .record(started.elapsed().as_secs_f64());
                    if progress.failing().is_some() {
                        tracing::info!(
                            records = entries.len(),
                            "the ledger's store is written again"
                        );
                        progress.set_failing(None);
                    }
                    break start;
                }
                Err(e) => {
                    if progress.failing().is_none() {
                        tracing::error!(
                            error = %e,
                            records = entries.len(),
                            "copying journaled ledger records into the store failed; they are \
                             safe in the journal; appends are refused until it succeeds"
                        );
                    }
                    progress
                        .set_failing(Some(format!("the ledger's store cannot be written: {e}")));
                    if rx.is_closed() && store.ping().await.is_err() {
                        // Shutting down with the store gone: the journal keeps the records and
                        // the next open replays them.
                        return;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        };
        let mut end = 0;
        for (f, base) in fills.drain(..).zip(bases) {
            for (offset, ack) in f.acks {
                let _ = ack.send(Ok(start + base + offset));
            }
            end = f.end;
        }
        progress.filled.send_replace(end);
    }
}

/// Opens the journal; while another process holds it, tries again for up to 10 s (a CLI
/// command that replays it after a crash holds it for moments; a second server, for good).
async fn open_journal(
    path: PathBuf,
    database: u32,
) -> Result<(Journal, Vec<journal::Frame>, Option<PathBuf>), Error> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let p = path.clone();
        let opened = tokio::task::spawn_blocking(move || Journal::open(&p, database))
            .await
            .map_err(|_| Error::Store("opening the ledger journal panicked".into()))?;
        match opened {
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// Where the ledger journal of a SQLite store lives: beside the database file, named after it
/// with `-ledger-journal` added. None on PostgreSQL.
pub fn journal_path(store: &store::Store) -> Option<PathBuf> {
    let db = store.sqlite_path()?;
    let mut name = db.as_os_str().to_os_string();
    name.push("-ledger-journal");
    Some(PathBuf::from(name))
}

/// For a command that opens a SQLite store while no server runs on it (after a crash): puts
/// the records only its ledger journal holds into the store, so that what the command reads is
/// complete. Does nothing when there is no journal, or a running server holds it (that server
/// copies them itself). Returns how many records were put in, and where a journal of another
/// database (one deleted and made anew beside it) was set aside, not replayed.
pub async fn replay_journal(store: &store::Store) -> Result<(u64, Option<PathBuf>), Error> {
    let (Some(path), Some(database)) = (journal_path(store), store.sqlite_id()) else {
        return Ok((0, None));
    };
    if !path.exists() {
        return Ok((0, None));
    }
    let p = path.clone();
    let opened = tokio::task::spawn_blocking(move || Journal::open(&p, database))
        .await
        .map_err(|_| Error::Store("opening the ledger journal panicked".into()))?;
    let (mut journal, frames, aside) = match opened {
        Ok(j) => j,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok((0, None)),
        Err(e) => return Err(e.into()),
    };
    let n = replay(store, frames).await?;
    // The store has them; flushed, the journal can be emptied (the next command reads nothing
    // back). Unlocked only then.
    store.sync().await.map_err(from_store)?;
    tokio::task::spawn_blocking(move || journal.clear())
        .await
        .map_err(|_| Error::Store("emptying the ledger journal panicked".into()))??;
    Ok((n, aside))
}

/// Puts the journal's frames that the store lacks into it (see [`crate::journal`]).
async fn replay(store: &store::Store, frames: Vec<journal::Frame>) -> Result<u64, Error> {
    if frames.is_empty() {
        return Ok(0);
    }
    let mut records = Vec::with_capacity(frames.len());
    for f in &frames {
        records.push(Record::decode(&f.body).map_err(|e| {
            Error::Store(format!("a record in the ledger journal does not decode: {e}"))
        })?);
    }
    let from_ms = records.iter().map(Record::ts_ms).min().unwrap_or(0);
    let mut stored = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .ledger_search(&store::LedgerQuery {
                from_ms: Some(from_ms),
                after_index: after,
                limit: READ_CHUNK,
                ..Default::default()
            })
            .await
            .map_err(from_store)?;
        let Some(last) = page.last() else { break };
        after = Some(last.index);
        stored.extend(page.iter().map(|e| e.leaf_hash));
    }
    let entries: Vec<store::NewLedgerEntry> =
        journal::missing(&frames, &stored).into_iter().map(|i| entry_of(&records[i])).collect();
    for chunk in entries.chunks(FILL_BATCH) {
        store.ledger_append(chunk).await.map_err(from_store)?;
    }
    Ok(entries.len() as u64)
}

async fn ticker(weak: Weak<Inner>, every: Duration) {
    let mut iv = tokio::time::interval(every);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    iv.tick().await;
    loop {
        iv.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        let l = Ledger { inner };
        match l.checkpoint_if_grown().await {
            Ok(Some(c)) => tracing::info!(tree_size = c.checkpoint.tree_size, "checkpoint issued"),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "scheduled checkpoint failed"),
        }
    }
}

fn from_store(e: store::Error) -> Error {
    Error::Store(e.to_string())
}

impl Ledger {
    /// Opens the log over `store` and starts its background tasks.
    pub async fn open(store: store::Store, cfg: LedgerConfig) -> Result<Ledger, Error> {
        if cfg.origin.is_empty() || cfg.origin.contains(['\n', '\r']) {
            return Err(Error::Checkpoint("the origin must be one non-empty line".into()));
        }
        // A log has one name: checkpoints signed under two could not be verified under either.
        // (Only a ledger that signs adds checkpoints; reading needs no name.)
        let latest = match cfg.signer {
            Some(_) => store.checkpoint_latest().await.map_err(from_store)?,
            None => None,
        };
        if let Some(c) = latest {
            let theirs = signed_of(c)?.checkpoint.origin;
            if theirs != cfg.origin {
                return Err(Error::Checkpoint(format!(
                    "this log's checkpoints name it {theirs:?}, not {:?}: open it under its own \
                     name (the gateway's audit.origin, phigate audit's --origin)",
                    cfg.origin
                )));
            }
        }
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let max_batch = cfg.max_batch.max(1);
        let journal = match &cfg.journal {
            None => {
                tokio::spawn(committer(store.clone(), rx, max_batch));
                None
            }
            Some(path) => {
                let Some(database) = store.sqlite_id() else {
                    return Err(Error::Store(
                        "a ledger journal is for a SQLite store (PostgreSQL commits are shared \
                         by replicas)"
                            .into(),
                    ));
                };
                let (journal, frames, aside) = open_journal(path.clone(), database).await?;
                if let Some(aside) = aside {
                    tracing::warn!(
                        journal = %journal.path().display(),
                        moved_to = %aside.display(),
                        "the ledger journal belonged to another database (this one was made \
                         anew); it was set aside, not replayed"
                    );
                }
                let run = frames.len();
                let replayed = replay(&store, frames).await?;
                if run > 0 {
                    // The run's records that the store had already may sit in unflushed
                    // commits (the last process's copies, after it was killed): flush them
                    // before the journal is written over from its start.
                    store.sync().await.map_err(from_store)?;
                }
                if replayed > 0 {
                    tracing::warn!(
                        replayed,
                        journaled = run,
                        journal = %journal.path().display(),
                        "ledger records found only in the journal (the last run stopped before \
                         copying them) were put in the store"
                    );
                }
                let progress = Arc::new(Progress {
                    journal: std::sync::Mutex::new(journal),
                    written: AtomicU64::new(0),
                    filled: watch::Sender::new(0),
                    failing: std::sync::Mutex::new(None),
                    hurry: tokio::sync::Notify::new(),
                    broken: std::sync::Mutex::new(None),
                });
                let (fill_tx, fill_rx) = mpsc::channel(1024);
                tokio::spawn(filler(store.clone(), progress.clone(), fill_rx));
                tokio::spawn(journal_committer(
                    store.clone(),
                    progress.clone(),
                    fill_tx,
                    rx,
                    max_batch,
                ));
                Some(progress)
            }
        };
        let inner = Arc::new(Inner {
            store,
            tx,
            journal,
            max_batch,
            origin: cfg.origin,
            signer: cfg.signer,
            frontier: Mutex::new(Frontier::new()),
            ticker: std::sync::Mutex::new(None),
        });
        if let Some(every) = cfg.checkpoint_every {
            let h = tokio::spawn(ticker(Arc::downgrade(&inner), every));
            if let Ok(mut t) = inner.ticker.lock() {
                *t = Some(h);
            }
        }
        Ok(Ledger { inner })
    }

    /// Whether appends are being accepted: `Err` (why, no record content) when the journal's
    /// writer has stopped after a failed write, or copying it into the store keeps failing;
    /// every append is refused then. Without a journal, `Ok` (the store's own health is the
    /// ledger's). For readiness probes.
    pub fn health(&self) -> Result<(), String> {
        if self.inner.tx.is_closed() {
            return Err("the ledger's writer has stopped".into());
        }
        let Some(p) = &self.inner.journal else { return Ok(()) };
        match p.broken().or_else(|| p.failing()) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &store::Store {
        &self.inner.store
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The checkpoint verifier, when a signer is configured.
    pub fn verifier(&self) -> Option<NoteVerifier> {
        self.inner.signer.as_ref().map(NoteSigner::verifier)
    }

    /// Appends one record and returns its index once it is durable in the store.
    pub async fn append(&self, record: Record) -> Result<u64, Error> {
        self.submit(vec![entry_of(&record)]).await
    }

    /// Appends one record and returns once it is durable: in the journal when the ledger has
    /// one (the store gets it moments later), else in the store. Cheaper than
    /// [`Ledger::append`] when no index is needed.
    pub async fn record(&self, record: Record) -> Result<(), Error> {
        self.submit_durable(vec![entry_of(&record)]).await
    }

    /// [`Ledger::record`] for several records, all or none, in the given order. At most
    /// [`LedgerConfig::max_batch`] records.
    pub async fn record_all(&self, records: &[Record]) -> Result<(), Error> {
        self.check_count(records.len())?;
        self.submit_durable(records.iter().map(entry_of).collect()).await
    }

    fn check_count(&self, n: usize) -> Result<(), Error> {
        if n == 0 || n > self.inner.max_batch {
            return Err(Error::InvalidField {
                field: "records",
                problem: "one append takes 1 to max_batch records",
            });
        }
        Ok(())
    }

    async fn submit_durable(&self, entries: Vec<store::NewLedgerEntry>) -> Result<(), Error> {
        let (ack, rx) = oneshot::channel();
        let p = Pending { entries, ack: Ack::Durable(ack) };
        self.inner.tx.send(p).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Waits until the store holds every record acknowledged so far (at once without a
    /// journal). Reads do this themselves; call it before closing the store at shutdown.
    pub async fn flush(&self) -> Result<(), Error> {
        let Some(p) = &self.inner.journal else { return Ok(()) };
        let target = p.written.load(Ordering::Acquire);
        let mut filled = p.filled.subscribe();
        if *filled.borrow() < target {
            p.hurry.notify_one();
        }
        loop {
            if *filled.borrow_and_update() >= target {
                return Ok(());
            }
            if let Some(why) = p.failing() {
                return Err(Error::Store(why));
            }
            filled.changed().await.map_err(|_| Error::Closed)?;
        }
    }

    /// For a clean stop: copies the journal into the store ([`Ledger::flush`]), flushes the
    /// store to the disk, and empties the journal, so that the next open has nothing to read
    /// back. The ledger still works after it. Without a journal, the same as `flush`.
    pub async fn close(&self) -> Result<(), Error> {
        let Some(p) = &self.inner.journal else { return Ok(()) };
        self.flush().await?;
        let target = *p.filled.borrow();
        self.inner.store.sync().await.map_err(from_store)?;
        let progress = p.clone();
        tokio::task::spawn_blocking(move || {
            let mut j = progress.journal()?;
            // A frame written since `target` may not be in the store, or not flushed there:
            // keep the journal then (the next open reads it back).
            if j.next_seq() == target {
                j.clear()
            } else {
                Ok(())
            }
        })
        .await
        .map_err(|_| Error::Store("emptying the ledger journal panicked".into()))??;
        Ok(())
    }

    /// Appends several records in one transaction, at consecutive indexes in the given order,
    /// and returns the first index once all of them are durable: either every record is in the
    /// log or none is. At most [`LedgerConfig::max_batch`] records (more are refused).
    pub async fn append_all(&self, records: &[Record]) -> Result<u64, Error> {
        self.check_count(records.len())?;
        self.submit(records.iter().map(entry_of).collect()).await
    }

    async fn submit(&self, entries: Vec<store::NewLedgerEntry>) -> Result<u64, Error> {
        let (ack, rx) = oneshot::channel();
        let p = Pending { entries, ack: Ack::Index(ack) };
        self.inner.tx.send(p).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// The number of records.
    pub async fn len(&self) -> Result<u64, Error> {
        self.flush().await?;
        self.inner.store.ledger_len().await.map_err(from_store)
    }

    /// Whether the log is empty.
    pub async fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len().await? == 0)
    }

    /// MTH of leaves `r.start..r.end` read from the store.
    async fn range_root(&self, r: std::ops::Range<u64>) -> Result<Hash, Error> {
        let mut f = Frontier::new();
        let mut at = r.start;
        while at < r.end {
            let end = (at + READ_CHUNK).min(r.end);
            let hs = self.inner.store.ledger_leaf_hashes(at, end).await.map_err(from_store)?;
            if hs.len() as u64 != end - at {
                return Err(Error::Store("the store returned fewer leaf hashes than asked".into()));
            }
            for h in hs {
                f.push(h);
            }
            at = end;
        }
        Ok(f.root())
    }

    async fn check_size(&self, size: u64) -> Result<u64, Error> {
        let n = self.len().await?;
        if size > n {
            return Err(Error::Proof(ProofError::OutOfRange));
        }
        Ok(n)
    }

    /// The root hash of the first `size` records.
    pub async fn root(&self, size: u64) -> Result<Hash, Error> {
        self.check_size(size).await?;
        self.range_root(0..size).await
    }

    /// Proves record `index` is in the tree of `tree_size` records.
    pub async fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<InclusionProof, Error> {
        self.check_size(tree_size).await?;
        if index >= tree_size {
            return Err(Error::Proof(ProofError::OutOfRange));
        }
        let leaf =
            self.inner.store.ledger_leaf_hashes(index, index + 1).await.map_err(from_store)?;
        let leaf_hash = *leaf.first().ok_or(Error::Proof(ProofError::OutOfRange))?;
        let mut hashes = Vec::new();
        for r in merkle::inclusion_ranges(index, tree_size) {
            hashes.push(self.range_root(r).await?);
        }
        Ok(InclusionProof { index, tree_size, leaf_hash, hashes })
    }

    /// Proves the tree of `new_size` records extends the tree of `old_size`.
    pub async fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, Error> {
        self.check_size(new_size).await?;
        if old_size > new_size {
            return Err(Error::Proof(ProofError::OutOfRange));
        }
        let mut hashes = Vec::new();
        for r in merkle::consistency_ranges(old_size, new_size) {
            hashes.push(self.range_root(r).await?);
        }
        Ok(ConsistencyProof { old_size, new_size, hashes })
    }

    /// Reads records `start..end` (decoded and checked against their leaf hashes).
    pub async fn read(&self, start: u64, end: u64) -> Result<Vec<(u64, Record)>, Error> {
        self.flush().await?;
        let rows = self.inner.store.ledger_read(start, end).await.map_err(from_store)?;
        rows.into_iter().map(decode_entry).collect()
    }

    /// Records matching every filter of `q`, in index order, at most `q.limit` (0: 1000).
    ///
    /// The store filters on its search columns, copies of each record's fields that the leaf
    /// hashes do not cover. Each record found is checked against the query itself: one whose
    /// column was edited to match a query it does not match is left out (with a warning; the
    /// page is filled from the records after it). A column edited so that a record no longer
    /// matches hides it from the store's filter, which no search can see:
    /// [`Ledger::verify_store`] compares every column with its record and names such a record.
    pub async fn search(&self, q: &Query) -> Result<Vec<(u64, Record)>, Error> {
        self.flush().await?;
        let limit = if q.limit == 0 { 1000 } else { q.limit };
        let mut sq = store::LedgerQuery {
            from_ms: q.from_ms,
            to_ms: q.to_ms,
            actor: q.actor.as_ref().map(|s| s.as_str().to_string()),
            use_case: q.use_case.as_ref().map(|s| s.as_str().to_string()),
            decision: q.decision.map(|d| d.as_str().to_string()),
            action: q.action.map(|a| a.as_str().to_string()),
            category: q.category.map(|c| c.as_str().to_string()),
            after_index: q.after_index,
            limit,
        };
        let mut out = Vec::new();
        let mut left_out: Option<(u64, u64)> = None;
        loop {
            let rows = self.inner.store.ledger_search(&sq).await.map_err(from_store)?;
            let full = rows.len() as u64 >= sq.limit;
            let Some(last) = rows.last().map(|r| r.index) else { break };
            for row in rows {
                let (index, r) = decode_entry(row)?;
                if q.matches(&r) {
                    out.push((index, r));
                    if out.len() as u64 >= limit {
                        break;
                    }
                } else {
                    let (n, _) = left_out.get_or_insert((0, index));
                    *n += 1;
                }
            }
            if !full || out.len() as u64 >= limit {
                break;
            }
            sq.after_index = Some(last);
            sq.limit = limit - out.len() as u64;
        }
        if let Some((n, first)) = left_out {
            tracing::warn!(
                records = n,
                first_index = first,
                "search: the store's search columns of some records do not match the records \
                 (edited in the database?); they were left out: run `phigate audit verify`"
            );
        }
        Ok(out)
    }

    /// The newest stored checkpoint.
    pub async fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, Error> {
        let Some(c) = self.inner.store.checkpoint_latest().await.map_err(from_store)? else {
            return Ok(None);
        };
        Ok(Some(signed_of(c)?))
    }

    /// Every stored checkpoint, by tree size.
    pub async fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>, Error> {
        let cs = self.inner.store.checkpoints().await.map_err(from_store)?;
        cs.into_iter().map(signed_of).collect()
    }

    /// Issues a signed checkpoint of the whole log now; when the latest checkpoint already
    /// covers the whole log, returns that one (the store keeps one checkpoint per size), and
    /// when another issuer stored a larger one while this one was being made, returns that
    /// larger one (the store keeps checkpoints in order by size and time).
    pub async fn checkpoint(&self) -> Result<SignedCheckpoint, Error> {
        self.issue(false).await?.ok_or(Error::NoSigningKey)
    }

    /// Issues a checkpoint if the log grew since the latest one (None when it did not, or when
    /// another issuer stored a larger one meanwhile).
    pub async fn checkpoint_if_grown(&self) -> Result<Option<SignedCheckpoint>, Error> {
        self.issue(true).await
    }

    async fn issue(&self, only_if_grown: bool) -> Result<Option<SignedCheckpoint>, Error> {
        let signer = self.inner.signer.as_ref().ok_or(Error::NoSigningKey)?;
        let mut frontier = self.inner.frontier.lock().await;
        let latest = self.inner.store.checkpoint_latest().await.map_err(from_store)?;
        let n = self.len().await?;
        if let Some(c) = &latest {
            if c.tree_size >= n {
                // The store keeps one checkpoint per size: the latest already covers the log.
                return if only_if_grown { Ok(None) } else { Ok(Some(signed_of(c.clone())?)) };
            }
        }
        if frontier.size() > n {
            *frontier = Frontier::new();
        }
        // Extend the cached compact range, checking the latest checkpoint on the way.
        let mut at = frontier.size();
        if let Some(c) = &latest {
            if c.tree_size == at && c.tree_size > 0 && frontier.root() != c.root_hash {
                return Err(Error::BadCheckpoint {
                    number: 0,
                    tree_size: c.tree_size,
                    line: 0,
                    problem: "the stored log no longer matches the latest checkpoint".into(),
                });
            }
        }
        while at < n {
            let end = (at + READ_CHUNK).min(n);
            let hs = self.inner.store.ledger_leaf_hashes(at, end).await.map_err(from_store)?;
            for h in hs {
                frontier.push(h);
                if let Some(c) = &latest {
                    if c.tree_size == frontier.size() && frontier.root() != c.root_hash {
                        return Err(Error::BadCheckpoint {
                            number: 0,
                            tree_size: c.tree_size,
                            line: 0,
                            problem: "the stored log no longer matches the latest checkpoint"
                                .into(),
                        });
                    }
                }
            }
            at = end;
        }
        if frontier.size() != n {
            return Err(Error::Store("the store returned fewer leaf hashes than asked".into()));
        }
        // Signed now, after the hashing (which can take seconds in a cold process): not before
        // the latest checkpoint read then. The store keeps its checkpoints in order by size
        // and time against every other issuer (a CLI beside the server, other replicas): it
        // stores this one only if no larger one was stored meanwhile and none was signed
        // later; else it says which, and this one is signed again later or given up for the
        // larger one.
        let mut not_before = latest.as_ref().map_or(0, |c| c.ts_ms);
        for _ in 0..CHECKPOINT_TRIES {
            let ts_ms = now_ms().max(not_before);
            let c = Checkpoint {
                origin: self.inner.origin.clone(),
                tree_size: n,
                root: frontier.root(),
                ts_ms,
            };
            let note = c.sign(signer)?;
            let put = self
                .inner
                .store
                .checkpoint_put(&store::StoredCheckpoint {
                    tree_size: n,
                    root_hash: c.root,
                    ts_ms,
                    note: note.clone(),
                })
                .await
                .map_err(from_store)?;
            match put {
                store::CheckpointPut::Stored | store::CheckpointPut::Exists => {
                    return Ok(Some(SignedCheckpoint { checkpoint: c, note }));
                }
                store::CheckpointPut::Behind(larger) => {
                    // Another issuer stored a checkpoint of more records meanwhile: it covers
                    // this one's, and this one would be out of order after it.
                    tracing::debug!(
                        tree_size = n,
                        stored = larger.tree_size,
                        "a larger checkpoint was stored meanwhile; this one is not"
                    );
                    return if only_if_grown { Ok(None) } else { Ok(Some(signed_of(larger)?)) };
                }
                store::CheckpointPut::TooEarly { not_before_ms } => not_before = not_before_ms,
            }
        }
        Err(Error::Checkpoint(
            "other issuers kept storing checkpoints signed later than this one: try again".into(),
        ))
    }

    /// Re-reads the whole store: every body against its leaf hash and the record rules, every
    /// search column against its record, every checkpoint's root against the records (and its
    /// signature, given a verifier), and the checkpoints' order in time. Names the first bad
    /// record or checkpoint; errors name a search column, never its value.
    ///
    /// A checkpoint out of time order (signed later than one of more records: stored before
    /// the store kept them in order, when two issuers raced) is reported only once everything
    /// else has passed, as it is left out of exports and leaves the rest verifiable.
    pub async fn verify_store(
        &self,
        verifier: Option<&NoteVerifier>,
    ) -> Result<StoreReport, Error> {
        let n = self.len().await?;
        let cps = self.inner.store.checkpoints().await.map_err(from_store)?;
        let mut cp_iter = cps.iter().enumerate().peekable();
        let mut f = Frontier::new();
        let mut checked = 0u64;
        let check_cp = |i: usize, c: &store::StoredCheckpoint, f: &Frontier| -> Result<(), Error> {
            let bad = |problem: String| Error::BadCheckpoint {
                number: i as u64 + 1,
                tree_size: c.tree_size,
                line: 0,
                problem,
            };
            if c.root_hash != f.root() {
                return Err(bad("its root does not match the stored records".into()));
            }
            let claimed = match verifier {
                Some(v) => Checkpoint::open(&c.note, v).map_err(|e| bad(e.to_string()))?,
                None => signed_of(c.clone()).map_err(|e| bad(e.to_string()))?.checkpoint,
            };
            if claimed.tree_size != c.tree_size || claimed.root != c.root_hash {
                return Err(bad("its signed note says something else".into()));
            }
            if claimed.ts_ms != c.ts_ms {
                return Err(bad("its signed note holds another time than its ts_ms column".into()));
            }
            Ok(())
        };
        while let Some((i, c)) = cp_iter.next_if(|(_, c)| c.tree_size == 0) {
            check_cp(i, c, &f)?;
            checked += 1;
        }
        let mut at = 0u64;
        while at < n {
            let end = (at + READ_CHUNK.min(8192)).min(n);
            let rows = self.inner.store.ledger_read_rows(at, end).await.map_err(from_store)?;
            for row in rows {
                let index = row.index;
                if index != f.size() {
                    return Err(Error::BadRecord {
                        index: f.size(),
                        line: 0,
                        problem: "missing from the store".into(),
                    });
                }
                if leaf_hash(&row.entry.body) != row.entry.leaf_hash {
                    return Err(Error::BadRecord {
                        index,
                        line: 0,
                        problem: "its content does not match its leaf hash".into(),
                    });
                }
                let r = Record::decode(&row.entry.body).map_err(|e| Error::BadRecord {
                    index,
                    line: 0,
                    problem: e.to_string(),
                })?;
                if let Some(column) = copy_mismatch(&row.entry, &r) {
                    return Err(Error::BadRecord {
                        index,
                        line: 0,
                        problem: format!(
                            "its search column {column} does not hold what the record says \
                             (edited in the database: searches by it answer wrongly)"
                        ),
                    });
                }
                f.push(row.entry.leaf_hash);
                while let Some((i, c)) = cp_iter.next_if(|(_, c)| c.tree_size == f.size()) {
                    check_cp(i, c, &f)?;
                    checked += 1;
                }
            }
            at = end;
        }
        if f.size() != n {
            return Err(Error::BadRecord {
                index: f.size(),
                line: 0,
                problem: "missing from the store".into(),
            });
        }
        if let Some((i, c)) = cp_iter.next() {
            return Err(Error::BadCheckpoint {
                number: i as u64 + 1,
                tree_size: c.tree_size,
                line: 0,
                problem: format!("it covers more records than the store holds ({n})"),
            });
        }
        // Every ts_ms column matches its signed note (checked above).
        let ts: Vec<i64> = cps.iter().map(|c| c.ts_ms).collect();
        let keep = in_time_order(&ts);
        if let Some(i) = keep.iter().position(|k| !k) {
            let c = &cps[i];
            // A checkpoint kept in order that this one contradicts: one of more records signed
            // earlier, or else one of fewer records signed later.
            let later = (i + 1..cps.len()).find(|&j| keep[j] && cps[j].ts_ms < c.ts_ms);
            let earlier = (0..i).rev().find(|&j| keep[j] && cps[j].ts_ms > c.ts_ms);
            let problem = match (later, earlier) {
                (Some(j), _) => format!(
                    "it is signed later than the checkpoint of size {}, which covers more \
                     records: the two were stored out of time order (issued concurrently); \
                     exports leave this one out",
                    cps[j].tree_size
                ),
                (None, Some(j)) => format!(
                    "it is signed earlier than the checkpoint of size {}, which covers fewer \
                     records: the two were stored out of time order (issued concurrently); \
                     exports leave this one out",
                    cps[j].tree_size
                ),
                (None, None) => "it is out of time order with the other checkpoints; exports \
                                 leave it out"
                    .into(),
            };
            return Err(Error::BadCheckpoint {
                number: i as u64 + 1,
                tree_size: c.tree_size,
                line: 0,
                problem,
            });
        }
        Ok(StoreReport { records: n, checkpoints: checked, root: f.root() })
    }

    /// Writes every record up to the latest checkpoint, every checkpoint and the consistency
    /// proofs between them, as one self-contained file (see [`crate::export`]).
    ///
    /// Checkpoints that are out of time order (see [`Ledger::verify_store`]) are left out,
    /// with a warning: the latest checkpoint stays, and the most of the others that are in
    /// order with it.
    pub async fn export<W: std::io::Write>(&self, out: W) -> Result<ExportSummary, Error> {
        let all = self.inner.store.checkpoints().await.map_err(from_store)?;
        // The signed times, which the export's verifier reads.
        let ts = all
            .iter()
            .map(|c| signed_of(c.clone()).map(|s| s.checkpoint.ts_ms))
            .collect::<Result<Vec<i64>, Error>>()?;
        let keep = in_time_order(&ts);
        let cps: Vec<&store::StoredCheckpoint> =
            all.iter().zip(&keep).filter(|(_, k)| **k).map(|(c, _)| c).collect();
        if cps.len() < all.len() {
            let left_out: Vec<u64> =
                all.iter().zip(&keep).filter(|(_, k)| !**k).map(|(c, _)| c.tree_size).collect();
            tracing::warn!(
                checkpoints = left_out.len(),
                tree_sizes = ?left_out,
                "checkpoints stored out of time order (issued concurrently) are left out of the \
                 export"
            );
        }
        let Some(last) = cps.last() else {
            return Err(Error::Checkpoint("the log has no checkpoint yet: issue one first".into()));
        };
        let upto = last.tree_size;
        let mut w = ExportWriter::new(out, &self.inner.origin)?;
        let mut cp_iter = cps.iter().peekable();
        while let Some(c) = cp_iter.next_if(|c| c.tree_size == 0) {
            w.checkpoint(&c.note)?;
        }
        let mut at = 0u64;
        while at < upto {
            let end = (at + 8192).min(upto);
            let rows = self.inner.store.ledger_read(at, end).await.map_err(from_store)?;
            if rows.len() as u64 != end - at {
                return Err(Error::BadRecord {
                    index: at,
                    line: 0,
                    problem: "missing from the store".into(),
                });
            }
            for row in rows {
                w.record(row.index, &row.leaf_hash, &row.body)?;
                while let Some(c) = cp_iter.next_if(|c| c.tree_size == w.records()) {
                    w.checkpoint(&c.note)?;
                }
            }
            at = end;
        }
        let (_, summary) = w.finish()?;
        Ok(summary)
    }
}

/// Restores a backup file (`store::Store::backup`'s) into an empty store, as
/// [`store::Store::restore`] does, but sets every ledger entry's search columns from its record
/// rather than taking them from the file (whose trailer is a plain SHA-256 that anyone who
/// edits it can recompute). A ledger entry whose body is not a valid record refuses the file
/// (nothing is restored). The records, leaf hashes and checkpoints are restored as they are:
/// check them with [`Ledger::verify_store`] afterwards.
pub async fn restore_backup(
    store: &store::Store,
    path: &std::path::Path,
) -> Result<store::BackupSummary, store::Error> {
    let reindex = |e: &mut store::NewLedgerEntry| -> Result<(), String> {
        let r = Record::decode(&e.body)
            .map_err(|err| format!("does not hold a valid record ({err})"))?;
        set_copies(e, &r);
        Ok(())
    };
    store.restore_with(path, &reindex).await
}

fn decode_entry(e: store::LedgerEntry) -> Result<(u64, Record), Error> {
    if leaf_hash(&e.body) != e.leaf_hash {
        return Err(Error::BadRecord {
            index: e.index,
            line: 0,
            problem: "its content does not match its leaf hash".into(),
        });
    }
    let r = Record::decode(&e.body).map_err(|err| Error::BadRecord {
        index: e.index,
        line: 0,
        problem: err.to_string(),
    })?;
    Ok((e.index, r))
}

fn signed_of(c: store::StoredCheckpoint) -> Result<SignedCheckpoint, Error> {
    let text = c.note.rfind("\n\n").map_or(c.note.as_str(), |i| &c.note[..=i]);
    let checkpoint = Checkpoint::parse_body(text)?;
    Ok(SignedCheckpoint { checkpoint, note: c.note })
}

#[cfg(test)]
mod tests {
    use super::in_time_order;

    fn kept(ts: &[i64]) -> Vec<i64> {
        ts.iter().zip(in_time_order(ts)).filter(|(_, k)| *k).map(|(t, _)| *t).collect()
    }

    /// The latest checkpoint stays, with the longest run of the others in time order with it.
    #[test]
    fn checkpoints_in_time_order() {
        assert!(in_time_order(&[]).is_empty());
        assert_eq!(kept(&[5]), [5]);
        assert_eq!(kept(&[1, 2, 2, 3]), [1, 2, 2, 3], "equal times are in order");
        // A smaller checkpoint signed after the latest.
        assert_eq!(kept(&[1, 5, 2, 3]), [1, 2, 3]);
        assert_eq!(kept(&[10, 1]), [1]);
        // One signed early (a clock behind) costs that one only, not those before it.
        assert_eq!(kept(&[1, 2, 3, 4, 0, 6, 7]), [1, 2, 3, 4, 6, 7]);
        // One signed late costs that one only.
        assert_eq!(kept(&[1, 2, 99, 4, 5]), [1, 2, 4, 5]);
        assert_eq!(kept(&[3, 4, 1, 5]), [3, 4, 5]);
        let ts = [7, 1, 8, 2, 9, 3, 10, 4, 11];
        let k = kept(&ts);
        assert!(k.windows(2).all(|w| w[0] <= w[1]) && k.last() == Some(&11));
        assert_eq!(k.len(), 5);
    }
}
