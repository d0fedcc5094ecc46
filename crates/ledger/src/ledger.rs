//! The log itself, over a [`store::Store`]: group-committed appends, scheduled and on-demand
//! signed checkpoints, proofs, search, store verification and export.
//!
//! Appends go through one background task that gathers whatever callers are waiting into one
//! `ledger_append` transaction (up to [`LedgerConfig::max_batch`]) and acknowledges each caller
//! with its index only once that transaction is durable. Callers never wait on each other's
//! fsyncs: while one batch commits, the next one fills.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

use crate::checkpoint::{Checkpoint, NoteSigner, NoteVerifier};
use crate::export::{ExportSummary, ExportWriter};
use crate::merkle::{self, leaf_hash, Frontier, Hash, ProofError};
use crate::record::{now_ms, Action, Decision, Record};
use crate::Error;

/// How many leaf hashes or records are read from the store at a time.
const READ_CHUNK: u64 = 65_536;

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
        }
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
    ack: oneshot::Sender<Result<u64, Error>>,
}

struct Inner {
    store: store::Store,
    tx: mpsc::Sender<Pending>,
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
    store::NewLedgerEntry {
        leaf_hash: leaf_hash(&body),
        body,
        ts_ms: r.ts_ms(),
        actor: r.actor().as_str().to_string(),
        action: r.action().as_str().to_string(),
        use_case: r.use_case().map_or_else(String::new, |u| u.as_str().to_string()),
        decision: r.decision().as_str().to_string(),
        categories: r.categories().keys().map(|c| c.as_str().to_string()).collect(),
    }
}

async fn committer(store: store::Store, mut rx: mpsc::Receiver<Pending>, max_batch: usize) {
    let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
    let mut entries: Vec<store::NewLedgerEntry> = Vec::with_capacity(max_batch);
    // A message taken from the queue that did not fit the batch before it.
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut size = first.entries.len();
        batch.push(first);
        while size < max_batch {
            match rx.try_recv() {
                Ok(p) if size + p.entries.len() > max_batch => {
                    carried = Some(p);
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
        if batch.is_empty() {
            continue;
        }
        entries.clear();
        let mut starts = Vec::with_capacity(batch.len());
        for p in batch.iter_mut() {
            starts.push(entries.len() as u64);
            entries.append(&mut p.entries);
        }
        let started = std::time::Instant::now();
        let result = store.ledger_append(&entries).await;
        metrics::histogram!("phigate_ledger_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("phigate_ledger_batch_records").record(entries.len() as f64);
        match result {
            Ok(start) => {
                for (p, offset) in batch.drain(..).zip(starts) {
                    let _ = p.ack.send(Ok(start + offset));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = entries.len(), "ledger append failed");
                let msg = e.to_string();
                for p in batch.drain(..) {
                    let _ = p.ack.send(Err(Error::Store(msg.clone())));
                }
            }
        }
    }
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
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        tokio::spawn(committer(store.clone(), rx, cfg.max_batch.max(1)));
        let inner = Arc::new(Inner {
            store,
            tx,
            max_batch: cfg.max_batch.max(1),
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

    /// Appends several records in one transaction, at consecutive indexes in the given order,
    /// and returns the first index once all of them are durable: either every record is in the
    /// log or none is. At most [`LedgerConfig::max_batch`] records (more are refused).
    pub async fn append_all(&self, records: &[Record]) -> Result<u64, Error> {
        if records.is_empty() || records.len() > self.inner.max_batch {
            return Err(Error::InvalidField {
                field: "records",
                problem: "one append takes 1 to max_batch records",
            });
        }
        self.submit(records.iter().map(entry_of).collect()).await
    }

    async fn submit(&self, entries: Vec<store::NewLedgerEntry>) -> Result<u64, Error> {
        let (ack, rx) = oneshot::channel();
        self.inner.tx.send(Pending { entries, ack }).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// The number of records.
    pub async fn len(&self) -> Result<u64, Error> {
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
        let rows = self.inner.store.ledger_read(start, end).await.map_err(from_store)?;
        rows.into_iter().map(decode_entry).collect()
    }

    /// Records matching every filter of `q`, in index order.
    pub async fn search(&self, q: &Query) -> Result<Vec<(u64, Record)>, Error> {
        let sq = store::LedgerQuery {
            from_ms: q.from_ms,
            to_ms: q.to_ms,
            actor: q.actor.as_ref().map(|s| s.as_str().to_string()),
            use_case: q.use_case.as_ref().map(|s| s.as_str().to_string()),
            decision: q.decision.map(|d| d.as_str().to_string()),
            action: q.action.map(|a| a.as_str().to_string()),
            category: q.category.map(|c| c.as_str().to_string()),
            after_index: q.after_index,
            limit: if q.limit == 0 { 1000 } else { q.limit },
        };
        let rows = self.inner.store.ledger_search(&sq).await.map_err(from_store)?;
        rows.into_iter().map(decode_entry).collect()
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
    /// covers the whole log, returns that one (the store keeps one checkpoint per size).
    pub async fn checkpoint(&self) -> Result<SignedCheckpoint, Error> {
        self.issue(false).await?.ok_or(Error::NoSigningKey)
    }

    /// Issues a checkpoint if the log grew since the latest one.
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
        let ts_ms = now_ms().max(latest.as_ref().map_or(0, |c| c.ts_ms));
        let c = Checkpoint {
            origin: self.inner.origin.clone(),
            tree_size: n,
            root: frontier.root(),
            ts_ms,
        };
        let note = c.sign(signer)?;
        self.inner
            .store
            .checkpoint_put(&store::StoredCheckpoint {
                tree_size: n,
                root_hash: c.root,
                ts_ms,
                note: note.clone(),
            })
            .await
            .map_err(from_store)?;
        Ok(Some(SignedCheckpoint { checkpoint: c, note }))
    }

    /// Re-reads the whole store: every body against its leaf hash and the record rules, every
    /// checkpoint's root against the records (and its signature, given a verifier). Names the
    /// first bad record or checkpoint.
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
            if let Some(v) = verifier {
                let opened = Checkpoint::open(&c.note, v).map_err(|e| bad(e.to_string()))?;
                if opened.tree_size != c.tree_size || opened.root != c.root_hash {
                    return Err(bad("its signed note says something else".into()));
                }
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
            let rows = self.inner.store.ledger_read(at, end).await.map_err(from_store)?;
            for row in rows {
                let index = row.index;
                if index != f.size() {
                    return Err(Error::BadRecord {
                        index: f.size(),
                        line: 0,
                        problem: "missing from the store".into(),
                    });
                }
                if leaf_hash(&row.body) != row.leaf_hash {
                    return Err(Error::BadRecord {
                        index,
                        line: 0,
                        problem: "its content does not match its leaf hash".into(),
                    });
                }
                Record::decode(&row.body).map_err(|e| Error::BadRecord {
                    index,
                    line: 0,
                    problem: e.to_string(),
                })?;
                f.push(row.leaf_hash);
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
        Ok(StoreReport { records: n, checkpoints: checked, root: f.root() })
    }

    /// Writes every record up to the latest checkpoint, every checkpoint and the consistency
    /// proofs between them, as one self-contained file (see [`crate::export`]).
    pub async fn export<W: std::io::Write>(&self, out: W) -> Result<ExportSummary, Error> {
        let cps = self.inner.store.checkpoints().await.map_err(from_store)?;
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
