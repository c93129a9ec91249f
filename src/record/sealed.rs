//! What a private file's record says about its encryption, and the checks every node applies
//! to it.
//!
//! A private file's blocks are sealed on the client before they leave it (see
//! `client::seal`): the block ids are hashes of ciphertext, so holders, repair and the
//! balancer verify and move them without the key. The record carries, under the owner's
//! signature, the cipher, the file's capability epoch and the version's content key wrapped
//! to each reader: the owner, the file's "latest" capability, and every client it was shared
//! with. A wrap names its recipient only by an X25519 public key, so the swarm learns how
//! many readers a file has, never who they are unless it already knows their keys.
//!
//! Nothing here needs a key: these are the shape checks a root runs on untrusted records.

use serde::{Deserialize, Serialize};

use super::RecordError;

/// Bytes an AEAD adds to each sealed block (the Poly1305 tag).
pub const TAG_LEN: u32 = 16;
/// Readers one version may name: bounds a record's size and the work of finding one's wrap.
pub const MAX_WRAPS: usize = 64;

/// The AEAD that seals a private file's blocks and wrapped keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cipher {
    #[serde(rename = "xchacha20poly1305")]
    XChaCha20Poly1305,
}

/// The encryption of one version of a private file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub cipher: Cipher,
    /// Moved on by `unshare`: the "latest" capability of an older epoch opens no new version.
    pub epoch: u32,
    pub wraps: Vec<KeyWrap>,
}

/// The version's content key, sealed to one reader's X25519 public key with an ephemeral
/// X25519 key (an ECIES-style box: key agreement, HKDF, AEAD).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyWrap {
    /// The reader's X25519 public key.
    #[serde(with = "serde_bytes")]
    pub to: [u8; 32],
    /// The ephemeral X25519 public key of this wrap.
    #[serde(with = "serde_bytes")]
    pub from: [u8; 32],
    #[serde(with = "serde_bytes")]
    pub nonce: [u8; 24],
    /// The 32-byte content key and its tag.
    #[serde(with = "serde_bytes")]
    pub key: [u8; 48],
}

impl Sealed {
    /// Shape checks: at least one reader, at most [`MAX_WRAPS`], none twice. (Whether a wrap
    /// opens is for its reader to find out; a bad one costs that reader its read, nothing
    /// more, and only the owner can sign one in.)
    pub fn check(&self) -> Result<(), RecordError> {
        if self.wraps.is_empty() || self.wraps.len() > MAX_WRAPS {
            return Err(RecordError::Invalid(format!(
                "a private file names {} readers; 1..={MAX_WRAPS} allowed",
                self.wraps.len()
            )));
        }
        for (i, w) in self.wraps.iter().enumerate() {
            if self.wraps[..i].iter().any(|o| o.to == w.to) {
                return Err(RecordError::Invalid(
                    "a private file names one reader twice".into(),
                ));
            }
        }
        Ok(())
    }

    /// The readers' X25519 public keys, in the record's order.
    pub fn readers(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.wraps.iter().map(|w| &w.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap(to: u8) -> KeyWrap {
        KeyWrap {
            to: [to; 32],
            from: [9; 32],
            nonce: [1; 24],
            key: [2; 48],
        }
    }

    #[test]
    fn readers_are_bounded_and_distinct() {
        let ok = Sealed {
            cipher: Cipher::XChaCha20Poly1305,
            epoch: 0,
            wraps: vec![wrap(1), wrap(2)],
        };
        assert_eq!(ok.check(), Ok(()));
        let none = Sealed {
            wraps: vec![],
            ..ok.clone()
        };
        assert!(none.check().is_err());
        let twice = Sealed {
            wraps: vec![wrap(1), wrap(1)],
            ..ok.clone()
        };
        assert!(twice.check().is_err());
        let many = Sealed {
            wraps: (0..=MAX_WRAPS as u8).map(wrap).collect(),
            ..ok
        };
        assert!(many.check().is_err());
    }

    #[test]
    fn a_wrap_round_trips_through_cbor_at_its_fixed_sizes() {
        let w = wrap(7);
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &w).expect("encode");
        let back: KeyWrap = cbor4ii::serde::from_slice(&bytes).expect("decode");
        assert_eq!(back, w);
        // A short key field does not decode into the fixed-size array.
        let mut short = bytes.clone();
        let pos = short.len() - 50;
        assert_eq!(short[pos], 0x58, "byte string of 48 with a one-byte length");
        short[pos + 1] = 47;
        short.pop();
        assert!(cbor4ii::serde::from_slice::<KeyWrap>(&short).is_err());
    }
}
