//! A node's data on disk: content-addressed block files ([`blocks`]) and file records in an
//! embedded transactional store ([`records`]), under one data directory. Async code calls it
//! through [`offload`], which runs each call on the blocking pool.

pub mod blocks;
pub mod offload;
pub mod records;

use std::path::{Path, PathBuf};

pub use blocks::{BlockError, BlockStore};
pub use offload::StoreError;
pub use records::{BlockRefs, Change, RecordStore, RecordStoreError};

pub struct Store {
    pub dir: PathBuf,
    pub blocks: BlockStore,
    pub records: RecordStore,
}

/// Result of a full store check.
#[derive(Debug, Default, serde::Serialize)]
pub struct CheckReport {
    pub blocks: usize,
    pub block_bytes: u64,
    pub corrupt_blocks: Vec<String>,
    pub records: usize,
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.corrupt_blocks.is_empty() && self.problems.is_empty()
    }
}

/// Bytes a node without `--capacity` keeps free on its disk: it refuses blocks past that.
pub const DISK_RESERVE: u64 = 256 << 20;

/// Free bytes on the file system of `dir`, if the platform says.
pub fn free_disk(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
            return None;
        };
        let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `path` is a valid C string and `s` a writable statvfs; we read it only when
        // the call reports success.
        let rc = unsafe { libc::statvfs(path.as_ptr(), s.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        // SAFETY: statvfs returned 0, so it filled `s`.
        let s = unsafe { s.assume_init() };
        // The field types differ between platforms (u32 on some 32-bit ones).
        #[allow(clippy::unnecessary_cast)]
        let (avail, frsize) = (s.f_bavail as u64, s.f_frsize as u64);
        Some(avail.saturating_mul(frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let blocks = BlockStore::open(&dir.join("blocks"))?;
        let records = RecordStore::open(&dir.join("records.redb"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            blocks,
            records,
        })
    }

    /// Reads every block and record back. Blocks failing their hash are moved aside and listed;
    /// unreadable records are listed as problems, and so is any record that names `local` as
    /// holder of a block this store does not have (a holder acknowledges only after fsync, so
    /// after any crash this must never happen).
    pub fn check(&self, local: Option<libp2p::PeerId>) -> Result<CheckReport, StoreError> {
        let mut report = CheckReport {
            corrupt_blocks: self
                .blocks
                .verify_all()?
                .iter()
                .map(|id| id.to_hex())
                .collect(),
            ..Default::default()
        };
        report.blocks = self.blocks.count();
        report.block_bytes = self.blocks.used_bytes();
        match self.records.all() {
            Ok(all) => {
                report.records = all.len();
                for (key, state) in all {
                    for r in &state.versions {
                        if r.key() != key {
                            report
                                .problems
                                .push(format!("record {key} holds a version of {:?}", r.name));
                        }
                        if let Err(e) = r.verify() {
                            report
                                .problems
                                .push(format!("record {key} v{}: {e}", r.version));
                        }
                        for b in &r.blocks {
                            if local.is_some_and(|me| b.holders.contains(&me))
                                && !self.blocks.contains(&b.id)
                            {
                                report.problems.push(format!(
                                    "record {:?} v{} lists this node for block {} it lacks",
                                    r.name, r.version, b.id
                                ));
                            }
                        }
                    }
                }
            }
            Err(e) => report.problems.push(e.to_string()),
        }
        Ok(report)
    }
}
