//! The store's database: an ordered key-value map in redb (pure Rust, transactional, one
//! file), with the store's version (Ceph's `last_committed`), the log of the last
//! `log_keep` writes, and an incremental digest of the contents. A real node keeps it in
//! its state directory; the simulator keeps a real redb database in memory
//! ([`StoreDb::in_memory`]), so both run the same code.
//!
//! Each applied write changes the data, appends the write to the log (trimming it to
//! `log_keep`), bumps the version, extends the history's chain hash (`chain(v) =
//! SHA-256(chain(v-1) ‖ v ‖ write)`: two stores at one version with equal chains applied
//! the same writes, so a node whose history diverged is told from one that is only behind)
//! and updates the digest, all in one redb transaction: a crash leaves the store at some
//! version, whole. The writes of one input of the node share that transaction (group
//! commit), made durable by [`StoreDb::flush`] at the end of the input: a crash may lose
//! the last input's writes, never tear the store (the node then syncs back from a lower
//! version). Markers that must survive a crash (a load begun, a load finished) commit
//! durably at once; a full copy's chunks are durable only with its finish.

use super::write::{Write, WriteError};
use redb::{
    Database, Durability, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use sha2::{Digest, Sha256};
use std::path::Path;

const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Why the store failed (the database's own errors, named by what was being done).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb refused.
    #[error("store database, {what}: {cause}")]
    Db {
        /// What was being done.
        what: &'static str,
        /// redb's error.
        cause: String,
    },
    /// A write's version is not the next one.
    #[error("store: write of version {got} applied at version {have}")]
    OutOfOrder {
        /// The store's version.
        have: u64,
        /// The write's version.
        got: u64,
    },
    /// A logged write does not decode.
    #[error("store: the log entry of version {version} is corrupt: {cause}")]
    Corrupt {
        /// Its version.
        version: u64,
        /// Why.
        cause: WriteError,
    },
}

fn failed<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Db {
        what,
        cause: e.to_string(),
    }
}

/// The store's digest: the XOR of SHA-256 over every (key, value) pair, so a write updates
/// it from the old and new pair alone; equal contents give equal digests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StoreDigest(pub [u8; 32]);

impl StoreDigest {
    fn toggle(&mut self, key: &[u8], value: &[u8]) {
        let mut h = Sha256::new();
        h.update((key.len() as u32).to_be_bytes());
        h.update(key);
        h.update(value);
        for (d, x) in self.0.iter_mut().zip(h.finalize()) {
            *d ^= x;
        }
    }

    /// Returns it in hex, as records write it.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// A simulated disk: bytes in memory that a redb database reads and writes as its file, kept
/// by the simulator across a node's incarnations (clones share them). Every write reaches
/// it, so it models a disk that loses nothing a commit wrote; [`MemDisk::wipe`] models one
/// that loses everything.
#[derive(Clone, Debug, Default)]
pub struct MemDisk(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl MemDisk {
    /// Empties it (a node restarted on a new disk).
    pub fn wipe(&self) {
        self.bytes().clear();
    }

    fn bytes(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A panic while holding it cannot leave the bytes half-written: take them anyway.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl redb::StorageBackend for MemDisk {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.bytes().len() as u64)
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, std::io::Error> {
        let b = self.bytes();
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        b.get(start..start.saturating_add(len))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "past the end"))
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let len = usize::try_from(len).map_err(std::io::Error::other)?;
        self.bytes().resize(len, 0);
        Ok(())
    }

    fn sync_data(&self, _: bool) -> Result<(), std::io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut b = self.bytes();
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        let end = start.saturating_add(data.len());
        if b.len() < end {
            b.resize(end, 0);
        }
        b[start..end].copy_from_slice(data);
        Ok(())
    }
}

/// A write of the log, with its version and the chain hash after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    /// Its version.
    pub version: u64,
    /// The chain hash after it.
    pub chain: [u8; 32],
    /// The write.
    pub write: Write,
}

/// The store's database.
pub struct StoreDb {
    db: Database,
    log_keep: u64,
    version: u64,
    digest: StoreDigest,
    /// The chain hash of the history up to `version` (zeros at version 0).
    chain: [u8; 32],
    /// The oldest version the log holds (the log holds `log_first..=version`; empty when
    /// `log_first > version`).
    log_first: u64,
    /// The chain hash at `log_first - 1` (a member there is still brought back by the log).
    base_chain: [u8; 32],
    keys: u64,
    bytes: u64,
    /// A full copy is being loaded (durable: survives a reopen).
    loading: bool,
    /// Writes applied since the last durable commit ([`StoreDb::flush`] makes them durable).
    unflushed: u64,
    /// The transaction the writes of this input go into, one after another: committed
    /// durably by [`StoreDb::flush`], and (not durably) before any read or other write, so
    /// that every read sees every write applied. A crash loses it whole.
    open: std::sync::Mutex<Option<WriteTransaction>>,
}

impl StoreDb {
    /// Opens (or creates) the store in the file `path`, keeping `log_keep` writes, with a
    /// page cache of `cache_bytes` (redb's own is 1 GiB: a node's memory would grow with
    /// its store up to that; the operating system's page cache serves the rest).
    pub fn open(path: &Path, log_keep: u64, cache_bytes: usize) -> Result<Self, StoreError> {
        let file = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(failed("opening"))?;
        Self::with(file, log_keep)
    }

    /// Opens (or creates) the store on `disk`, a simulated disk that outlives the store (a
    /// node's next incarnation finds what this one committed).
    pub fn on_disk(disk: &MemDisk, log_keep: u64) -> Result<Self, StoreError> {
        let db = Database::builder()
            .create_with_backend(disk.clone())
            .map_err(failed("opening on a simulated disk"))?;
        Self::with(db, log_keep)
    }

    /// Creates an empty store in memory (a real redb database on its in-memory backend).
    pub fn in_memory(log_keep: u64) -> Result<Self, StoreError> {
        let mem = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(failed("creating in memory"))?;
        Self::with(mem, log_keep)
    }

    fn with(db: Database, log_keep: u64) -> Result<Self, StoreError> {
        let txn = db.begin_write().map_err(failed("creating tables"))?;
        {
            txn.open_table(DATA).map_err(failed("creating tables"))?;
            txn.open_table(LOG).map_err(failed("creating tables"))?;
            txn.open_table(META).map_err(failed("creating tables"))?;
        }
        txn.commit().map_err(failed("creating tables"))?;
        let mut s = Self {
            db,
            log_keep: log_keep.max(1),
            version: 0,
            digest: StoreDigest::default(),
            chain: [0; 32],
            log_first: 1,
            base_chain: [0; 32],
            keys: 0,
            bytes: 0,
            loading: false,
            unflushed: 0,
            open: std::sync::Mutex::new(None),
        };
        s.load()?;
        Ok(s)
    }

    /// Reads the version, digest, log range and sizes back from the database.
    fn load(&mut self) -> Result<(), StoreError> {
        let r = self.reader("reading")?;
        let meta = r.open_table(META).map_err(failed("reading meta"))?;
        let num = |k: &str| -> Result<Option<u64>, StoreError> {
            Ok(meta
                .get(k)
                .map_err(failed("reading meta"))?
                .and_then(|v| v.value().try_into().ok().map(u64::from_be_bytes)))
        };
        self.version = num("version")?.unwrap_or(0);
        self.keys = num("keys")?.unwrap_or(0);
        self.bytes = num("bytes")?.unwrap_or(0);
        if let Some(d) = meta.get("digest").map_err(failed("reading meta"))? {
            if let Ok(d) = <[u8; 32]>::try_from(d.value()) {
                self.digest = StoreDigest(d);
            }
        }
        self.loading = meta
            .get("loading")
            .map_err(failed("reading meta"))?
            .is_some();
        if let Some(c) = meta.get("chain").map_err(failed("reading meta"))? {
            if let Ok(c) = <[u8; 32]>::try_from(c.value()) {
                self.chain = c;
            }
        }
        if let Some(c) = meta.get("base_chain").map_err(failed("reading meta"))? {
            if let Ok(c) = <[u8; 32]>::try_from(c.value()) {
                self.base_chain = c;
            }
        }
        let log = r.open_table(LOG).map_err(failed("reading the log"))?;
        self.log_first = match log.first().map_err(failed("reading the log"))? {
            Some((v, _)) => v.value(),
            None => self.version + 1,
        };
        Ok(())
    }

    /// Returns the version: the number of writes applied (Ceph's `last_committed`).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Returns the oldest version its log still holds (`version + 1` when empty).
    pub fn log_first(&self) -> u64 {
        self.log_first
    }

    /// Returns the digest of its contents.
    pub fn digest(&self) -> StoreDigest {
        self.digest
    }

    /// Returns the chain hash of its history (zeros at version 0).
    pub fn chain(&self) -> [u8; 32] {
        self.chain
    }

    /// Returns the chain hash after version `v`, if the log still holds it (or `v` is the
    /// version, or 0).
    pub fn chain_at(&self, v: u64) -> Result<Option<[u8; 32]>, StoreError> {
        if v == self.version {
            return Ok(Some(self.chain));
        }
        if v == 0 {
            return Ok(Some([0; 32]));
        }
        if v + 1 == self.log_first {
            return Ok(Some(self.base_chain));
        }
        if v < self.log_first || v > self.version {
            return Ok(None);
        }
        let r = self.reader("reading the log")?;
        let log = r.open_table(LOG).map_err(failed("reading the log"))?;
        Ok(log
            .get(v)
            .map_err(failed("reading the log"))?
            .and_then(|e| e.value().get(..32).and_then(|c| c.try_into().ok())))
    }

    /// Returns the chain hash that applying the encoded write `w` as version `version` after
    /// the chain `prev` gives.
    pub fn next_chain(prev: &[u8; 32], version: u64, w: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(prev);
        h.update(version.to_be_bytes());
        h.update(w);
        h.finalize().into()
    }

    /// Returns how many keys it holds and their bytes (keys and values).
    pub fn size(&self) -> (u64, u64) {
        (self.keys, self.bytes)
    }

    /// Returns the value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self.reader("reading")?;
        let t = r.open_table(DATA).map_err(failed("reading"))?;
        Ok(t.get(key)
            .map_err(failed("reading"))?
            .map(|v| v.value().to_vec()))
    }

    /// Applies `w` as version `version` (which must be the next one), in the transaction of
    /// this input (group commit): durable at the next [`StoreDb::flush`]; a crash before it
    /// loses the writes since the last flush whole, never half of one, and the node comes
    /// back behind, to be brought up to date like any other.
    pub fn apply(&mut self, version: u64, w: &Write) -> Result<(), StoreError> {
        if version != self.version + 1 {
            return Err(StoreError::OutOfOrder {
                have: self.version,
                got: version,
            });
        }
        let txn = match self.take_open() {
            Some(t) => t,
            None => self.db.begin_write().map_err(failed("writing"))?,
        };
        match self.apply_in(&txn, version, w) {
            Ok(()) => {
                *self.open_txn() = Some(txn);
                self.unflushed += 1;
                Ok(())
            }
            Err(e) => {
                // The transaction is abandoned with the writes before it in this input:
                // the store is back at its last commit, and says so.
                drop(txn);
                self.load()?;
                Err(e)
            }
        }
    }

    fn apply_in(
        &mut self,
        txn: &WriteTransaction,
        version: u64,
        w: &Write,
    ) -> Result<(), StoreError> {
        let mut digest = self.digest;
        let (mut keys, mut bytes) = (self.keys, self.bytes);
        let mut log_first = self.log_first;
        let mut base_chain = self.base_chain;
        let chain;
        {
            let mut data = txn.open_table(DATA).map_err(failed("writing"))?;
            let old = data
                .get(w.key.as_slice())
                .map_err(failed("writing"))?
                .map(|v| v.value().to_vec());
            if let Some(old) = &old {
                digest.toggle(&w.key, old);
                keys -= 1;
                bytes -= (w.key.len() + old.len()) as u64;
            }
            match &w.value {
                Some(v) => {
                    data.insert(w.key.as_slice(), v.as_slice())
                        .map_err(failed("writing"))?;
                    digest.toggle(&w.key, v);
                    keys += 1;
                    bytes += (w.key.len() + v.len()) as u64;
                }
                None => {
                    data.remove(w.key.as_slice()).map_err(failed("writing"))?;
                }
            }
            let mut log = txn.open_table(LOG).map_err(failed("writing the log"))?;
            let encoded = w.encode();
            chain = Self::next_chain(&self.chain, version, &encoded);
            let mut entry = Vec::with_capacity(32 + encoded.len());
            entry.extend_from_slice(&chain);
            entry.extend_from_slice(&encoded);
            log.insert(version, entry.as_slice())
                .map_err(failed("writing the log"))?;
            while version + 1 - log_first > self.log_keep {
                if let Some(old) = log.remove(log_first).map_err(failed("trimming the log"))? {
                    if let Some(c) = old.value().get(..32).and_then(|c| c.try_into().ok()) {
                        base_chain = c;
                    }
                }
                log_first += 1;
            }
            let mut meta = txn.open_table(META).map_err(failed("writing meta"))?;
            for (k, n) in [("version", version), ("keys", keys), ("bytes", bytes)] {
                meta.insert(k, n.to_be_bytes().as_slice())
                    .map_err(failed("writing meta"))?;
            }
            meta.insert("digest", digest.0.as_slice())
                .map_err(failed("writing meta"))?;
            meta.insert("chain", chain.as_slice())
                .map_err(failed("writing meta"))?;
            meta.insert("base_chain", base_chain.as_slice())
                .map_err(failed("writing meta"))?;
        }
        self.version = version;
        self.digest = digest;
        self.chain = chain;
        self.log_first = log_first;
        self.base_chain = base_chain;
        (self.keys, self.bytes) = (keys, bytes);
        Ok(())
    }

    fn open_txn(&self) -> std::sync::MutexGuard<'_, Option<WriteTransaction>> {
        // A panic while holding it leaves at worst no transaction: take it anyway.
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take_open(&self) -> Option<WriteTransaction> {
        self.open_txn().take()
    }

    /// Commits the open transaction, not durably, so that reads and other writes see it.
    fn settle(&self) -> Result<(), StoreError> {
        if let Some(mut txn) = self.take_open() {
            txn.set_durability(Durability::None);
            txn.commit().map_err(failed("committing"))?;
        }
        Ok(())
    }

    /// Begins a read that sees every write applied.
    fn reader(&self, what: &'static str) -> Result<ReadTransaction, StoreError> {
        self.settle()?;
        self.db.begin_read().map_err(failed(what))
    }

    /// Begins a write transaction of its own (after the open one).
    fn writer(&self, what: &'static str) -> Result<WriteTransaction, StoreError> {
        self.settle()?;
        self.db.begin_write().map_err(failed(what))
    }

    /// Makes every write applied so far durable, in one commit (none when nothing is
    /// pending). Its owner calls it at the end of every input, before any record or reply
    /// says what the writes did: one transaction and one pair of fsyncs per input instead
    /// of per write.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        let txn = match self.take_open() {
            Some(t) => Some(t),
            None if self.unflushed > 0 => Some(self.db.begin_write().map_err(failed("flushing"))?),
            None => None,
        };
        if let Some(mut txn) = txn {
            txn.set_durability(Durability::Immediate);
            txn.commit().map_err(failed("flushing"))?;
        }
        self.unflushed = 0;
        Ok(())
    }

    /// Returns how many writes were applied since the last durable commit.
    pub fn unflushed(&self) -> u64 {
        self.unflushed
    }

    /// Returns the logged writes after version `after`, at most `max` of them, with their
    /// versions and the chain hash after each; none if the log no longer reaches back to
    /// `after + 1`.
    pub fn log_after(&self, after: u64, max: usize) -> Result<Option<Vec<Logged>>, StoreError> {
        if after + 1 < self.log_first {
            return Ok(None);
        }
        let r = self.reader("reading the log")?;
        let log = r.open_table(LOG).map_err(failed("reading the log"))?;
        let mut out = Vec::new();
        for e in log
            .range(after + 1..)
            .map_err(failed("reading the log"))?
            .take(max)
        {
            let (v, w) = e.map_err(failed("reading the log"))?;
            let version = v.value();
            let raw = w.value();
            let corrupt = |cause| StoreError::Corrupt { version, cause };
            let chain: [u8; 32] = raw
                .get(..32)
                .and_then(|c| c.try_into().ok())
                .ok_or(corrupt(WriteError::Invalid("log entry chain")))?;
            let write = Write::decode(&raw[32..]).map_err(corrupt)?;
            out.push(Logged {
                version,
                chain,
                write,
            });
        }
        Ok(Some(out))
    }

    /// Returns how many entries its log holds.
    pub fn log_len(&self) -> Result<u64, StoreError> {
        let r = self.reader("reading the log")?;
        let log = r.open_table(LOG).map_err(failed("reading the log"))?;
        log.len().map_err(failed("reading the log"))
    }

    /// Begins loading a full copy: empties the data and the log and marks a transfer in
    /// progress, durably, in one transaction. Until [`StoreDb::finish_load`] the store is
    /// not whole: [`StoreDb::loading`] says so, also after a crash and a reopen.
    pub fn begin_load(&mut self) -> Result<(), StoreError> {
        let mut txn = self.writer("beginning a load")?;
        txn.set_durability(Durability::Immediate);
        {
            txn.delete_table(DATA).map_err(failed("beginning a load"))?;
            txn.delete_table(LOG).map_err(failed("beginning a load"))?;
            txn.open_table(DATA).map_err(failed("beginning a load"))?;
            txn.open_table(LOG).map_err(failed("beginning a load"))?;
            let mut meta = txn.open_table(META).map_err(failed("beginning a load"))?;
            meta.insert("loading", [1u8].as_slice())
                .map_err(failed("beginning a load"))?;
            for k in ["version", "keys", "bytes"] {
                meta.insert(k, 0u64.to_be_bytes().as_slice())
                    .map_err(failed("beginning a load"))?;
            }
            meta.insert("digest", [0u8; 32].as_slice())
                .map_err(failed("beginning a load"))?;
            meta.insert("chain", [0u8; 32].as_slice())
                .map_err(failed("beginning a load"))?;
            meta.insert("base_chain", [0u8; 32].as_slice())
                .map_err(failed("beginning a load"))?;
        }
        txn.commit().map_err(failed("beginning a load"))?;
        self.version = 0;
        self.digest = StoreDigest::default();
        self.chain = [0; 32];
        self.log_first = 1;
        self.base_chain = [0; 32];
        (self.keys, self.bytes) = (0, 0);
        self.loading = true;
        Ok(())
    }

    /// Adds one chunk of a full copy (pairs in key order, one transaction), not durable by
    /// itself: [`StoreDb::finish_load`]'s commit makes the whole copy
    /// durable at once (a crash before it leaves the store marked as loading, and the copy
    /// starts again).
    pub fn load_chunk(&mut self, pairs: &[Pair]) -> Result<(), StoreError> {
        let mut txn = self.writer("loading")?;
        txn.set_durability(Durability::None);
        let (mut digest, mut keys, mut bytes) = (self.digest, self.keys, self.bytes);
        {
            let mut data = txn.open_table(DATA).map_err(failed("loading"))?;
            for (k, v) in pairs {
                if let Some(old) = data
                    .insert(k.as_slice(), v.as_slice())
                    .map_err(failed("loading"))?
                {
                    let old = old.value().to_vec();
                    digest.toggle(k, &old);
                    keys -= 1;
                    bytes -= (k.len() + old.len()) as u64;
                }
                digest.toggle(k, v);
                keys += 1;
                bytes += (k.len() + v.len()) as u64;
            }
        }
        txn.commit().map_err(failed("loading"))?;
        (self.digest, self.keys, self.bytes) = (digest, keys, bytes);
        Ok(())
    }

    /// Ends a full copy: the store is at `version` with history `chain` and whole again
    /// (the log starts after it).
    pub fn finish_load(&mut self, version: u64, chain: [u8; 32]) -> Result<(), StoreError> {
        let mut txn = self.writer("finishing a load")?;
        txn.set_durability(Durability::Immediate);
        {
            let mut meta = txn.open_table(META).map_err(failed("finishing a load"))?;
            for (k, n) in [
                ("version", version),
                ("keys", self.keys),
                ("bytes", self.bytes),
            ] {
                meta.insert(k, n.to_be_bytes().as_slice())
                    .map_err(failed("finishing a load"))?;
            }
            meta.insert("digest", self.digest.0.as_slice())
                .map_err(failed("finishing a load"))?;
            meta.insert("chain", chain.as_slice())
                .map_err(failed("finishing a load"))?;
            meta.insert("base_chain", chain.as_slice())
                .map_err(failed("finishing a load"))?;
            meta.remove("loading").map_err(failed("finishing a load"))?;
        }
        txn.commit().map_err(failed("finishing a load"))?;
        self.version = version;
        self.chain = chain;
        self.log_first = version + 1;
        self.base_chain = chain;
        self.loading = false;
        Ok(())
    }

    /// Applies `w` to a copy being loaded, without a version or a log entry: the writes made
    /// between the snapshots of a resumed transfer's pieces, replayed over the whole copy
    /// (a put or a delete sets a key outright, so replaying the writes after the first
    /// piece's snapshot brings every key, whichever piece it came from, to the last
    /// piece's state).
    pub fn load_write(&mut self, w: &Write) -> Result<(), StoreError> {
        let mut txn = self.writer("loading")?;
        txn.set_durability(Durability::None);
        let (mut digest, mut keys, mut bytes) = (self.digest, self.keys, self.bytes);
        {
            let mut data = txn.open_table(DATA).map_err(failed("loading"))?;
            let old = match &w.value {
                Some(v) => data
                    .insert(w.key.as_slice(), v.as_slice())
                    .map_err(failed("loading"))?
                    .map(|o| o.value().to_vec()),
                None => data
                    .remove(w.key.as_slice())
                    .map_err(failed("loading"))?
                    .map(|o| o.value().to_vec()),
            };
            if let Some(old) = old {
                digest.toggle(&w.key, &old);
                keys -= 1;
                bytes -= (w.key.len() + old.len()) as u64;
            }
            if let Some(v) = &w.value {
                digest.toggle(&w.key, v);
                keys += 1;
                bytes += (w.key.len() + v.len()) as u64;
            }
        }
        txn.commit().map_err(failed("loading"))?;
        (self.digest, self.keys, self.bytes) = (digest, keys, bytes);
        Ok(())
    }

    /// Returns a snapshot of the store as it is now (one redb read transaction: writes
    /// applied after it do not show in it), for a full transfer's chunks.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            txn: self.reader("opening a snapshot")?,
            version: self.version,
            chain: self.chain,
        })
    }

    /// Returns whether a full copy is being loaded (the store is not whole).
    pub fn loading(&self) -> bool {
        self.loading
    }

    /// Returns every (key, value) pair from `from` on, in key order, at most `max` (a test
    /// and debugging view; transfers read snapshots).
    pub fn scan(&self, from: &[u8], max: usize) -> Result<Vec<Pair>, StoreError> {
        let r = self.reader("reading")?;
        let t = r.open_table(DATA).map_err(failed("reading"))?;
        let mut out = Vec::new();
        for e in t.range(from..).map_err(failed("reading"))?.take(max) {
            let (k, v) = e.map_err(failed("reading"))?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}

/// A consistent view of the store at one version (a redb read transaction), cut into the
/// chunks of a full transfer.
pub struct Snapshot {
    txn: redb::ReadTransaction,
    /// The version it is of.
    pub version: u64,
    /// The chain hash at that version.
    pub chain: [u8; 32],
}

impl Snapshot {
    /// Returns the pairs after `after` (from the first key when none), in key order, at most
    /// `max_keys` and about `max_bytes` of keys and values (always at least one pair, so a
    /// value above the budget travels alone), and whether they end the snapshot.
    pub fn chunk(
        &self,
        after: Option<&[u8]>,
        max_keys: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Pair>, bool), StoreError> {
        use std::ops::Bound;
        let t = self
            .txn
            .open_table(DATA)
            .map_err(failed("reading a snapshot"))?;
        let range = match after {
            Some(k) => t.range::<&[u8]>((Bound::Excluded(k), Bound::Unbounded)),
            None => t.range::<&[u8]>(..),
        }
        .map_err(failed("reading a snapshot"))?;
        let mut out: Vec<Pair> = Vec::new();
        let mut size = 0usize;
        for e in range {
            let (k, v) = e.map_err(failed("reading a snapshot"))?;
            let (k, v) = (k.value(), v.value());
            let len = super::chunk_msg::Chunk::pair_len(k, v);
            if !out.is_empty() && (out.len() >= max_keys || size + len > max_bytes) {
                return Ok((out, false));
            }
            size += len;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok((out, true))
    }
}

impl Drop for StoreDb {
    /// A clean close makes what was applied durable (a crash does not).
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "the store could not commit its last writes on close");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> Write {
        Write {
            key: k.as_bytes().to_vec(),
            value: Some(v.as_bytes().to_vec()),
        }
    }

    #[test]
    fn writes_bump_the_version_keep_a_bounded_log_and_a_digest_of_the_contents() {
        let mut s = StoreDb::in_memory(3).unwrap();
        assert_eq!((s.version(), s.log_first()), (0, 1));
        for (i, (k, v)) in [("a", "1"), ("b", "2"), ("a", "3"), ("c", "4")]
            .iter()
            .enumerate()
        {
            s.apply(i as u64 + 1, &put(k, v)).unwrap();
        }
        assert_eq!(s.version(), 4);
        assert_eq!(s.get(b"a").unwrap().unwrap(), b"3");
        assert_eq!(s.size(), (3, 6));
        assert_eq!((s.log_first(), s.log_len().unwrap()), (2, 3));
        assert!(s.log_after(0, 10).unwrap().is_none(), "trimmed");
        let tail = s.log_after(2, 10).unwrap().unwrap();
        assert_eq!(
            tail.iter().map(|x| x.version).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert_eq!(tail[1].chain, s.chain());
        assert_eq!(s.chain_at(3).unwrap(), Some(tail[0].chain));
        // The chain before the log's first entry is kept: a member there is brought back
        // by the log.
        let after_1 = StoreDb::next_chain(&[0; 32], 1, &put("a", "1").encode());
        assert_eq!(s.chain_at(1).unwrap(), Some(after_1));
        let reopened_base = s.base_chain;
        assert_eq!(reopened_base, after_1);
        assert!(matches!(
            s.apply(9, &put("x", "y")),
            Err(StoreError::OutOfOrder { have: 4, got: 9 })
        ));
        // The same contents reached another way give the same digest.
        let mut t = StoreDb::in_memory(3).unwrap();
        for (i, (k, v)) in [("c", "4"), ("b", "2"), ("a", "3")].iter().enumerate() {
            t.apply(i as u64 + 1, &put(k, v)).unwrap();
        }
        assert_eq!(t.digest(), s.digest());
        // Same contents, another history: another chain.
        assert_ne!(t.chain(), s.chain());
        let del = Write {
            key: b"c".to_vec(),
            value: None,
        };
        t.apply(4, &del).unwrap();
        assert_ne!(t.digest(), s.digest());
        assert_eq!(t.size(), (2, 4));
    }

    #[test]
    fn a_store_on_a_simulated_disk_outlives_its_database_until_the_disk_is_wiped() {
        let disk = MemDisk::default();
        {
            let mut s = StoreDb::on_disk(&disk, 10).unwrap();
            s.apply(1, &put("k", "v")).unwrap();
        }
        let s = StoreDb::on_disk(&disk, 10).unwrap();
        assert_eq!(s.version(), 1);
        assert_eq!(s.get(b"k").unwrap().unwrap(), b"v");
        drop(s);
        disk.wipe();
        assert_eq!(StoreDb::on_disk(&disk, 10).unwrap().version(), 0);
    }

    /// What the disk holds at this instant, as a disk of its own (a power cut now).
    fn cut_power(disk: &MemDisk) -> MemDisk {
        MemDisk(std::sync::Arc::new(std::sync::Mutex::new(
            disk.bytes().clone(),
        )))
    }

    #[test]
    fn writes_are_durable_at_the_flush_and_a_crash_before_it_loses_them_whole() {
        let disk = MemDisk::default();
        let mut s = StoreDb::on_disk(&disk, 10).unwrap();
        s.apply(1, &put("a", "1")).unwrap();
        s.flush().unwrap();
        assert_eq!(s.unflushed(), 0);
        let (d1, c1) = (s.digest(), s.chain());
        s.apply(2, &put("b", "2")).unwrap();
        s.apply(3, &put("a", "3")).unwrap();
        assert_eq!(s.unflushed(), 2);
        let before = cut_power(&disk);
        s.flush().unwrap();
        let after = cut_power(&disk);
        let lost = StoreDb::on_disk(&before, 10).unwrap();
        assert_eq!(
            (lost.version(), lost.digest(), lost.chain(), lost.size()),
            (1, d1, c1, (1, 2)),
            "the unflushed writes are lost whole, and the store is consistent at version 1"
        );
        assert_eq!(lost.get(b"a").unwrap().unwrap(), b"1");
        let kept = StoreDb::on_disk(&after, 10).unwrap();
        assert_eq!(
            (kept.version(), kept.digest(), kept.chain()),
            (3, s.digest(), s.chain())
        );
        assert_eq!(kept.log_after(0, 10).unwrap().unwrap().len(), 3);
    }

    #[test]
    fn a_full_copy_replaces_the_store_and_a_crash_midway_leaves_it_marked_not_whole() {
        let mut a = StoreDb::in_memory(10).unwrap();
        for (i, (k, v)) in [("a", "1"), ("b", "2"), ("c", "3")].iter().enumerate() {
            a.apply(i as u64 + 1, &put(k, v)).unwrap();
        }
        let disk = MemDisk::default();
        {
            let mut b = StoreDb::on_disk(&disk, 10).unwrap();
            b.apply(1, &put("z", "9")).unwrap();
            b.begin_load().unwrap();
            b.load_chunk(&a.scan(b"", 2).unwrap()).unwrap();
            // A power cut here, and a crash (the database dropped).
            let cut = StoreDb::on_disk(&cut_power(&disk), 10).unwrap();
            assert!(
                cut.loading(),
                "a half copy is never taken for a whole store"
            );
            assert!(
                cut.scan(b"", 10).unwrap().is_empty(),
                "the chunks are durable only at the finish"
            );
        }
        let mut b = StoreDb::on_disk(&disk, 10).unwrap();
        assert!(b.loading(), "a half copy is never taken for a whole store");
        b.begin_load().unwrap();
        b.load_chunk(&a.scan(b"", 2).unwrap()).unwrap();
        b.load_chunk(&a.scan(b"c", 2).unwrap()).unwrap();
        b.finish_load(a.version(), a.chain()).unwrap();
        assert!(!b.loading());
        assert_eq!(
            (b.version(), b.digest(), b.chain()),
            (3, a.digest(), a.chain())
        );
        assert_eq!(b.get(b"z").unwrap(), None);
        // It goes on from there, and reopens whole.
        b.apply(4, &put("d", "4")).unwrap();
        drop(b);
        let b = StoreDb::on_disk(&disk, 10).unwrap();
        assert_eq!((b.version(), b.loading(), b.log_first()), (4, false, 4));
    }

    #[test]
    fn a_store_on_disk_reopens_where_it_was() {
        let dir = std::env::temp_dir().join(format!("ringlab-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.redb");
        let _ = std::fs::remove_file(&path);
        let d = {
            let mut s = StoreDb::open(&path, 10, 1 << 20).unwrap();
            s.apply(1, &put("k", "v")).unwrap();
            s.apply(2, &put("l", "w")).unwrap();
            (s.digest(), s.chain())
        };
        let s = StoreDb::open(&path, 10, 1 << 20).unwrap();
        assert_eq!(
            (s.version(), (s.digest(), s.chain()), s.log_first()),
            (2, d, 1)
        );
        assert_eq!(s.scan(b"", 10).unwrap().len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
