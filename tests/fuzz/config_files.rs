//! Config files: the TOML node config (`NodeSettings::from_toml`) and the client config
//! (`ClientSettings::from_toml`) on arbitrary text, random
//! TOML lines and mutated seeds, config values round-tripping, and the swarm key file format
//! (`net::read_swarm_key`) on mutated key files.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use swarmstore::client_config::ClientSettings;
use swarmstore::config::NodeSettings;

use crate::config;
use crate::corpus::seeds;
use crate::mutation::mutated;

const CONFIG_KEYS: &[&str] = &[
    "data-dir",
    "listen",
    "bootstrap",
    "external-addr",
    "no-mdns",
    "replication",
    "capacity",
    "keep-versions",
    "gc-grace",
    "sync-interval",
    "liveness",
    "repair-interval",
    "repair-bandwidth",
    "drain",
    "relay-server",
    "autonat-server",
    "swarm-key",
    "metrics",
    "swarm",
    "zone",
    "report-interval",
    "bandwidth",
    "manager-peers",
    "balance-hold",
    "no-planner",
];

fn check_config(text: &str) -> Result<(), TestCaseError> {
    match NodeSettings::from_toml(text, Path::new("/etc/swarmstore")) {
        Err(e) => {
            let line = e.to_string();
            prop_assert!(!line.is_empty());
            prop_assert!(!line.contains('\n'), "a multi-line error: {}", line);
        }
        Ok(s) => {
            // A file that parses makes a node config unless it names a swarm key file (which
            // this test does not read).
            if s.swarm_key.is_none() {
                s.into_config(PathBuf::from("/tmp/swarmstore-fuzz"))
                    .map_err(|e| TestCaseError::fail(format!("parsed but refused: {e}")))?;
            }
        }
    }
    Ok(())
}

/// TOML lines of known keys with values of any TOML type, well or badly typed.
fn toml_lines() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "[0-9]{1,25}(\\.[0-9]{0,5})?(ms|s|m|min|h|K|M|G|T|KiB|B|Q)?".prop_map(|s| format!("{s:?}")),
        any::<String>().prop_map(|s| format!("{s:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        vec("[ -~]{0,30}", 0..4).prop_map(|v| format!("{v:?}")),
        "(on|off|auto|maybe|127\\.0\\.0\\.1:[0-9]{1,6}|/ip4/1\\.2\\.3\\.4/tcp/[0-9]{1,6}|\\[::1\\]:80)"
            .prop_map(|s| format!("{s:?}")),
        Just("{ a = 1 }".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
    ];
    vec((0..CONFIG_KEYS.len(), value), 0..8).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(k, v)| format!("{} = {v}\n", CONFIG_KEYS[k]))
            .collect()
    })
}

fn mutated_config() -> impl Strategy<Value = String> {
    mutated("config").prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_config_text_never_panics(text in any::<String>()) {
        check_config(&text)?;
    }

    #[test]
    fn arbitrary_config_lines_never_panic(text in toml_lines()) {
        check_config(&text)?;
    }

    #[test]
    fn mutated_config_files_never_panic(text in mutated_config()) {
        check_config(&text)?;
    }

    /// The client config (`client_config`), on lines of its keys with any value, and on
    /// mutated node configs (TOML of the wrong keys): a one-line error or settings.
    #[test]
    fn client_config_text_never_panics(
        lines in vec((0..4usize, prop_oneof![
            any::<String>().prop_map(|s| format!("{s:?}")),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            Just("\"/ip4/127.0.0.1/tcp/4001\"".to_string()),
        ]), 0..6),
        other in mutated_config(),
    ) {
        let keys = ["node", "identity", "swarm-key", "private"];
        let text: String = lines.iter().map(|(k, v)| format!("{} = {v}\n", keys[*k])).collect();
        for t in [text.as_str(), other.as_str()] {
            if let Err(e) = ClientSettings::from_toml(t, Path::new("/etc/swarmstore")) {
                prop_assert!(!e.to_string().contains('\n'), "a multi-line error: {}", e);
            }
        }
    }

    /// Settings written as TOML come back as they were written.
    #[test]
    fn config_values_round_trip(
        replication in 1usize..100,
        keep in 1usize..16,
        capacity in any::<u32>(),
        grace_s in 1u64..10_000_000,
        no_mdns in any::<bool>(),
        swarm in "[a-z0-9-]{1,20}",
        port in 1u16..,
    ) {
        let text = format!(
            "replication = {replication}\nkeep-versions = {keep}\ncapacity = {capacity}\n\
             gc-grace = \"{grace_s}s\"\nno-mdns = {no_mdns}\nswarm = \"{swarm}\"\n\
             listen = [\"/ip4/0.0.0.0/tcp/{port}\"]\ndata-dir = \"d\"\n"
        );
        let s = NodeSettings::from_toml(&text, Path::new("/base"))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(s.replication, Some(replication));
        prop_assert_eq!(s.keep_versions, Some(keep));
        prop_assert_eq!(s.capacity, Some(u64::from(capacity)));
        prop_assert_eq!(s.gc_grace, Some(Duration::from_secs(grace_s)));
        prop_assert_eq!(s.no_mdns, Some(no_mdns));
        prop_assert_eq!(s.balance.swarm.as_deref(), Some(swarm.as_str()));
        prop_assert_eq!(s.listen.len(), 1);
        prop_assert_eq!(s.data_dir, Some(PathBuf::from("/base/d")));
    }

    /// The swarm key file (`--swarm-key`): any content is a key or a one-line error, never a
    /// panic.
    #[test]
    fn mutated_swarm_key_files_never_panic(
        bytes in prop_oneof![
            mutated("swarm-key"),
            any::<String>().prop_map(String::into_bytes),
            // The key line's 64 characters, one of them multi-byte.
            (0usize..62, any::<char>()).prop_map(|(at, c)| {
                let mut line: Vec<char> = "6a".repeat(32).chars().collect();
                line[at] = c;
                format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", line.iter().collect::<String>())
                    .into_bytes()
            }),
        ]
    ) {
        let path = scratch().join("swarm.key");
        std::fs::write(&path, &bytes).expect("write");
        if let Err(e) = swarmstore::net::read_swarm_key(&path) {
            prop_assert!(!e.to_string().contains('\n'), "{}", e);
        }
    }
}

/// A directory for this test's scratch files, under the build's temporary directory.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz");
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    })
}

#[test]
fn config_seeds_parse() {
    for seed in seeds("config").iter() {
        let text = std::str::from_utf8(seed).expect("utf-8");
        let s = NodeSettings::from_toml(text, Path::new("/etc/swarmstore"))
            .unwrap_or_else(|e| panic!("config seed refused: {e}\n{text}"));
        s.into_config(PathBuf::from("/tmp/x"))
            .expect("config seed makes a node config");
    }
    let key = std::str::from_utf8(&seeds("swarm-key")[0])
        .expect("utf-8")
        .to_string();
    key.parse::<libp2p::pnet::PreSharedKey>()
        .expect("swarm key seed");
    let path = scratch().join("seed.key");
    std::fs::write(&path, key).expect("write");
    swarmstore::net::read_swarm_key(&path).expect("read_swarm_key takes the seed");
}
