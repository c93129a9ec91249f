//! The wire spec and the code cannot drift: every fenced block of `docs/PROTOCOL.md` whose
//! info string starts with `cbor ` holds CBOR as hex (whitespace and `#` comments, the
//! comments in diagnostic notation), and this test decodes each one with the codec's own
//! decoder (`protocol::codec::decode_body`), checks the decoded value field by field against
//! the value the spec says it is (compared as JSON, where ids are full hex and peer ids
//! base58), and re-encodes it to the very same bytes. Blocks tagged `cbor-also <example>: why`
//! must decode to that example's value from another encoding; blocks tagged
//! `cbor-invalid <type>: why` must be refused.
//!
//! It fails when a request or response variant (the `KINDS` lists of the request enums, and
//! exhaustive matches for the other enums, so a new variant breaks this target's build) has no
//! example in the spec, when an example is missing, or when the spec carries a block this test
//! does not know.
//!
//! The signatures in the examples are real: every key is a fixed Ed25519 seed and Ed25519 is
//! deterministic, so the record, attestation and download-note examples pass the code's own
//! verification, and the spec's "signed bytes" blocks are compared with what is signed. The
//! worked example's roles (root, replicas, holders) are checked against XOR placement.
//!
//! `SPEC_DUMP=1 cargo test --test spec -- --nocapture` prints every example in the spec's
//! block format, comments included: how to write the block for a new message.
//!
//! Layout: this file holds the tests; [`fixtures`] the fixed keys and values, [`names`] the
//! variant names, [`examples`] the examples the spec must carry, [`reading`] the spec's block
//! reader, [`diag`] the diagnostic notation of the dump.

use std::collections::{BTreeMap, BTreeSet};

use libp2p::PeerId;

use swarmstore::protocol::block::BlockRequest;
use swarmstore::protocol::client::ClientRequest;
use swarmstore::protocol::codec::decode_body;
use swarmstore::protocol::meta::MetaRequest;

use crate::diag::diag;
use crate::examples::{examples, Example};
use crate::fixtures::{block_id, file_key, peer, A, B, C, H1, H2};
use crate::names::{
    BLOCK_RESPONSES, CLIENT_RESPONSES, MANAGER_MSGS, META_RESPONSES, RECORD_ERRORS,
};
use crate::reading::{refused, spec_blocks, Block, Claim};

mod diag;
mod examples;
mod fixtures;
mod names;
mod reading;

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md");

#[test]
fn every_message_in_the_spec_decodes_to_what_the_spec_says() {
    let examples = examples();
    if std::env::var_os("SPEC_DUMP").is_some() {
        for e in &examples {
            println!("```cbor {}\n{}```\n", e.tag, diag(&e.bytes));
        }
    }
    let text = std::fs::read_to_string(SPEC).unwrap();
    let blocks = spec_blocks(&text);
    let by_tag: BTreeMap<&str, &Example> = examples.iter().map(|e| (e.tag.as_str(), e)).collect();
    let mut failures = Vec::new();
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for Block {
        claim,
        tag,
        bytes,
        line,
    } in &blocks
    {
        if *claim == Claim::Invalid {
            match refused(tag, bytes) {
                Ok(true) => {}
                Ok(false) => failures.push(format!("{SPEC}:{line}: `{tag}` is read, not refused")),
                Err(why) => failures.push(format!("{SPEC}:{line}: {why}")),
            }
            continue;
        }
        let Some(e) = by_tag.get(tag.as_str()) else {
            failures.push(format!("{SPEC}:{line}: unknown example `{tag}`"));
            continue;
        };
        match (e.check)(bytes, *claim == Claim::Exact) {
            Ok(variant) if *claim == Claim::Exact => {
                let ty = tag.split("::").next().unwrap_or(tag).to_string();
                seen.entry(ty).or_default().insert(variant);
            }
            Ok(_) => {}
            Err(why) => failures.push(format!("{SPEC}:{line}: `{tag}` {why}")),
        }
    }
    let present: BTreeSet<&str> = blocks
        .iter()
        .filter(|b| b.claim == Claim::Exact)
        .map(|b| b.tag.as_str())
        .collect();
    for e in &examples {
        if !present.contains(e.tag.as_str()) {
            failures.push(format!("{SPEC}: no example `{}`", e.tag));
        }
    }
    // Every variant of every request and response enum has an example.
    let must: [(&str, Vec<&str>); 8] = [
        ("BlockRequest", BlockRequest::KINDS.to_vec()),
        ("BlockResponse", BLOCK_RESPONSES.to_vec()),
        ("MetaRequest", MetaRequest::KINDS.to_vec()),
        ("MetaResponse", META_RESPONSES.to_vec()),
        ("ClientRequest", ClientRequest::KINDS.to_vec()),
        ("ClientResponse", CLIENT_RESPONSES.to_vec()),
        ("RecordError", RECORD_ERRORS.to_vec()),
        ("ManagerMsg", MANAGER_MSGS.to_vec()),
    ];
    for (ty, variants) in must {
        let got = seen.get(ty).cloned().unwrap_or_default();
        for v in variants {
            if !got.contains(v) {
                failures.push(format!("{SPEC}: no example of {ty} `{v}`"));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_worked_example_follows_placement_and_the_spec_names_the_fixture_peers() {
    use swarmstore::ids::{distance, peer_point};
    // Placement's rule (`placement::closest`): XOR distance of SHA-256(peer id) to the point.
    let by_distance = |target: [u8; 32]| {
        let mut nodes: Vec<PeerId> = [A, B, H1, H2].into_iter().map(peer).collect();
        nodes.sort_by_key(|p| distance(&peer_point(p), &target));
        nodes
    };
    let set = by_distance(file_key().0);
    assert_eq!(
        set[..2],
        [peer(B), peer(A)],
        "replica set of hello.txt, root first"
    );
    let holders = by_distance(block_id().kad_point());
    assert_eq!(holders[..2], [peer(H1), peer(H2)], "placement of the block");
    let text = std::fs::read_to_string(SPEC).unwrap();
    for (name, seed) in [("C", C), ("A", A), ("B", B), ("H1", H1), ("H2", H2)] {
        let bytes = hex::encode(&peer(seed).to_bytes()[6..]);
        let row = format!("| {name} | `{}` | `002408011220 {bytes}` |", peer(seed));
        assert!(text.contains(&row), "the spec's peer table lacks {row}");
    }
}

#[test]
fn the_spec_parser_reads_comments_and_claims() {
    let text = "x\n```cbor BlockRequest::Get\na1 # map(1)\n  63 476574 # \"Get\"\n```\n\
                ```cbor-invalid BlockId: too short\n41 00\n```\n";
    let blocks = spec_blocks(text);
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].claim, Claim::Exact);
    assert_eq!(blocks[0].tag, "BlockRequest::Get");
    assert_eq!(blocks[0].bytes, hex::decode("a163476574").unwrap());
    assert_eq!(blocks[1].claim, Claim::Invalid);
    assert_eq!(blocks[1].tag, "BlockId");
    assert_eq!(refused("BlockId", &blocks[1].bytes), Ok(true));
    // Truncated bytes are a decode error, never a panic.
    assert!(decode_body::<BlockRequest>(&blocks[0].bytes, "request").is_err());
}
