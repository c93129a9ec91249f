//! A downloader's signed statement ([`DownloadNote`]): "I, `reader`, fetched the file at key
//! `key` at `at_ms`". The root adds a downloader to the user list only on a note that verifies,
//! so no peer can invent downloaders, and an old note cannot be replayed after its window.

use libp2p::identity::Keypair;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::attest::public_key_of;
use super::{RecordError, MAX_SKEW_MS};
use crate::ids::FileKey;

const DOMAIN: &str = "swarmstore/download/1";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadNote {
    pub key: FileKey,
    pub reader: PeerId,
    /// The reader's clock (unix ms) when it asked.
    pub at_ms: u64,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

fn signed(key: &FileKey, at_ms: u64) -> Vec<u8> {
    cbor4ii::serde::to_vec(Vec::new(), &(DOMAIN, key, at_ms)).unwrap_or_default()
}

impl DownloadNote {
    pub fn sign(key: FileKey, reader: &Keypair, at_ms: u64) -> Self {
        DownloadNote {
            key,
            reader: reader.public().to_peer_id(),
            at_ms,
            signature: reader.sign(&signed(&key, at_ms)).unwrap_or_default(),
        }
    }

    /// Checks the note is for `key`, within [`MAX_SKEW_MS`] of `now_ms`, and signed by its
    /// reader.
    pub fn verify(&self, key: &FileKey, now_ms: u64) -> Result<(), RecordError> {
        if self.key != *key {
            return Err(RecordError::Unauthorized(
                "download note for another file".into(),
            ));
        }
        if self.at_ms.abs_diff(now_ms) > MAX_SKEW_MS {
            return Err(RecordError::Unauthorized(format!(
                "download note from {} ms, {} ms away from this node's clock",
                self.at_ms,
                self.at_ms.abs_diff(now_ms)
            )));
        }
        let pk = public_key_of(&self.reader).ok_or_else(|| {
            RecordError::Unauthorized(format!("reader {} has no inline public key", self.reader))
        })?;
        if !pk.verify(&signed(key, self.at_ms), &self.signature) {
            return Err(RecordError::Unauthorized(
                "download note signature does not verify".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_reader_can_sign_its_note() {
        let reader = Keypair::generate_ed25519();
        let key = FileKey::for_name("f");
        let note = DownloadNote::sign(key, &reader, 1_000_000);
        assert_eq!(note.verify(&key, 1_000_000), Ok(()));
        assert!(note.verify(&FileKey::for_name("g"), 1_000_000).is_err());
        assert!(
            note.verify(&key, 1_000_000 + MAX_SKEW_MS + 1).is_err(),
            "replayed late"
        );
        let mut forged = note.clone();
        forged.reader = Keypair::generate_ed25519().public().to_peer_id();
        assert!(
            forged.verify(&key, 1_000_000).is_err(),
            "someone else's name on it"
        );
    }
}
