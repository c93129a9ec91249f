//! Client-side encryption of private files: content keys, sealed blocks, key wraps and read
//! capabilities.
//!
//! Each version of a private file gets a fresh random 32-byte content key. Block `i` is
//! sealed with XChaCha20-Poly1305 under that key with the nonce `i` (the key is never used
//! for another version, so a nonce never repeats under it) and the block's index as
//! associated data, so a block cannot be moved to another position undetected. The record's
//! signed block list fixes the order and count, so a root cannot reorder or truncate either.
//!
//! The content key is wrapped to each reader's X25519 key: an ephemeral X25519 key, the
//! shared secret through HKDF-SHA256, and XChaCha20-Poly1305 over the key. A client's X25519
//! key is its ed25519 identity in Montgomery form (as age and libsodium convert them), so a
//! file can be shared to any peer id without an exchange first.
//!
//! A capability is a string a reader can use without an identity of its own:
//! `swarmstore:cap:1:v<N>:<key>:<name>` carries version N's content key;
//! `swarmstore:cap:1:latest:<secret>:<name>` carries the file's capability secret, derived
//! by the owner from its identity, the name and the epoch, to which every version of that
//! epoch wraps its key. `unshare` moves the epoch on. [`Sealing`] is who a new version is
//! sealed for; the operations that publish one are in `private`.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use curve25519_dalek::montgomery::MontgomeryPoint;
use libp2p::identity::Keypair;
use libp2p::PeerId;
use rand::RngCore;
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::ids::{validate_name, BlockId};
use crate::record::{public_key_of, Cipher, FileRecord, KeyWrap, Sealed, TAG_LEN};

const WRAP_INFO: &[u8] = b"swarmstore/wrap/1";
const CAP_INFO: &[u8] = b"swarmstore/cap/1";
const BLOCK_AAD: &[u8] = b"swarmstore/block/1";
const CAP_PREFIX: &str = "swarmstore:cap:1:";

/// One version's content key.
#[derive(Clone, PartialEq, Eq)]
pub struct ContentKey([u8; 32]);

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentKey(..)")
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// The block nonce: the block's index (unique under a key used for one version only).
fn block_nonce(index: usize) -> XNonce {
    let mut n = [0u8; 24];
    n[16..].copy_from_slice(&(index as u64).to_be_bytes());
    XNonce::from(n)
}

fn block_aad(index: usize) -> Vec<u8> {
    let mut aad = BLOCK_AAD.to_vec();
    aad.extend_from_slice(&(index as u64).to_be_bytes());
    aad
}

impl ContentKey {
    pub fn random() -> Self {
        ContentKey(random())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// Seals block `index` in place: the plaintext followed by its tag.
    pub fn seal_block(&self, index: usize, mut data: Vec<u8>) -> Result<Vec<u8>> {
        let tag = self
            .cipher()
            .encrypt_in_place_detached(&block_nonce(index), &block_aad(index), &mut data)
            .map_err(|_| Error::Invalid("cannot seal a block".into()))?;
        data.extend_from_slice(&tag);
        Ok(data)
    }

    /// Opens block `index`, checking its tag: wrong key, position or bytes all fail here.
    pub fn open_block(&self, index: usize, mut data: Vec<u8>) -> Result<Vec<u8>> {
        let body = data
            .len()
            .checked_sub(TAG_LEN as usize)
            .ok_or_else(|| Error::Integrity(format!("sealed block {index} is too short")))?;
        let tag = chacha20poly1305::Tag::clone_from_slice(&data[body..]);
        data.truncate(body);
        self.cipher()
            .decrypt_in_place_detached(&block_nonce(index), &block_aad(index), &mut data, &tag)
            .map_err(|_| {
                Error::Integrity(format!(
                    "block {index} does not open under the file's key (tampered, moved or of \
                     another version)"
                ))
            })?;
        Ok(data)
    }
}

/// An X25519 secret (clamped at use).
#[derive(Clone, PartialEq, Eq)]
pub struct ReaderSecret([u8; 32]);

impl ReaderSecret {
    /// The X25519 secret of an ed25519 identity: its expanded scalar, as libsodium's
    /// `crypto_sign_ed25519_sk_to_curve25519` derives it. `None` for other key types.
    pub fn of_identity(key: &Keypair) -> Option<Self> {
        let ed = key.clone().try_into_ed25519().ok()?;
        let bytes = ed.to_bytes();
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&bytes[..32]);
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        Some(ReaderSecret(signing.to_scalar_bytes()))
    }

    pub fn public(&self) -> [u8; 32] {
        MontgomeryPoint::mul_base_clamped(self.0).to_bytes()
    }
}

/// The X25519 public key of a peer id that embeds an ed25519 key (every swarmstore identity).
pub fn reader_key_of(peer: &PeerId) -> Option<[u8; 32]> {
    let ed = public_key_of(peer)?.try_into_ed25519().ok()?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&ed.to_bytes()).ok()?;
    Some(vk.to_montgomery().to_bytes())
}

fn kek(shared: &[u8; 32], from: &[u8; 32], to: &[u8; 32]) -> Result<XChaCha20Poly1305> {
    // A low-order point gives an all-zero secret: refuse it rather than wrap to nobody.
    if shared.iter().all(|b| *b == 0) {
        return Err(Error::Invalid("reader key is a low-order point".into()));
    }
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(from);
    salt[32..].copy_from_slice(to);
    let mut okm = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(Some(&salt), shared)
        .expand(WRAP_INFO, &mut okm)
        .map_err(|_| Error::Invalid("key derivation failed".into()))?;
    Ok(XChaCha20Poly1305::new((&okm).into()))
}

/// Wraps `key` to the reader whose X25519 public key is `to`.
pub fn wrap(key: &ContentKey, to: &[u8; 32]) -> Result<KeyWrap> {
    let eph = ReaderSecret(random());
    let from = eph.public();
    let shared = MontgomeryPoint(*to).mul_clamped(eph.0).to_bytes();
    let nonce: [u8; 24] = random();
    let sealed = kek(&shared, &from, to)?
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &key.0,
                aad: to,
            },
        )
        .map_err(|_| Error::Invalid("cannot wrap the file key".into()))?;
    let key: [u8; 48] = sealed
        .try_into()
        .map_err(|_| Error::Invalid("wrapped key of the wrong length".into()))?;
    Ok(KeyWrap {
        to: *to,
        from,
        nonce,
        key,
    })
}

/// Opens the wrap addressed to `secret` in `sealed`, if there is one and it opens.
pub fn unwrap(sealed: &Sealed, secret: &ReaderSecret) -> Option<ContentKey> {
    let me = secret.public();
    let w = sealed.wraps.iter().find(|w| w.to == me)?;
    let shared = MontgomeryPoint(w.from).mul_clamped(secret.0).to_bytes();
    let key = kek(&shared, &w.from, &w.to)
        .ok()?
        .decrypt(
            &XNonce::from(w.nonce),
            Payload {
                msg: &w.key,
                aad: &w.to,
            },
        )
        .ok()?;
    Some(ContentKey(key.try_into().ok()?))
}

/// The owner's capability secret for `name` at `epoch`: anyone holding it reads every
/// version of that epoch. Derived, so the owner keeps nothing but its identity.
pub fn capability_secret(owner: &ReaderSecret, name: &str, epoch: u32) -> ReaderSecret {
    let mut info = CAP_INFO.to_vec();
    info.extend_from_slice(&epoch.to_be_bytes());
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's output limit, so expand cannot fail.
    let _ = hkdf::Hkdf::<Sha256>::new(Some(name.as_bytes()), &owner.0).expand(&info, &mut okm);
    ReaderSecret(okm)
}

/// A fresh [`Sealed`] for a new version: `key` wrapped to each of `readers`.
pub fn seal_for(key: &ContentKey, epoch: u32, readers: &[[u8; 32]]) -> Result<Sealed> {
    let mut wraps = Vec::with_capacity(readers.len());
    for r in readers {
        if !wraps.iter().any(|w: &KeyWrap| w.to == *r) {
            wraps.push(wrap(key, r)?);
        }
    }
    let sealed = Sealed {
        cipher: Cipher::XChaCha20Poly1305,
        epoch,
        wraps,
    };
    sealed.check()?;
    Ok(sealed)
}

/// What a reader holds to read a private file without being named in its record.
#[derive(Clone, PartialEq, Eq)]
pub enum Capability {
    /// Every version of the file's current epoch.
    Latest { name: String, secret: ReaderSecret },
    /// One version.
    Version {
        name: String,
        version: u64,
        key: ContentKey,
    },
}

impl fmt::Debug for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key material stays out of logs and debug output.
        match self {
            Capability::Latest { name, .. } => write!(f, "Capability(latest {name:?})"),
            Capability::Version { name, version, .. } => {
                write!(f, "Capability({name:?} v{version})")
            }
        }
    }
}

impl Capability {
    pub fn name(&self) -> &str {
        match self {
            Capability::Latest { name, .. } | Capability::Version { name, .. } => name,
        }
    }

    /// The version a capability is for, or `None` for "latest".
    pub fn version(&self) -> Option<u64> {
        match self {
            Capability::Latest { .. } => None,
            Capability::Version { version, .. } => Some(*version),
        }
    }

    /// Whether a string is meant as a capability (and should parse as one).
    pub fn looks_like(s: &str) -> bool {
        s.starts_with("swarmstore:cap:")
    }

    /// The content key of `record` this capability opens.
    pub fn open(&self, record: &FileRecord) -> Option<ContentKey> {
        let sealed = record.sealed.as_ref()?;
        match self {
            Capability::Latest { secret, .. } => unwrap(sealed, secret),
            Capability::Version { version, key, .. } => {
                (*version == record.version).then(|| key.clone())
            }
        }
    }

    /// The capability string (it carries key material: print it only to its user).
    pub fn to_secret_string(&self) -> String {
        let (which, key, name) = match self {
            Capability::Latest { name, secret } => ("latest".to_string(), &secret.0, name),
            Capability::Version { name, version, key } => (format!("v{version}"), &key.0, name),
        };
        format!(
            "{CAP_PREFIX}{which}:{}:{}",
            URL_SAFE_NO_PAD.encode(key),
            URL_SAFE_NO_PAD.encode(name.as_bytes())
        )
    }
}

impl FromStr for Capability {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::Invalid(format!("not a read capability: {why}"));
        let rest = s
            .trim()
            .strip_prefix(CAP_PREFIX)
            .ok_or_else(|| bad("it must start with swarmstore:cap:1:"))?;
        let mut parts = rest.split(':');
        let (Some(which), Some(key), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected swarmstore:cap:1:WHICH:KEY:NAME"));
        };
        let key: [u8; 32] = URL_SAFE_NO_PAD
            .decode(key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| bad("the key is not 32 bytes of base64url"))?;
        let name = URL_SAFE_NO_PAD
            .decode(name)
            .ok()
            .and_then(|n| String::from_utf8(n).ok())
            .ok_or_else(|| bad("the name is not base64url UTF-8"))?;
        validate_name(&name).map_err(|e| bad(&e))?;
        if which == "latest" {
            return Ok(Capability::Latest {
                name,
                secret: ReaderSecret(key),
            });
        }
        let version = which
            .strip_prefix('v')
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| (1..=crate::record::MAX_VERSION).contains(v))
            .ok_or_else(|| bad("the version must be \"latest\" or v<N>"))?;
        Ok(Capability::Version {
            name,
            version,
            key: ContentKey(key),
        })
    }
}

/// Who a new private version is sealed for, besides the owner and the epoch's capability.
pub(super) struct Sealing {
    pub(super) epoch: u32,
    pub(super) readers: Vec<[u8; 32]>,
}

impl Sealing {
    /// The readers of `sealed` (less `drop`), at its epoch, or the next one when dropping.
    pub(super) fn following(sealed: &Sealed, drop: Option<&[[u8; 32]]>) -> Self {
        let readers = sealed
            .readers()
            .filter(|r| drop.is_none_or(|d| !d.contains(r)))
            .copied()
            .collect();
        Sealing {
            epoch: sealed.epoch,
            readers,
        }
    }

    /// The record's [`Sealed`] for `key`, and the "latest" capability it answers to.
    pub(super) fn seal(
        &self,
        me: &ReaderSecret,
        name: &str,
        created_ms: u64,
        key: &ContentKey,
    ) -> Result<(Sealed, Capability)> {
        let cap = capability_for(me, name, self.epoch, created_ms);
        let mut readers = vec![me.public(), cap.public()];
        readers.extend(self.readers.iter().copied());
        let sealed = seal_for(key, self.epoch, &readers)?;
        let capability = Capability::Latest {
            name: name.to_string(),
            secret: cap,
        };
        Ok((sealed, capability))
    }
}

/// The capability secret of one history of `name` (its creation time tells a file from an
/// earlier, deleted one of the same name) at `epoch`.
pub(super) fn capability_for(
    owner: &ReaderSecret,
    name: &str,
    epoch: u32,
    created_ms: u64,
) -> ReaderSecret {
    let history = format!("{name}\u{0}{created_ms}");
    capability_secret(owner, &history, epoch)
}

/// A record's content size from its stored size: sealed blocks carry a tag each.
pub(super) fn record_plain_size(stored: u64, blocks: usize, sealed: bool) -> u64 {
    if sealed {
        stored.saturating_sub(u64::from(TAG_LEN).saturating_mul(blocks as u64))
    } else {
        stored
    }
}

/// Seals one block and hashes the result, off the async threads (a MiB takes about a
/// millisecond each).
pub(super) async fn seal_blocking(
    key: &ContentKey,
    index: usize,
    data: Vec<u8>,
) -> Result<(BlockId, Vec<u8>)> {
    let key = key.clone();
    tokio::task::spawn_blocking(move || {
        let sealed = key.seal_block(index, data)?;
        Ok((BlockId::of(&sealed), sealed))
    })
    .await
    .map_err(|e| Error::Invalid(format!("sealing task failed: {e}")))?
}

/// Opens one block off the async threads.
pub(super) async fn open_blocking(
    key: &ContentKey,
    index: usize,
    data: Vec<u8>,
) -> Result<Vec<u8>> {
    let key = key.clone();
    tokio::task::spawn_blocking(move || key.open_block(index, data))
        .await
        .map_err(|e| Error::Invalid(format!("opening task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_opens_only_under_its_key_and_at_its_place() {
        let k = ContentKey::random();
        let plain = b"the quick brown fox".to_vec();
        let sealed = k.seal_block(3, plain.clone()).unwrap();
        assert_eq!(sealed.len(), plain.len() + TAG_LEN as usize);
        assert!(!sealed.windows(8).any(|w| plain.windows(8).any(|p| p == w)));
        assert_eq!(k.open_block(3, sealed.clone()).unwrap(), plain);
        // Moved to another position, under another version's key, flipped, or cut short.
        assert!(matches!(
            k.open_block(4, sealed.clone()),
            Err(Error::Integrity(_))
        ));
        let other = ContentKey::random();
        assert!(other.open_block(3, sealed.clone()).is_err());
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert!(k.open_block(3, flipped).is_err());
        assert!(k.open_block(3, sealed[..10].to_vec()).is_err());
        assert!(k.open_block(3, Vec::new()).is_err());
    }

    #[test]
    fn a_wrap_opens_for_its_reader_only() {
        let owner = Keypair::generate_ed25519();
        let friend = Keypair::generate_ed25519();
        let stranger = Keypair::generate_ed25519();
        let me = ReaderSecret::of_identity(&owner).unwrap();
        // The peer id alone gives the same X25519 key as the identity's secret.
        assert_eq!(
            reader_key_of(&owner.public().to_peer_id()),
            Some(me.public())
        );
        let friend_pub = reader_key_of(&friend.public().to_peer_id()).unwrap();
        let k = ContentKey::random();
        let sealed = seal_for(&k, 0, &[me.public(), friend_pub]).unwrap();
        assert_eq!(unwrap(&sealed, &me), Some(k.clone()));
        let f = ReaderSecret::of_identity(&friend).unwrap();
        assert_eq!(unwrap(&sealed, &f), Some(k.clone()));
        let s = ReaderSecret::of_identity(&stranger).unwrap();
        assert_eq!(unwrap(&sealed, &s), None);
        // A wrap readdressed to the stranger does not open for it.
        let mut forged = sealed.clone();
        forged.wraps[1].to = s.public();
        assert_eq!(unwrap(&forged, &s), None);
        // A low-order reader key is refused, not wrapped to.
        assert!(wrap(&k, &[0u8; 32]).is_err());
    }

    #[test]
    fn capabilities_round_trip_and_bad_ones_are_refused() {
        let owner = ReaderSecret::of_identity(&Keypair::generate_ed25519()).unwrap();
        let latest = Capability::Latest {
            name: "dir/a file.txt".into(),
            secret: capability_secret(&owner, "dir/a file.txt", 2),
        };
        let s = latest.to_secret_string();
        assert_eq!(s.parse::<Capability>().unwrap(), latest);
        assert!(
            !format!("{latest:?}").contains(&s[20..40]),
            "no key in Debug"
        );
        let v = Capability::Version {
            name: "x".into(),
            version: 7,
            key: ContentKey::random(),
        };
        assert_eq!(v.to_secret_string().parse::<Capability>().unwrap(), v);
        for bad in [
            "swarmstore:cap:1:latest:AAAA:eA",
            "swarmstore:cap:1:v0:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA:eA",
            "swarmstore:cap:1:vx:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA:eA",
            "swarmstore:cap:1:latest:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA:eA:x",
            "swarmstore:cap:2:latest:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA:eA",
            "swarmstore:cap:1:latest:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA:",
        ] {
            assert!(bad.parse::<Capability>().is_err(), "{bad}");
        }
        // Another epoch's secret is another key.
        assert_ne!(
            capability_secret(&owner, "x", 0).public(),
            capability_secret(&owner, "x", 1).public()
        );
    }
}
