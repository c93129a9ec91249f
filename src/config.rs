//! Node settings from three layers: a TOML file (`--config FILE`), environment variables
//! (`SWARMSTORE_*`), and command-line flags, in rising precedence, over built-in defaults.
//!
//! Every `swarmstore node` flag has a key of the same name in the file (`--gc-grace 30s` is
//! `gc-grace = "30s"`, repeatable flags are arrays). Paths in the file are relative to the
//! file's directory. A bootstrap entry that is not a multiaddr is reported and skipped so the
//! node still joins through the others; any other bad value stops the node with one line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use libp2p::Multiaddr;
use serde::Deserialize;

use crate::balance::BalanceConfig;
use crate::net::read_swarm_key;
use crate::node::{NodeConfig, ServeMode};
use crate::units::{parse_bytes, parse_duration};

/// A bad setting, said in one line (which key, what was wrong).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

type Result<T, E = ConfigError> = std::result::Result<T, E>;

macro_rules! bad {
    ($($arg:tt)*) => { ConfigError(format!($($arg)*)) };
}

/// One layer of node settings; `None` (or an empty list) leaves the value to lower layers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSettings {
    pub data_dir: Option<PathBuf>,
    pub listen: Vec<Multiaddr>,
    /// Raw entries: a bad one is skipped with a warning, not fatal.
    pub bootstrap: Vec<String>,
    pub external_addr: Vec<Multiaddr>,
    pub no_mdns: Option<bool>,
    pub replication: Option<usize>,
    pub capacity: Option<u64>,
    pub keep_versions: Option<usize>,
    pub gc_grace: Option<Duration>,
    pub sync_interval: Option<Duration>,
    pub liveness: Option<Duration>,
    pub repair_interval: Option<Duration>,
    pub repair_bandwidth: Option<u64>,
    /// Hand data to other nodes before exiting (read by `swarmstore node`, not a NodeConfig).
    pub drain: Option<bool>,
    pub relay_server: Option<ServeMode>,
    pub autonat_server: Option<ServeMode>,
    pub swarm_key: Option<PathBuf>,
    pub metrics: Option<SocketAddr>,
    /// The S3 API and the HTTP gateway (read by `swarmstore node`, not a NodeConfig).
    pub s3: Option<SocketAddr>,
    pub gateway: Option<SocketAddr>,
    /// Balancing flags (swarm, zone, report-interval, bandwidth, manager-peers, balance-hold,
    /// no-planner).
    pub balance: BalanceSettings,
}

/// The file as written: keys are the flag names.
#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileLayer {
    data_dir: Option<PathBuf>,
    listen: Option<Vec<String>>,
    bootstrap: Option<Vec<String>>,
    external_addr: Option<Vec<String>>,
    no_mdns: Option<bool>,
    replication: Option<usize>,
    /// `"50G"` or a number of bytes.
    capacity: Option<toml::Value>,
    keep_versions: Option<usize>,
    gc_grace: Option<String>,
    sync_interval: Option<String>,
    liveness: Option<String>,
    repair_interval: Option<String>,
    /// `"64M"` (per second) or a number of bytes.
    repair_bandwidth: Option<toml::Value>,
    drain: Option<bool>,
    relay_server: Option<String>,
    autonat_server: Option<String>,
    swarm_key: Option<PathBuf>,
    metrics: Option<String>,
    s3: Option<String>,
    gateway: Option<String>,
    swarm: Option<String>,
    zone: Option<String>,
    report_interval: Option<String>,
    /// `"100M"` (per second) or a number of bytes.
    bandwidth: Option<toml::Value>,
    emulate_speed: Option<toml::Value>,
    manager_peers: Option<Vec<String>>,
    balance_hold: Option<String>,
    no_planner: Option<bool>,
}

impl NodeSettings {
    /// Reads a TOML settings file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad!("cannot read config file {}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base).map_err(|e| bad!("config file {}: {e}", path.display()))
    }

    /// Parses TOML text; relative paths are taken from `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self> {
        let raw: FileLayer = toml::from_str(text)
            .map_err(|e| bad!("{}", e.to_string().trim().replace('\n', " ")))?;
        let addrs = |key: &str, list: Option<Vec<String>>| -> Result<Vec<Multiaddr>> {
            list.unwrap_or_default()
                .iter()
                .map(|s| {
                    s.parse::<Multiaddr>()
                        .map_err(|e| bad!("{key}: {s:?} is not a multiaddr ({e})"))
                })
                .collect()
        };
        let duration = |key: &str, v: Option<String>| -> Result<Option<Duration>> {
            v.map(|s| parse_duration(&s).map_err(|e| bad!("{key}: {e}")))
                .transpose()
        };
        let mode = |key: &str, v: Option<String>| -> Result<Option<ServeMode>> {
            v.map(|s| s.parse().map_err(|e| bad!("{key}: {e}")))
                .transpose()
        };
        let bytes = |key: &str, v: Option<toml::Value>| -> Result<Option<u64>> {
            match v {
                None => Ok(None),
                Some(toml::Value::Integer(n)) if n >= 0 => Ok(Some(n as u64)),
                Some(toml::Value::String(s)) => {
                    parse_bytes(&s).map(Some).map_err(|e| bad!("{key}: {e}"))
                }
                Some(other) => Err(bad!("{key}: expected bytes like \"50G\", got {other}")),
            }
        };
        let capacity = bytes("capacity", raw.capacity)?;
        let metrics = raw
            .metrics
            .map(|s| parse_admin_addr(&s).map_err(|e| bad!("metrics: {e}")))
            .transpose()?;
        let s3 = raw
            .s3
            .map(|s| parse_admin_addr(&s).map_err(|e| bad!("s3: {e}")))
            .transpose()?;
        let gateway = raw
            .gateway
            .map(|s| parse_admin_addr(&s).map_err(|e| bad!("gateway: {e}")))
            .transpose()?;
        let manager_peers = raw
            .manager_peers
            .unwrap_or_default()
            .iter()
            .map(|s| {
                s.parse::<libp2p::PeerId>()
                    .map_err(|e| bad!("manager-peers: {s:?} is not a peer id ({e})"))
            })
            .collect::<Result<Vec<_>>>()?;
        let balance = BalanceSettings {
            swarm: raw.swarm,
            zone: raw.zone,
            report_interval: duration("report-interval", raw.report_interval)?,
            bandwidth: bytes("bandwidth", raw.bandwidth)?,
            emulate_speed: bytes("emulate-speed", raw.emulate_speed)?,
            manager_peers,
            balance_hold: duration("balance-hold", raw.balance_hold)?,
            no_planner: raw.no_planner,
        };
        let rel = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        Ok(Self {
            data_dir: raw.data_dir.map(rel),
            listen: addrs("listen", raw.listen)?,
            bootstrap: raw.bootstrap.unwrap_or_default(),
            external_addr: addrs("external-addr", raw.external_addr)?,
            no_mdns: raw.no_mdns,
            replication: raw.replication,
            capacity,
            keep_versions: raw.keep_versions,
            gc_grace: duration("gc-grace", raw.gc_grace)?,
            sync_interval: duration("sync-interval", raw.sync_interval)?,
            liveness: duration("liveness", raw.liveness)?,
            repair_interval: duration("repair-interval", raw.repair_interval)?,
            repair_bandwidth: bytes("repair-bandwidth", raw.repair_bandwidth)?,
            drain: raw.drain,
            relay_server: mode("relay-server", raw.relay_server)?,
            autonat_server: mode("autonat-server", raw.autonat_server)?,
            swarm_key: raw.swarm_key.map(rel),
            metrics,
            s3,
            gateway,
            balance,
        })
    }

    /// `top` over `self`: each value `top` sets wins.
    pub fn overlay(self, top: NodeSettings) -> NodeSettings {
        fn list<T>(low: Vec<T>, high: Vec<T>) -> Vec<T> {
            if high.is_empty() {
                low
            } else {
                high
            }
        }
        NodeSettings {
            data_dir: top.data_dir.or(self.data_dir),
            listen: list(self.listen, top.listen),
            bootstrap: list(self.bootstrap, top.bootstrap),
            external_addr: list(self.external_addr, top.external_addr),
            no_mdns: top.no_mdns.or(self.no_mdns),
            replication: top.replication.or(self.replication),
            capacity: top.capacity.or(self.capacity),
            keep_versions: top.keep_versions.or(self.keep_versions),
            gc_grace: top.gc_grace.or(self.gc_grace),
            sync_interval: top.sync_interval.or(self.sync_interval),
            liveness: top.liveness.or(self.liveness),
            repair_interval: top.repair_interval.or(self.repair_interval),
            repair_bandwidth: top.repair_bandwidth.or(self.repair_bandwidth),
            drain: top.drain.or(self.drain),
            relay_server: top.relay_server.or(self.relay_server),
            autonat_server: top.autonat_server.or(self.autonat_server),
            swarm_key: top.swarm_key.or(self.swarm_key),
            metrics: top.metrics.or(self.metrics),
            s3: top.s3.or(self.s3),
            gateway: top.gateway.or(self.gateway),
            balance: BalanceSettings {
                swarm: top.balance.swarm.or(self.balance.swarm),
                zone: top.balance.zone.or(self.balance.zone),
                report_interval: top.balance.report_interval.or(self.balance.report_interval),
                bandwidth: top.balance.bandwidth.or(self.balance.bandwidth),
                emulate_speed: top.balance.emulate_speed.or(self.balance.emulate_speed),
                manager_peers: list(self.balance.manager_peers, top.balance.manager_peers),
                balance_hold: top.balance.balance_hold.or(self.balance.balance_hold),
                no_planner: top.balance.no_planner.or(self.balance.no_planner),
            },
        }
    }

    /// The node these settings describe, over the defaults of [`NodeConfig::new`]. Reads the
    /// swarm key file.
    pub fn into_config(self, default_data_dir: PathBuf) -> Result<NodeConfig> {
        let mut bootstrap = Vec::new();
        for entry in &self.bootstrap {
            match entry.trim().parse::<Multiaddr>() {
                Ok(addr) => bootstrap.push(addr),
                Err(e) => {
                    tracing::warn!("bootstrap address {entry:?} is not a multiaddr ({e}); skipped")
                }
            }
        }
        let swarm_key = self
            .swarm_key
            .as_deref()
            .map(read_swarm_key)
            .transpose()
            .map_err(|e| bad!("{e}"))?;
        let mut config = NodeConfig::new(self.data_dir.unwrap_or(default_data_dir))
            .bootstrap(bootstrap)
            .external_addrs(self.external_addr)
            .swarm_key(swarm_key)
            .metrics(self.metrics);
        if !self.listen.is_empty() {
            config = config.listen_on(self.listen);
        }
        if let Some(no) = self.no_mdns {
            config = config.mdns(!no);
        }
        if let Some(r) = self.replication {
            config = config.replication(r);
        }
        if self.capacity.is_some() {
            config = config.capacity(self.capacity);
        }
        if let Some(k) = self.keep_versions {
            config = config.keep_versions(k);
        }
        if let Some(g) = self.gc_grace {
            config = config.gc_grace(g);
        }
        if let Some(s) = self.sync_interval {
            config = config.sync_interval(s);
        }
        if let Some(l) = self.liveness {
            config = config.liveness(l);
        }
        if let Some(r) = self.repair_interval {
            config = config.repair_interval(r);
        }
        if let Some(b) = self.repair_bandwidth {
            config = config.repair_bandwidth(b);
        }
        if let Some(m) = self.relay_server {
            config = config.relay_server(m);
        }
        if let Some(m) = self.autonat_server {
            config = config.autonat_server(m);
        }
        Ok(self.balance.apply(config))
    }
}

/// Load reports, manager election and balancing. Unset flags fall to the config file, then
/// to the defaults (swarm "main", T = 2s, bandwidth 100M, hold 60s, planner on).
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct BalanceSettings {
    /// Swarm name: gossip topics are swarmstore/<NAME>/{load,manager,decisions} [default: main]
    #[arg(
        long,
        env = "SWARMSTORE_SWARM",
        value_name = "NAME",
        help_heading = "Balancing"
    )]
    pub swarm: Option<String>,
    /// Zone label shown in status.
    #[arg(
        long,
        env = "SWARMSTORE_ZONE",
        value_name = "NAME",
        help_heading = "Balancing"
    )]
    pub zone: Option<String>,
    /// How often load is measured and reported (T); the election's clock [default: 2s]
    #[arg(long, env = "SWARMSTORE_REPORT_INTERVAL", value_name = "DURATION", value_parser = parse_duration, help_heading = "Balancing")]
    pub report_interval: Option<Duration>,
    /// Serve at most this many bytes per second (blocks, plus 4 KiB per record read) and report it as this node's capacity [default: no cap, capacity 100M]
    #[arg(long, env = "SWARMSTORE_BANDWIDTH", value_name = "BYTES", value_parser = parse_bytes, help_heading = "Balancing")]
    pub bandwidth: Option<u64>,
    /// Testnets: serve at most this many bytes per second, as slower hardware would, without
    /// taking it as the capacity (the node learns that from queueing delay, as it must on
    /// real hardware). Ignored with --bandwidth.
    #[arg(long, env = "SWARMSTORE_EMULATE_SPEED", value_name = "BYTES", value_parser = parse_bytes, help_heading = "Balancing")]
    pub emulate_speed: Option<u64>,
    /// Only these peers may become manager (comma-separated peer ids) [default: every node]
    #[arg(
        long,
        env = "SWARMSTORE_MANAGER_PEERS",
        value_delimiter = ',',
        value_name = "PEER,...",
        help_heading = "Balancing"
    )]
    pub manager_peers: Vec<libp2p::PeerId>,
    /// Minimum time before a balancing decision on the same object may be reversed [default: 60s]
    #[arg(long, env = "SWARMSTORE_BALANCE_HOLD", value_name = "DURATION", value_parser = parse_duration, help_heading = "Balancing")]
    pub balance_hold: Option<Duration>,
    /// Report and elect, but publish no balancing decisions as manager.
    #[arg(long, env = "SWARMSTORE_NO_PLANNER", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL", help_heading = "Balancing")]
    pub no_planner: Option<bool>,
}

impl BalanceSettings {
    /// Applies the flags that were given; the others keep what `config` has.
    pub fn apply(&self, mut config: NodeConfig) -> NodeConfig {
        if let Some(s) = &self.swarm {
            config = config.swarm_name(s.clone());
        }
        if self.zone.is_some() {
            config = config.zone(self.zone.clone());
        }
        if let Some(t) = self.report_interval {
            config = config.report_interval(t);
        }
        if let Some(b) = self.bandwidth {
            // A capacity the node reports is one it keeps: it serves no faster.
            config = config.bandwidth(b).serve_limit(Some(b));
        } else if let Some(b) = self.emulate_speed {
            config = config.serve_limit(Some(b));
        }
        if !self.manager_peers.is_empty() {
            config = config.manager_peers(self.manager_peers.clone());
        }
        if let Some(h) = self.balance_hold {
            config = config.balance_hold(h);
        }
        if let Some(off) = self.no_planner {
            config = config.planner(!off);
        }
        config
    }

    /// These flags over the built-in defaults.
    pub fn effective(&self) -> BalanceConfig {
        self.apply(NodeConfig::new(".")).balance
    }
}

/// The admin (metrics and dashboard) address: `IP:PORT`, or a bare `PORT` meaning
/// 127.0.0.1:PORT, so the default never exposes the node beyond this machine.
pub fn parse_admin_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse::<SocketAddr>()
        .map_err(|e| format!("{s:?} is not a PORT or an IP:PORT address ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_admin_port_stays_on_this_machine() {
        assert_eq!(
            parse_admin_addr("9090"),
            Ok("127.0.0.1:9090".parse().unwrap())
        );
        assert_eq!(
            parse_admin_addr("0.0.0.0:9090"),
            Ok("0.0.0.0:9090".parse().unwrap())
        );
        assert!(parse_admin_addr("localhost:x").is_err());
    }

    #[test]
    fn file_keys_parse_and_paths_are_relative_to_the_file() {
        let s = NodeSettings::from_toml(
            r#"
            data-dir = "data"
            listen = ["/ip4/0.0.0.0/tcp/4001"]
            bootstrap = ["/dns4/node1/tcp/4001", "not an address"]
            no-mdns = true
            capacity = "2G"
            gc-grace = "30s"
            relay-server = "on"
            metrics = "127.0.0.1:9090"
            s3 = "0.0.0.0:9000"
            gateway = "8080"
            swarm = "lab"
            report-interval = "500ms"
            bandwidth = "10M"
            no-planner = true
            "#,
            Path::new("/etc/swarmstore"),
        )
        .expect("parses");
        assert_eq!(s.data_dir, Some(PathBuf::from("/etc/swarmstore/data")));
        assert_eq!(s.capacity, Some(2 << 30));
        assert_eq!(s.relay_server, Some(ServeMode::On));
        assert_eq!(s.s3, Some("0.0.0.0:9000".parse().unwrap()));
        assert_eq!(s.gateway, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(s.bootstrap.len(), 2);
        let c = s.into_config(PathBuf::from("/x")).expect("config");
        // The bad bootstrap entry is skipped, the good one kept.
        assert_eq!(c.bootstrap.len(), 1);
        assert_eq!(c.balance.swarm, "lab");
        assert_eq!(c.balance.report_interval, Duration::from_millis(500));
        assert_eq!(c.balance.bandwidth, 10 << 20);
        assert!(!c.balance.planner);
        assert!(!c.mdns);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_one_line_errors() {
        let e = NodeSettings::from_toml("no-such-key = 1", Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("no-such-key"), "{e}");
        assert!(!e.to_string().contains('\n'));
        let e = NodeSettings::from_toml("listen = [\"nope\"]", Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("listen"), "{e}");
        let e = NodeSettings::from_toml("relay-server = \"maybe\"", Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("relay-server"), "{e}");
        let e = NodeSettings::from_toml("s3 = \"nine thousand\"", Path::new(".")).unwrap_err();
        assert!(e.to_string().starts_with("s3: "), "{e}");
    }

    #[test]
    fn higher_layers_win() {
        let low = NodeSettings {
            replication: Some(2),
            listen: vec!["/ip4/127.0.0.1/tcp/1".parse().expect("addr")],
            ..Default::default()
        };
        let high = NodeSettings {
            replication: Some(5),
            ..Default::default()
        };
        let merged = low.overlay(high);
        assert_eq!(merged.replication, Some(5));
        assert_eq!(merged.listen.len(), 1);
    }
}
