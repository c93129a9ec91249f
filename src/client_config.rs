//! The client's config file: defaults for the client commands (`put`, `get`, `stat`, ...), so
//! a user need not repeat them. It is `<config dir>/swarmstore/client.toml`
//! (`~/.config/swarmstore/client.toml` on Linux), or `--client-config FILE`
//! (`SWARMSTORE_CLIENT_CONFIG`). Flags and environment variables win over it.
//!
//! ```toml
//! node = "/ip4/192.0.2.7/tcp/4001/p2p/12D3KooW..."   # the access node
//! identity = "client.key"                              # relative to this file's directory
//! swarm-key = "swarm.key"                              # for a private swarm
//! private = true                                       # `put` seals files (`put --plain` not)
//! ```
//!
//! A missing default file is no error (nothing set); a missing file named explicitly, an
//! unknown key or a bad value is, in one line.

use std::path::{Path, PathBuf};

use libp2p::Multiaddr;
use serde::Deserialize;

/// A bad client config, said in one line (which key, what was wrong).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Client defaults from the file; `None`/`false` leaves a setting to the built-in default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientSettings {
    pub node: Option<Multiaddr>,
    pub identity: Option<PathBuf>,
    pub swarm_key: Option<PathBuf>,
    /// `put` encrypts on the client unless told `--plain`.
    pub private: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileLayer {
    node: Option<String>,
    identity: Option<PathBuf>,
    swarm_key: Option<PathBuf>,
    private: Option<bool>,
}

/// Where the client looks when no file is named.
pub fn default_path() -> PathBuf {
    dirs::config_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("swarmstore")
        .join("client.toml")
}

impl ClientSettings {
    /// Parses the file's text; relative paths are taken from `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: FileLayer = toml::from_str(text)
            .map_err(|e| ConfigError(e.to_string().trim().replace('\n', " ")))?;
        let node = raw
            .node
            .map(|s| {
                s.parse::<Multiaddr>()
                    .map_err(|e| ConfigError(format!("node: {s:?} is not a multiaddr ({e})")))
            })
            .transpose()?;
        let rel = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        Ok(ClientSettings {
            node,
            identity: raw.identity.map(rel),
            swarm_key: raw.swarm_key.map(rel),
            private: raw.private.unwrap_or(false),
        })
    }

    /// Reads `path`, or the default file if there is one.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (path, named) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (default_path(), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !named && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default())
            }
            Err(e) => {
                return Err(ConfigError(format!(
                    "cannot read client config {}: {e}",
                    path.display()
                )))
            }
        };
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base)
            .map_err(|e| ConfigError(format!("client config {}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_bad_ones_say_which() {
        let s = ClientSettings::from_toml(
            "node = \"/ip4/127.0.0.1/tcp/1\"\nidentity = \"k.key\"\nprivate = true\n",
            Path::new("/etc/ss"),
        )
        .unwrap();
        assert_eq!(s.node, Some("/ip4/127.0.0.1/tcp/1".parse().unwrap()));
        assert_eq!(s.identity, Some(PathBuf::from("/etc/ss/k.key")));
        assert!(s.private);
        let e = ClientSettings::from_toml("nodes = \"x\"", Path::new(".")).unwrap_err();
        assert!(e.0.contains("nodes"), "{e}");
        let e = ClientSettings::from_toml("node = \"nope\"", Path::new(".")).unwrap_err();
        assert!(e.0.starts_with("node:"), "{e}");
        let e = ClientSettings::from_toml("private = \"yes\"", Path::new(".")).unwrap_err();
        assert!(e.0.contains("private") || e.0.contains("bool"), "{e}");
        assert!(ClientSettings::load(Some(Path::new("/nonexistent/client.toml"))).is_err());
    }
}
