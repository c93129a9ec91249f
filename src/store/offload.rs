//! The store as async code uses it: each call runs on tokio's blocking pool (a redb commit or
//! a block fsync would stall the executor) and fails with one typed error, so every call site
//! is one line and nothing is dropped silently.

use std::sync::Arc;

use super::{BlockError, BlockRefs, Change, RecordStoreError, Store};
use crate::ids::{BlockId, FileKey, Nonce, Proof};
use crate::record::{FileState, Position};

/// Whatever part of the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Records(#[from] RecordStoreError),
    #[error(transparent)]
    Blocks(#[from] BlockError),
    #[error("block store I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The blocking task panicked or was cancelled at shutdown.
    #[error("store task failed: {0}")]
    Task(String),
}

impl Store {
    /// Runs `f` on the blocking pool.
    pub async fn run<T, E>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> Result<T, E> + Send + 'static,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        E: Into<StoreError> + Send + 'static,
    {
        let store = self.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(result) => result.map_err(Into::into),
            Err(e) => Err(StoreError::Task(e.to_string())),
        }
    }

    /// The state held for `key`.
    pub async fn state(self: &Arc<Self>, key: FileKey) -> Result<Option<FileState>, StoreError> {
        self.run(move |s| s.records.get(&key)).await
    }

    /// Every state held.
    pub async fn states(self: &Arc<Self>) -> Result<Vec<(FileKey, FileState)>, StoreError> {
        self.run(|s| s.records.all()).await
    }

    /// The position (head version, holder revision) held for each key.
    pub async fn positions(
        self: &Arc<Self>,
        keys: Vec<FileKey>,
    ) -> Result<Vec<(FileKey, Position)>, StoreError> {
        self.run(move |s| s.records.positions(&keys)).await
    }

    /// Atomically reads, decides and writes the state of `key` (see [`super::RecordStore::update`]):
    /// the outer error is the store's, the inner one the decision's.
    pub async fn update<T, E>(
        self: &Arc<Self>,
        key: FileKey,
        durable: bool,
        f: impl FnOnce(Option<FileState>) -> Result<Change<T>, E> + Send + 'static,
    ) -> Result<Result<T, E>, StoreError>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        self.run(move |s| s.records.update(&key, durable, f)).await
    }

    pub async fn remove_state(self: &Arc<Self>, key: FileKey) -> Result<(), StoreError> {
        self.run(move |s| s.records.remove(&key)).await
    }

    pub async fn block_refs(self: &Arc<Self>) -> Result<Vec<(BlockId, BlockRefs)>, StoreError> {
        self.run(|s| s.records.block_refs()).await
    }

    pub async fn block_ref(self: &Arc<Self>, id: BlockId) -> Result<Option<BlockRefs>, StoreError> {
        self.run(move |s| s.records.block_ref(&id)).await
    }

    pub async fn add_block_ref(
        self: &Arc<Self>,
        id: BlockId,
        file: String,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.run(move |s| s.records.add_block_ref(&id, &file, now_ms))
            .await
    }

    pub async fn set_block_refs(
        self: &Arc<Self>,
        id: BlockId,
        refs: BlockRefs,
    ) -> Result<(), StoreError> {
        self.run(move |s| s.records.set_block_refs(&id, &refs))
            .await
    }

    pub async fn remove_block_refs(self: &Arc<Self>, id: BlockId) -> Result<(), StoreError> {
        self.run(move |s| s.records.remove_block_refs(&id)).await
    }

    /// Stores a block after checking it against `id`.
    pub async fn put_block(self: &Arc<Self>, id: BlockId, data: Vec<u8>) -> Result<(), StoreError> {
        self.run(move |s| s.blocks.put(&id, &data)).await
    }

    /// Reads and verifies a block; `None` if it is not held.
    pub async fn get_block(self: &Arc<Self>, id: BlockId) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(move |s| s.blocks.get(&id)).await
    }

    /// Answers a possession challenge for a block held (reading and verifying it first);
    /// `None` if it is not held.
    pub async fn prove_block(
        self: &Arc<Self>,
        id: BlockId,
        nonce: Nonce,
    ) -> Result<Option<Proof>, StoreError> {
        self.run(move |s| {
            Ok::<_, StoreError>(s.blocks.get(&id)?.map(|data| Proof::of(&nonce, &id, &data)))
        })
        .await
    }

    /// Deletes a block and its refs. True if a copy was there.
    pub async fn remove_block(self: &Arc<Self>, id: BlockId) -> Result<bool, StoreError> {
        self.run(move |s| {
            let removed = s.blocks.remove(&id)?;
            s.records.remove_block_refs(&id)?;
            Ok::<_, StoreError>(removed)
        })
        .await
    }
}
