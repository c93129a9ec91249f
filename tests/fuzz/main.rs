//! Every decoder of bytes a peer or a file can hand us survives arbitrary and mutated input,
//! on stable Rust under plain `cargo test` (property tests with `proptest`).
//!
//! Decoders: the frame reader (`protocol::codec::read_frame`) and the body decoder
//! (`decode_body`) for each request and response enum of the block, meta and client
//! protocols; the gossip decoder (`protocol::gossip::decode`) for load reports, election
//! messages and decision batches; file records, file states and download notes with their
//! validation (`FileRecord::verify`, `rules::check_state`, `accept_copy`,
//! `check_attestation`, `DownloadNote::verify`); the TOML node config
//! (`NodeSettings::from_toml`) and the swarm key file format.
//!
//! For each, this proves that:
//! * **arbitrary bytes** (random, random CBOR tokens, and random bytes behind a valid variant
//!   tag) never panic and are refused with a clear error (`InvalidData`, "malformed ...");
//! * **mutated valid encodings** (bit flips, byte changes, truncation, extension, insertion,
//!   CBOR length heads rewritten, the frame's length prefix changed) never panic, and a
//!   mutated record or state that still validates says exactly what its signers signed;
//! * **valid values round-trip**: values from strategies and every seed in the committed
//!   corpus decode and re-encode to the same bytes, and a record signed with the library's
//!   own API verifies after the trip;
//! * **memory**: the frame reader refuses an announced length over the kind's limit after at
//!   most one chunk of buffer (`codec::CHUNK`), before a single byte when it is over every kind's
//!   limit, and otherwise buffers only about twice what arrived; decoding a body allocates
//!   in proportion to the body, never to the lengths it announces. Allocations are counted
//!   by this binary's global allocator, per thread.
//!
//! Seed corpus: `tests/fuzz-corpus/<decoder>/`, valid encodings made by
//! [`corpus::corpus_values`] from fixed keys (Ed25519 is deterministic, so the files are
//! reproducible).
//! `SWARMSTORE_FUZZ_WRITE_CORPUS=1 cargo test --test fuzz write_corpus` rewrites them.
//!
//! Cases: a small default per property so the target runs in well under a minute in a debug
//! build; `SWARMSTORE_FUZZ_CASES=N` (or `PROPTEST_CASES=N`) for a longer run.
//!
//! Failing cases that proptest found are kept in `tests/fuzz/fuzz.proptest-regressions` and
//! replayed first by every property (see [`Regressions`]).
//!
//! Layout, one module per decoder family:
//! * this file: the counting allocator, the case counts and proptest config, small helpers;
//! * [`fixtures`], [`corpus`]: the fixed values behind the seed corpus, and the corpus itself;
//! * [`mutation`]: mutations of seeds and arbitrary inputs;
//! * [`strategies`]: strategies for valid ids, records, states, notes and errors;
//! * [`wire`]: the battery every wire enum's body decoder and frame reader must pass;
//! * [`block`], [`meta`], [`client`]: that battery for each protocol's requests and responses;
//! * [`frames`]: the frame reader's memory;
//! * [`gossip`]: load reports, election messages and decision batches;
//! * [`records`]: file records, file states and download notes with their validation;
//! * [`config_files`]: the TOML node config and the swarm key file.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::OnceLock;

use libp2p::identity::Keypair;
use libp2p::PeerId;
use proptest::test_runner::{Config, FailurePersistence, FileFailurePersistence, PersistedSeed};
use serde::Serialize;

mod block;
mod buckets;
mod client;
mod config_files;
mod corpus;
mod fixtures;
mod frames;
mod gossip;
mod meta;
mod mutation;
mod records;
mod strategies;
mod wire;

// ---------------------------------------------------------------------------------------------
// Allocation accounting: this thread's live bytes, their peak and the largest single request,
// counted only while `measure` runs (the property bodies run on the test's own thread).

struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = ON.try_with(|on| {
        if on.get() {
            let live = LIVE.get() + size as isize;
            LIVE.set(live);
            PEAK.set(PEAK.get().max(live));
            LARGEST.set(LARGEST.get().max(size));
        }
    });
}

fn note_free(size: usize) {
    let _ = ON.try_with(|on| {
        if on.get() {
            LIVE.set(LIVE.get() - size as isize);
        }
    });
}

// SAFETY: every call is passed to `System` unchanged; the counters only read sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_free(layout.size());
        note_alloc(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// What a call allocated on this thread: the peak of its live bytes and its largest request.
#[derive(Debug, Clone, Copy)]
struct Usage {
    peak: usize,
    largest: usize,
}

fn measure<R>(f: impl FnOnce() -> R) -> (R, Usage) {
    // The thread's runtime is made before counting starts.
    let _ = runtime();
    LIVE.set(0);
    PEAK.set(0);
    LARGEST.set(0);
    ON.set(true);
    let out = f();
    ON.set(false);
    let usage = Usage {
        peak: PEAK.get().max(0) as usize,
        largest: LARGEST.get(),
    };
    (out, usage)
}

// ---------------------------------------------------------------------------------------------
// Cases and helpers.

/// Cases per property: `SWARMSTORE_FUZZ_CASES`, else `PROPTEST_CASES`, else a default that
/// keeps the whole target well under a minute in a debug build.
fn cases(default: u32) -> u32 {
    ["SWARMSTORE_FUZZ_CASES", "PROPTEST_CASES"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok())
        .unwrap_or(default)
}

/// The file this target's failing cases are saved in and replayed from: one file for the whole
/// target, as when it was the single source file `tests/fuzz.rs`. (Proptest's default,
/// `SourceParallel`, derives the file from each property's source file: beside this `main.rs`
/// that would be a `tests/proptest-regressions/<module>.txt` per module.)
const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fuzz/fuzz.proptest-regressions"
);

/// Proptest's file persistence at [`REGRESSIONS`] for the runners `proptest!` makes (they name
/// their source file). A runner made by hand names none and, as under proptest's default,
/// persists nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Regressions;

impl FailurePersistence for Regressions {
    fn load_persisted_failures2(&self, source_file: Option<&'static str>) -> Vec<PersistedSeed> {
        match source_file {
            Some(_) => FileFailurePersistence::Direct(REGRESSIONS).load_persisted_failures2(None),
            None => Vec::new(),
        }
    }

    fn save_persisted_failure2(
        &mut self,
        source_file: Option<&'static str>,
        seed: PersistedSeed,
        shrunken_value: &dyn std::fmt::Debug,
    ) {
        if source_file.is_some() {
            FileFailurePersistence::Direct(REGRESSIONS).save_persisted_failure2(
                None,
                seed,
                shrunken_value,
            );
        }
    }

    fn box_clone(&self) -> Box<dyn FailurePersistence> {
        Box::new(*self)
    }

    fn eq(&self, other: &dyn FailurePersistence) -> bool {
        other.as_any().is::<Self>()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fn config() -> Config {
    let default = Config::default();
    // Off when proptest's default is off (`PROPTEST_DISABLE_FAILURE_PERSISTENCE`).
    let failure_persistence = default
        .failure_persistence
        .is_some()
        .then(|| Box::new(Regressions) as Box<dyn FailurePersistence>);
    Config {
        cases: cases(1024),
        max_shrink_iters: 2048,
        failure_persistence,
        ..default
    }
}

/// Fewer default cases for the properties that sign or buffer megabytes per case.
fn heavy_config() -> Config {
    Config {
        cases: cases(128),
        ..config()
    }
}

fn cbor<T: Serialize>(v: &T) -> Vec<u8> {
    cbor4ii::serde::to_vec(Vec::new(), v).expect("encodes")
}

fn key(seed: u8) -> Keypair {
    Keypair::ed25519_from_bytes([seed; 32]).expect("ed25519 seed")
}

/// Peers of fixed keys, so strategies and the corpus are reproducible.
fn peers() -> &'static [PeerId] {
    static PEERS: OnceLock<Vec<PeerId>> = OnceLock::new();
    PEERS.get_or_init(|| (1..=8).map(|s| key(s).public().to_peer_id()).collect())
}

fn peer(seed: u8) -> PeerId {
    peers()[usize::from(seed - 1)]
}

const T0: u64 = 1_700_000_000_000;

/// A deterministic filler (xorshift), for inputs too large to draw byte by byte.
fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// This thread's runtime for the frame reader, made once per thread (`measure` makes it before
/// it starts counting).
fn runtime() -> &'static tokio::runtime::Runtime {
    thread_local! {
        static RT: &'static tokio::runtime::Runtime = Box::leak(Box::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("runtime"),
        ));
    }
    RT.with(|rt| *rt)
}
