//! Private files on the client: `put_private`, `share`, `unshare`, and finding the key a
//! read needs. The cryptography is in `seal`; this is what each operation publishes.
//!
//! A private version's record wraps its content key to the owner, to the file's "latest"
//! capability of the current epoch, and to every reader it was shared with. `update` keeps
//! those readers (under a fresh key); `share` adds one to a new version with the same
//! content; `unshare` drops one, moves the epoch on (so "latest" capabilities handed out
//! before stop opening new versions) and re-seals the content under a fresh key. A reader
//! that had a key keeps what it could read before: unsharing cannot take back bytes.

use std::collections::HashMap;

use futures::StreamExt;
use libp2p::PeerId;
use tokio::io::{AsyncRead, AsyncWriteExt};

use super::seal::{self, capability_for, Capability, ContentKey, Sealing};
use super::write::next_version;
use super::{Client, Progress, PutOutcome};
use crate::error::{Error, Result};
use crate::record::{now_ms, FileRecord, Sealed};

impl Client {
    /// Publishes a new private file: sealed on this client, readable by its owner and by the
    /// capability that comes back (keep it secret; anyone holding it reads every version until
    /// the next `unshare`).
    pub async fn put_private<R: AsyncRead + Unpin>(
        &self,
        name: &str,
        reader: R,
        progress: Option<Progress>,
    ) -> Result<(PutOutcome, Capability)> {
        let seal = Sealing {
            epoch: 0,
            readers: Vec::new(),
        };
        let (outcome, cap) = self.put_with(name, reader, Some(&seal), progress).await?;
        let cap = cap.ok_or_else(|| Error::Invalid("a private put came back unsealed".into()))?;
        Ok((outcome, cap))
    }

    /// The capability of one version of a private file this client can read.
    pub async fn capability(&self, name: &str, version: Option<u64>) -> Result<Capability> {
        let record = self.record_for_get(name, version).await?;
        if record.sealed.is_none() {
            return Err(Error::Invalid(format!("{name:?} is not private")));
        }
        let key = self
            .reader_key(&record, None)?
            .ok_or_else(|| Error::NoCapability(name.to_string()))?;
        Ok(Capability::Version {
            name: name.to_string(),
            version: record.version,
            key,
        })
    }

    /// The head of a private file this client owns, and its content key.
    async fn private_head(&self, name: &str) -> Result<(FileRecord, Sealed, ContentKey)> {
        let state = self.head_for_change(name, None).await?;
        let head = state
            .head()
            .cloned()
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        let sealed = head
            .sealed
            .clone()
            .ok_or_else(|| Error::Invalid(format!("{name:?} is not private; nothing to share")))?;
        let key = seal::unwrap(&sealed, &self.reader_secret()?)
            .ok_or_else(|| Error::NoCapability(name.to_string()))?;
        Ok((head, sealed, key))
    }

    /// Lets the client with peer id `to` read a private file this client owns: a new version
    /// with the same content and key, its key also wrapped to `to`. Returns that version.
    pub async fn share(&self, name: &str, to: &PeerId) -> Result<u64> {
        let reader = seal::reader_key_of(to).ok_or_else(|| {
            Error::Invalid(format!("{to} does not carry an ed25519 key to share to"))
        })?;
        let (head, sealed, key) = self.private_head(name).await?;
        if sealed.readers().any(|r| *r == reader) {
            return Ok(head.version);
        }
        let mut readers: Vec<[u8; 32]> = sealed.readers().copied().collect();
        readers.push(reader);
        let record = FileRecord {
            version: next_version(name, head.version)?,
            modified_ms: now_ms(),
            sealed: Some(seal::seal_for(&key, sealed.epoch, &readers)?),
            ..head
        };
        self.publish_signed(name, record).await
    }

    /// Stops sharing a private file with `from`: a new version under a fresh key and a new
    /// epoch, readable by the owner and the remaining readers, and a new "latest" capability
    /// (the old one opens no new version). The content is read and sealed again.
    pub async fn unshare(&self, name: &str, from: &PeerId) -> Result<(PutOutcome, Capability)> {
        let reader = seal::reader_key_of(from)
            .ok_or_else(|| Error::Invalid(format!("{from} does not carry an ed25519 key")))?;
        let (head, sealed, key) = self.private_head(name).await?;
        if !sealed.readers().any(|r| *r == reader) {
            return Err(Error::Invalid(format!(
                "{name:?} is not shared with {from}"
            )));
        }
        let me = self.reader_secret()?;
        let old_cap = capability_for(&me, name, sealed.epoch, head.created_ms).public();
        let mut seal = Sealing::following(&sealed, Some(&[reader, old_cap]));
        seal.epoch = sealed
            .epoch
            .checked_add(1)
            .ok_or_else(|| Error::Invalid(format!("{name:?} has run out of epochs")))?;
        let next = (next_version(name, head.version)?, Some(head.created_ms));
        // The old content streams through a pipe into the new upload; an error reading it
        // ends the whole operation before anything is published.
        let (mut tx, rx) = tokio::io::duplex(1 << 20);
        let feed = async {
            let mut blocks = std::pin::pin!(self.blocks_opened(&head, Some(key)));
            let mut fed: u64 = 0;
            while let Some(block) = blocks.next().await {
                let block = block?;
                fed = fed.saturating_add(block.len() as u64);
                tx.write_all(&block).await?;
            }
            if fed != head.plain_size() {
                return Err(Error::Integrity(format!(
                    "read {fed} bytes of {name:?}, its record says {}",
                    head.plain_size()
                )));
            }
            tx.shutdown().await?;
            drop(tx);
            Ok::<_, Error>(())
        };
        let none = HashMap::new();
        let publish =
            self.publish_from(name, async move { Ok(next) }, rx, &none, Some(&seal), None);
        let ((), (outcome, cap)) = futures::future::try_join(feed, publish).await?;
        let cap = cap.ok_or_else(|| Error::Invalid("unshare came back unsealed".into()))?;
        Ok((outcome, cap))
    }
}
