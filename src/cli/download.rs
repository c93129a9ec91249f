//! Writing a download: blocks go to a writer thread as they arrive, so disk writes overlap
//! the transfer, and each block is written from the buffer it arrived in (an async file
//! would copy it into its own buffer first and write one chunk at a time).
//!
//! A file appears at its path only complete: it is written under a temporary name beside
//! the destination and renamed at the end. Like curl and wget, the download is not fsynced
//! unless asked (`get --fsync`): a crash right after `get` returns may lose the file's data
//! from the page cache, never leave a partial file under the destination's name. With
//! `--fsync` the file and its directory are synced before `get` reports success.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use tokio::sync::mpsc;

/// Blocks queued for the writer at most: a few MiB of memory, enough to ride out a slow disk
/// moment without stalling the transfer.
const QUEUE: usize = 8;

/// The writing end of a download.
pub struct Sink {
    tx: Option<mpsc::Sender<Vec<u8>>>,
    thread: Option<JoinHandle<io::Result<Box<dyn Written>>>>,
}

/// What the writer thread wrote into: a file can be synced, stdout only flushed.
pub trait Written: Write + Send {
    fn sync(&mut self) -> io::Result<()>;
}

impl Written for File {
    fn sync(&mut self) -> io::Result<()> {
        self.sync_all()
    }
}

impl Written for io::Stdout {
    fn sync(&mut self) -> io::Result<()> {
        self.flush()
    }
}

impl Sink {
    /// Starts a writer thread over `out`.
    pub fn new(mut out: Box<dyn Written>) -> io::Result<Self> {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("download-writer".into())
            .spawn(move || {
                while let Some(block) = rx.blocking_recv() {
                    out.write_all(&block)?;
                }
                out.flush()?;
                Ok(out)
            })?;
        Ok(Sink {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// A sink writing a new file at `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        Self::new(Box::new(File::create(path)?))
    }

    /// Queues one block; waits only when the writer is `QUEUE` blocks behind.
    pub async fn write(&mut self, block: Vec<u8>) -> io::Result<()> {
        let Some(tx) = &self.tx else {
            return Err(io::Error::other("the download is already finished"));
        };
        if tx.send(block).await.is_err() {
            // The writer stopped: its error says why.
            return Err(self
                .join()
                .await
                .err()
                .unwrap_or_else(|| io::Error::other("the download writer stopped early")));
        }
        Ok(())
    }

    /// Waits for every queued block to be written; with `sync`, syncs it to disk.
    pub async fn finish(mut self, sync: bool) -> io::Result<()> {
        let mut out = self.join().await?;
        if sync {
            tokio::task::spawn_blocking(move || out.sync())
                .await
                .map_err(io::Error::other)??;
        }
        Ok(())
    }

    async fn join(&mut self) -> io::Result<Box<dyn Written>> {
        self.tx = None; // the writer ends once the queue is empty
        let Some(thread) = self.thread.take() else {
            return Err(io::Error::other("the download writer already ended"));
        };
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(io::Error::other)?
            .map_err(|_| io::Error::other("the download writer panicked"))?
    }
}

/// Syncs the directory holding `path`, so a rename into it survives a crash.
pub fn sync_dir_of(path: &Path) -> io::Result<()> {
    let dir: PathBuf = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    File::open(dir)?.sync_all()
}
