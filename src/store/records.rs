//! File records in redb, an embedded transactional B-tree store.
//!
//! Why redb: pure Rust (no C toolchain in the Docker image or CI), ACID transactions with
//! copy-on-write pages and checksummed commits, so a node killed at any instant reopens to the
//! last committed state; one file, no server; a stable on-disk format. sled (unmaintained beta)
//! and RocksDB (C++ build, heavy) were the alternatives.
//!
//! One table maps a file key to its CBOR-encoded [`FileState`]. Every change is a
//! read-modify-write inside one write transaction, so version checks and the write are atomic.
//!
//! A second table keeps, for each block this node holds, the names of the files it was stored
//! for ([`BlockRefs`]): garbage collection asks those files' roots whether any retained version
//! still references the block. A block without refs is never collected (a leak, never a loss).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};

use redb::{Database, Durability, ReadableTable, TableDefinition};

use crate::ids::{BlockId, FileKey};
use crate::record::{FileState, Position};

const RECORDS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("records");
const BLOCK_REFS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("block_refs");

/// What a holder knows about why it holds a block.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockRefs {
    /// Files the block was stored for (bounded; a block shared by more files keeps the first).
    pub files: Vec<String>,
    /// When this node first stored it (Unix ms).
    pub stored_ms: u64,
    /// When garbage collection first found no retained version referencing it.
    pub unreferenced_since: Option<u64>,
}

/// Most file names remembered per block.
const MAX_REFS: usize = 64;

/// Free disk space a write leaves untouched. A full disk makes redb fail a commit with an I/O
/// error, after which it refuses everything until reopened; refusing the write first keeps
/// reads (and so serving) working.
pub const RECORD_RESERVE: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RecordStoreError {
    #[error("record store: {0}")]
    Db(String),
    /// The file system failed a read or write; the store reopens on its next use.
    #[error("record store I/O: {0}")]
    Io(String),
    #[error("record store: disk full ({free} bytes free, {reserve} kept in reserve)")]
    Full { free: u64, reserve: u64 },
    #[error("record store holds an unreadable entry for {0}: {1}")]
    Decode(FileKey, String),
}

fn db_err(e: impl Into<redb::Error>) -> RecordStoreError {
    match e.into() {
        e @ (redb::Error::Io(_) | redb::Error::PreviousIo) => RecordStoreError::Io(e.to_string()),
        e => RecordStoreError::Db(e.to_string()),
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, RecordStoreError> {
    cbor4ii::serde::to_vec(Vec::new(), value).map_err(|e| RecordStoreError::Db(e.to_string()))
}

/// The redb database, reopened after an I/O error (redb refuses every later transaction with
/// `PreviousIo` until then).
pub struct RecordStore {
    path: PathBuf,
    /// `None` only after an I/O error whose reopen failed; the next use tries again.
    db: RwLock<Option<Database>>,
    broken: AtomicBool,
    /// Whether the last write was refused for space: said once in the log, not per request.
    full: AtomicBool,
}

/// What an update closure decided.
pub enum Change<T> {
    /// Write this state and return `T`.
    Write(FileState, T),
    /// Leave the store unchanged and return `T`.
    Keep(T),
}

/// The record store's page cache (redb's default is 1 GiB).
const RECORD_CACHE_BYTES: usize = 32 * 1024 * 1024;

impl RecordStore {
    pub fn open(path: &Path) -> Result<Self, RecordStoreError> {
        Ok(Self {
            path: path.to_path_buf(),
            db: RwLock::new(Some(Self::create(path)?)),
            broken: AtomicBool::new(false),
            full: AtomicBool::new(false),
        })
    }

    fn create(path: &Path) -> Result<Database, RecordStoreError> {
        // redb's default page cache is 1 GiB, filled as the store grows: a node holding
        // many records would grow its memory for hours (the soak showed ~15 MiB/h). Records
        // are small and read by key, so a modest cache keeps reads warm with memory flat.
        let db = Database::builder()
            .set_cache_size(RECORD_CACHE_BYTES)
            .create(path)
            .map_err(|e| RecordStoreError::Db(format!("cannot open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(RECORDS).map_err(db_err)?;
        txn.open_table(BLOCK_REFS).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        Ok(db)
    }

    /// Runs `f` on the database, reopening it first if an earlier call hit an I/O error.
    fn with<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, RecordStoreError>,
    ) -> Result<T, RecordStoreError> {
        if self.broken.load(Ordering::Acquire) {
            self.reopen()?;
        }
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let db = guard
            .as_ref()
            .ok_or_else(|| RecordStoreError::Io("closed after an I/O error".into()))?;
        let result = f(db);
        if let Err(RecordStoreError::Io(e)) = &result {
            tracing::warn!(path = %self.path.display(), "record store I/O error, reopening: {e}");
            self.broken.store(true, Ordering::Release);
        }
        result
    }

    /// Like [`Self::with`] for a write: refused while the disk has less than
    /// [`RECORD_RESERVE`] free.
    fn with_room<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, RecordStoreError>,
    ) -> Result<T, RecordStoreError> {
        if let Some(free) = self.path.parent().and_then(super::free_disk) {
            let full = free < RECORD_RESERVE;
            if self.full.swap(full, Ordering::AcqRel) != full {
                if full {
                    tracing::warn!(path = %self.path.display(), free, "disk full: refusing new records until space returns");
                } else {
                    tracing::info!(path = %self.path.display(), free, "disk has room again: taking records");
                }
            }
            if full {
                return Err(RecordStoreError::Full {
                    free,
                    reserve: RECORD_RESERVE,
                });
            }
        }
        self.with(f)
    }

    fn reopen(&self) -> Result<(), RecordStoreError> {
        let mut guard = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if !self.broken.load(Ordering::Acquire) {
            return Ok(());
        }
        // redb locks its file: the old handle must be gone before the new one opens.
        *guard = None;
        *guard = Some(Self::create(&self.path)?);
        self.broken.store(false, Ordering::Release);
        tracing::info!(path = %self.path.display(), "record store reopened");
        Ok(())
    }

    pub fn get(&self, key: &FileKey) -> Result<Option<FileState>, RecordStoreError> {
        self.with(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(RECORDS).map_err(db_err)?;
            let Some(bytes) = table.get(&key.0).map_err(db_err)? else {
                return Ok(None);
            };
            decode(key, bytes.value()).map(Some)
        })
    }

    /// Atomically reads the state for `key`, lets `f` decide, and writes what it returns.
    /// `durable` chooses an fsynced commit (records) or an eventual one (user-list bookkeeping).
    pub fn update<T, E>(
        &self,
        key: &FileKey,
        durable: bool,
        f: impl FnOnce(Option<FileState>) -> Result<Change<T>, E>,
    ) -> Result<Result<T, E>, RecordStoreError> {
        self.with_room(|db| {
            let mut txn = db.begin_write().map_err(db_err)?;
            txn.set_durability(if durable {
                Durability::Immediate
            } else {
                Durability::Eventual
            });
            let outcome = {
                let mut table = txn.open_table(RECORDS).map_err(db_err)?;
                let current = match table.get(&key.0).map_err(db_err)? {
                    Some(bytes) => Some(decode(key, bytes.value())?),
                    None => None,
                };
                match f(current) {
                    Err(e) => return Ok(Err(e)),
                    Ok(Change::Keep(t)) => {
                        drop(table);
                        txn.abort().map_err(db_err)?;
                        return Ok(Ok(t));
                    }
                    Ok(Change::Write(state, t)) => {
                        let bytes = encode(&state)?;
                        table.insert(&key.0, bytes.as_slice()).map_err(db_err)?;
                        t
                    }
                }
            };
            txn.commit().map_err(db_err)?;
            Ok(Ok(outcome))
        })
    }

    pub fn remove(&self, key: &FileKey) -> Result<(), RecordStoreError> {
        self.with(|db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut table = txn.open_table(RECORDS).map_err(db_err)?;
                table.remove(&key.0).map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })
    }

    /// Every key held, with the head version (for digests, repair and status).
    pub fn heads(&self) -> Result<Vec<(FileKey, u64)>, RecordStoreError> {
        self.with(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(RECORDS).map_err(db_err)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(db_err)? {
                let (k, v) = entry.map_err(db_err)?;
                let key = FileKey(*k.value());
                let state = decode(&key, v.value())?;
                out.push((key, state.head().map(|h| h.version).unwrap_or(0)));
            }
            Ok(out)
        })
    }

    /// The head version held for each key (0 when none), in one read transaction.
    pub fn positions(
        &self,
        keys: &[FileKey],
    ) -> Result<Vec<(FileKey, Position)>, RecordStoreError> {
        self.with(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(RECORDS).map_err(db_err)?;
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                let position = match table.get(&key.0).map_err(db_err)? {
                    Some(v) => decode(key, v.value())?.position(),
                    None => Position::default(),
                };
                out.push((*key, position));
            }
            Ok(out)
        })
    }

    /// Every state held, for a full scan (store check, repair).
    pub fn all(&self) -> Result<Vec<(FileKey, FileState)>, RecordStoreError> {
        self.with(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(RECORDS).map_err(db_err)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(db_err)? {
                let (k, v) = entry.map_err(db_err)?;
                let key = FileKey(*k.value());
                out.push((key, decode(&key, v.value())?));
            }
            Ok(out)
        })
    }
}

impl RecordStore {
    /// Notes that `block` is held for `file`. Eventual durability: losing it in a crash only
    /// makes the block uncollectable.
    pub fn add_block_ref(
        &self,
        block: &BlockId,
        file: &str,
        now_ms: u64,
    ) -> Result<(), RecordStoreError> {
        self.with_room(|db| {
            let mut txn = db.begin_write().map_err(db_err)?;
            txn.set_durability(Durability::Eventual);
            {
                let mut table = txn.open_table(BLOCK_REFS).map_err(db_err)?;
                let mut refs = match table.get(&block.0).map_err(db_err)? {
                    Some(v) => decode_refs(v.value()),
                    None => BlockRefs {
                        stored_ms: now_ms,
                        ..Default::default()
                    },
                };
                let known = refs.files.iter().any(|f| f == file);
                if known && refs.unreferenced_since.is_none() {
                    return Ok(());
                }
                if !known && refs.files.len() < MAX_REFS {
                    refs.files.push(file.to_string());
                }
                // Stored again for a file: whatever GC saw before no longer holds.
                refs.unreferenced_since = None;
                let bytes = encode(&refs)?;
                table.insert(&block.0, bytes.as_slice()).map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })
    }

    pub fn block_refs(&self) -> Result<Vec<(BlockId, BlockRefs)>, RecordStoreError> {
        self.with(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(BLOCK_REFS).map_err(db_err)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(db_err)? {
                let (k, v) = entry.map_err(db_err)?;
                out.push((BlockId(*k.value()), decode_refs(v.value())));
            }
            Ok(out)
        })
    }

    /// The refs of one block, if it has any.
    pub fn block_ref(&self, block: &BlockId) -> Result<Option<BlockRefs>, RecordStoreError> {
        self.with(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(BLOCK_REFS).map_err(db_err)?;
            let value = table.get(&block.0).map_err(db_err)?;
            Ok(value.map(|v| decode_refs(v.value())))
        })
    }

    pub fn set_block_refs(
        &self,
        block: &BlockId,
        refs: &BlockRefs,
    ) -> Result<(), RecordStoreError> {
        self.with_room(|db| {
            let mut txn = db.begin_write().map_err(db_err)?;
            txn.set_durability(Durability::Eventual);
            {
                let mut table = txn.open_table(BLOCK_REFS).map_err(db_err)?;
                let bytes = encode(refs)?;
                table.insert(&block.0, bytes.as_slice()).map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })
    }

    pub fn remove_block_refs(&self, block: &BlockId) -> Result<(), RecordStoreError> {
        self.with(|db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut table = txn.open_table(BLOCK_REFS).map_err(db_err)?;
                table.remove(&block.0).map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })
    }
}

/// A refs entry we cannot read is treated as "no refs": the block is kept.
fn decode_refs(bytes: &[u8]) -> BlockRefs {
    cbor4ii::serde::from_slice(bytes).unwrap_or_default()
}

fn decode(key: &FileKey, bytes: &[u8]) -> Result<FileState, RecordStoreError> {
    cbor4ii::serde::from_slice(bytes).map_err(|e| RecordStoreError::Decode(*key, e.to_string()))
}
