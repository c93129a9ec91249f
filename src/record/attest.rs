//! Root-kept fields, authenticated: the holder lists of every retained version, their
//! revision and the user list are not the owner's to sign (repair and balancing change them
//! without the owner), so the replica-set member that last changed them signs the whole state
//! with its node key ([`Attestation`]). A receiver checks the signature and that the signer is
//! one of the key's closest peers in its own view (the caller's part), and that the revision
//! is not ahead of its own clock by more than [`MAX_SKEW_MS`], so a revision can never be
//! pushed out of reach of honest roots.

use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::{FileState, RecordError, UserEntry};
use crate::ids::FileKey;

/// How far ahead of the receiver's clock a revision (ms) may run.
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;
/// Domain separator, so a state signature is never valid as another kind of message.
const DOMAIN: &str = "swarmstore/state/1";
/// Identity multihash code: an ed25519 peer id carries its public key.
const IDENTITY_CODE: u64 = 0;

/// Who last changed a state's root-kept fields, and their signature over the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    pub by: PeerId,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// One version as an attestation covers it: its number, the owner's signature (which binds
/// everything else the owner signed) and the holder list of each block.
type CoveredVersion<'a> = (u64, &'a [u8], Vec<&'a [PeerId]>);

/// What an attestation covers: everything in the state, owner-signed parts by their
/// signatures, root-kept parts as they are.
#[derive(Serialize)]
struct Covered<'a> {
    domain: &'static str,
    key: &'a FileKey,
    rev: u64,
    versions: Vec<CoveredVersion<'a>>,
    users: &'a [UserEntry],
}

fn covered(key: &FileKey, state: &FileState) -> Vec<u8> {
    let c = Covered {
        domain: DOMAIN,
        key,
        rev: state.rev,
        versions: state
            .versions
            .iter()
            .map(|r| {
                let holders = r.blocks.iter().map(|b| b.holders.as_slice()).collect();
                (r.version, r.signature.as_slice(), holders)
            })
            .collect(),
        users: &state.users,
    };
    // Plain fields into a Vec: cannot fail.
    cbor4ii::serde::to_vec(Vec::new(), &c).unwrap_or_default()
}

/// The public key an ed25519 peer id carries; `None` for ids that only hash their key.
pub fn public_key_of(peer: &PeerId) -> Option<PublicKey> {
    let mh = peer.as_ref();
    if mh.code() != IDENTITY_CODE {
        return None;
    }
    PublicKey::try_decode_protobuf(mh.digest())
        .ok()
        .filter(|k| k.to_peer_id() == *peer)
}

impl FileState {
    /// Signs the state's current root-kept fields as `key`'s holder of them.
    pub fn attest(&mut self, file: &FileKey, node: &Keypair) {
        let signature = node.sign(&covered(file, self)).unwrap_or_default();
        self.attest = Some(Attestation {
            by: node.public().to_peer_id(),
            signature,
        });
    }

    /// Checks the attestation: present, signed by its `by` over this very state, and the
    /// revision within [`MAX_SKEW_MS`] of `now_ms`. Returns the signer; whether the signer may
    /// speak for the key is the caller's question.
    pub fn check_attestation(&self, file: &FileKey, now_ms: u64) -> Result<PeerId, RecordError> {
        let Some(a) = &self.attest else {
            return Err(RecordError::Unauthorized(
                "the root-kept fields carry no attestation".into(),
            ));
        };
        if self.rev > now_ms.saturating_add(MAX_SKEW_MS) {
            return Err(RecordError::Unauthorized(format!(
                "revision {} is ahead of this node's clock ({now_ms} ms) by more than {MAX_SKEW_MS} ms",
                self.rev
            )));
        }
        let key = public_key_of(&a.by).ok_or_else(|| {
            RecordError::Unauthorized(format!("attester {} has no inline public key", a.by))
        })?;
        if !key.verify(&covered(file, self), &a.signature) {
            return Err(RecordError::Unauthorized(format!(
                "attestation by {} does not verify",
                a.by
            )));
        }
        Ok(a.by)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{record, state_of};
    use super::*;

    #[test]
    fn an_attested_state_verifies_and_any_change_breaks_it() {
        let owner = Keypair::generate_ed25519();
        let root = Keypair::generate_ed25519();
        let mut s = state_of(vec![record(&owner, 1, &[b"abcd"])]);
        let key = s.versions[0].key();
        s.rev = 1_000;
        s.attest(&key, &root);
        assert_eq!(
            s.check_attestation(&key, 1_000),
            Ok(root.public().to_peer_id())
        );
        let mut poisoned = s.clone();
        poisoned.versions[0].blocks[0]
            .holders
            .push(PeerId::random());
        assert!(poisoned.check_attestation(&key, 1_000).is_err(), "holders");
        let mut bumped = s.clone();
        bumped.rev += 1;
        assert!(bumped.check_attestation(&key, 1_000).is_err(), "revision");
        let mut other_key = s.clone();
        other_key.attest(&FileKey([9; 32]), &root);
        assert!(other_key.check_attestation(&key, 1_000).is_err(), "key");
        let mut none = s.clone();
        none.attest = None;
        assert!(none.check_attestation(&key, 1_000).is_err());
    }

    #[test]
    fn a_revision_far_in_the_future_is_refused() {
        let owner = Keypair::generate_ed25519();
        let root = Keypair::generate_ed25519();
        let mut s = state_of(vec![record(&owner, 1, &[b"abcd"])]);
        let key = s.versions[0].key();
        s.rev = u64::MAX;
        s.attest(&key, &root);
        assert!(s.check_attestation(&key, 1_000).is_err());
        s.rev = 1_000 + MAX_SKEW_MS;
        s.attest(&key, &root);
        assert!(s.check_attestation(&key, 1_000).is_ok());
    }

    #[test]
    fn ed25519_peer_ids_carry_their_key() {
        let k = Keypair::generate_ed25519();
        let p = k.public().to_peer_id();
        assert_eq!(public_key_of(&p), Some(k.public()));
    }
}
