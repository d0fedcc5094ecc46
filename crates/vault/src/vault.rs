//! The [`Vault`]: tokenize (get-or-insert), reveal, rotation, retention and shredding over a
//! [`store::Store`], with every re-identification, shred and rotation recorded in the ledger first.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ledger::{Action, Decision, Ledger, Record};
use phi::Category;
use rand::RngCore;
use store::{DataKeyRow, NewScope, Store, VaultRow};

use crate::codes::{
    validate_scope, validate_token, validate_value, Actor, RevealReason, ShredReason,
};
use crate::crypto::{self, DataKey};
use crate::error::{Error, KmsError, Result};
use crate::kek::{Keyring, Kms};
use crate::secret::{PlainValue, Revealed};

/// How a vault behaves. Build with [`VaultConfig::default`] and set fields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct VaultConfig {
    /// Retention of a new scope (its data keys expire this long after the scope's first key is
    /// made; the sweeper then shreds them). `None`: kept until shredded explicitly.
    pub retention: Option<Duration>,
    /// How many unwrapped data keys to keep in memory (0 disables the cache: every operation
    /// unwraps through the KMS).
    pub key_cache: usize,
    /// The actor recorded in the ledger for shreds by the retention sweeper.
    pub sweeper_actor: Actor,
    /// How many stored vault rows (token, keyed fingerprint, ciphertext: never a value in the
    /// clear) to keep in memory, so that a conversation's known values are tokenized and
    /// revealed without a store read. 0 disables the row cache.
    pub row_cache: usize,
    /// How long a data key's row (live, shredded, expiry, wrapping) read from the store is
    /// trusted before it is read again. A shred or rotation made through this vault takes
    /// effect at once; one made by another replica (or `phigate vault shred`) within this
    /// time. `Duration::ZERO` reads the store on every operation.
    pub key_row_ttl: Duration,
}

impl Default for VaultConfig {
    fn default() -> Self {
        VaultConfig {
            retention: Some(Duration::from_secs(30 * 24 * 3600)),
            key_cache: 10_000,
            sweeper_actor: Actor::sweeper(),
            row_cache: 50_000,
            key_row_ttl: Duration::from_secs(1),
        }
    }
}

/// One value to tokenize: its category, the value, and the token to give it if it is new
/// (`None`: the vault mints one). `Debug` never shows the value.
#[derive(Clone, Copy)]
pub struct NewValue<'a> {
    /// The PHI category.
    pub category: Category,
    /// The value (PHI).
    pub value: &'a str,
    /// The token for the value if the scope does not hold it yet.
    pub token: Option<&'a str>,
}

impl std::fmt::Debug for NewValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewValue")
            .field("category", &self.category)
            .field("value", &"<redacted>")
            .field("token", &self.token)
            .finish()
    }
}

/// The token a value got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokenized {
    /// The token (a placeholder, not PHI).
    pub token: String,
    /// Whether the value was new in the scope (false: the scope already held it under `token`).
    pub created: bool,
}

/// A scope's active data key (ids and times only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeKey {
    /// The data key's id (also its reference in the ledger).
    pub key_id: String,
    /// Its generation in the scope (1 for the first key, +1 per data-key rotation).
    pub generation: u32,
    /// The KEK that wraps it.
    pub kek_id: String,
    /// When it expires (ms since the epoch), if the scope has a retention.
    pub expires_at_ms: Option<i64>,
}

/// What a KEK rotation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KekRotation {
    /// The new active KEK.
    pub kek_id: String,
    /// Data keys re-wrapped under it.
    pub rewrapped: usize,
}

/// What a shred did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShredReport {
    /// Ids of the data keys destroyed (each has its own ledger record).
    pub key_ids: Vec<String>,
}

/// The token vault. Cheap to clone (an `Arc` inside); `Send + Sync`.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    ledger: Ledger,
    keyring: RwLock<Keyring>,
    /// Unwrapped data keys, with when each was last used.
    cache: Mutex<HashMap<String, (Arc<DataKey>, Instant)>>,
    /// Data key rows by key id, with when they were read (trusted for `key_row_ttl`).
    key_rows: quick_cache::sync::Cache<String, (DataKeyRow, Instant)>,
    /// The active key id of a scope, with when it was read (trusted for `key_row_ttl`).
    active: quick_cache::sync::Cache<String, (String, Instant)>,
    /// Stored vault rows by keyed fingerprint (for tokenize).
    by_fp: quick_cache::sync::Cache<Vec<u8>, Arc<VaultRow>>,
    /// Stored vault rows by (scope, token) (for reveal).
    by_token: quick_cache::sync::Cache<(String, String), Arc<VaultRow>>,
    /// The highest `[CATEGORY_n]` number per category of a scope, as this process last stored
    /// or read them: a scope that gathers values for weeks is not read whole for each new
    /// one. Another writer's number is found when the store refuses this one's
    /// ([`Error::TokenInUse`]), which drops the entry.
    numbers: quick_cache::sync::Cache<String, HashMap<Category, u64>>,
    /// New keys and rows, group-committed.
    writes: crate::writes::Writes,
    config: VaultConfig,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("backend", &self.inner.store.backend())
            .field("keyring", &*read(&self.inner.keyring))
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The public ledger reference of a scope (`vs-` + 24 letters of a hash of the scope): what
/// vault records carry as their resource, so an auditor who knows a scope can find its records.
pub fn scope_ref(scope: &str) -> String {
    crypto::scope_ref(scope)
}

fn now_ms() -> i64 {
    ledger::record::now_ms()
}

fn read(l: &RwLock<Keyring>) -> std::sync::RwLockReadGuard<'_, Keyring> {
    // A poisoned lock only means a panic elsewhere while holding it; the ring itself is
    // always consistent (each mutation is a single insert/assign).
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(l: &RwLock<Keyring>) -> std::sync::RwLockWriteGuard<'_, Keyring> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn is_expired(row: &DataKeyRow, now: i64) -> bool {
    row.expires_at_ms.is_some_and(|e| e <= now)
}

/// What a failed unwrap means: the KEK is wrong or the wrapped key (or its row) was altered;
/// anything else the KMS reports passes through.
fn unwrap_error(row: &DataKeyRow, e: KmsError) -> Error {
    match e {
        KmsError::Rejected | KmsError::Malformed => {
            Error::KeyUnwrap { key_id: row.key_id.clone(), kek_id: row.kek_id.clone() }
        }
        other => Error::Kms(other),
    }
}

/// The highest n of the `[CATEGORY_n]` tokens among `tokens`, per category. Minted tokens
/// (`[CATEGORY_hex]`) count only if their hex happens to be all digits, which at worst skips
/// numbers.
/// How far past its count [`Vault::values_of`] looks for numbers another replica stored.
const PROBE: u64 = 8;

/// Most values of one category [`Vault::values_of`] reads; past it the call fails (closed).
pub const MAX_VALUES_OF: u64 = 4096;

/// The number of a numbered token (`[NAME_12]` is 12).
fn token_number(t: &str) -> Option<u64> {
    let (_, n) = t.strip_suffix(']')?.rsplit_once('_')?;
    n.parse().ok()
}

fn highest_numbers(tokens: &[String]) -> HashMap<Category, u64> {
    let mut out: HashMap<Category, u64> = HashMap::new();
    for t in tokens {
        let Some((cat, n)) =
            t.strip_prefix('[').and_then(|t| t.strip_suffix(']')).and_then(|t| t.rsplit_once('_'))
        else {
            continue;
        };
        if n.is_empty() || n.len() > 9 || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let (Ok(cat), Ok(n)) = (cat.parse::<Category>(), n.parse::<u64>()) else { continue };
        let e = out.entry(cat).or_insert(0);
        *e = (*e).max(n);
    }
    out
}

/// When a scope made at `now` expires under `retention`.
fn expiry(retention: Option<Duration>, now: i64) -> Option<i64> {
    retention.map(|r| now.saturating_add(i64::try_from(r.as_millis()).unwrap_or(i64::MAX)))
}

fn mint_token(category: Category) -> String {
    let mut r = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut r);
    format!("[{}_{}]", category.as_str(), hex::encode(r))
}

impl Vault {
    /// A vault over `store`, recording into `ledger`, with the KEKs in `keyring`.
    pub fn new(store: Store, ledger: Ledger, keyring: Keyring, config: VaultConfig) -> Vault {
        let keys = config.key_cache.max(1);
        let rows = config.row_cache.max(1);
        let writes = crate::writes::Writes::new(store.clone());
        Vault {
            inner: Arc::new(Inner {
                store,
                ledger,
                keyring: RwLock::new(keyring),
                cache: Mutex::new(HashMap::new()),
                key_rows: quick_cache::sync::Cache::new(keys),
                active: quick_cache::sync::Cache::new(keys),
                by_fp: quick_cache::sync::Cache::new(rows),
                by_token: quick_cache::sync::Cache::new(rows),
                numbers: quick_cache::sync::Cache::new(keys),
                writes,
                config,
            }),
        }
    }

    /// How long a new scope's data key lives (the configuration this vault was made with).
    pub fn retention(&self) -> Option<std::time::Duration> {
        self.inner.config.retention
    }

    /// The id of the active KEK.
    pub fn active_kek_id(&self) -> String {
        read(&self.inner.keyring).active_id().to_owned()
    }

    /// Adds a KEK that can unwrap (not the active one): roll a new KEK out to every replica
    /// this way before one of them rotates to it.
    pub fn add_kek(&self, kek: Arc<dyn Kms>) {
        let mut ring = write(&self.inner.keyring);
        *ring = ring.clone().with_previous(kek);
    }

    // ---- keys ------------------------------------------------------------------------------

    fn cache_get(&self, key_id: &str) -> Option<Arc<DataKey>> {
        let mut cache = self.inner.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.get_mut(key_id).map(|(k, used)| {
            *used = Instant::now();
            k.clone()
        })
    }

    /// Drops the unwrapped data keys not used for `idle`: a key shredded elsewhere (by
    /// `phigate vault shred`, or another replica's sweeper) that this process does not use
    /// again would otherwise stay in its memory. The sweeper calls it on each pass. Returns
    /// how many were dropped.
    pub fn drop_idle_keys(&self, idle: std::time::Duration) -> usize {
        let mut cache = self.inner.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = cache.len();
        cache.retain(|_, (_, used)| used.elapsed() < idle);
        before - cache.len()
    }

    fn cache_put(&self, key_id: &str, key: Arc<DataKey>) {
        if self.inner.config.key_cache == 0 {
            return;
        }
        let mut cache = self.inner.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= self.inner.config.key_cache {
            cache.clear();
        }
        cache.insert(key_id.to_owned(), (key, Instant::now()));
    }

    fn cache_evict(&self, key_id: &str) {
        let mut cache = self.inner.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.remove(key_id);
        drop(cache);
        self.inner.key_rows.remove(key_id);
    }

    /// Forgets what is cached of `scope`'s keys (its rows become unusable: every use of a
    /// cached vault row goes through its data key's row).
    fn forget_scope(&self, scope: &str) {
        self.inner.numbers.remove(scope);
        if let Some((_, (key_id, _))) = self.inner.active.remove(scope) {
            self.cache_evict(&key_id);
        }
    }

    fn fresh<T: Clone>(&self, hit: Option<(T, Instant)>) -> Option<T> {
        let ttl = self.inner.config.key_row_ttl;
        hit.filter(|(_, at)| at.elapsed() < ttl).map(|(v, _)| v)
    }

    /// A data key row by id: from memory while fresh, else from the store.
    async fn key_row(&self, key_id: &str) -> Result<Option<DataKeyRow>> {
        if let Some(row) = self.fresh(self.inner.key_rows.get(key_id)) {
            return Ok(Some(row));
        }
        let row = self.inner.store.data_key_get(key_id).await?;
        if let Some(r) = &row {
            self.inner.key_rows.insert(key_id.to_owned(), (r.clone(), Instant::now()));
        }
        Ok(row)
    }

    /// The scope's active data key row, from memory while fresh, else from the store; `None`
    /// if the scope never had a key. A scope whose every key is shredded stays shredded
    /// ([`Error::Shredded`]). One store read at most.
    async fn latest_row(&self, scope: &str) -> Result<Option<DataKeyRow>> {
        if let Some(key_id) = self.fresh(self.inner.active.get(scope)) {
            if let Some(row) = self.fresh(self.inner.key_rows.get(&key_id)) {
                return Ok(Some(row));
            }
        }
        match self.inner.store.data_key_latest(scope).await? {
            Some(r) if r.shredded_ms.is_some() => {
                self.forget_scope(scope);
                self.cache_evict(&r.key_id);
                Err(Error::Shredded { scope: scope.to_owned() })
            }
            Some(r) => {
                let now = Instant::now();
                self.inner.key_rows.insert(r.key_id.clone(), (r.clone(), now));
                self.inner.active.insert(scope.to_owned(), (r.key_id.clone(), now));
                Ok(Some(r))
            }
            None => Ok(None),
        }
    }

    /// Keeps a stored row in memory (by fingerprint and by token), when the row cache is on.
    fn remember(&self, row: &Arc<VaultRow>) {
        if self.inner.config.row_cache == 0 {
            return;
        }
        self.inner.by_fp.insert(row.fingerprint.clone(), row.clone());
        self.inner.by_token.insert((row.scope.clone(), row.token.clone()), row.clone());
    }

    /// The stored row of a fingerprint in `scope`: from memory, else from the store.
    async fn find_row(&self, scope: &str, fp: &[u8]) -> Result<Option<Arc<VaultRow>>> {
        if let Some(row) = self.inner.by_fp.get(fp) {
            if row.scope == scope {
                return Ok(Some(row));
            }
        }
        match self.inner.store.vault_find(scope, fp).await? {
            Some(row) => {
                let row = Arc::new(row);
                self.remember(&row);
                Ok(Some(row))
            }
            None => Ok(None),
        }
    }

    /// Unwraps a live, unexpired data key row (through the cache).
    async fn open_key(&self, row: &DataKeyRow, now: i64) -> Result<Arc<DataKey>> {
        // A key shredded (by another process) or expired leaves this one's memory as soon as
        // its row says so.
        if row.shredded_ms.is_some() || row.wrapped.is_empty() {
            self.cache_evict(&row.key_id);
            return Err(Error::Shredded { scope: row.scope.clone() });
        }
        if is_expired(row, now) {
            self.cache_evict(&row.key_id);
            return Err(Error::Expired { scope: row.scope.clone() });
        }
        // Key ids are derived from their scope: a row whose scope or id was edited is refused
        // here, even when the key itself is cached.
        let bound = crypto::key_generation(&row.key_id).map(|g| crypto::key_id(&row.scope, g));
        if bound.as_deref() != Some(row.key_id.as_str()) {
            return Err(Error::KeyUnwrap {
                key_id: row.key_id.clone(),
                kek_id: row.kek_id.clone(),
            });
        }
        if let Some(k) = self.cache_get(&row.key_id) {
            return Ok(k);
        }
        let kek = read(&self.inner.keyring).get(&row.kek_id).cloned().ok_or_else(|| {
            Error::UnknownKek { key_id: row.key_id.clone(), kek_id: row.kek_id.clone() }
        })?;
        let aad = crypto::wrap_aad(&row.kek_id, &row.scope, &row.key_id);
        let raw = kek.unwrap(&row.wrapped, &aad).await.map_err(|e| unwrap_error(row, e))?;
        let key = Arc::new(DataKey::derive(&raw).ok_or_else(|| Error::KeyUnwrap {
            key_id: row.key_id.clone(),
            kek_id: row.kek_id.clone(),
        })?);
        self.cache_put(&row.key_id, key.clone());
        Ok(key)
    }

    /// Makes and wraps data key `generation` of `scope` (not stored yet): its row and the key.
    async fn make_key(
        &self,
        scope: &str,
        generation: u32,
        expires_at_ms: Option<i64>,
    ) -> Result<(DataKeyRow, Arc<DataKey>)> {
        let raw = crypto::generate_raw_key();
        let kek = read(&self.inner.keyring).active().clone();
        let key_id = crypto::key_id(scope, generation);
        let aad = crypto::wrap_aad(kek.id(), scope, &key_id);
        let wrapped = kek.wrap(raw.as_ref(), &aad).await?;
        let key = Arc::new(DataKey::derive(raw.as_ref()).ok_or_else(|| Error::KeyUnwrap {
            key_id: key_id.clone(),
            kek_id: kek.id().to_owned(),
        })?);
        let row = DataKeyRow {
            key_id,
            scope: scope.to_owned(),
            kek_id: kek.id().to_owned(),
            wrapped,
            created_ms: now_ms(),
            expires_at_ms,
            shredded_ms: None,
        };
        Ok((row, key))
    }

    /// Keeps a key just stored in memory, as its scope's active key.
    fn keep_key(&self, row: &DataKeyRow, key: Arc<DataKey>) {
        self.cache_put(&row.key_id, key);
        let now = Instant::now();
        self.inner.key_rows.insert(row.key_id.clone(), (row.clone(), now));
        self.inner.active.insert(row.scope.clone(), (row.key_id.clone(), now));
    }

    /// Makes, wraps and stores data key `generation` of `scope`. `Ok(None)`: another writer
    /// made that generation first.
    async fn create_key(
        &self,
        scope: &str,
        generation: u32,
        expires_at_ms: Option<i64>,
    ) -> Result<Option<(DataKeyRow, Arc<DataKey>)>> {
        let (row, key) = self.make_key(scope, generation, expires_at_ms).await?;
        if !self.inner.writes.put_key(row.clone()).await? {
            return Ok(None);
        }
        self.keep_key(&row, key.clone());
        Ok(Some((row, key)))
    }

    /// Whether the scope ever had a data key (its first generation exists, live or shredded).
    async fn scope_existed(&self, scope: &str) -> Result<Option<DataKeyRow>> {
        Ok(self.inner.store.data_key_get(&crypto::key_id(scope, 1)).await?)
    }

    /// The scope's active data key; made (with `retention`) when the scope has none yet. A
    /// shredded scope stays shredded: it never gets a new key.
    async fn active_key(
        &self,
        scope: &str,
        retention: Option<Duration>,
        create: bool,
    ) -> Result<(DataKeyRow, Arc<DataKey>)> {
        for _ in 0..4 {
            let now = now_ms();
            if let Some(row) = self.latest_row(scope).await? {
                let key = self.open_key(&row, now).await?;
                return Ok((row, key));
            }
            if !create {
                return Err(Error::UnknownScope { scope: scope.to_owned() });
            }
            if let Some(made) = self.create_key(scope, 1, expiry(retention, now)).await? {
                return Ok(made);
            }
            // Another writer made generation 1 at the same moment: read it on the next turn.
        }
        Err(Error::UnknownScope { scope: scope.to_owned() })
    }

    /// The scope's live data keys older than `active` (newest first), for finding values stored
    /// before a data-key rotation.
    async fn older_keys(
        &self,
        scope: &str,
        active: &DataKeyRow,
    ) -> Result<Vec<(DataKeyRow, Arc<DataKey>)>> {
        let top = crypto::key_generation(&active.key_id).unwrap_or(1);
        let now = now_ms();
        let mut out = Vec::new();
        for generation in (1..top).rev() {
            if let Some(row) = self.key_row(&crypto::key_id(scope, generation)).await? {
                if row.shredded_ms.is_none() {
                    let key = self.open_key(&row, now).await?;
                    out.push((row, key));
                }
            }
        }
        Ok(out)
    }

    /// Makes sure `scope` has a data key, with this retention if it is new (`None` uses the
    /// configured default), and returns its active key.
    pub async fn open_scope(&self, scope: &str, retention: Option<Duration>) -> Result<ScopeKey> {
        validate_scope(scope)?;
        let retention = retention.or(self.inner.config.retention);
        let (row, _) = self.active_key(scope, retention, true).await?;
        Ok(scope_key(&row))
    }

    /// The scope's active data key, if it has one.
    pub async fn scope_key(&self, scope: &str) -> Result<Option<ScopeKey>> {
        validate_scope(scope)?;
        Ok(self.inner.store.data_key_active(scope).await?.as_ref().map(scope_key))
    }

    // ---- tokenize --------------------------------------------------------------------------

    /// Get-or-insert one value: its existing token in the scope, or `token` (minted when `None`)
    /// stored for it now. See [`Vault::tokenize_many`].
    pub async fn tokenize(
        &self,
        scope: &str,
        category: Category,
        value: &str,
        token: Option<&str>,
    ) -> Result<Tokenized> {
        let mut out = self.tokenize_many(scope, &[NewValue { category, value, token }]).await?;
        out.pop().ok_or(Error::Invalid { what: "value", rule: "none given" })
    }

    /// Get-or-insert many values of one scope (a conversation): for each, the token the scope
    /// already holds for that (category, value), or else the given token (or a minted
    /// `[CATEGORY_hex]`), stored encrypted under the scope's active data key. Values are found
    /// by their keyed fingerprint under every live data key of the scope, so rotation does not
    /// change a value's token. Results are in input order; a value given twice gets one token.
    ///
    /// Fails with [`Error::TokenInUse`] when a given token already stands for another value.
    ///
    /// Concurrent callers inserting the same new value converge on the store's first row for
    /// it; in the rare case that they race within one millisecond, two tokens may stand for the
    /// same value (both reveal it; neither is ever wrong).
    pub async fn tokenize_many(
        &self,
        scope: &str,
        items: &[NewValue<'_>],
    ) -> Result<Vec<Tokenized>> {
        self.tokenize_inner(scope, items, false).await
    }

    /// [`Vault::tokenize_many`] with numbered tokens: a value new to the scope gets
    /// `[CATEGORY_n]`, n the next number after the highest the scope holds for that category
    /// (1 in a new scope), in the order given. So a conversation's second name is `[NAME_2]`,
    /// in whichever turn it first appears.
    ///
    /// A concurrent call that takes the same number first makes this one fail with
    /// [`Error::TokenInUse`]: call again. The numbers are read anew, and the values this call
    /// did store keep their tokens.
    pub async fn tokenize_numbered(
        &self,
        scope: &str,
        items: &[(Category, &str)],
    ) -> Result<Vec<Tokenized>> {
        let items: Vec<NewValue<'_>> = items
            .iter()
            .map(|&(category, value)| NewValue { category, value, token: None })
            .collect();
        self.tokenize_inner(scope, &items, true).await
    }

    async fn tokenize_inner(
        &self,
        scope: &str,
        items: &[NewValue<'_>],
        numbered: bool,
    ) -> Result<Vec<Tokenized>> {
        validate_scope(scope)?;
        for it in items {
            validate_value(it.value)?;
            if let Some(t) = it.token {
                validate_token(t)?;
            }
        }
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let (active, key) = match self.latest_row(scope).await? {
            Some(row) => {
                let key = self.open_key(&row, now_ms()).await?;
                (row, key)
            }
            None => {
                if let Some(out) = self.tokenize_new_scope(scope, items, numbered).await? {
                    return Ok(out);
                }
                // Another writer made the scope first: on as into any scope.
                self.active_key(scope, self.inner.config.retention, true).await?
            }
        };
        let mut older: Option<Vec<(DataKeyRow, Arc<DataKey>)>> = None;

        // Numbered tokens: the highest number per category the scope holds (read once, when
        // the first new value needs one).
        let mut numbers: Option<HashMap<Category, u64>> = None;
        let mut out: Vec<Option<Tokenized>> = vec![None; items.len()];
        // fingerprint (under the active key) -> index of the first item with it
        let mut first_of: HashMap<Vec<u8>, usize> = HashMap::with_capacity(items.len());
        let mut fresh: Vec<(usize, Vec<u8>, VaultRow)> = Vec::new();
        for (i, it) in items.iter().enumerate() {
            let cat = it.category.as_str();
            let fp = key.fingerprint(scope, cat, it.value);
            if first_of.contains_key(&fp) {
                // Same value earlier in this batch: takes its token after the batch.
                continue;
            }
            first_of.insert(fp.clone(), i);
            if let Some(row) = self.find_row(scope, &fp).await? {
                out[i] = Some(Tokenized { token: row.token.clone(), created: false });
                continue;
            }
            if older.is_none() {
                older = Some(self.older_keys(scope, &active).await?);
            }
            let mut found = None;
            for (_, k) in older.iter().flatten() {
                let ofp = k.fingerprint(scope, cat, it.value);
                if let Some(row) = self.find_row(scope, &ofp).await? {
                    found = Some(row.token.clone());
                    break;
                }
            }
            if let Some(token) = found {
                out[i] = Some(Tokenized { token, created: false });
                continue;
            }
            let token = match it.token {
                Some(t) => t.to_owned(),
                None if numbered => {
                    if numbers.is_none() {
                        numbers = Some(match self.inner.numbers.get(scope) {
                            Some(n) => n,
                            None => highest_numbers(&self.inner.store.vault_tokens(scope).await?),
                        });
                    }
                    let n =
                        numbers.get_or_insert_with(HashMap::new).entry(it.category).or_insert(0);
                    *n += 1;
                    format!("[{}_{}]", it.category.as_str(), n)
                }
                None => mint_token(it.category),
            };
            let (nonce, ciphertext) = key.seal(scope, &token, &active.key_id, cat, it.value);
            let row = VaultRow {
                scope: scope.to_owned(),
                token: token.clone(),
                key_id: active.key_id.clone(),
                fingerprint: fp.clone(),
                nonce,
                ciphertext,
                created_ms: now_ms(),
            };
            fresh.push((i, fp, row));
        }

        if !fresh.is_empty() {
            let rows: Vec<VaultRow> = fresh.iter().map(|(_, _, r)| r.clone()).collect();
            self.inner.writes.put_rows(rows).await?;
            // Look each value up again: `vault_put` keeps an existing (scope, token) row, so a
            // token already standing for another value was not stored (TokenInUse); and when
            // another writer stored the same value at the same moment, the store's first row
            // (oldest, then lowest token) is the one every caller converges on.
            let fps: Vec<Vec<u8>> = fresh.iter().map(|(_, fp, _)| fp.clone()).collect();
            let found = self.inner.store.vault_find_many(scope, &fps).await;
            let found = found.inspect_err(|_| {
                self.inner.numbers.remove(scope);
            })?;
            let mut all_ours = true;
            let mut stored = Vec::new();
            for ((i, _, row), found) in fresh.into_iter().zip(found) {
                match found {
                    Some(found) if found.token == row.token => {
                        stored.push(row.token.clone());
                        out[i] = Some(Tokenized { token: row.token, created: true });
                        self.remember(&Arc::new(found));
                    }
                    Some(found) => {
                        all_ours = false;
                        out[i] = Some(Tokenized { token: found.token.clone(), created: false });
                        self.remember(&Arc::new(found));
                    }
                    None => {
                        // Another writer holds this number: the next call reads them anew.
                        self.inner.numbers.remove(scope);
                        return Err(Error::TokenInUse {
                            scope: scope.to_owned(),
                            token: row.token,
                        });
                    }
                }
            }
            // Every number this call took is stored as its own: with the tokens it stored
            // (a given `[NAME_7]` counts too), they are the scope's highest.
            let known = numbers.or_else(|| self.inner.numbers.get(scope));
            match known {
                Some(mut n) if all_ours => {
                    for (c, m) in highest_numbers(&stored) {
                        let e = n.entry(c).or_insert(0);
                        *e = (*e).max(m);
                    }
                    self.inner.numbers.insert(scope.to_owned(), n);
                }
                Some(_) => {
                    self.inner.numbers.remove(scope);
                }
                None => {}
            }
        }

        // Repeats within the batch take the token of their first occurrence.
        let mut result = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            match &out[i] {
                Some(t) => result.push(t.clone()),
                None => {
                    let fp = key.fingerprint(scope, it.category.as_str(), it.value);
                    let j = first_of.get(&fp).copied().unwrap_or(i);
                    let t = out
                        .get(j)
                        .cloned()
                        .flatten()
                        .ok_or(Error::Invalid { what: "value", rule: "could not be resolved" })?;
                    result.push(Tokenized { token: t.token, created: false });
                }
            }
        }
        Ok(result)
    }

    /// Tokenizes into a scope that has no key yet: makes its first key and stores it with the
    /// values in one write, with no look-up before or after (no value can be stored under a key
    /// before the key is, and a writer that sees the key sees these values with it).
    /// `Ok(None)`: another writer made the scope first; nothing of this call was stored.
    async fn tokenize_new_scope(
        &self,
        scope: &str,
        items: &[NewValue<'_>],
        numbered: bool,
    ) -> Result<Option<Vec<Tokenized>>> {
        let now = now_ms();
        let (key_row, key) =
            self.make_key(scope, 1, expiry(self.inner.config.retention, now)).await?;
        let mut numbers: HashMap<Category, u64> = HashMap::new();
        // fingerprint -> index of its row
        let mut first_of: HashMap<Vec<u8>, usize> = HashMap::with_capacity(items.len());
        let mut tokens: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut rows: Vec<VaultRow> = Vec::new();
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            let cat = it.category.as_str();
            let fp = key.fingerprint(scope, cat, it.value);
            if let Some(&j) = first_of.get(&fp) {
                // Same value earlier in this batch: its token.
                out.push(Tokenized { token: rows[j].token.clone(), created: false });
                continue;
            }
            let token = match it.token {
                Some(t) => t.to_owned(),
                None if numbered => {
                    let n = numbers.entry(it.category).or_insert(0);
                    *n += 1;
                    format!("[{cat}_{n}]")
                }
                None => mint_token(it.category),
            };
            if !tokens.insert(token.clone()) {
                // Two values given one token: the second is refused, as in a scope that holds
                // the first already (and nothing is stored).
                return Err(Error::TokenInUse { scope: scope.to_owned(), token });
            }
            let (nonce, ciphertext) = key.seal(scope, &token, &key_row.key_id, cat, it.value);
            first_of.insert(fp.clone(), rows.len());
            out.push(Tokenized { token: token.clone(), created: true });
            rows.push(VaultRow {
                scope: scope.to_owned(),
                token,
                key_id: key_row.key_id.clone(),
                fingerprint: fp,
                nonce,
                ciphertext,
                created_ms: now,
            });
        }
        let new = NewScope { key: key_row, rows };
        let kept = if self.inner.config.row_cache == 0 { Vec::new() } else { new.rows.clone() };
        let key_row = new.key.clone();
        if !self.inner.writes.put_scope(new).await? {
            return Ok(None);
        }
        self.keep_key(&key_row, key);
        for r in kept {
            self.remember(&Arc::new(r));
        }
        let stored: Vec<String> = out.iter().map(|t| t.token.clone()).collect();
        self.inner.numbers.insert(scope.to_owned(), highest_numbers(&stored));
        Ok(Some(out))
    }

    // ---- reveal ----------------------------------------------------------------------------

    /// Re-identifies `tokens` of `scope` for `actor`, for `reason`. Every value is decrypted and
    /// authenticated first, then the reveal is appended to the ledger (actor, reason, scope
    /// reference, categories and counts: never a value or a token), and only then are values
    /// returned. If any row fails authentication, or the ledger append fails, nothing is
    /// returned.
    ///
    /// Tokens the scope does not hold are listed in [`Revealed::missing`]; if the scope was
    /// shredded the call fails with [`Error::Shredded`].
    pub async fn reveal(
        &self,
        scope: &str,
        tokens: &[String],
        actor: &Actor,
        reason: RevealReason,
    ) -> Result<Revealed> {
        self.reveal_with(scope, tokens, actor, reason, Vec::new()).await
    }

    /// [`Vault::reveal`], with `also` appended to the ledger in the same transaction as the
    /// reveal's own record (after it): a caller that records its own event (the gateway's
    /// request record) gets both durable with one commit, and no value unless both are.
    /// With nothing to reveal, `also` is still appended.
    pub async fn reveal_with(
        &self,
        scope: &str,
        tokens: &[String],
        actor: &Actor,
        reason: RevealReason,
        also: Vec<Record>,
    ) -> Result<Revealed> {
        let (revealed, counts) = self.read(scope, tokens, true).await?;
        let mut records = Vec::with_capacity(1 + also.len());
        if !revealed.values.is_empty() {
            let mut b = Record::builder(actor.as_str(), Action::VaultReidentify, Decision::Allow)
                .resource(&scope_ref(scope))
                .purpose(reason.code());
            for (c, n) in counts {
                b = b.category(c, n);
            }
            records.push(b.build()?);
        }
        records.extend(also);
        if !records.is_empty() {
            self.inner.ledger.record_all(&records).await?;
        }
        Ok(revealed)
    }

    /// Decrypts and authenticates `tokens` of `scope` (no record: callers record or keep the
    /// values in process), with the count per category of what was found.
    /// With `check_missing`, a token not found fails the call if the scope was shredded.
    async fn read(
        &self,
        scope: &str,
        tokens: &[String],
        check_missing: bool,
    ) -> Result<(Revealed, BTreeMap<Category, u32>)> {
        validate_scope(scope)?;
        for t in tokens {
            validate_token(t)?;
        }
        let mut wanted: Vec<String> = tokens.to_vec();
        wanted.sort();
        wanted.dedup();
        let mut rows: Vec<Arc<VaultRow>> = Vec::with_capacity(wanted.len());
        let mut unknown: Vec<String> = Vec::new();
        for t in &wanted {
            match self.inner.by_token.get(&(scope.to_owned(), t.clone())) {
                Some(row) => rows.push(row),
                None => unknown.push(t.clone()),
            }
        }
        if !unknown.is_empty() {
            for row in self.inner.store.vault_get(scope, &unknown).await? {
                rows.push(Arc::new(row));
            }
        }
        let now = now_ms();
        let mut keys: HashMap<String, Arc<DataKey>> = HashMap::new();
        let mut revealed = Revealed::default();
        let mut counts: BTreeMap<Category, u32> = BTreeMap::new();
        for row in rows {
            if row.scope != scope || wanted.binary_search(&row.token).is_err() {
                return Err(Error::Tampered { scope: scope.to_owned(), token: row.token.clone() });
            }
            let key = match keys.get(&row.key_id) {
                Some(k) => k.clone(),
                None => {
                    let krow = self
                        .key_row(&row.key_id)
                        .await?
                        .ok_or_else(|| Error::Shredded { scope: scope.to_owned() })?;
                    if krow.scope != scope {
                        return Err(Error::Tampered {
                            scope: scope.to_owned(),
                            token: row.token.clone(),
                        });
                    }
                    let k = self.open_key(&krow, now).await?;
                    keys.insert(row.key_id.clone(), k.clone());
                    k
                }
            };
            let tampered = || Error::Tampered { scope: scope.to_owned(), token: row.token.clone() };
            let (cat, value) = key
                .open(scope, &row.token, &row.key_id, &row.nonce, &row.ciphertext)
                .map_err(|_| tampered())?;
            let category: Category = cat.parse().map_err(|_| tampered())?;
            if key.fingerprint(scope, &cat, &value) != row.fingerprint {
                return Err(tampered());
            }
            *counts.entry(category).or_insert(0) += 1;
            revealed.values.insert(row.token.clone(), PlainValue::new(cat, value));
            // By token only: by fingerprint, the store's oldest row for a value is the one kept.
            if self.inner.config.row_cache > 0 {
                self.inner.by_token.insert((scope.to_owned(), row.token.clone()), row.clone());
            }
        }
        revealed.missing =
            wanted.into_iter().filter(|t| !revealed.values.contains_key(t)).collect();
        if check_missing && !revealed.missing.is_empty() {
            self.fail_if_shredded(scope).await?;
        }
        Ok((revealed, counts))
    }

    /// [`Error::Shredded`] when `scope` was shredded (its values are gone, not missing).
    async fn fail_if_shredded(&self, scope: &str) -> Result<()> {
        if self.inner.store.data_key_active(scope).await?.is_none()
            && self.scope_existed(scope).await?.is_some_and(|first| first.shredded_ms.is_some())
        {
            return Err(Error::Shredded { scope: scope.to_owned() });
        }
        Ok(())
    }

    /// The values of `category` that `scope` holds under numbered tokens (`[NAME_1]`, ...),
    /// decrypted and authenticated, for recognizing them again in later text of the same
    /// conversation (a surname said alone in a later turn). Nothing is recorded in the ledger:
    /// the values stay in the process and nothing is disclosed. Empty when the scope holds none;
    /// [`Error::Shredded`] when it was shredded.
    pub async fn values_of(&self, scope: &str, category: Category) -> Result<Vec<PlainValue>> {
        validate_scope(scope)?;
        let (counted, fresh) = match self.inner.numbers.get(scope) {
            Some(n) => (n.get(&category).copied().unwrap_or(0), false),
            // Not cached here: a tokenize racing this read keeps the cache right.
            None => (
                highest_numbers(&self.inner.store.vault_tokens(scope).await?)
                    .get(&category)
                    .copied()
                    .unwrap_or(0),
                true,
            ),
        };
        if counted == 0 && fresh {
            return Ok(Vec::new());
        }
        // Another replica (PostgreSQL) may have stored more since this one counted: numbers
        // past the count are read too, [`PROBE`] at a time, until one round finds none.
        let mut values = Vec::new();
        let (mut from, mut to) = (1, counted + PROBE);
        loop {
            if to > MAX_VALUES_OF + PROBE {
                return Err(Error::Invalid {
                    what: "scope",
                    rule: "holds more values of one category than a request reads (4096)",
                });
            }
            let tokens: Vec<String> =
                (from..=to).map(|i| format!("[{}_{i}]", category.as_str())).collect();
            let (revealed, _) = self.read(scope, &tokens, false).await?;
            let top = revealed.values.keys().filter_map(|t| token_number(t)).max().unwrap_or(0);
            if top == 0 && from == 1 && counted > 0 {
                // Counted, and none there: gone with the scope, or an error.
                self.fail_if_shredded(scope).await?;
            }
            values.extend(revealed.values.into_values());
            if top + PROBE <= to {
                return Ok(values);
            }
            (from, to) = (to + 1, top + PROBE);
        }
    }

    // ---- rotation --------------------------------------------------------------------------

    /// Data-key rotation: a new data key (next generation, same expiry) becomes the scope's
    /// active key for new values; values under older keys stay readable under their own keys.
    /// Recorded in the ledger before the key is made.
    pub async fn rotate_data_key(&self, scope: &str, actor: &Actor) -> Result<ScopeKey> {
        validate_scope(scope)?;
        let (active, _) = self.active_key(scope, None, false).await?;
        let next = crypto::key_generation(&active.key_id).unwrap_or(1).saturating_add(1);
        let new_id = crypto::key_id(scope, next);
        let record = Record::builder(actor.as_str(), Action::VaultKeyRotate, Decision::Allow)
            .resource(&new_id)
            .reason("data_key_rotation")
            .build()?;
        self.inner.ledger.record(record).await?;
        self.forget_scope(scope);
        match self.create_key(scope, next, active.expires_at_ms).await? {
            Some((row, _)) => Ok(scope_key(&row)),
            // Rotated concurrently by someone else: their key is the new active one.
            None => {
                let (row, _) = self.active_key(scope, None, false).await?;
                Ok(scope_key(&row))
            }
        }
    }

    /// KEK rotation without downtime: `new` becomes the active KEK (new data keys are wrapped by
    /// it at once), then every live data key still wrapped by another KEK is unwrapped and
    /// re-wrapped under `new` with the store's compare-and-set, in passes until none is left.
    /// Reads and writes go on meanwhile: the older KEKs stay in the keyring. Recorded in the
    /// ledger first.
    pub async fn rotate_kek(&self, new: Arc<dyn Kms>, actor: &Actor) -> Result<KekRotation> {
        crate::codes::validate_id("kek id", new.id())?;
        let mut b = Record::builder(actor.as_str(), Action::VaultKeyRotate, Decision::Allow)
            .reason("kek_rotation");
        if ledger::Slug::check(new.id()).is_ok() {
            b = b.resource(new.id());
        }
        self.inner.ledger.record(b.build()?).await?;
        let new_id = new.id().to_owned();
        write(&self.inner.keyring).activate(new.clone());
        // Rows read before the rotation name the old KEK: read them again.
        self.inner.key_rows.clear();
        self.inner.active.clear();
        let mut rewrapped = 0usize;
        let mut remaining = 0usize;
        for _pass in 0..8 {
            let todo: Vec<DataKeyRow> = self
                .inner
                .store
                .data_keys_live()
                .await?
                .into_iter()
                .filter(|r| r.kek_id != new_id && !r.wrapped.is_empty())
                .collect();
            remaining = todo.len();
            if todo.is_empty() {
                break;
            }
            for row in todo {
                let old = read(&self.inner.keyring).get(&row.kek_id).cloned().ok_or_else(|| {
                    Error::UnknownKek { key_id: row.key_id.clone(), kek_id: row.kek_id.clone() }
                })?;
                let raw = old
                    .unwrap(&row.wrapped, &crypto::wrap_aad(&row.kek_id, &row.scope, &row.key_id))
                    .await
                    .map_err(|e| unwrap_error(&row, e))?;
                let wrapped =
                    new.wrap(&raw, &crypto::wrap_aad(&new_id, &row.scope, &row.key_id)).await?;
                drop(raw);
                if self
                    .inner
                    .store
                    .data_key_rewrap(&row.key_id, &row.kek_id, &new_id, &wrapped)
                    .await?
                {
                    rewrapped += 1;
                }
            }
        }
        if remaining > 0 {
            let left = self
                .inner
                .store
                .data_keys_live()
                .await?
                .into_iter()
                .filter(|r| r.kek_id != new_id && !r.wrapped.is_empty())
                .count();
            if left > 0 {
                return Err(Error::RotationIncomplete { kek_id: new_id, remaining: left });
            }
        }
        tracing::info!(kek_id = %new_id, rewrapped, "vault: KEK rotated");
        Ok(KekRotation { kek_id: new_id, rewrapped })
    }

    /// Start-up check (fail closed before serving): every live data key's KEK is in the
    /// keyring, and one data key per KEK actually unwraps. Returns how many live data keys
    /// each KEK wraps. A wrong or missing KEK fails here with [`Error::UnknownKek`] or
    /// [`Error::KeyUnwrap`] instead of at the first request.
    pub async fn check_keyring(&self) -> Result<BTreeMap<String, usize>> {
        let live = self.inner.store.data_keys_live().await?;
        let mut per_kek: BTreeMap<String, usize> = BTreeMap::new();
        let mut samples: BTreeMap<String, DataKeyRow> = BTreeMap::new();
        for row in live {
            if row.wrapped.is_empty() {
                continue;
            }
            *per_kek.entry(row.kek_id.clone()).or_insert(0) += 1;
            samples.entry(row.kek_id.clone()).or_insert(row);
        }
        for row in samples.values() {
            let kek = read(&self.inner.keyring).get(&row.kek_id).cloned().ok_or_else(|| {
                Error::UnknownKek { key_id: row.key_id.clone(), kek_id: row.kek_id.clone() }
            })?;
            let aad = crypto::wrap_aad(&row.kek_id, &row.scope, &row.key_id);
            let raw = kek.unwrap(&row.wrapped, &aad).await.map_err(|e| unwrap_error(row, e))?;
            drop(raw);
        }
        Ok(per_kek)
    }

    /// Drops an older KEK from the keyring once no live data key depends on it.
    pub async fn retire_kek(&self, kek_id: &str) -> Result<()> {
        if kek_id == self.active_kek_id() {
            return Err(Error::Invalid {
                what: "kek id",
                rule: "the active KEK cannot be retired",
            });
        }
        let live = self
            .inner
            .store
            .data_keys_live()
            .await?
            .into_iter()
            .filter(|r| r.kek_id == kek_id)
            .count();
        if live > 0 {
            return Err(Error::KekInUse { kek_id: kek_id.to_owned(), live });
        }
        write(&self.inner.keyring).remove(kek_id);
        Ok(())
    }

    // ---- shredding -------------------------------------------------------------------------

    /// Crypto-shreds one data key: the ledger record first (fail closed: no record, no shred),
    /// then the store destroys the wrapped key and the rows under it, then the cached copy goes.
    async fn shred_key(
        &self,
        row: &DataKeyRow,
        actor: &Actor,
        reason: ShredReason,
    ) -> Result<bool> {
        let record = Record::builder(actor.as_str(), Action::VaultShred, Decision::Allow)
            .resource(&row.key_id)
            .reason(reason.code())
            .build()?;
        self.inner.ledger.record(record).await?;
        self.cache_evict(&row.key_id);
        self.inner.active.remove(&row.scope);
        let was_live = self.inner.store.data_key_shred(&row.key_id, now_ms()).await?;
        self.cache_evict(&row.key_id);
        self.inner.active.remove(&row.scope);
        Ok(was_live)
    }

    /// Crypto-shreds every data key of `scope`: its values can never be recovered, by anyone.
    /// Each key's shred is appended to the ledger before the key is destroyed; if the ledger
    /// cannot record it, that key is left alone and the error returned. Idempotent.
    pub async fn shred_scope(
        &self,
        scope: &str,
        actor: &Actor,
        reason: ShredReason,
    ) -> Result<ShredReport> {
        validate_scope(scope)?;
        let mut report = ShredReport::default();
        let Some(active) = self.inner.store.data_key_active(scope).await? else {
            return Ok(report);
        };
        // The active key is the newest by creation time; a generation made later under a
        // clock that had stepped back would sort below it. Every generation above it that
        // exists is shredded too.
        let mut top = crypto::key_generation(&active.key_id).unwrap_or(1);
        while top < u32::MAX
            && self.inner.store.data_key_get(&crypto::key_id(scope, top + 1)).await?.is_some()
        {
            top += 1;
        }
        for generation in (1..=top).rev() {
            let Some(row) =
                self.inner.store.data_key_get(&crypto::key_id(scope, generation)).await?
            else {
                continue;
            };
            if row.shredded_ms.is_some() {
                continue;
            }
            if self.shred_key(&row, actor, reason).await? {
                report.key_ids.push(row.key_id);
            }
        }
        tracing::info!(scope_ref = %scope_ref(scope), keys = report.key_ids.len(), reason = reason.code(), "vault: scope shredded");
        Ok(report)
    }

    /// Shreds every data key past its retention, now. Stops at the first failure (a key whose
    /// shred could not be recorded is not shredded). Returns how many keys were shredded.
    pub async fn sweep_expired(&self) -> Result<usize> {
        let expired = self.inner.store.data_keys_expired(now_ms()).await?;
        let actor = self.inner.config.sweeper_actor.clone();
        let mut n = 0;
        for row in expired {
            if self.shred_key(&row, &actor, ShredReason::RetentionExpired).await? {
                n += 1;
            }
        }
        Ok(n)
    }
}

fn scope_key(row: &DataKeyRow) -> ScopeKey {
    ScopeKey {
        key_id: row.key_id.clone(),
        generation: crypto::key_generation(&row.key_id).unwrap_or(1),
        kek_id: row.kek_id.clone(),
        expires_at_ms: row.expires_at_ms,
    }
}
