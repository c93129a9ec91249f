//! The file record: what a file's root node keeps about it (the patent's file metadata).
//!
//! A [`FileRecord`] is one version of a file: name, version, size, block size, the ordered
//! block list with each block's holders, the owner and the owner's signature. The owner signs
//! everything except the holder lists, which the root maintains (repair and balancing change
//! them without the owner). A [`FileState`] is what a root stores per file key: the retained
//! versions, newest last, plus the user list (owner and downloaders).
//!
//! Validation is pure and lives here so every node (root, replica, joining peer) and the
//! client apply the same rules: [`FileRecord::verify`] checks a record on its own, [`rules`]
//! checks states against what is held (the one acceptance rule), and [`attest`] authenticates
//! the root-kept fields.

pub mod attest;
pub mod note;
pub mod rules;
pub mod sealed;

use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::ids::{owner_scope, validate_name, BlockId, FileKey};

pub use attest::{public_key_of, Attestation, MAX_SKEW_MS};
pub use note::DownloadNote;
pub use rules::{
    accept_copy, check_state, check_successor, compatible, Adopt, Succession, MAX_VERSION_JUMP,
};
pub use sealed::{Cipher, KeyWrap, Sealed, TAG_LEN};

/// Largest block a node accepts. Keeps every block message well inside the frame limits.
pub const MAX_BLOCK_SIZE: u32 = 8 * 1024 * 1024;
/// Files up to this size travel inside their record instead of as a block (as Garage inlines
/// small objects in its metadata): a put or get is then one metadata round trip, and the
/// record's R replicas are the file's R copies.
pub const INLINE_MAX: u32 = 8 * 1024;
/// Default fixed chunk size.
pub const DEFAULT_BLOCK_SIZE: u32 = 1024 * 1024;
/// Domain separator for record signatures, so a signature can never be replayed as another
/// kind of signed message.
const SIGNING_DOMAIN: &str = "swarmstore/record/1";

// Limits on everything a peer can make a node hold. A record of the largest file fits in a
// meta frame: 65,536 blocks with 8 holders each is under 30 MB.
/// Highest version number: far above any real history, far below where `+ 1` could wrap.
pub const MAX_VERSION: u64 = 1 << 53;
/// Blocks per version: 64 GiB at the default 1 MiB block size, 512 GiB at the largest.
pub const MAX_BLOCKS: usize = 1 << 16;
/// Holders listed per block (R plus extra copies).
pub const MAX_HOLDERS: usize = 8;
/// Versions one state retains (`keep_versions` is clamped to it).
pub const MAX_RETAINED: usize = 16;
/// Entries in a user list.
pub const MAX_USERS: usize = 4096;

/// One block of a file: its id, its length and the peers that hold a copy, or, for a small
/// file's only block, the bytes themselves (no holders then).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEntry {
    pub id: BlockId,
    pub len: u32,
    pub holders: Vec<PeerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<serde_bytes::ByteBuf>,
}

impl BlockEntry {
    /// A block stored on holders.
    pub fn held(id: BlockId, len: u32, holders: Vec<PeerId>) -> Self {
        BlockEntry {
            id,
            len,
            holders,
            inline: None,
        }
    }

    /// A small file's only block, carried in the record.
    pub fn inline(data: Vec<u8>) -> Self {
        BlockEntry {
            id: BlockId::of(&data),
            len: data.len() as u32,
            holders: Vec::new(),
            inline: Some(serde_bytes::ByteBuf::from(data)),
        }
    }

    pub fn is_inline(&self) -> bool {
        self.inline.is_some()
    }
}

/// One signed version of a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub name: String,
    pub version: u64,
    pub size: u64,
    pub block_size: u32,
    pub blocks: Vec<BlockEntry>,
    pub owner: PeerId,
    /// The owner's public key, protobuf-encoded, so any node can check the signature.
    #[serde(with = "serde_bytes")]
    pub owner_key: Vec<u8>,
    pub created_ms: u64,
    pub modified_ms: u64,
    pub tombstone: bool,
    /// A private file's encryption (its blocks are ciphertext); `None` for a plain file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<Sealed>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// The part of a record the owner signs: all but holders and the signature itself.
#[derive(Serialize)]
struct SignedContent<'a> {
    domain: &'static str,
    name: &'a str,
    version: u64,
    size: u64,
    block_size: u32,
    blocks: Vec<(BlockId, u32)>,
    owner: PeerId,
    created_ms: u64,
    modified_ms: u64,
    tombstone: bool,
    // Absent for a plain file, so plain records sign exactly the bytes they always did.
    #[serde(skip_serializing_if = "Option::is_none")]
    sealed: Option<&'a Sealed>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum RecordError {
    #[error("invalid record: {0}")]
    Invalid(String),
    #[error("bad signature: {0}")]
    BadSignature(String),
    #[error("permission denied: {name:?} is owned by {owner}")]
    PermissionDenied { name: String, owner: String },
    #[error("version conflict: {name:?} is at version {current}, the update was for version {attempted}")]
    Conflict {
        name: String,
        current: u64,
        attempted: u64,
    },
    #[error("stale record: version {attempted} is not newer than the held version {current}")]
    Stale { current: u64, attempted: u64 },
    /// A change to root-kept fields from a peer that may not make it, or that does not verify.
    #[error("not authorized: {0}")]
    Unauthorized(String),
}

impl FileRecord {
    pub fn key(&self) -> FileKey {
        FileKey::for_name(&self.name)
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let content = SignedContent {
            domain: SIGNING_DOMAIN,
            name: &self.name,
            version: self.version,
            size: self.size,
            block_size: self.block_size,
            blocks: self.blocks.iter().map(|b| (b.id, b.len)).collect(),
            owner: self.owner,
            created_ms: self.created_ms,
            modified_ms: self.modified_ms,
            tombstone: self.tombstone,
            sealed: self.sealed.as_ref(),
        };
        // Serializing a struct of plain fields into a Vec cannot fail.
        cbor4ii::serde::to_vec(Vec::new(), &content).unwrap_or_default()
    }

    /// Sets `owner`, `owner_key` and `signature` from the owner's keypair.
    pub fn sign(&mut self, owner: &Keypair) -> Result<(), RecordError> {
        self.owner = owner.public().to_peer_id();
        self.owner_key = owner.public().encode_protobuf();
        self.signature = owner
            .sign(&self.signed_bytes())
            .map_err(|e| RecordError::BadSignature(format!("signing failed: {e}")))?;
        Ok(())
    }

    /// Checks the record on its own: shape, sizes and the owner's signature.
    pub fn verify(&self) -> Result<(), RecordError> {
        validate_name(&self.name).map_err(RecordError::Invalid)?;
        if !rules::version_in_range(self.version) {
            return Err(RecordError::Invalid(format!(
                "version {} outside 1..={MAX_VERSION}",
                self.version
            )));
        }
        if self.blocks.len() > MAX_BLOCKS {
            return Err(RecordError::Invalid(format!(
                "{} blocks; at most {MAX_BLOCKS}",
                self.blocks.len()
            )));
        }
        if let Some(b) = self.blocks.iter().find(|b| b.holders.len() > MAX_HOLDERS) {
            return Err(RecordError::Invalid(format!(
                "block {} lists {} holders; at most {MAX_HOLDERS}",
                b.id,
                b.holders.len()
            )));
        }
        if self.block_size == 0 || self.block_size > MAX_BLOCK_SIZE {
            return Err(RecordError::Invalid(format!(
                "block size {} outside 1..={MAX_BLOCK_SIZE}",
                self.block_size
            )));
        }
        if self.tombstone && (!self.blocks.is_empty() || self.size != 0) {
            return Err(RecordError::Invalid("a tombstone has no blocks".into()));
        }
        let mut total: u64 = 0;
        let last = self.blocks.len().saturating_sub(1);
        for (i, b) in self.blocks.iter().enumerate() {
            let full = b.len == self.block_size;
            if b.len == 0 || b.len > self.block_size || (i != last && !full) {
                return Err(RecordError::Invalid(format!(
                    "block {i} has length {} with block size {}",
                    b.len, self.block_size
                )));
            }
            if let Some(data) = &b.inline {
                if self.blocks.len() != 1 || b.len > INLINE_MAX || !b.holders.is_empty() {
                    return Err(RecordError::Invalid(format!(
                        "only a file's single block of at most {INLINE_MAX} bytes, with no \
                         holders, may be inline"
                    )));
                }
                if data.len() != b.len as usize || BlockId::of(data) != b.id {
                    return Err(RecordError::Invalid(format!(
                        "inline bytes do not match block {}",
                        b.id
                    )));
                }
            }
            total += u64::from(b.len);
        }
        if total != self.size {
            return Err(RecordError::Invalid(format!(
                "blocks add up to {total} bytes, record says {}",
                self.size
            )));
        }
        if let Some(sealed) = &self.sealed {
            sealed.check()?;
            if self.tombstone {
                return Err(RecordError::Invalid("a tombstone is not sealed".into()));
            }
            // Every sealed block holds at least one byte besides its tag.
            if self.block_size <= TAG_LEN || self.blocks.iter().any(|b| b.len <= TAG_LEN) {
                return Err(RecordError::Invalid(format!(
                    "a sealed block is longer than its {TAG_LEN}-byte tag"
                )));
            }
        }
        let key = PublicKey::try_decode_protobuf(&self.owner_key)
            .map_err(|e| RecordError::BadSignature(format!("owner key: {e}")))?;
        if key.to_peer_id() != self.owner {
            return Err(RecordError::BadSignature(
                "owner key does not match owner peer id".into(),
            ));
        }
        if let Some(scope) = owner_scope(&self.name) {
            if scope != self.owner.to_base58() {
                return Err(RecordError::PermissionDenied {
                    name: self.name.clone(),
                    owner: format!("the peer {scope:?} (names under ~PEER/ are that peer's)"),
                });
            }
        }
        if !key.verify(&self.signed_bytes(), &self.signature) {
            return Err(RecordError::BadSignature(format!(
                "signature of {:?} v{} does not verify",
                self.name, self.version
            )));
        }
        Ok(())
    }

    /// The size of the file's content: for a private file, its blocks without their tags.
    pub fn plain_size(&self) -> u64 {
        match &self.sealed {
            Some(_) => self
                .size
                .saturating_sub(u64::from(TAG_LEN).saturating_mul(self.blocks.len() as u64)),
            None => self.size,
        }
    }

    /// True when both records carry the same signed content (holders may differ).
    pub fn same_content(&self, other: &FileRecord) -> bool {
        self.version == other.version && self.signature == other.signature
    }
}

/// Who a user-list entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserRole {
    Owner,
    Downloader,
}

/// One entry of a file's user list (the patent's "users who own or downloaded the file").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEntry {
    pub peer: PeerId,
    pub role: UserRole,
    pub first_ms: u64,
    pub last_ms: u64,
    pub count: u64,
}

/// What a root (or replica) keeps for one file key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    /// Retained versions, oldest first; the last one is the head.
    pub versions: Vec<FileRecord>,
    pub users: Vec<UserEntry>,
    /// Revision of the holder lists (a hybrid clock: max(rev + 1, now in ms)), moved on by the
    /// root on each change within a version:
    /// copies of the same version can arrive out of order, and an older one must never
    /// overwrite a newer one. (The user list rides along; it is not worth a revision.)
    #[serde(default)]
    pub rev: u64,
    /// The replica-set member that last changed the root-kept fields, and its signature over
    /// the whole state (see [`attest`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attest: Option<Attestation>,
}

/// How far a copy of a file's state has come: head version, then holder-list revision.
/// Replicas converge on the highest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub version: u64,
    pub rev: u64,
}

impl FileState {
    pub fn head(&self) -> Option<&FileRecord> {
        self.versions.last()
    }

    pub fn position(&self) -> Position {
        Position {
            version: self.head().map(|h| h.version).unwrap_or(0),
            rev: self.rev,
        }
    }

    pub fn version(&self, v: u64) -> Option<&FileRecord> {
        self.versions.iter().find(|r| r.version == v)
    }

    /// An empty state, before its first version.
    pub fn empty() -> Self {
        FileState {
            versions: Vec::new(),
            users: Vec::new(),
            rev: 0,
            attest: None,
        }
    }

    /// Appends a new head (already checked), drops versions beyond `keep`, and starts a fresh
    /// history after a tombstone. Returns the versions that are no longer retained.
    ///
    /// A fresh history keeps the tombstone it follows as its first version: it is the old
    /// owner's signed release of the name, which lets any replica verify the change of owner.
    pub fn push(&mut self, record: FileRecord, keep: usize) -> Vec<FileRecord> {
        let mut dropped = Vec::new();
        let restart = self.head().is_some_and(|h| h.tombstone) && !record.tombstone;
        if restart {
            let tomb = self.versions.pop();
            dropped.append(&mut self.versions);
            self.versions.extend(tomb);
            self.users.clear();
        }
        if self.users.is_empty() || restart {
            self.users.push(UserEntry {
                peer: record.owner,
                role: UserRole::Owner,
                first_ms: record.modified_ms,
                last_ms: record.modified_ms,
                count: 1,
            });
        }
        if record.tombstone {
            // A tombstone retains nothing before it: the file is gone.
            dropped.append(&mut self.versions);
        }
        self.versions.push(record);
        // The anchor tombstone of a fresh history stays while later versions need it.
        let keep = keep.clamp(1, MAX_RETAINED);
        let anchored = usize::from(restart);
        if self.versions.len() > keep + anchored {
            let excess = self.versions.len() - keep - anchored;
            dropped.extend(self.versions.drain(anchored..anchored + excess));
        }
        dropped
    }

    /// Records a download; bounded to `limit` entries, oldest downloader dropped first.
    /// A note no newer than the user's last one counts nothing (a replayed note).
    pub fn note_user(&mut self, peer: PeerId, at_ms: u64, limit: usize) {
        if let Some(u) = self.users.iter_mut().find(|u| u.peer == peer) {
            if at_ms > u.last_ms {
                u.last_ms = at_ms;
                u.count = u.count.saturating_add(1);
            }
            return;
        }
        self.users.push(UserEntry {
            peer,
            role: UserRole::Downloader,
            first_ms: at_ms,
            last_ms: at_ms,
            count: 1,
        });
        while self.users.len() > limit.clamp(1, MAX_USERS) {
            let oldest = self
                .users
                .iter()
                .enumerate()
                .filter(|(_, u)| u.role == UserRole::Downloader)
                .min_by_key(|(_, u)| u.last_ms)
                .map(|(i, _)| i);
            match oldest {
                Some(i) => {
                    self.users.remove(i);
                }
                None => break,
            }
        }
    }

    /// Blocks referenced by any retained version.
    pub fn referenced_blocks(&self) -> std::collections::BTreeSet<BlockId> {
        self.versions
            .iter()
            .flat_map(|r| r.blocks.iter().map(|b| b.id))
            .collect()
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A state of these versions, without root-kept fields.
    pub(crate) fn state_of(versions: Vec<FileRecord>) -> FileState {
        FileState {
            versions,
            ..FileState::empty()
        }
    }

    /// A signed version of file "a", one block per slice.
    pub(crate) fn record(owner: &Keypair, version: u64, data: &[&[u8]]) -> FileRecord {
        let blocks: Vec<BlockEntry> = data
            .iter()
            .map(|d| BlockEntry::held(BlockId::of(d), d.len() as u32, vec![]))
            .collect();
        let mut r = FileRecord {
            name: "a".into(),
            version,
            size: data.iter().map(|d| d.len() as u64).sum(),
            block_size: 4,
            blocks,
            owner: owner.public().to_peer_id(),
            owner_key: vec![],
            created_ms: 1,
            modified_ms: 2,
            tombstone: false,
            sealed: None,
            signature: vec![],
        };
        r.sign(owner).unwrap();
        r
    }

    #[test]
    fn inline_bytes_must_match_their_block() {
        let k = Keypair::generate_ed25519();
        let mut r = record(&k, 1, &[b"abc"]);
        r.blocks = vec![BlockEntry::inline(b"abc".to_vec())];
        r.sign(&k).unwrap();
        assert_eq!(r.verify(), Ok(()));
        // Tampered bytes (the signature covers only the id): refused.
        let mut bad = r.clone();
        bad.blocks[0].inline = Some(serde_bytes::ByteBuf::from(b"abd".to_vec()));
        assert!(matches!(bad.verify(), Err(RecordError::Invalid(_))));
        // Inline beside held blocks, or with holders: refused.
        let mut two = record(&k, 1, &[b"abcd", b"ef"]);
        two.blocks[1] = BlockEntry::inline(b"ef".to_vec());
        two.sign(&k).unwrap();
        assert!(matches!(two.verify(), Err(RecordError::Invalid(_))));
        let mut held = r.clone();
        held.blocks[0].holders.push(PeerId::random());
        assert!(matches!(held.verify(), Err(RecordError::Invalid(_))));
    }

    #[test]
    fn a_name_under_a_peers_tilde_is_that_peers_alone() {
        let k = Keypair::generate_ed25519();
        let me = k.public().to_peer_id();
        let mut mine = record(&k, 1, &[b"abcd"]);
        mine.name = format!("~{me}/photos/cat.jpg");
        mine.sign(&k).unwrap();
        assert_eq!(mine.verify(), Ok(()));
        // A stranger signing a name in my space: refused whatever its signature.
        let thief = Keypair::generate_ed25519();
        let mut squat = record(&thief, 1, &[b"abcd"]);
        squat.name = format!("~{me}/photos/cat.jpg");
        squat.sign(&thief).unwrap();
        assert!(matches!(
            squat.verify(),
            Err(RecordError::PermissionDenied { .. })
        ));
        let mut bare = record(&thief, 1, &[b"abcd"]);
        bare.name = format!("~{me}");
        bare.sign(&thief).unwrap();
        assert!(matches!(
            bare.verify(),
            Err(RecordError::PermissionDenied { .. })
        ));
    }

    #[test]
    fn signed_record_verifies_and_holders_are_unsigned() {
        let k = Keypair::generate_ed25519();
        let mut r = record(&k, 1, &[b"abcd", b"ef"]);
        r.verify().unwrap();
        r.blocks[0].holders.push(PeerId::random());
        r.verify().unwrap();
    }

    #[test]
    fn tampering_is_detected() {
        let k = Keypair::generate_ed25519();
        let mut r = record(&k, 1, &[b"abcd", b"ef"]);
        r.blocks[1].id = BlockId::of(b"xx");
        assert!(matches!(r.verify(), Err(RecordError::BadSignature(_))));

        let mut r = record(&k, 1, &[b"abcd"]);
        r.owner = PeerId::random();
        assert!(matches!(r.verify(), Err(RecordError::BadSignature(_))));

        let mut r = record(&k, 1, &[b"abcd"]);
        r.size = 5;
        assert!(matches!(r.verify(), Err(RecordError::Invalid(_))));

        let r = record(&k, 1, &[b"ab", b"cd"]);
        assert!(
            matches!(r.verify(), Err(RecordError::Invalid(_))),
            "short middle block"
        );
    }

    #[test]
    fn a_sealed_records_readers_and_blocks_are_signed() {
        let k = Keypair::generate_ed25519();
        let wrap = |to: u8| KeyWrap {
            to: [to; 32],
            from: [1; 32],
            nonce: [2; 24],
            key: [3; 48],
        };
        let sealed = Sealed {
            cipher: Cipher::XChaCha20Poly1305,
            epoch: 0,
            wraps: vec![wrap(5)],
        };
        let data: [&[u8]; 2] = [&[1; 20], &[2; 17]];
        let mut r = record(&k, 1, &data);
        r.block_size = 20;
        r.sealed = Some(sealed.clone());
        r.sign(&k).unwrap();
        assert_eq!(r.verify(), Ok(()));
        assert_eq!(r.plain_size(), 37 - 2 * u64::from(TAG_LEN));
        // A root that adds a reader, drops the seal, or truncates the block list is caught.
        let mut more = r.clone();
        more.sealed.as_mut().unwrap().wraps.push(wrap(6));
        assert!(matches!(more.verify(), Err(RecordError::BadSignature(_))));
        let mut bare = r.clone();
        bare.sealed = None;
        assert!(matches!(bare.verify(), Err(RecordError::BadSignature(_))));
        let mut cut = r.clone();
        cut.blocks.pop();
        cut.size = 20;
        assert!(matches!(cut.verify(), Err(RecordError::BadSignature(_))));
        // A sealed block must hold more than its tag; a tombstone is never sealed.
        let mut tiny = record(&k, 1, &[&[1; 16]]);
        tiny.block_size = 16;
        assert!(
            matches!(tiny.verify(), Err(RecordError::BadSignature(_))),
            "unsealed, it is well-formed but for the signature"
        );
        tiny.sealed = Some(sealed.clone());
        tiny.sign(&k).unwrap();
        assert!(matches!(tiny.verify(), Err(RecordError::Invalid(_))));
        let mut tomb = record(&k, 2, &[]);
        tomb.tombstone = true;
        tomb.sealed = Some(sealed);
        tomb.sign(&k).unwrap();
        assert!(matches!(tomb.verify(), Err(RecordError::Invalid(_))));
    }

    #[test]
    fn state_keeps_k_versions_and_bounds_users() {
        let owner = Keypair::generate_ed25519();
        let mut s = FileState::empty();
        for v in 1..=5 {
            s.push(record(&owner, v, &[&[v as u8; 4]]), 3);
        }
        assert_eq!(
            s.versions.iter().map(|r| r.version).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        for i in 0..10 {
            s.note_user(PeerId::random(), 100 + i, 4);
        }
        assert_eq!(s.users.len(), 4);
        assert_eq!(
            s.users[0].role,
            UserRole::Owner,
            "the owner is never dropped"
        );
        assert_eq!(s.users.iter().map(|u| u.first_ms).max(), Some(109));
    }

    #[test]
    fn a_fresh_history_keeps_the_tombstone_it_follows() {
        let owner = Keypair::generate_ed25519();
        let next = Keypair::generate_ed25519();
        let mut s = FileState::empty();
        s.push(record(&owner, 1, &[b"abcd"]), 1);
        let mut tomb = record(&owner, 2, &[]);
        tomb.tombstone = true;
        tomb.size = 0;
        tomb.blocks.clear();
        tomb.sign(&owner).expect("sign");
        s.push(tomb, 1);
        s.push(record(&next, 3, &[b"new"]), 1);
        assert_eq!(
            s.versions.iter().map(|r| r.version).collect::<Vec<_>>(),
            [2, 3],
            "the tombstone anchors the new owner's first version"
        );
        rules::check_state(&s.versions[0].key(), &s).expect("one valid chain");
    }
}
