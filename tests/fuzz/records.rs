//! File records, file states and download notes with their validation (`FileRecord::verify`,
//! `rules::check_state`, `accept_copy`, `check_attestation`, `DownloadNote::verify`): arbitrary
//! and mutated encodings never panic, and what still validates says exactly what its signers
//! signed; records signed with the library's own API round-trip and validate.

use libp2p::PeerId;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::de::DeserializeOwned;

use swarmstore::ids::{BlockId, FileKey};
use swarmstore::protocol::codec::decode_body;
use swarmstore::record::{
    accept_copy, check_state, check_successor, compatible, BlockEntry, DownloadNote, FileRecord,
    FileState, UserEntry, INLINE_MAX, MAX_HOLDERS, MAX_VERSION,
};

use crate::corpus::seeds;
use crate::fixtures::{held_record, note};
use crate::mutation::{arbitrary, mutated};
use crate::strategies::{any_note, any_record, any_state, peer_list};
use crate::wire::decode_allowance;
use crate::{cbor, config, filler, heavy_config, key, measure, peer, T0};

/// Everything the owner signs, as a comparable value.
type Signed = (
    String,
    u64,
    u64,
    u32,
    Vec<(BlockId, u32, Option<Vec<u8>>)>,
    PeerId,
    u64,
    u64,
    bool,
);

fn signed(r: &FileRecord) -> Signed {
    (
        r.name.clone(),
        r.version,
        r.size,
        r.block_size,
        r.blocks
            .iter()
            .map(|b| (b.id, b.len, b.inline.as_ref().map(|i| i.to_vec())))
            .collect(),
        r.owner,
        r.created_ms,
        r.modified_ms,
        r.tombstone,
    )
}

fn decode_as<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let (got, usage) = measure(|| decode_body::<T>(bytes, "value"));
    assert!(
        usage.peak <= decode_allowance(bytes.len()),
        "decoding {} bytes allocated {} at peak",
        bytes.len(),
        usage.peak
    );
    got.ok()
}

/// A record from any bytes: validation never panics, and a record that verifies says exactly
/// what one of the seeds' owners signed.
fn check_record(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Some(r) = decode_as::<FileRecord>(bytes) else {
        return Ok(());
    };
    let seeds: Vec<FileRecord> = seeds("record")
        .iter()
        .filter_map(|s| cbor4ii::serde::from_slice(s).ok())
        .collect();
    if r.verify().is_ok() {
        prop_assert!(
            seeds.iter().any(|s| signed(s) == signed(&r)),
            "a record no owner signed verifies: {:?}",
            r
        );
    }
    for s in &seeds {
        let held = FileState {
            versions: vec![s.clone()],
            ..FileState::empty()
        };
        let _ = check_successor(&held, &r);
    }
    let _ = check_successor(&FileState::empty(), &r);
    Ok(())
}

/// The attested content of a state: what the owners and the attester signed.
/// Owner-signed versions, holder lists per version and block, revision, users.
type Covered = (Vec<Signed>, Vec<Vec<Vec<PeerId>>>, u64, Vec<UserEntry>);

fn covered(s: &FileState) -> Covered {
    (
        s.versions.iter().map(signed).collect(),
        s.versions
            .iter()
            .map(|r| r.blocks.iter().map(|b| b.holders.clone()).collect())
            .collect(),
        s.rev,
        s.users.clone(),
    )
}

fn check_file_state(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Some(s) = decode_as::<FileState>(bytes) else {
        return Ok(());
    };
    let originals: Vec<FileState> = seeds("state")
        .iter()
        .filter_map(|b| cbor4ii::serde::from_slice(b).ok())
        .collect();
    let key = FileKey::for_name("hello.txt");
    let valid = check_state(&key, &s).is_ok();
    let attested = s.check_attestation(&key, T0 + 10_000).is_ok();
    if valid && attested {
        prop_assert!(
            originals.iter().any(|o| covered(o) == covered(&s)),
            "a state nobody signed passes: {:?}",
            s
        );
    }
    for o in &originals {
        let _ = accept_copy(Some(o), &s);
        let _ = accept_copy(Some(&s), o);
        let _ = compatible(o, &s);
        let _ = check_successor(o, s.head().unwrap_or(&held_record()));
        let _ = check_successor(&s, o.head().unwrap_or(&held_record()));
    }
    let _ = accept_copy(None, &s);
    if let Some(head) = s.head() {
        let _ = check_state(&head.key(), &s);
    }
    Ok(())
}

fn check_note(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Some(n) = decode_as::<DownloadNote>(bytes) else {
        return Ok(());
    };
    let original = note();
    if n.verify(&original.key, original.at_ms).is_ok() {
        prop_assert_eq!(
            (n.key, n.reader, n.at_ms),
            (original.key, original.reader, original.at_ms)
        );
    }
    let _ = n.verify(&n.key, n.at_ms);
    let _ = n.verify(&FileKey::for_name("hello.txt"), u64::MAX);
    Ok(())
}

/// A valid record built with the library's own API: any name, version, block layout and
/// holder list.
fn signed_record() -> impl Strategy<Value = (FileRecord, u8)> {
    (
        "[a-zA-Z0-9 ./_-]{1,64}",
        1..=MAX_VERSION,
        1u32..=4096,
        0u64..=16384,
        any::<bool>(),
        vec(peer_list(MAX_HOLDERS), 1..8),
        1u8..=8,
        any::<u64>(),
    )
        .prop_map(
            |(name, version, block_size, size, inline, holders, owner, seed)| {
                let size = size.min(u64::from(block_size) * 6);
                let inline = inline && size > 0 && size <= u64::from(block_size.min(INLINE_MAX));
                let blocks = if inline {
                    vec![BlockEntry::inline(filler(seed, size as usize))]
                } else {
                    let mut left = size;
                    let mut out = Vec::new();
                    let mut i = 0;
                    while left > 0 {
                        let len = left.min(u64::from(block_size)) as u32;
                        let data = filler(seed.wrapping_add(i), len as usize);
                        out.push(BlockEntry::held(
                            BlockId::of(&data),
                            len,
                            holders[i as usize % holders.len()].clone(),
                        ));
                        left -= u64::from(len);
                        i += 1;
                    }
                    out
                };
                let mut r = FileRecord {
                    name,
                    version,
                    size,
                    block_size,
                    blocks,
                    owner: PeerId::random(),
                    owner_key: vec![],
                    created_ms: seed % T0,
                    modified_ms: seed % T0 + 1,
                    tombstone: false,
                    sealed: None,
                    signature: vec![],
                };
                r.sign(&key(owner)).expect("sign");
                (r, owner)
            },
        )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_records_never_panic(bytes in arbitrary("record", vec![vec![0xab, 0x64, b'n', b'a', b'm', b'e']])) {
        check_record(&bytes)?;
    }

    #[test]
    fn mutated_records_are_refused_unless_the_owner_signed_them(bytes in mutated("record")) {
        check_record(&bytes)?;
    }

    #[test]
    fn random_records_do_not_verify(r in any_record()) {
        let bytes = cbor(&r);
        let back: FileRecord = decode_as(&bytes).ok_or_else(|| TestCaseError::fail("refused"))?;
        prop_assert_eq!(&back, &r);
        prop_assert!(r.verify().is_err(), "an unsigned record verifies");
    }

    #[test]
    fn arbitrary_states_never_panic(bytes in arbitrary("state", vec![vec![0xa4, 0x68, b'v', b'e', b'r', b's', b'i', b'o', b'n', b's']])) {
        check_file_state(&bytes)?;
    }

    #[test]
    fn mutated_states_are_refused_unless_their_signers_signed_them(bytes in mutated("state")) {
        check_file_state(&bytes)?;
    }

    #[test]
    fn random_states_round_trip_and_are_refused(s in any_state()) {
        let bytes = cbor(&s);
        let back: FileState = decode_as(&bytes).ok_or_else(|| TestCaseError::fail("refused"))?;
        prop_assert_eq!(&back, &s);
        let key = FileKey::for_name("hello.txt");
        prop_assert!(
            check_state(&key, &s).is_err() || s.check_attestation(&key, u64::MAX).is_err(),
            "a random state passes"
        );
    }

    #[test]
    fn arbitrary_notes_never_panic(bytes in arbitrary("note", vec![vec![0xa4, 0x63, b'k', b'e', b'y']])) {
        check_note(&bytes)?;
    }

    #[test]
    fn mutated_notes_are_refused_unless_the_reader_signed_them(bytes in mutated("note")) {
        check_note(&bytes)?;
    }

    #[test]
    fn random_notes_round_trip_and_are_refused(n in any_note()) {
        let back: DownloadNote = decode_as(&cbor(&n)).ok_or_else(|| TestCaseError::fail("refused"))?;
        prop_assert_eq!(&back, &n);
        prop_assert!(n.verify(&n.key, n.at_ms).is_err());
    }
}

proptest! {
    #![proptest_config(heavy_config())]

    /// A record signed with the library's API round-trips, verifies, and makes a valid,
    /// attested one-version state; any change to a signed field breaks the signature.
    #[test]
    fn signed_records_round_trip_and_validate((r, owner) in signed_record(), field in 0usize..6) {
        let bytes = cbor(&r);
        let back: FileRecord = decode_as(&bytes).ok_or_else(|| TestCaseError::fail("refused"))?;
        prop_assert_eq!(&back, &r);
        back.verify().map_err(|e| TestCaseError::fail(format!("signed record refused: {e}")))?;
        prop_assert_eq!(back.owner, peer(owner));

        let mut s = FileState::empty();
        s.push(back.clone(), 3);
        s.rev = T0;
        s.attest(&back.key(), &key(9));
        let bytes = cbor(&s);
        let s: FileState = decode_as(&bytes).ok_or_else(|| TestCaseError::fail("state refused"))?;
        check_state(&back.key(), &s).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(s.check_attestation(&back.key(), T0), Ok(key(9).public().to_peer_id()));
        prop_assert!(check_state(&FileKey([0; 32]), &s).is_err(), "a state under another key");

        let mut t = back;
        match field {
            0 => t.name.push('x'),
            1 => t.version = t.version % MAX_VERSION + 1,
            2 => t.created_ms ^= 1,
            3 => t.modified_ms ^= 1,
            4 => t.owner = peer(owner % 8 + 1),
            _ => t.signature[0] ^= 1,
        }
        prop_assert!(t.verify().is_err(), "changed field {} still verifies", field);
    }
}

#[test]
fn record_seeds_round_trip_and_validate() {
    for (dir, n) in [("record", 5), ("state", 2), ("note", 1)] {
        let s = seeds(dir);
        assert_eq!(s.len(), n, "{dir} seeds");
    }
    for seed in seeds("record").iter() {
        let r: FileRecord = cbor4ii::serde::from_slice(seed).expect("record seed");
        assert_eq!(&cbor(&r), seed);
        r.verify().expect("record seed verifies");
    }
    for seed in seeds("state").iter() {
        let s: FileState = cbor4ii::serde::from_slice(seed).expect("state seed");
        assert_eq!(&cbor(&s), seed);
        let key = FileKey::for_name("hello.txt");
        check_state(&key, &s).expect("state seed is valid");
        s.check_attestation(&key, T0 + 10_000)
            .expect("state seed is attested");
    }
    let n: DownloadNote = cbor4ii::serde::from_slice(&seeds("note")[0]).expect("note seed");
    n.verify(&n.key, n.at_ms).expect("note seed verifies");
}
