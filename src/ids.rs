//! Content and name identifiers: [`BlockId`] (SHA-256 of a block's bytes) and [`FileKey`]
//! (SHA-256 of a namespaced file name, the point in Kademlia's key space whose closest peer is
//! the file's root).
//!
//! Both serialize as 32-byte CBOR byte strings on the wire and as hex in human-readable formats
//! (JSON), so `--json` output and the wire format come from the same types.

use std::fmt;

use libp2p::kad::KBucketKey;
use libp2p::PeerId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Prefix that namespaces file names in the Kademlia key space.
pub const FILE_KEY_NAMESPACE: &str = "swarmstore/file/";

macro_rules! hash_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("A 256-bit ", $what, ".")]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            pub fn from_hex(s: &str) -> Option<Self> {
                let bytes = hex::decode(s).ok()?;
                Some(Self(bytes.try_into().ok()?))
            }

            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.to_hex()[..12])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_hex())
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    Self::from_hex(&s)
                        .ok_or_else(|| serde::de::Error::custom(concat!("bad hex ", $what)))
                } else {
                    let bytes: serde_bytes::ByteBuf = serde_bytes::ByteBuf::deserialize(d)?;
                    let arr: [u8; 32] = bytes.into_vec().try_into().map_err(|_| {
                        serde::de::Error::custom(concat!($what, " must be 32 bytes"))
                    })?;
                    Ok(Self(arr))
                }
            }
        }
    };
}

hash_id!(BlockId, "block id (SHA-256 of the block's bytes)");
hash_id!(FileKey, "file key (SHA-256 of the namespaced file name)");
hash_id!(Nonce, "challenge nonce (32 random bytes)");
hash_id!(
    Proof,
    "possession proof (SHA-256 of a nonce, a block id and the block's bytes)"
);

impl Nonce {
    /// A fresh random challenge: a holder cannot have precomputed its answer.
    pub fn random() -> Self {
        Self(rand::random())
    }
}

impl Proof {
    /// SHA-256(nonce ‖ id ‖ bytes): only a peer holding the bytes can compute it for a fresh
    /// nonce, and only a peer holding them can check it.
    pub fn of(nonce: &Nonce, id: &BlockId, data: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(nonce.0);
        h.update(id.0);
        h.update(data);
        Self(h.finalize().into())
    }
}

impl BlockId {
    /// Hashes a block. Callers on the async executor should run this on a blocking thread for
    /// large blocks: SHA-256 of 1 MiB takes about half a millisecond.
    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// The point in Kademlia's key space near which this block's holders are chosen.
    pub fn kad_point(&self) -> [u8; 32] {
        kad_point(&self.0)
    }
}

impl FileKey {
    /// The bytes Kademlia hashes to place the file: `swarmstore/file/<name>`.
    pub fn preimage(name: &str) -> Vec<u8> {
        let mut v = Vec::with_capacity(FILE_KEY_NAMESPACE.len() + name.len());
        v.extend_from_slice(FILE_KEY_NAMESPACE.as_bytes());
        v.extend_from_slice(name.as_bytes());
        v
    }

    /// The file key: SHA-256 of the preimage. This is exactly libp2p's `KBucketKey` of the
    /// preimage, so XOR distance to a peer's key (SHA-256 of its PeerId bytes) decides the root.
    pub fn for_name(name: &str) -> Self {
        Self(Sha256::digest(Self::preimage(name)).into())
    }
}

/// Hashes a block on a blocking thread (1 MiB of SHA-256 would stall the executor for about
/// half a millisecond) and hands the bytes back.
pub async fn hash_block(data: Vec<u8>) -> (BlockId, Vec<u8>) {
    let data = std::sync::Arc::new(data);
    let shared = data.clone();
    // Fails only when the runtime is shutting down: then hash here.
    let id = match tokio::task::spawn_blocking(move || BlockId::of(&shared)).await {
        Ok(id) => id,
        Err(_) => BlockId::of(&data),
    };
    // The blocking task has dropped its clone by the time it completes.
    let data = std::sync::Arc::try_unwrap(data).unwrap_or_else(|shared| shared.to_vec());
    (id, data)
}

/// SHA-256 of arbitrary bytes as a key-space point (what `KBucketKey::new` computes).
pub fn kad_point(preimage: &[u8]) -> [u8; 32] {
    Sha256::digest(preimage).into()
}

/// A peer's point in the key space: SHA-256 of its PeerId bytes, as in libp2p's k-buckets.
pub fn peer_point(peer: &PeerId) -> [u8; 32] {
    let key = KBucketKey::from(*peer);
    let mut out = [0u8; 32];
    out.copy_from_slice(key.hashed_bytes());
    out
}

/// XOR distance between two key-space points, comparable as a big-endian number.
pub fn distance(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut d = [0u8; 32];
    for i in 0..32 {
        d[i] = a[i] ^ b[i];
    }
    d
}

/// Validates a user-supplied file name: non-empty, at most 1024 bytes, no NUL or control chars.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("file name is empty".into());
    }
    if name.len() > 1024 {
        return Err(format!(
            "file name is {} bytes; the limit is 1024",
            name.len()
        ));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err("file name contains control characters".into());
    }
    Ok(())
}

/// The peer a name is reserved to, if any: a name `~PEER` or `~PEER/…` may only be owned by
/// the peer whose id is `PEER` (in its usual base58 text). Every record's check enforces it, so
/// a stranger cannot take a name in another peer's space before it does: the bucket index
/// keeps its objects and pages there.
pub fn owner_scope(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('~')?;
    Some(rest.split('/').next().unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_scope_is_the_first_segment() {
        assert_eq!(owner_scope("~abc/photos/x"), Some("abc"));
        assert_eq!(owner_scope("~abc"), Some("abc"));
        assert_eq!(owner_scope("~/x"), Some(""));
        assert_eq!(owner_scope("abc/~x"), None);
    }

    #[test]
    fn file_key_matches_kbucket_key() {
        let name = "photos/cat.jpg";
        let ours = FileKey::for_name(name);
        let theirs = KBucketKey::new(FileKey::preimage(name));
        assert_eq!(&ours.0[..], theirs.hashed_bytes());
    }

    #[test]
    fn ids_roundtrip_cbor_and_json() {
        let id = BlockId::of(b"hello");
        let cbor = cbor4ii::serde::to_vec(Vec::new(), &id).unwrap();
        assert_eq!(cbor.len(), 34, "32-byte CBOR byte string");
        let back: BlockId = cbor4ii::serde::from_slice(&cbor).unwrap();
        assert_eq!(back, id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", id.to_hex()));
        let back: BlockId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn short_id_is_rejected() {
        let cbor =
            cbor4ii::serde::to_vec(Vec::new(), &serde_bytes::Bytes::new(&[1, 2, 3])).unwrap();
        assert!(cbor4ii::serde::from_slice::<BlockId>(&cbor).is_err());
    }
}
