//! Status replies: what an access node says about itself, its store, repair and balancing
//! (`ClientRequest::Status`, `swarmstore status`). Plain data, so a client decodes a status
//! without linking any node code.

use std::collections::BTreeMap;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

/// What `swarmstore status` shows about the access node and the peers it sees.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub peer: PeerId,
    pub addrs: Vec<libp2p::Multiaddr>,
    pub replication: usize,
    pub blocks: usize,
    pub used: u64,
    pub capacity: Option<u64>,
    pub records: usize,
    pub peers: Vec<PeerStatus>,
    /// Block repair as this node (a root) sees it.
    pub repair: RepairStatus,
    /// Load balancing: manager and term, per-node load, recent decisions.
    #[serde(default)]
    pub balance: BalanceStatus,
    /// Input this node refused (forged, unauthorized, oversized...), by cause.
    #[serde(default)]
    pub refused: BTreeMap<String, u64>,
    /// The S3 API and HTTP gateway served in the node's process, if any (left out when none,
    /// so a node without them encodes its status exactly as before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub front_doors: Vec<FrontDoorStatus>,
}

/// An S3 API or gateway listener and what it has answered since the node started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrontDoorStatus {
    /// `s3` or `gateway`.
    pub api: String,
    pub addr: String,
    pub requests: u64,
    /// Answered 4xx (refused: bad signature, no such key, ...).
    pub client_errors: u64,
    /// Answered 5xx (the swarm could not serve it).
    pub server_errors: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerStatus {
    pub peer: PeerId,
    pub connected: bool,
    pub live: bool,
}

/// Block repair as a root sees it.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RepairStatus {
    /// Blocks below R good holders at the last round.
    pub under_replicated: usize,
    /// Copies still to make in the current round.
    pub queue: usize,
    /// Blocks with no good holder left at the last round.
    pub lost: usize,
    pub repaired_blocks: u64,
    pub repaired_bytes: u64,
    pub rounds: u64,
}

/// What `status` shows about balancing.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct BalanceStatus {
    pub manager: Option<ManagerInfo>,
    pub role: String,
    pub term: u64,
    pub nodes: Vec<NodeRow>,
    pub decisions: Vec<DecisionRow>,
    /// Messages ignored, by reason (bad input is counted, never applied).
    pub ignored: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManagerInfo {
    pub peer: PeerId,
    pub term: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRow {
    pub peer: PeerId,
    /// Smoothed work units (bytes) served per second.
    pub load: f64,
    pub used: u64,
    pub capacity: u64,
    /// load / bandwidth.
    pub util: f64,
    /// The serving capacity the node reports: configured, or learned from queueing delay.
    #[serde(default)]
    pub bandwidth: f64,
    pub zone: Option<String>,
    pub role: String,
    pub served_blocks: u64,
    pub extras: usize,
    pub delegations: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecisionRow {
    pub kind: String,
    /// Block id or file key (hex).
    pub object: String,
    pub from: Option<PeerId>,
    pub to: Option<PeerId>,
    pub state: String,
    pub term: u64,
    pub seq: u64,
    pub file: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(front_doors: Vec<FrontDoorStatus>) -> NodeStatus {
        NodeStatus {
            peer: PeerId::random(),
            addrs: Vec::new(),
            replication: 3,
            blocks: 0,
            used: 0,
            capacity: None,
            records: 0,
            peers: Vec::new(),
            repair: RepairStatus::default(),
            balance: BalanceStatus::default(),
            refused: BTreeMap::new(),
            front_doors,
        }
    }

    #[test]
    fn front_doors_round_trip_and_are_left_out_when_none() {
        let door = FrontDoorStatus {
            api: "s3".into(),
            addr: "127.0.0.1:9000".into(),
            requests: 7,
            client_errors: 2,
            server_errors: 1,
        };
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &status(vec![door])).unwrap();
        let back: NodeStatus = cbor4ii::serde::from_slice(&bytes).unwrap();
        assert_eq!(back.front_doors.len(), 1);
        assert_eq!(back.front_doors[0].requests, 7);
        assert_eq!(back.front_doors[0].client_errors, 2);
        let plain = cbor4ii::serde::to_vec(Vec::new(), &status(Vec::new())).unwrap();
        assert!(memchr::memmem::find(&plain, b"front_doors").is_none());
        assert!(memchr::memmem::find(&bytes, b"front_doors").is_some());
    }
}
