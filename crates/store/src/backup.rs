//! The portable backup file, the same for both backends.
//!
//! JSON lines, UTF-8, `\n` after every line:
//! 1. a header `{"format":"phigate-store-backup","version":2,"backend":"sqlite"}`;
//! 2. the records, table by table in this order: `ledger` (indexes 0, 1, 2… without gaps),
//!    `checkpoint`, `data_key`, `vault`, `api_key`; byte fields are standard base64 with
//!    padding, strings are as stored (an API key's `roles` is the stored JSON array, in its
//!    stored order);
//! 3. a trailer `{"t":"end","ledger_entries":…,"checkpoints":…,"data_keys":…,"vault_rows":…,
//!    "api_keys":…,"sha256":"…"}` whose `sha256` (hex) covers every byte before the trailer line.
//!
//! Version 1 (before API keys were backed up) is still read: it has no `api_key` records and no
//! `api_keys` count. Any other version is refused. Nothing may follow the trailer. A file without
//! a trailer is truncated; a file whose digest or counts differ is damaged: all are
//! [`Error::Corrupt`] and nothing is restored.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};

use crate::{
    hash32, ApiKeyRow, Backend, BackupSummary, DataKeyRow, Error, NewLedgerEntry, Reindex,
    StoredCheckpoint, VaultRow,
};

const FORMAT: &str = "phigate-store-backup";
/// The version this build writes.
const VERSION: u32 = 2;
/// The first version, without API keys; still read.
const VERSION_1: u32 = 1;

/// One row of one table.
pub(crate) enum Record {
    Ledger { index: u64, entry: NewLedgerEntry },
    Checkpoint(StoredCheckpoint),
    DataKey(DataKeyRow),
    Vault(VaultRow),
    ApiKey(ApiKeyRow),
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    backend: String,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Line {
    Ledger {
        index: u64,
        leaf_hash: String,
        body: String,
        ts_ms: i64,
        actor: String,
        action: String,
        use_case: String,
        decision: String,
        categories: Vec<String>,
    },
    Checkpoint {
        tree_size: u64,
        root_hash: String,
        ts_ms: i64,
        note: String,
    },
    DataKey {
        key_id: String,
        scope: String,
        kek_id: String,
        wrapped: String,
        created_ms: i64,
        expires_at_ms: Option<i64>,
        shredded_ms: Option<i64>,
    },
    Vault {
        scope: String,
        token: String,
        key_id: String,
        fingerprint: String,
        nonce: String,
        ciphertext: String,
        created_ms: i64,
    },
    ApiKey {
        id: String,
        secret_sha256: String,
        identity: String,
        roles: Vec<String>,
        use_case: Option<String>,
        created_ms: i64,
        expires_ms: Option<i64>,
        revoked_ms: Option<i64>,
    },
    End {
        ledger_entries: u64,
        checkpoints: u64,
        data_keys: u64,
        vault_rows: u64,
        /// Absent in version 1 files, required from version 2 on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        api_keys: Option<u64>,
        sha256: String,
    },
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt(format!("backup file: {what}"))
}

fn unb64(s: &str) -> Result<Vec<u8>, Error> {
    B64.decode(s).map_err(|_| corrupt("bad base64"))
}

impl Record {
    fn to_line(&self) -> Line {
        match self {
            Record::Ledger { index, entry: e } => Line::Ledger {
                index: *index,
                leaf_hash: B64.encode(e.leaf_hash),
                body: B64.encode(&e.body),
                ts_ms: e.ts_ms,
                actor: e.actor.clone(),
                action: e.action.clone(),
                use_case: e.use_case.clone(),
                decision: e.decision.clone(),
                categories: e.categories.clone(),
            },
            Record::Checkpoint(c) => Line::Checkpoint {
                tree_size: c.tree_size,
                root_hash: B64.encode(c.root_hash),
                ts_ms: c.ts_ms,
                note: c.note.clone(),
            },
            Record::DataKey(k) => Line::DataKey {
                key_id: k.key_id.clone(),
                scope: k.scope.clone(),
                kek_id: k.kek_id.clone(),
                wrapped: B64.encode(&k.wrapped),
                created_ms: k.created_ms,
                expires_at_ms: k.expires_at_ms,
                shredded_ms: k.shredded_ms,
            },
            Record::Vault(v) => Line::Vault {
                scope: v.scope.clone(),
                token: v.token.clone(),
                key_id: v.key_id.clone(),
                fingerprint: B64.encode(&v.fingerprint),
                nonce: B64.encode(&v.nonce),
                ciphertext: B64.encode(&v.ciphertext),
                created_ms: v.created_ms,
            },
            Record::ApiKey(k) => Line::ApiKey {
                id: k.id.clone(),
                secret_sha256: B64.encode(k.secret_sha256),
                identity: k.identity.clone(),
                roles: k.roles.clone(),
                use_case: k.use_case.clone(),
                created_ms: k.created_ms,
                expires_ms: k.expires_ms,
                revoked_ms: k.revoked_ms,
            },
        }
    }

    fn from_line(l: Line) -> Result<Option<Record>, Error> {
        Ok(Some(match l {
            Line::Ledger {
                index,
                leaf_hash,
                body,
                ts_ms,
                actor,
                action,
                use_case,
                decision,
                categories,
            } => Record::Ledger {
                index,
                entry: NewLedgerEntry {
                    leaf_hash: hash32(&unb64(&leaf_hash)?)?,
                    body: unb64(&body)?,
                    ts_ms,
                    actor,
                    action,
                    use_case,
                    decision,
                    categories,
                },
            },
            Line::Checkpoint { tree_size, root_hash, ts_ms, note } => {
                Record::Checkpoint(StoredCheckpoint {
                    tree_size,
                    root_hash: hash32(&unb64(&root_hash)?)?,
                    ts_ms,
                    note,
                })
            }
            Line::DataKey {
                key_id,
                scope,
                kek_id,
                wrapped,
                created_ms,
                expires_at_ms,
                shredded_ms,
            } => Record::DataKey(DataKeyRow {
                key_id,
                scope,
                kek_id,
                wrapped: unb64(&wrapped)?,
                created_ms,
                expires_at_ms,
                shredded_ms,
            }),
            Line::Vault { scope, token, key_id, fingerprint, nonce, ciphertext, created_ms } => {
                Record::Vault(VaultRow {
                    scope,
                    token,
                    key_id,
                    fingerprint: unb64(&fingerprint)?,
                    nonce: unb64(&nonce)?,
                    ciphertext: unb64(&ciphertext)?,
                    created_ms,
                })
            }
            Line::ApiKey {
                id,
                secret_sha256,
                identity,
                roles,
                use_case,
                created_ms,
                expires_ms,
                revoked_ms,
            } => Record::ApiKey(ApiKeyRow {
                id,
                secret_sha256: hash32(&unb64(&secret_sha256)?)?,
                identity,
                roles,
                use_case,
                created_ms,
                expires_ms,
                revoked_ms,
            }),
            Line::End { .. } => return Ok(None),
        }))
    }

    /// Position of the record's table in the file (tables never interleave).
    fn section(&self) -> u8 {
        match self {
            Record::Ledger { .. } => 0,
            Record::Checkpoint(_) => 1,
            Record::DataKey(_) => 2,
            Record::Vault(_) => 3,
            Record::ApiKey(_) => 4,
        }
    }
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    ledger_entries: u64,
    checkpoints: u64,
    data_keys: u64,
    vault_rows: u64,
    api_keys: u64,
}

impl Counts {
    fn add(&mut self, r: &Record) {
        match r {
            Record::Ledger { .. } => self.ledger_entries += 1,
            Record::Checkpoint(_) => self.checkpoints += 1,
            Record::DataKey(_) => self.data_keys += 1,
            Record::Vault(_) => self.vault_rows += 1,
            Record::ApiKey(_) => self.api_keys += 1,
        }
    }

    fn summary(self, sha256: String) -> BackupSummary {
        BackupSummary {
            ledger_entries: self.ledger_entries,
            checkpoints: self.checkpoints,
            data_keys: self.data_keys,
            vault_rows: self.vault_rows,
            api_keys: self.api_keys,
            sha256,
        }
    }
}

/// Writes a backup to a temporary file beside the target, renamed into place by `finish`.
pub(crate) struct Writer {
    out: BufWriter<tokio::fs::File>,
    tmp: PathBuf,
    path: PathBuf,
    hasher: Sha256,
    counts: Counts,
    line: Vec<u8>,
}

impl Writer {
    pub(crate) async fn create(path: &Path, backend: Backend) -> Result<Writer, Error> {
        let mut name = path
            .file_name()
            .ok_or_else(|| Error::Backend("backup path has no file name".into()))?
            .to_os_string();
        name.push(format!(".tmp-{}", std::process::id()));
        let tmp = path.with_file_name(name);
        // For the owner only: a backup holds the vault's sealed values and wrapped keys.
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .await?;
        let mut w = Writer {
            out: BufWriter::with_capacity(1 << 16, file),
            tmp,
            path: path.to_path_buf(),
            hasher: Sha256::new(),
            counts: Counts::default(),
            line: Vec::with_capacity(1024),
        };
        let header =
            Header { format: FORMAT.into(), version: VERSION, backend: backend.to_string() };
        w.line.clear();
        serde_json::to_writer(&mut w.line, &header)
            .map_err(|_| Error::Backend("cannot encode the backup header".into()))?;
        w.emit().await?;
        Ok(w)
    }

    async fn emit(&mut self) -> Result<(), Error> {
        self.line.push(b'\n');
        self.hasher.update(&self.line);
        self.out.write_all(&self.line).await?;
        Ok(())
    }

    pub(crate) async fn write(&mut self, r: &Record) -> Result<(), Error> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, &r.to_line())
            .map_err(|_| Error::Backend("cannot encode a backup record".into()))?;
        self.emit().await?;
        self.counts.add(r);
        Ok(())
    }

    pub(crate) async fn finish(mut self) -> Result<BackupSummary, Error> {
        let sha256 = hex::encode(self.hasher.clone().finalize());
        let c = self.counts;
        let end = Line::End {
            ledger_entries: c.ledger_entries,
            checkpoints: c.checkpoints,
            data_keys: c.data_keys,
            vault_rows: c.vault_rows,
            api_keys: Some(c.api_keys),
            sha256: sha256.clone(),
        };
        let mut line = serde_json::to_vec(&end)
            .map_err(|_| Error::Backend("cannot encode the backup trailer".into()))?;
        line.push(b'\n');
        let res = async {
            self.out.write_all(&line).await?;
            self.out.flush().await?;
            self.out.get_ref().sync_all().await?;
            tokio::fs::rename(&self.tmp, &self.path).await?;
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                // Best effort: make the rename durable where directories can be synced.
                if let Ok(d) = tokio::fs::File::open(dir).await {
                    let _ = d.sync_all().await;
                }
            }
            Ok::<(), std::io::Error>(())
        }
        .await;
        if let Err(e) = res {
            let _ = tokio::fs::remove_file(&self.tmp).await;
            return Err(e.into());
        }
        Ok(c.summary(sha256))
    }

    pub(crate) async fn abandon(self) {
        drop(self.out);
        let _ = tokio::fs::remove_file(&self.tmp).await;
    }
}

/// Reads and checks a backup file record by record: header, table order, gapless ledger
/// indexes, then the trailer's counts and digest. With [`Reader::reindex`], sets each ledger
/// entry's search copies from its body.
pub(crate) struct Reader<'a> {
    input: BufReader<tokio::fs::File>,
    hasher: Sha256,
    counts: Counts,
    section: u8,
    buf: Vec<u8>,
    trailer: Option<BackupSummary>,
    /// The file's format version (1 or 2).
    version: u32,
    /// Rebuilds a ledger entry's search copies from its body.
    reindex: Option<&'a Reindex>,
    /// Ledger entries whose copies in the file differed from the rebuilt ones, and the first.
    rebuilt: Option<(u64, u64)>,
}

impl<'a> Reader<'a> {
    pub(crate) async fn open(path: &Path) -> Result<Reader<'a>, Error> {
        let file = tokio::fs::File::open(path).await?;
        let mut r = Reader {
            input: BufReader::with_capacity(1 << 16, file),
            hasher: Sha256::new(),
            counts: Counts::default(),
            section: 0,
            buf: Vec::with_capacity(1024),
            trailer: None,
            version: VERSION,
            reindex: None,
            rebuilt: None,
        };
        if !r.read_line().await? {
            return Err(corrupt("empty file"));
        }
        r.hasher.update(&r.buf);
        let header: Header = serde_json::from_slice(&r.buf).map_err(|_| corrupt("bad header"))?;
        if header.format != FORMAT {
            return Err(corrupt("not a phigate store backup"));
        }
        if header.version != VERSION && header.version != VERSION_1 {
            return Err(Error::Corrupt(format!(
                "backup file: unsupported format version {} (this build reads versions \
                 {VERSION_1} and {VERSION})",
                header.version
            )));
        }
        r.version = header.version;
        Ok(r)
    }

    /// Sets each ledger entry's search copies with `f` rather than taking the file's.
    pub(crate) fn reindex(mut self, f: &'a Reindex) -> Reader<'a> {
        self.reindex = Some(f);
        self
    }

    /// How many ledger entries' copies in the file differed from the rebuilt ones, and the
    /// index of the first; None when none did (or nothing was rebuilt).
    pub(crate) fn rebuilt(&self) -> Option<(u64, u64)> {
        self.rebuilt
    }

    /// Reads one line (with its `\n`) into `buf`; false at end of file.
    async fn read_line(&mut self) -> Result<bool, Error> {
        self.buf.clear();
        let n = self.input.read_until(b'\n', &mut self.buf).await?;
        if n == 0 {
            return Ok(false);
        }
        if self.buf.last() != Some(&b'\n') {
            return Err(corrupt("truncated (last line incomplete)"));
        }
        Ok(true)
    }

    /// The next record; `None` after the trailer was read and checked against the content.
    pub(crate) async fn next(&mut self) -> Result<Option<Record>, Error> {
        if self.trailer.is_some() {
            return Ok(None);
        }
        if !self.read_line().await? {
            return Err(corrupt("truncated (no trailer)"));
        }
        let line: Line = serde_json::from_slice(&self.buf).map_err(|_| corrupt("bad record"))?;
        if let Line::End { ledger_entries, checkpoints, data_keys, vault_rows, api_keys, sha256 } =
            line
        {
            let digest = hex::encode(self.hasher.clone().finalize());
            if digest != sha256 {
                return Err(corrupt("checksum mismatch"));
            }
            let api_keys = match (self.version, api_keys) {
                (VERSION_1, None) => 0,
                (VERSION_1, Some(_)) => return Err(corrupt("version 1 trailer counts API keys")),
                (_, Some(n)) => n,
                (_, None) => return Err(corrupt("trailer lacks the api_keys count")),
            };
            let found = Counts { ledger_entries, checkpoints, data_keys, vault_rows, api_keys };
            if found != self.counts {
                return Err(corrupt("record counts differ from the trailer"));
            }
            if self.read_line().await? {
                return Err(corrupt("data after the trailer"));
            }
            self.trailer = Some(found.summary(sha256));
            return Ok(None);
        }
        self.hasher.update(&self.buf);
        let mut rec = Record::from_line(line)?.ok_or_else(|| corrupt("bad record"))?;
        if self.version == VERSION_1 && matches!(rec, Record::ApiKey(_)) {
            return Err(corrupt("API key record in a version 1 file"));
        }
        if rec.section() < self.section {
            return Err(corrupt("tables out of order"));
        }
        self.section = rec.section();
        if let Record::Ledger { index, entry } = &mut rec {
            if *index != self.counts.ledger_entries {
                return Err(corrupt("ledger indexes are not 0, 1, 2…"));
            }
            if let Some(f) = self.reindex {
                let leaf = entry.leaf_hash;
                let was_categories = crate::canonical_categories(&entry.categories)
                    .into_iter()
                    .map(str::to_string)
                    .collect::<Vec<_>>();
                let was = (
                    entry.ts_ms,
                    std::mem::take(&mut entry.actor),
                    std::mem::take(&mut entry.action),
                    std::mem::take(&mut entry.use_case),
                    std::mem::take(&mut entry.decision),
                );
                f(entry).map_err(|e| {
                    Error::Corrupt(format!("backup file: ledger entry {index} {e}"))
                })?;
                if entry.leaf_hash != leaf {
                    return Err(Error::Backend("reindexing changed a ledger entry".into()));
                }
                let categories = crate::canonical_categories(&entry.categories)
                    .into_iter()
                    .map(str::to_string)
                    .collect::<Vec<_>>();
                entry.categories = categories;
                let same = was.0 == entry.ts_ms
                    && was.1 == entry.actor
                    && was.2 == entry.action
                    && was.3 == entry.use_case
                    && was.4 == entry.decision
                    && was_categories == entry.categories;
                if !same {
                    match &mut self.rebuilt {
                        Some((n, _)) => *n += 1,
                        None => self.rebuilt = Some((1, *index)),
                    }
                }
            }
        }
        self.counts.add(&rec);
        Ok(Some(rec))
    }

    /// After the last record: the file's checked trailer must equal what `verify` saw (the file
    /// did not change between the two passes).
    pub(crate) fn finish(&self, expect: &BackupSummary) -> Result<(), Error> {
        match &self.trailer {
            Some(t) if t == expect => Ok(()),
            Some(_) => Err(corrupt("changed while it was being restored")),
            None => Err(corrupt("truncated (no trailer)")),
        }
    }
}

/// Reads the whole file and checks it, writing nothing.
pub(crate) async fn verify(path: &Path) -> Result<BackupSummary, Error> {
    let mut r = Reader::open(path).await?;
    while r.next().await?.is_some() {}
    r.trailer.ok_or_else(|| corrupt("truncated (no trailer)"))
}

/// Records gathered for one multi-row insert per table.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) ledger_start: Option<u64>,
    pub(crate) ledger: Vec<NewLedgerEntry>,
    pub(crate) checkpoints: Vec<StoredCheckpoint>,
    pub(crate) data_keys: Vec<DataKeyRow>,
    pub(crate) vault: Vec<VaultRow>,
    pub(crate) api_keys: Vec<ApiKeyRow>,
}

impl Batch {
    /// Adds a record; returns the full batch (leaving this one empty) once it holds `cap`.
    pub(crate) fn push(&mut self, r: Record, cap: usize) -> Option<Batch> {
        match r {
            Record::Ledger { index, entry } => {
                self.ledger_start.get_or_insert(index);
                self.ledger.push(entry);
            }
            Record::Checkpoint(c) => self.checkpoints.push(c),
            Record::DataKey(k) => self.data_keys.push(k),
            Record::Vault(v) => self.vault.push(v),
            Record::ApiKey(k) => self.api_keys.push(k),
        }
        let n = self.ledger.len()
            + self.checkpoints.len()
            + self.data_keys.len()
            + self.vault.len()
            + self.api_keys.len();
        (n >= cap).then(|| std::mem::take(self))
    }
}
