//! Content-addressed block files.
//!
//! A block lives at `blocks/<first two hex digits>/<hex id>`. Writes go to a temp file in
//! `blocks/.tmp`, are fsynced, renamed into place and the directory is fsynced, so a crash
//! leaves either the whole block or nothing under its name. Every read is verified against the
//! id; a block that fails is moved to `blocks/.corrupt` and reported, never served.
//!
//! All methods do blocking file I/O: call them from `spawn_blocking` on the async side.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::ids::BlockId;

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("block {0} does not match its hash (expected id {0}, got {1})")]
    WrongHash(BlockId, BlockId),
    #[error("block {0} on disk is corrupt; moved aside")]
    Corrupt(BlockId),
    #[error("block store I/O: {0}")]
    Io(#[from] io::Error),
}

pub struct BlockStore {
    dir: PathBuf,
    /// Ids held and their lengths. Rebuilt from the directory at open.
    index: Mutex<HashMap<BlockId, u32>>,
    used: AtomicU64,
    tmp_seq: AtomicU64,
}

impl BlockStore {
    pub fn open(dir: &Path) -> io::Result<Self> {
        let store = Self {
            dir: dir.to_path_buf(),
            index: Mutex::new(HashMap::new()),
            used: AtomicU64::new(0),
            tmp_seq: AtomicU64::new(0),
        };
        fs::create_dir_all(store.tmp_dir())?;
        // Temp files are writes that never completed: nothing acknowledged them.
        for entry in fs::read_dir(store.tmp_dir())? {
            let _ = fs::remove_file(entry?.path());
        }
        let mut index = HashMap::new();
        let mut used = 0u64;
        for shard in fs::read_dir(dir)? {
            let shard = shard?;
            let name = shard.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !shard.file_type()?.is_dir() {
                continue;
            }
            for entry in fs::read_dir(shard.path())? {
                let entry = entry?;
                let Some(id) = BlockId::from_hex(&entry.file_name().to_string_lossy()) else {
                    continue;
                };
                let len = entry.metadata()?.len();
                used += len;
                index.insert(id, len as u32);
            }
        }
        store.used.store(used, Ordering::Relaxed);
        if let Ok(mut guard) = store.index.lock() {
            *guard = index;
        }
        Ok(store)
    }

    fn tmp_dir(&self) -> PathBuf {
        self.dir.join(".tmp")
    }

    fn corrupt_dir(&self) -> PathBuf {
        self.dir.join(".corrupt")
    }

    fn path_of(&self, id: &BlockId) -> PathBuf {
        let hex = id.to_hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, HashMap<BlockId, u32>> {
        // A panic while holding this lock cannot leave the map half-updated (single inserts and
        // removes), so a poisoned lock is still safe to use.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn contains(&self, id: &BlockId) -> bool {
        self.index().contains_key(id)
    }

    /// The length of block `id`, if held.
    pub fn len_of(&self, id: &BlockId) -> Option<u32> {
        self.index().get(id).copied()
    }

    pub fn count(&self) -> usize {
        self.index().len()
    }

    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn ids(&self) -> Vec<BlockId> {
        self.index().keys().copied().collect()
    }

    /// Up to `n` held blocks and their lengths, from position `start` (modulo the count) in
    /// the index's order, wrapping around: a cheap rotating sample without copying every id.
    pub fn sample(&self, start: usize, n: usize) -> Vec<(BlockId, u32)> {
        let index = self.index();
        if index.is_empty() {
            return Vec::new();
        }
        let skip = start % index.len();
        index
            .iter()
            .skip(skip)
            .chain(index.iter().take(skip))
            .take(n)
            .map(|(id, len)| (*id, *len))
            .collect()
    }

    /// Stores a block durably after checking its hash. Storing a block already held is a no-op.
    pub fn put(&self, id: &BlockId, data: &[u8]) -> Result<(), BlockError> {
        let actual = BlockId::of(data);
        if actual != *id {
            return Err(BlockError::WrongHash(*id, actual));
        }
        self.put_verified(id, data)
    }

    /// Stores a block whose hash the caller has just checked.
    pub fn put_verified(&self, id: &BlockId, data: &[u8]) -> Result<(), BlockError> {
        if self.contains(id) {
            return Ok(());
        }
        let path = self.path_of(id);
        let shard = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(shard)?;
        let tmp = self.tmp_dir().join(format!(
            "{}.{}.{}",
            id.to_hex(),
            std::process::id(),
            self.tmp_seq.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(shard)?.sync_all()
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        if self.index().insert(*id, data.len() as u32).is_none() {
            self.used.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Reads and verifies a block. `Ok(None)` if it is not held.
    pub fn get(&self, id: &BlockId) -> Result<Option<Vec<u8>>, BlockError> {
        if !self.contains(id) {
            return Ok(None);
        }
        let data = match fs::read(self.path_of(id)) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.forget(id);
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if BlockId::of(&data) != *id {
            self.quarantine(id);
            return Err(BlockError::Corrupt(*id));
        }
        Ok(Some(data))
    }

    /// Deletes a block (garbage collection, or a corrupt copy).
    pub fn remove(&self, id: &BlockId) -> io::Result<bool> {
        match fs::remove_file(self.path_of(id)) {
            Ok(()) => {
                self.forget(id);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.forget(id);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn forget(&self, id: &BlockId) {
        if let Some(len) = self.index().remove(id) {
            self.used.fetch_sub(u64::from(len), Ordering::Relaxed);
        }
    }

    fn quarantine(&self, id: &BlockId) {
        let to = self.corrupt_dir();
        let moved = fs::create_dir_all(&to)
            .and_then(|_| fs::rename(self.path_of(id), to.join(id.to_hex())));
        if moved.is_err() {
            let _ = fs::remove_file(self.path_of(id));
        }
        self.forget(id);
        tracing::warn!(block = %id, "corrupt block moved aside");
    }

    /// Reads every block back and checks its hash. Returns the ids found corrupt (moved aside).
    pub fn verify_all(&self) -> io::Result<Vec<BlockId>> {
        let mut bad = Vec::new();
        for id in self.ids() {
            match self.get(&id) {
                Ok(_) => {}
                Err(BlockError::Corrupt(id)) => bad.push(id),
                Err(BlockError::Io(e)) => return Err(e),
                Err(BlockError::WrongHash(..)) => {}
            }
        }
        Ok(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_verify_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let data = vec![7u8; 5000];
        let id = BlockId::of(&data);
        store.put(&id, &data).unwrap();
        store.put(&id, &data).unwrap();
        assert_eq!(store.used_bytes(), 5000);
        assert_eq!(store.get(&id).unwrap().unwrap(), data);
        assert!(matches!(
            store.put(&BlockId::of(b"other"), &data),
            Err(BlockError::WrongHash(..))
        ));
        drop(store);
        let store = BlockStore::open(dir.path()).unwrap();
        assert_eq!(store.count(), 1);
        assert_eq!(store.used_bytes(), 5000);
    }

    #[test]
    fn corrupt_block_is_detected_and_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let data = b"some block".to_vec();
        let id = BlockId::of(&data);
        store.put(&id, &data).unwrap();
        let path = store.path_of(&id);
        let mut bytes = fs::read(&path).unwrap();
        bytes[0] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        assert!(matches!(store.get(&id), Err(BlockError::Corrupt(_))));
        assert!(!store.contains(&id));
        assert_eq!(store.get(&id).unwrap(), None);
    }
}
