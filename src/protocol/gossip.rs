//! Gossipsub topics `swarmstore/<swarm>/{load,manager,decisions}`: load reports, election
//! messages and the manager's decision batches.
//!
//! Every message is one CBOR value, signed by its author through gossipsub's strict signing;
//! the author is `message.source`, never a field of the payload, so a node cannot speak for
//! another. Each type carries a sequence number or term so that republishing the same state
//! never produces identical bytes, and every message stays well under gossipsub's 64 KiB limit
//! ([`encode_report`] trims the lists of a report that would not).

use libp2p::identity::Keypair;
use libp2p::PeerId;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::ids::{BlockId, FileKey};
use crate::record::public_key_of;

/// Our ceiling for one gossip message, comfortably under gossipsub's 64 KiB.
pub const MAX_MESSAGE: usize = 48 * 1024;
/// Hot blocks and files per report (the manager only needs the top of each node).
pub const TOP_BLOCKS: usize = 16;
pub const TOP_FILES: usize = 8;
/// Extra replicas and decision outcomes listed per report, at most.
pub const MAX_EXTRAS: usize = 128;
pub const MAX_OUTCOMES: usize = 64;

/// A node's periodic load report (topic `swarmstore/<swarm>/load`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LoadReport {
    pub seq: u64,
    /// Author's clock (unix ms) when the report was made.
    pub at_ms: u64,
    /// Smoothed work units served per second (block bytes + `META_COST` per record read).
    pub load: f64,
    /// Serving capacity, work units per second.
    pub bandwidth: f64,
    pub meta_rps: f64,
    pub block_rps: f64,
    pub block_bps: f64,
    /// Requests being served right now.
    pub inflight: u32,
    pub used: u64,
    pub capacity: u64,
    pub zone: Option<String>,
    pub role: RoleTag,
    pub term: u64,
    /// Blocks served since start (a counter, for status and tests).
    pub served_blocks: u64,
    pub hot_blocks: Vec<BlockHeat>,
    pub hot_files: Vec<FileHeat>,
    /// Blocks this node holds as extra replicas (beyond the record's R holders).
    pub extras: Vec<ExtraHeld>,
    /// Files this node serves record reads for as a delegate, with the lease expiry (unix ms).
    pub delegations: Vec<(FileKey, u64)>,
    /// What became of recent decisions addressed to this node.
    pub outcomes: Vec<Outcome>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum RoleTag {
    Follower,
    Candidate,
    Manager,
}

impl RoleTag {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleTag::Follower => "follower",
            RoleTag::Candidate => "candidate",
            RoleTag::Manager => "manager",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BlockHeat {
    pub id: BlockId,
    /// A file the block belongs to (from the holder's block refs); needed to copy it.
    pub file: String,
    pub size: u64,
    /// Smoothed work units per second this node served for the block.
    pub heat: f64,
    pub extra: bool,
}

/// An extra replica and what its holder knows of the block: enough for any manager to plan
/// its drop even when the block has gone cold and no base holder reports it any more.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExtraHeld {
    pub id: BlockId,
    pub file: String,
    pub size: u64,
    /// The record's holders when the copy was made.
    pub base: Vec<PeerId>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileHeat {
    pub name: String,
    /// Smoothed record reads per second, in work units.
    pub heat: f64,
    /// Whether the reporter is the file's root (else a delegate or another replica).
    pub root: bool,
}

/// Identifies one decision: the batch it came in and its place there.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DecisionId {
    pub term: u64,
    pub seq: u64,
    pub idx: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum DecisionState {
    Published,
    Applied,
    /// Not applicable (unknown block, dead peer, already done elsewhere...): not retried.
    Skipped(String),
    Failed(String),
}

impl DecisionState {
    pub fn label(&self) -> String {
        match self {
            DecisionState::Published => "published".into(),
            DecisionState::Applied => "applied".into(),
            DecisionState::Skipped(why) => format!("skipped: {why}"),
            DecisionState::Failed(why) => format!("failed: {why}"),
        }
    }

    pub fn is_final(&self) -> bool {
        !matches!(self, DecisionState::Published)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub id: DecisionId,
    pub state: DecisionState,
}

/// Election traffic (topic `swarmstore/<swarm>/manager`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ManagerMsg {
    /// "I stand for manager of `term`."
    Candidacy { term: u64 },
    /// "I give my vote in `term` to `candidate`", signed so that the candidate can show it.
    Vote(Vote),
    /// "I am the manager of `term`", with the votes that made it so. `beat` only makes repeated
    /// heartbeats distinct. A heartbeat without a certificate (`cert` absent) proves nothing.
    Heartbeat {
        term: u64,
        beat: u64,
        #[serde(default)]
        cert: Vec<Vote>,
    },
}

/// The highest term a node takes part in: 2^53, so that a term is exact in every JSON and
/// float64 reader, and far beyond what one-step elections reach in any lifetime.
pub const MAX_TERM: u64 = 1 << 53;
/// Votes in one certificate, at most (a majority of 511 storage peers; a larger swarm has a
/// manager whose heartbeats are refused, and balance, never data, degrades). 256 votes are
/// about 37 KiB, under [`MAX_MESSAGE`].
pub const MAX_CERT: usize = 256;

const VOTE_DOMAIN: &str = "swarmstore/vote/1";

/// One storage peer's vote, signed with its node key over the swarm's manager topic, the term
/// and the candidate: it cannot be replayed for another swarm, term or candidate.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Vote {
    pub term: u64,
    pub candidate: PeerId,
    pub voter: PeerId,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

fn vote_bytes(topic: &str, term: u64, candidate: &PeerId) -> Vec<u8> {
    // Plain fields into a Vec: cannot fail.
    cbor4ii::serde::to_vec(
        Vec::new(),
        &(VOTE_DOMAIN, topic, term, candidate.to_bytes()),
    )
    .unwrap_or_default()
}

impl Vote {
    pub fn sign(topic: &str, term: u64, candidate: PeerId, voter: &Keypair) -> Self {
        Vote {
            term,
            candidate,
            voter: voter.public().to_peer_id(),
            signature: voter
                .sign(&vote_bytes(topic, term, &candidate))
                .unwrap_or_default(),
        }
    }

    /// Whether the voter's own key signed this vote for `topic`'s swarm.
    pub fn verifies(&self, topic: &str) -> bool {
        public_key_of(&self.voter).is_some_and(|k| {
            k.verify(
                &vote_bytes(topic, self.term, &self.candidate),
                &self.signature,
            )
        })
    }
}

/// One instruction of the manager, as published. The planner's own type
/// (`balance::plan::Decision`) is generic over node ids for the simulator; this is its wire
/// form, with ids as 32-byte byte strings like everywhere else on the wire.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Decision {
    /// Extra copy of a hot block beyond R, pulled by `to` from `from` (or another holder).
    Replicate {
        block: BlockId,
        file: FileKey,
        from: PeerId,
        to: PeerId,
        /// The block's heat (work units/s) the copy was planned for: the extra is dropped
        /// only once the heat has fallen well below it. Absent from older managers' batches.
        #[serde(default)]
        heat: f64,
    },
    /// A hot file's record reads go to `to` until `expires_at` (unix ms); re-issued to renew.
    Delegate {
        file: FileKey,
        root: PeerId,
        to: PeerId,
        expires_at: u64,
    },
    /// The base copy on `from` moves to `to`.
    Move {
        block: BlockId,
        file: FileKey,
        from: PeerId,
        to: PeerId,
        bytes: u64,
    },
    /// An extra replica at `at` is no longer needed.
    Drop {
        block: BlockId,
        file: FileKey,
        at: PeerId,
    },
    /// The delegate at `at` hands record reads back to the root.
    EndDelegation { file: FileKey, at: PeerId },
}

impl Decision {
    /// The decision's kind, as status, metrics and logs name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Replicate { .. } => "replicate",
            Decision::Delegate { .. } => "delegate",
            Decision::Move { .. } => "move",
            Decision::Drop { .. } => "drop",
            Decision::EndDelegation { .. } => "end-delegation",
        }
    }

    /// Every kind, in the order of [`Decision::kind`].
    pub const KINDS: [&'static str; 5] =
        ["replicate", "delegate", "move", "drop", "end-delegation"];

    /// The file the decision is about.
    pub fn file(&self) -> FileKey {
        match self {
            Decision::Replicate { file, .. }
            | Decision::Delegate { file, .. }
            | Decision::Move { file, .. }
            | Decision::Drop { file, .. }
            | Decision::EndDelegation { file, .. } => *file,
        }
    }

    /// The object (block id or file key, hex), the peer it starts from, and its target.
    pub fn parts(&self) -> (String, Option<PeerId>, Option<PeerId>) {
        match self {
            Decision::Replicate {
                block, from, to, ..
            }
            | Decision::Move {
                block, from, to, ..
            } => (block.to_hex(), Some(*from), Some(*to)),
            Decision::Delegate { file, root, to, .. } => (file.to_hex(), Some(*root), Some(*to)),
            Decision::Drop { block, at, .. } => (block.to_hex(), Some(*at), None),
            Decision::EndDelegation { file, at } => (file.to_hex(), Some(*at), None),
        }
    }

    /// Whether this node has work to do for the decision.
    pub fn involves(&self, me: PeerId) -> bool {
        match self {
            Decision::Replicate { to, .. } | Decision::Delegate { to, .. } => *to == me,
            Decision::Move { from, to, .. } => *from == me || *to == me,
            Decision::Drop { at, .. } | Decision::EndDelegation { at, .. } => *at == me,
        }
    }

    /// Same kind, object and target: a re-issue of the same instruction.
    pub fn same_object(&self, other: &Decision) -> bool {
        use Decision::*;
        match (self, other) {
            (
                Replicate {
                    block: x, to: t, ..
                },
                Replicate {
                    block: y, to: u, ..
                },
            )
            | (
                Move {
                    block: x, to: t, ..
                },
                Move {
                    block: y, to: u, ..
                },
            )
            | (
                Drop {
                    block: x, at: t, ..
                },
                Drop {
                    block: y, at: u, ..
                },
            ) => x == y && t == u,
            (Delegate { file: x, to: t, .. }, Delegate { file: y, to: u, .. })
            | (EndDelegation { file: x, at: t }, EndDelegation { file: y, at: u }) => {
                x == y && t == u
            }
            _ => false,
        }
    }
}

/// One decision as published: the planner's decision plus the file name the appliers need
/// (the planner only knows file keys).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Item {
    pub decision: Decision,
    pub name: String,
}

/// The manager's decisions of one round (topic `swarmstore/<swarm>/decisions`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DecisionBatch {
    pub term: u64,
    pub seq: u64,
    /// The manager's clock (unix ms) when it planned; leases count from it.
    pub now_ms: u64,
    pub items: Vec<Item>,
}

pub fn encode<T: Serialize>(value: &T) -> Option<Vec<u8>> {
    let bytes = cbor4ii::serde::to_vec(Vec::new(), value).ok()?;
    (bytes.len() <= MAX_MESSAGE).then_some(bytes)
}

/// Decodes a gossip payload; anything malformed or oversized is `None` (counts the payload
/// cannot hold are refused before serde sizes anything from them).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    if bytes.len() > MAX_MESSAGE || super::limits::counts_fit(bytes).is_err() {
        return None;
    }
    cbor4ii::serde::from_slice(bytes).ok()
}

/// Encodes a report, dropping its least important entries until it fits.
pub fn encode_report(report: &LoadReport) -> Vec<u8> {
    let mut r = report.clone();
    r.hot_blocks.truncate(TOP_BLOCKS);
    r.hot_files.truncate(TOP_FILES);
    r.extras.truncate(MAX_EXTRAS);
    r.outcomes.truncate(MAX_OUTCOMES);
    loop {
        if let Some(bytes) = encode(&r) {
            return bytes;
        }
        // Longest lists first; names can be up to 1 KiB each.
        if r.extras.len() > 16 {
            r.extras.truncate(r.extras.len() / 2);
        } else if r.outcomes.len() > 8 {
            r.outcomes.truncate(r.outcomes.len() / 2);
        } else if !r.hot_files.is_empty() {
            r.hot_files.pop();
        } else if !r.hot_blocks.is_empty() {
            r.hot_blocks.pop();
        } else {
            r.extras.clear();
            r.outcomes.clear();
            r.delegations.clear();
            return encode(&r).unwrap_or_default();
        }
    }
}

/// Splits decisions into batches that each fit in one message.
pub fn encode_batches(
    term: u64,
    first_seq: u64,
    now_ms: u64,
    items: Vec<Item>,
) -> Vec<DecisionBatch> {
    let mut out = Vec::new();
    let mut seq = first_seq;
    let mut rest = items;
    while !rest.is_empty() {
        // Decisions are ~200 bytes plus a name of at most 1 KiB: 32 always fit.
        let take = rest.len().min(32);
        let tail = rest.split_off(take);
        out.push(DecisionBatch {
            term,
            seq,
            now_ms,
            items: rest,
        });
        seq += 1;
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big_report() -> LoadReport {
        let name = "n".repeat(1024);
        LoadReport {
            seq: u64::MAX,
            at_ms: u64::MAX,
            load: 1e12,
            bandwidth: 1e12,
            meta_rps: 1e6,
            block_rps: 1e6,
            block_bps: 1e12,
            inflight: u32::MAX,
            used: u64::MAX,
            capacity: u64::MAX,
            zone: Some("z".repeat(200)),
            role: RoleTag::Manager,
            term: u64::MAX,
            served_blocks: u64::MAX,
            hot_blocks: (0..TOP_BLOCKS as u8)
                .map(|i| BlockHeat {
                    id: BlockId([i; 32]),
                    file: name.clone(),
                    size: 1 << 20,
                    heat: 1e9,
                    extra: true,
                })
                .collect(),
            hot_files: (0..TOP_FILES)
                .map(|_| FileHeat {
                    name: name.clone(),
                    heat: 1e9,
                    root: true,
                })
                .collect(),
            extras: (0..MAX_EXTRAS)
                .map(|i| ExtraHeld {
                    id: BlockId([i as u8; 32]),
                    file: name.clone(),
                    size: 1 << 20,
                    base: vec![PeerId::random(), PeerId::random(), PeerId::random()],
                })
                .collect(),
            delegations: (0..64)
                .map(|i| (FileKey([i as u8; 32]), u64::MAX))
                .collect(),
            outcomes: (0..MAX_OUTCOMES)
                .map(|i| Outcome {
                    id: DecisionId {
                        term: u64::MAX,
                        seq: u64::MAX,
                        idx: i as u32,
                    },
                    state: DecisionState::Failed("x".repeat(200)),
                })
                .collect(),
        }
    }

    #[test]
    fn a_full_report_fits_in_one_gossip_message() {
        let bytes = encode_report(&big_report());
        assert!(!bytes.is_empty());
        assert!(bytes.len() <= MAX_MESSAGE, "{} bytes", bytes.len());
        let back: LoadReport = decode(&bytes).expect("decodes");
        assert_eq!(back.seq, u64::MAX);
    }

    #[test]
    fn a_typical_report_keeps_every_entry() {
        let mut r = big_report();
        for b in &mut r.hot_blocks {
            b.file = "some/file.bin".into();
        }
        for f in &mut r.hot_files {
            f.name = "some/file.bin".into();
        }
        for x in &mut r.extras {
            x.file = "some/file.bin".into();
        }
        let back: LoadReport = decode(&encode_report(&r)).expect("decodes");
        assert_eq!(back.hot_blocks.len(), TOP_BLOCKS);
        assert_eq!(back.extras.len(), MAX_EXTRAS);
    }

    #[test]
    fn malformed_bytes_decode_to_none() {
        assert!(decode::<LoadReport>(b"\xff\x00garbage").is_none());
        assert!(decode::<ManagerMsg>(&[]).is_none());
        assert!(decode::<DecisionBatch>(&vec![0u8; MAX_MESSAGE + 1]).is_none());
    }

    #[test]
    fn batches_fit_and_number_consecutively() {
        let p = PeerId::random();
        let items: Vec<Item> = (0..70u8)
            .map(|i| Item {
                decision: Decision::Replicate {
                    block: BlockId([i; 32]),
                    file: FileKey([i; 32]),
                    from: p,
                    to: p,
                    heat: 0.0,
                },
                name: "f".repeat(1024),
            })
            .collect();
        let batches = encode_batches(3, 10, 0, items);
        assert_eq!(batches.len(), 3);
        assert_eq!(
            batches.iter().map(|b| b.seq).collect::<Vec<_>>(),
            [10, 11, 12]
        );
        for b in &batches {
            assert!(encode(b).is_some(), "batch of {} fits", b.items.len());
        }
    }
}
