//! The battery every wire enum's decoder must pass ([`wire_decoder`]): the body decoder
//! (`decode_body`) on arbitrary and mutated bodies, within its memory allowance; the frame
//! reader (`read_frame`) on mutated frames and arbitrary streams; valid values and every seed
//! round-tripping through both.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::de::DeserializeOwned;
use serde::Serialize;

use swarmstore::protocol::codec::{decode_body, encode_frame, read_frame, CHUNK};
use swarmstore::protocol::limits::FrameKinds;
use swarmstore::protocol::Budget;

use crate::corpus::seeds;
use crate::{cbor, measure, runtime};

/// A body of `n` bytes may make the decoder allocate this much at most: a fixed allowance
/// (error messages, the decoder's own state) plus a multiple of the body. The multiple is the
/// largest element of any sequence in a message: serde reserves a `Vec` for its announced
/// count before reading an element (up to 1 MiB), `counts_fit` holds that count to the bytes
/// left, so each byte of body can reserve one element, and a `FileRecord` (the element of a
/// state's `versions`) is a few hundred bytes in memory. A 10-minute run found a 1195-byte
/// state reserving 221 KB that way, over the old 128-per-byte allowance.
pub(crate) fn decode_allowance(n: usize) -> usize {
    let element = std::mem::size_of::<swarmstore::record::FileRecord>().max(128);
    64 * 1024 + element * n
}

pub(crate) fn check_body<T: Serialize + DeserializeOwned + FrameKinds>(
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    let what = T::LIMITS.what;
    let (got, usage) = measure(|| decode_body::<T>(bytes, what));
    prop_assert!(
        usage.peak <= decode_allowance(bytes.len()),
        "decoding {} bytes allocated {} at peak ({usage:?})",
        bytes.len(),
        usage.peak
    );
    match got {
        Err(e) => {
            prop_assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            let text = e.to_string();
            let prefix = format!("malformed {what}: ");
            prop_assert!(text.starts_with(&prefix), "{}", text);
            prop_assert!(text.len() > prefix.len(), "an empty reason");
        }
        Ok(v) => {
            // Whatever decodes re-encodes stably.
            let again = cbor(&v);
            let back: T = decode_body(&again, what).map_err(|e| {
                TestCaseError::fail(format!("re-encoded value does not decode: {e}"))
            })?;
            prop_assert_eq!(cbor(&back), again);
        }
    }
    Ok(())
}

pub(crate) fn round_trips<T: Serialize + DeserializeOwned + FrameKinds>(
    value: &T,
) -> Result<(), TestCaseError> {
    let bytes = cbor(value);
    let back: T = decode_body(&bytes, T::LIMITS.what)
        .map_err(|e| TestCaseError::fail(format!("valid value refused: {e}")))?;
    prop_assert_eq!(cbor(&back), bytes.clone());
    // And as a whole frame through the reader.
    if let Ok(frame) = encode_frame(value, usize::MAX) {
        let got = read_all::<T>(frame, usize::MAX)
            .map_err(|e| TestCaseError::fail(format!("frame refused: {e}")))?;
        prop_assert_eq!(cbor(&got), bytes);
    }
    Ok(())
}

fn budget() -> Arc<Budget> {
    Arc::new(Budget::new(
        swarmstore::protocol::budget::PER_PEER,
        swarmstore::protocol::budget::PER_NODE,
        Duration::from_millis(20),
    ))
}

/// Reads one frame of `T` from an in-memory stream, on this thread.
pub(crate) fn read_all<T: DeserializeOwned + FrameKinds>(
    stream: Vec<u8>,
    ceiling: usize,
) -> io::Result<T> {
    let b = budget();
    let mut io = futures::io::Cursor::new(stream);
    let got = runtime().block_on(read_frame::<T, _>(&mut io, ceiling, &b, None));
    assert_eq!(b.used(), 0, "the reader gave its budget back");
    got
}

pub(crate) fn frame_of(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// The frame reader on any stream: never panics, never buffers more than twice what arrived
/// (at least one chunk), gives its budget back; a frame it accepts is what `decode_body` says.
pub(crate) fn check_stream<T: Serialize + DeserializeOwned + FrameKinds>(
    stream: Vec<u8>,
) -> Result<(), TestCaseError> {
    let n = stream.len();
    // The body the reader sees: the announced length, no more.
    let body = stream.get(..4).map(|p| {
        let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
        stream[4..(4usize.saturating_add(len)).min(n)].to_vec()
    });
    let (got, usage) = measure(|| read_all::<T>(stream, usize::MAX));
    prop_assert!(
        usage.largest <= CHUNK.max(2 * n) + decode_allowance(n),
        "a {n}-byte stream made the reader allocate {} at once",
        usage.largest
    );
    if let (Ok(v), Some(body)) = (got, body) {
        let direct: T = decode_body(&body[..], T::LIMITS.what).map_err(|e| {
            TestCaseError::fail(format!("reader took what the decoder refuses: {e}"))
        })?;
        prop_assert_eq!(cbor(&v), cbor(&direct));
    }
    Ok(())
}

pub(crate) fn check_seeds<T: Serialize + DeserializeOwned + FrameKinds>(dir: &'static str) {
    for (i, seed) in seeds(dir).iter().enumerate() {
        let v: T = decode_body(seed, T::LIMITS.what).unwrap_or_else(|e| {
            panic!("{dir} seed {i} does not decode ({e}); regenerate with SWARMSTORE_FUZZ_WRITE_CORPUS=1")
        });
        assert_eq!(
            &cbor(&v),
            seed,
            "{dir} seed {i} re-encodes differently; regenerate with SWARMSTORE_FUZZ_WRITE_CORPUS=1"
        );
        let frame = encode_frame(&v, usize::MAX).expect("seed fits its frame");
        assert_eq!(&frame[4..], &seed[..]);
        let back: T = read_all(frame, usize::MAX).expect("seed frame reads");
        assert_eq!(&cbor(&back), seed);
    }
}

/// The whole battery for one wire enum, as a module of tests named `$module` where it is
/// invoked (the enum, its strategy and proptest's prelude resolve there).
macro_rules! wire_decoder {
    ($module:ident, $ty:ty, $dir:literal, $strategy:expr) => {
        mod $module {
            use super::*;
            use crate::config;
            use crate::mutation::{arbitrary, mutated, variant_tags};
            use crate::wire::{check_body, check_seeds, check_stream, frame_of, round_trips};
            use proptest::collection::vec;

            #[test]
            fn seeds_round_trip() {
                check_seeds::<$ty>($dir);
            }

            proptest! {
                #![proptest_config(config())]

                #[test]
                fn arbitrary_bodies_never_panic(bytes in arbitrary($dir, variant_tags::<$ty>())) {
                    check_body::<$ty>(&bytes)?;
                }

                #[test]
                fn mutated_seeds_never_panic(bytes in mutated($dir)) {
                    check_body::<$ty>(&bytes)?;
                }

                #[test]
                fn mutated_frames_never_panic(
                    body in mutated($dir),
                    // The length prefix: the body's own, off by a little, or anything.
                    prefix in prop_oneof![
                        2 => (-64i64..=64).prop_map(Err),
                        1 => any::<u32>().prop_map(Ok),
                    ],
                ) {
                    let mut frame = frame_of(&body);
                    let len = match prefix {
                        Err(delta) => (body.len() as i64 + delta).clamp(0, i64::from(u32::MAX)) as u32,
                        Ok(any) => any,
                    };
                    frame[..4].copy_from_slice(&len.to_be_bytes());
                    check_stream::<$ty>(frame)?;
                }

                #[test]
                fn arbitrary_streams_never_panic(stream in vec(any::<u8>(), 0..300)) {
                    check_stream::<$ty>(stream)?;
                }

                #[test]
                fn valid_values_round_trip(value in $strategy) {
                    round_trips::<$ty>(&value)?;
                }
            }
        }
    };
}

pub(crate) use wire_decoder;
