//! Gossip (`protocol::gossip::decode`): load reports, election messages and decision batches
//! on arbitrary and mutated messages, within the size limit, and valid messages and seeds
//! round-tripping; `encode_report` always fits a message.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::de::DeserializeOwned;
use serde::Serialize;

use swarmstore::protocol::gossip::{
    self, BlockHeat, Decision, DecisionBatch, DecisionId, DecisionState, ExtraHeld, FileHeat, Item,
    LoadReport, ManagerMsg, Outcome, RoleTag, Vote, MAX_MESSAGE,
};

use crate::corpus::seeds;
use crate::frames::tag;
use crate::mutation::{arbitrary, mutated};
use crate::strategies::{any_peer, block_id, bytes, file_key, peer_list, text};
use crate::wire::decode_allowance;
use crate::{cbor, config, heavy_config, measure};

fn check_gossip<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (got, usage) = measure(|| gossip::decode::<T>(bytes));
    prop_assert!(
        usage.peak <= decode_allowance(bytes.len().min(MAX_MESSAGE)),
        "decoding {} gossip bytes allocated {} at peak",
        bytes.len(),
        usage.peak
    );
    if bytes.len() > MAX_MESSAGE {
        prop_assert!(got.is_none(), "an oversized message decoded");
    }
    if let Some(v) = got {
        let again = gossip::encode(&v)
            .ok_or_else(|| TestCaseError::fail("a decoded message does not re-encode"))?;
        let back: T = gossip::decode(&again)
            .ok_or_else(|| TestCaseError::fail("a re-encoded message does not decode"))?;
        prop_assert_eq!(cbor(&back), again);
    }
    Ok(())
}

fn gossip_round_trips<T: Serialize + DeserializeOwned>(v: &T) -> Result<(), TestCaseError> {
    let Some(bytes) = gossip::encode(v) else {
        prop_assert!(
            cbor(v).len() > MAX_MESSAGE,
            "encode refused a message that fits"
        );
        return Ok(());
    };
    let back: T = gossip::decode(&bytes).ok_or_else(|| TestCaseError::fail("refused"))?;
    prop_assert_eq!(cbor(&back), bytes);
    Ok(())
}

fn check_gossip_seeds<T: Serialize + DeserializeOwned>(dir: &'static str) {
    for (i, seed) in seeds(dir).iter().enumerate() {
        let v: T = gossip::decode(seed).unwrap_or_else(|| panic!("{dir} seed {i} does not decode"));
        assert_eq!(&cbor(&v), seed, "{dir} seed {i} re-encodes differently");
    }
}

fn load_report_strategy() -> impl Strategy<Value = LoadReport> {
    let heat = (
        block_id(),
        text(),
        any::<u64>(),
        any::<f64>(),
        any::<bool>(),
    )
        .prop_map(|(id, file, size, heat, extra)| BlockHeat {
            id,
            file,
            size,
            heat,
            extra,
        });
    let file_heat = (text(), any::<f64>(), any::<bool>()).prop_map(|(name, heat, root)| FileHeat {
        name,
        heat,
        root,
    });
    let extra =
        (block_id(), text(), any::<u64>(), peer_list(3)).prop_map(|(id, file, size, base)| {
            ExtraHeld {
                id,
                file,
                size,
                base,
            }
        });
    let state = prop_oneof![
        Just(DecisionState::Published),
        Just(DecisionState::Applied),
        text().prop_map(DecisionState::Skipped),
        text().prop_map(DecisionState::Failed),
    ];
    let outcome =
        (any::<u64>(), any::<u64>(), any::<u32>(), state).prop_map(|(term, seq, idx, state)| {
            Outcome {
                id: DecisionId { term, seq, idx },
                state,
            }
        });
    let role = prop_oneof![
        Just(RoleTag::Follower),
        Just(RoleTag::Candidate),
        Just(RoleTag::Manager)
    ];
    (
        (
            any::<u64>(),
            any::<u64>(),
            any::<[f64; 5]>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (
            proptest::option::of(text()),
            role,
            any::<u64>(),
            any::<u64>(),
        ),
        (
            vec(heat, 0..4),
            vec(file_heat, 0..4),
            vec(extra, 0..4),
            vec((file_key(), any::<u64>()), 0..4),
            vec(outcome, 0..4),
        ),
    )
        .prop_map(
            |(
                (seq, at_ms, f, inflight, used, capacity),
                (zone, role, term, served_blocks),
                (hot_blocks, hot_files, extras, delegations, outcomes),
            )| LoadReport {
                seq,
                at_ms,
                load: f[0],
                bandwidth: f[1],
                meta_rps: f[2],
                block_rps: f[3],
                block_bps: f[4],
                inflight,
                used,
                capacity,
                zone,
                role,
                term,
                served_blocks,
                hot_blocks,
                hot_files,
                extras,
                delegations,
                outcomes,
            },
        )
}

fn vote_strategy() -> impl Strategy<Value = Vote> {
    (any::<u64>(), any_peer(), any_peer(), bytes(64)).prop_map(
        |(term, candidate, voter, signature)| Vote {
            term,
            candidate,
            voter,
            signature,
        },
    )
}

fn manager_strategy() -> impl Strategy<Value = ManagerMsg> {
    prop_oneof![
        any::<u64>().prop_map(|term| ManagerMsg::Candidacy { term }),
        vote_strategy().prop_map(ManagerMsg::Vote),
        (any::<u64>(), any::<u64>(), vec(vote_strategy(), 0..6))
            .prop_map(|(term, beat, cert)| ManagerMsg::Heartbeat { term, beat, cert }),
    ]
}

fn batch_strategy() -> impl Strategy<Value = DecisionBatch> {
    let decision = prop_oneof![
        // Finite heats only: a NaN would not compare equal to itself after the round trip
        // (the planner reads a NaN one as none).
        (block_id(), file_key(), any_peer(), any_peer(), 0.0f64..1e15).prop_map(
            |(block, file, from, to, heat)| Decision::Replicate {
                block,
                file,
                from,
                to,
                heat,
            }
        ),
        (file_key(), any_peer(), any_peer(), any::<u64>()).prop_map(
            |(file, root, to, expires_at)| {
                Decision::Delegate {
                    file,
                    root,
                    to,
                    expires_at,
                }
            }
        ),
        (block_id(), file_key(), any_peer(), any_peer(), any::<u64>()).prop_map(
            |(block, file, from, to, bytes)| Decision::Move {
                block,
                file,
                from,
                to,
                bytes
            }
        ),
        (block_id(), file_key(), any_peer()).prop_map(|(block, file, at)| Decision::Drop {
            block,
            file,
            at
        }),
        (file_key(), any_peer()).prop_map(|(file, at)| Decision::EndDelegation { file, at }),
    ];
    let item = (decision, text()).prop_map(|(decision, name)| Item { decision, name });
    (any::<u64>(), any::<u64>(), any::<u64>(), vec(item, 0..8)).prop_map(
        |(term, seq, now_ms, items)| DecisionBatch {
            term,
            seq,
            now_ms,
            items,
        },
    )
}

fn gossip_tags(names: &[&str]) -> Vec<Vec<u8>> {
    names
        .iter()
        .flat_map(|n| [tag(n, false), tag(n, true)])
        .collect()
}

macro_rules! gossip_decoder {
    ($module:ident, $ty:ty, $dir:literal, $tags:expr, $strategy:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn seeds_round_trip() {
                check_gossip_seeds::<$ty>($dir);
            }

            proptest! {
                #![proptest_config(config())]

                #[test]
                fn arbitrary_messages_never_panic(bytes in arbitrary($dir, $tags)) {
                    check_gossip::<$ty>(&bytes)?;
                }

                #[test]
                fn mutated_seeds_never_panic(bytes in mutated($dir)) {
                    check_gossip::<$ty>(&bytes)?;
                }

                #[test]
                fn valid_messages_round_trip(value in $strategy) {
                    gossip_round_trips::<$ty>(&value)?;
                }
            }
        }
    };
}

gossip_decoder!(
    gossip_load,
    LoadReport,
    "gossip-load",
    // A struct: a map of its fields.
    vec![vec![0xb3, 0x63, b's', b'e', b'q']],
    load_report_strategy()
);
gossip_decoder!(
    gossip_manager,
    ManagerMsg,
    "gossip-manager",
    gossip_tags(&["Candidacy", "Vote", "Heartbeat"]),
    manager_strategy()
);
gossip_decoder!(
    gossip_decisions,
    DecisionBatch,
    "gossip-decisions",
    vec![vec![0xa4, 0x64, b't', b'e', b'r', b'm']],
    batch_strategy()
);

#[test]
fn encode_report_always_fits_and_round_trips() {
    let config = heavy_config();
    let mut runner = proptest::test_runner::TestRunner::new(config);
    runner
        .run(&load_report_strategy(), |r| {
            let bytes = gossip::encode_report(&r);
            prop_assert!(bytes.len() <= MAX_MESSAGE);
            let back: LoadReport =
                gossip::decode(&bytes).ok_or_else(|| TestCaseError::fail("refused"))?;
            prop_assert_eq!(back.seq, r.seq);
            Ok(())
        })
        .expect("encode_report");
}
