//! Balancing settings of a node ([`BalanceConfig`]): plain data the node hands to the
//! balancer core (its builder methods on `NodeConfig` live with the node).

use std::time::Duration;

use libp2p::PeerId;

use super::plan::Policy;

/// Work units charged for one record read: the same figure the simulator uses, so the
/// planner's bands mean the same thing in both places.
pub const META_COST: f64 = 4096.0;

/// How a node measures, reports and balances load.
#[derive(Clone, Debug, PartialEq)]
pub struct BalanceConfig {
    /// Swarm name: gossip topics are `swarmstore/<swarm>/{load,manager,decisions}`.
    pub swarm: String,
    /// T: how often load is measured and reported, and the election's clock.
    pub report_interval: Duration,
    /// Serving capacity in work units (bytes) per second: as configured, or the yardstick
    /// until `measure_capacity` has learned one.
    pub bandwidth: u64,
    /// No capacity was configured: learn it from queueing delay (`capacity`).
    pub measure_capacity: bool,
    /// Work units per second the node serves at most (block bytes, `META_COST` per record
    /// read); `None` serves as fast as it can. `--bandwidth` sets both this and `bandwidth`.
    pub serve_limit: Option<u64>,
    /// Peers allowed to become manager; empty means every storage node.
    pub manager_peers: Vec<PeerId>,
    /// Free-form zone label shown in `status`.
    pub zone: Option<String>,
    /// Whether an elected manager publishes decisions (off: report and elect only).
    pub planner: bool,
    pub policy: Policy,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        Self {
            swarm: "main".into(),
            report_interval: Duration::from_secs(2),
            // Generous: a node is only "hot" when it serves a good share of this.
            bandwidth: 100_000_000,
            measure_capacity: true,
            serve_limit: None,
            manager_peers: Vec::new(),
            zone: None,
            planner: true,
            policy: Policy {
                hold_ms: 60_000,
                lease_ms: 120_000,
                max_decisions: 64,
                ..Policy::default()
            },
        }
    }
}

impl BalanceConfig {
    pub fn topic(&self, kind: &str) -> String {
        format!("swarmstore/{}/{kind}", self.swarm)
    }
}
