//! Strategies for valid values shared by the decoder families: peers and peer lists, ids,
//! text, bytes, multiaddrs, and arbitrary file records, file states, download notes and record
//! errors.

use libp2p::{Multiaddr, PeerId};
use proptest::collection::vec;
use proptest::prelude::*;

use swarmstore::ids::{BlockId, FileKey};
use swarmstore::record::{
    Attestation, BlockEntry, Cipher, DownloadNote, FileRecord, FileState, KeyWrap, RecordError,
    Sealed, UserEntry, UserRole, MAX_HOLDERS,
};

use crate::peers;

pub(crate) fn any_peer() -> impl Strategy<Value = PeerId> {
    (0..peers().len()).prop_map(|i| peers()[i])
}

pub(crate) fn peer_list(max: usize) -> impl Strategy<Value = Vec<PeerId>> {
    vec(any_peer(), 0..=max)
}

pub(crate) fn block_id() -> impl Strategy<Value = BlockId> {
    any::<[u8; 32]>().prop_map(BlockId)
}

pub(crate) fn file_key() -> impl Strategy<Value = FileKey> {
    any::<[u8; 32]>().prop_map(FileKey)
}

pub(crate) fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z/._-]{1,40}"]
}

pub(crate) fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

pub(crate) fn multiaddr() -> impl Strategy<Value = Multiaddr> {
    (any::<[u8; 4]>(), any::<u16>(), any::<bool>(), any_peer()).prop_map(|(ip, port, quic, p)| {
        let [a, b, c, d] = ip;
        let s = if quic {
            format!("/ip4/{a}.{b}.{c}.{d}/udp/{port}/quic-v1/p2p/{p}")
        } else {
            format!("/ip4/{a}.{b}.{c}.{d}/tcp/{port}")
        };
        s.parse().expect("multiaddr")
    })
}

/// Records with arbitrary fields: they round-trip, and almost never verify.
pub(crate) fn any_record() -> impl Strategy<Value = FileRecord> {
    let entry = (
        block_id(),
        any::<u32>(),
        peer_list(MAX_HOLDERS + 1),
        proptest::option::of(bytes(64)),
    )
        .prop_map(|(id, len, holders, inline)| BlockEntry {
            id,
            len,
            holders,
            inline: inline.map(serde_bytes::ByteBuf::from),
        });
    // A private file's seal, sometimes: wraps of fixed-size keys, up to one past the bound.
    let wrap = (
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<[u8; 24]>(),
        bytes(48),
    )
        .prop_map(|(to, from, nonce, key)| {
            let mut k = [0u8; 48];
            k[..key.len().min(48)].copy_from_slice(&key[..key.len().min(48)]);
            KeyWrap {
                to,
                from,
                nonce,
                key: k,
            }
        });
    let sealed = proptest::option::of(
        (
            any::<u32>(),
            vec(wrap, 0..=swarmstore::record::sealed::MAX_WRAPS + 1),
        )
            .prop_map(|(epoch, wraps)| Sealed {
                cipher: Cipher::XChaCha20Poly1305,
                epoch,
                wraps,
            }),
    );
    (
        (
            text(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            vec(entry, 0..4),
        ),
        (
            any_peer(),
            bytes(48),
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            bytes(64),
        ),
        sealed,
    )
        .prop_map(
            |(
                (name, version, size, block_size, blocks),
                (owner, owner_key, c, m, tomb, sig),
                sealed,
            )| {
                FileRecord {
                    name,
                    version,
                    size,
                    block_size,
                    blocks,
                    owner,
                    owner_key,
                    created_ms: c,
                    modified_ms: m,
                    tombstone: tomb,
                    sealed,
                    signature: sig,
                }
            },
        )
}

pub(crate) fn any_state() -> impl Strategy<Value = FileState> {
    let user = (
        any_peer(),
        any::<bool>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(peer, owner, first_ms, last_ms, count)| UserEntry {
            peer,
            role: if owner {
                UserRole::Owner
            } else {
                UserRole::Downloader
            },
            first_ms,
            last_ms,
            count,
        });
    let attest = proptest::option::of(
        (any_peer(), bytes(64)).prop_map(|(by, signature)| Attestation { by, signature }),
    );
    (
        vec(any_record(), 0..3),
        vec(user, 0..4),
        any::<u64>(),
        attest,
    )
        .prop_map(|(versions, users, rev, attest)| FileState {
            versions,
            users,
            rev,
            attest,
        })
}

pub(crate) fn any_note() -> impl Strategy<Value = DownloadNote> {
    (file_key(), any_peer(), any::<u64>(), bytes(64)).prop_map(|(key, reader, at_ms, signature)| {
        DownloadNote {
            key,
            reader,
            at_ms,
            signature,
        }
    })
}

pub(crate) fn any_error() -> impl Strategy<Value = RecordError> {
    prop_oneof![
        text().prop_map(RecordError::Invalid),
        text().prop_map(RecordError::BadSignature),
        (text(), text()).prop_map(|(name, owner)| RecordError::PermissionDenied { name, owner }),
        (text(), any::<u64>(), any::<u64>()).prop_map(|(name, current, attempted)| {
            RecordError::Conflict {
                name,
                current,
                attempted,
            }
        }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(current, attempted)| RecordError::Stale { current, attempted }),
        text().prop_map(RecordError::Unauthorized),
    ]
}
