//! S3 access keys: an access key id and secret mapped to the client identity whose name a
//! request acts in (it owns what that key writes). Kept in `s3-keys.json` in the node's data
//! dir, readable by its user only; `swarmstore s3-key` edits the file and the node re-reads it
//! when it changes, so a revoked key stops working at its next request. Secrets are never
//! logged (`SecretKey` prints as a redaction).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine;
use libp2p::identity::Keypair;
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// The file's name in a data dir.
pub const KEYS_FILE: &str = "s3-keys.json";

/// One access key as stored.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyEntry {
    pub secret: String,
    /// The identity's protobuf encoding, base64.
    pub identity: String,
    #[serde(default)]
    pub label: String,
    pub created_ms: u64,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("label", &self.label)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

/// What `s3-key list` shows of a key (never its secret).
#[derive(Clone, Debug, Serialize)]
pub struct KeyListing {
    pub access_key: String,
    pub owner: String,
    pub label: String,
    pub created_ms: u64,
}

#[derive(Default, Serialize, Deserialize)]
struct KeysFile {
    keys: BTreeMap<String, KeyEntry>,
}

/// The keys of one data dir.
pub struct KeyStore {
    path: PathBuf,
    cache: Mutex<Option<(SystemTime, std::sync::Arc<KeysFile>)>>,
}

impl KeyStore {
    pub fn new(data_dir: &Path) -> Self {
        KeyStore {
            path: data_dir.join(KEYS_FILE),
            cache: Mutex::new(None),
        }
    }

    /// Makes a key for `identity`: returns its id and secret (shown once).
    pub fn create(&self, identity: &Keypair, label: &str) -> anyhow::Result<(String, String)> {
        let mut file = self.read()?;
        let mut id = [0u8; 12];
        let mut secret = [0u8; 30];
        rand::thread_rng().fill_bytes(&mut id);
        rand::thread_rng().fill_bytes(&mut secret);
        // Like AWS: a 20-character id of capitals and digits, a 40-character secret.
        let access_key = format!("SK{}", base32(&id))
            .chars()
            .take(20)
            .collect::<String>();
        let secret = base64::engine::general_purpose::STANDARD.encode(secret);
        let encoded = identity
            .to_protobuf_encoding()
            .map_err(|e| anyhow::anyhow!("cannot encode the identity: {e}"))?;
        file.keys.insert(
            access_key.clone(),
            KeyEntry {
                secret: secret.clone(),
                identity: base64::engine::general_purpose::STANDARD.encode(encoded),
                label: label.to_string(),
                created_ms: crate::record::now_ms(),
            },
        );
        self.write(&file)?;
        Ok((access_key, secret))
    }

    /// Every key, without secrets.
    pub fn list(&self) -> anyhow::Result<Vec<KeyListing>> {
        let file = self.read()?;
        Ok(file
            .keys
            .iter()
            .map(|(id, e)| KeyListing {
                access_key: id.clone(),
                owner: decode_identity(&e.identity)
                    .map(|k| k.public().to_peer_id().to_string())
                    .unwrap_or_else(|| "(unreadable identity)".into()),
                label: e.label.clone(),
                created_ms: e.created_ms,
            })
            .collect())
    }

    /// Deletes a key; false if there was none of that id.
    pub fn revoke(&self, access_key: &str) -> anyhow::Result<bool> {
        let mut file = self.read()?;
        let had = file.keys.remove(access_key).is_some();
        if had {
            self.write(&file)?;
        }
        Ok(had)
    }

    /// The secret and identity of a key, reading the file again if it changed.
    pub fn lookup(&self, access_key: &str) -> Option<(String, Keypair)> {
        let file = self.current()?;
        let e = file.keys.get(access_key)?;
        Some((e.secret.clone(), decode_identity(&e.identity)?))
    }

    fn current(&self) -> Option<std::sync::Arc<KeysFile>> {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, file)) = cache.as_ref() {
            if *at == mtime {
                return Some(file.clone());
            }
        }
        match self.read() {
            Ok(file) => {
                let file = std::sync::Arc::new(file);
                *cache = Some((mtime, file.clone()));
                Some(file)
            }
            Err(e) => {
                tracing::warn!("cannot read {}: {e:#}", self.path.display());
                None
            }
        }
    }

    fn read(&self) -> anyhow::Result<KeysFile> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{} is not a key file: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeysFile::default()),
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", self.path.display())),
        }
    }

    /// Writes the file whole, readable by its user only, through a rename (never half-written).
    fn write(&self, file: &KeysFile) -> anyhow::Result<()> {
        use std::io::Write;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = self.path.with_extension("json.tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&tmp)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(file)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }
}

fn decode_identity(b64: &str) -> Option<Keypair> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Keypair::from_protobuf_encoding(&bytes).ok()
}

/// RFC 4648 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_listed_looked_up_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let me = Keypair::generate_ed25519();
        let (id, secret) = store.create(&me, "laptop").unwrap();
        assert_eq!(id.len(), 20);
        assert_eq!(secret.len(), 40);
        let (s, k) = store.lookup(&id).unwrap();
        assert_eq!(s, secret);
        assert_eq!(k.public().to_peer_id(), me.public().to_peer_id());
        let listed = store.list().unwrap();
        assert_eq!(listed[0].owner, me.public().to_peer_id().to_string());
        assert!(!format!("{listed:?}").contains(&secret));
        assert!(store.revoke(&id).unwrap());
        // A new file (a new mtime may be the same second: force the re-read).
        *store.cache.lock().unwrap() = None;
        assert!(store.lookup(&id).is_none());
        assert!(!store.revoke(&id).unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEYS_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
