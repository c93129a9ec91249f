//! Persistent ed25519 identities for nodes (`<data-dir>/identity.key`) and clients
//! (`<config-dir>/swarmstore/client.key`), created on first use.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

/// Why an identity key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path} is not a valid identity key: {reason}")]
    Invalid { path: String, reason: String },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError {
    let path = path.display().to_string();
    move |source| IdentityError::Io { what, path, source }
}

/// Loads the keypair at `path`, or creates one there (mode 0600) if the file does not exist.
pub fn load_or_create(path: &Path) -> Result<Keypair, IdentityError> {
    match fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| IdentityError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| IdentityError::Invalid {
                    path: path.display().to_string(),
                    reason: format!("cannot encode the new key: {e}"),
                })?;
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(io_error("create", dir))?;
            }
            let tmp = path.with_extension("key.tmp");
            {
                let mut opts = fs::OpenOptions::new();
                opts.write(true).create(true).truncate(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let mut f = opts.open(&tmp).map_err(io_error("write", &tmp))?;
                f.write_all(&bytes).map_err(io_error("write", &tmp))?;
                f.sync_all().map_err(io_error("write", &tmp))?;
            }
            fs::rename(&tmp, path).map_err(io_error("write", path))?;
            Ok(key)
        }
        Err(e) => Err(io_error("read", path)(e)),
    }
}

/// The default data directory of a node: `<platform data dir>/swarmstore`.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("swarmstore")
}

/// The default client identity file: `<platform config dir>/swarmstore/client.key`.
pub fn default_client_identity() -> PathBuf {
    dirs::config_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("swarmstore")
        .join("client.key")
}
