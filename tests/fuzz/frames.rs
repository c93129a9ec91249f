//! The frame reader's memory: what an announced length may make it buffer, for every kind of
//! the six wire enums. Over every limit: refused before the body; over its kind's limit:
//! refused after at most one chunk; within it: buffered only about twice what arrived.

use std::io;

use proptest::prelude::*;
use serde::de::DeserializeOwned;

use swarmstore::protocol::block::{BlockRequest, BlockResponse};
use swarmstore::protocol::client::{ClientRequest, ClientResponse};
use swarmstore::protocol::codec::CHUNK;
use swarmstore::protocol::limits::FrameKinds;
use swarmstore::protocol::meta::{MetaRequest, MetaResponse};

use crate::mutation::encode_head;
use crate::strategies::bytes;
use crate::wire::read_all;
use crate::{config, filler, heavy_config, measure};

/// Bytes any one read may allocate for itself, whatever the frame announces.
const FIXED_OVERHEAD: usize = 1024;

/// Every (enum, kind, limit) of the six wire enums, with the reader for that enum.
type Reader = fn(Vec<u8>) -> io::Result<()>;

fn reader_of<T: DeserializeOwned + FrameKinds>() -> Reader {
    |stream| read_all::<T>(stream, usize::MAX).map(|_| ())
}

fn kinds() -> Vec<(&'static str, &'static str, usize, usize, Reader)> {
    let mut out = Vec::new();
    let mut add = |kinds: swarmstore::protocol::limits::Kinds, read: Reader| {
        let max = kinds.max();
        for (name, limit) in kinds.limits {
            out.push((kinds.what, *name, *limit, max, read));
        }
    };
    add(BlockRequest::LIMITS, reader_of::<BlockRequest>());
    add(BlockResponse::LIMITS, reader_of::<BlockResponse>());
    add(MetaRequest::LIMITS, reader_of::<MetaRequest>());
    add(MetaResponse::LIMITS, reader_of::<MetaResponse>());
    add(ClientRequest::LIMITS, reader_of::<ClientRequest>());
    add(ClientResponse::LIMITS, reader_of::<ClientResponse>());
    out
}

/// The tag a body of kind `name` starts with (a map for the variants that carry fields, a
/// string for the rest; the reader's limit applies to both).
pub(crate) fn tag(name: &str, map: bool) -> Vec<u8> {
    let mut t = if map { vec![0xa1] } else { vec![] };
    t.extend(encode_head(3, name.len() as u64));
    t.extend_from_slice(name.as_bytes());
    t
}

proptest! {
    #![proptest_config(config())]

    /// Over every kind's limit: refused from the prefix alone, nothing buffered.
    #[test]
    fn a_length_over_every_limit_is_refused_before_the_body(
        which in any::<usize>(),
        over in any::<u32>(),
        tail in bytes(64),
    ) {
        let all = kinds();
        let (what, _, _, max, read) = all[which % all.len()];
        let Some(room) = (u32::MAX as usize).checked_sub(max).filter(|r| *r > 0) else {
            return Ok(());
        };
        let len = max + 1 + (over as usize % room);
        let mut stream = (len as u32).to_be_bytes().to_vec();
        stream.extend(tail);
        let (got, usage) = measure(|| read(stream));
        let err = got.expect_err("refused");
        prop_assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        prop_assert!(err.to_string().contains("exceeds the"), "{}: {}", what, err);
        prop_assert!(usage.largest < 1024, "{}: allocated {} for a refused prefix", what, usage.largest);
    }

    /// Over its own kind's limit (but under another kind's): refused after the first chunk,
    /// at most [`CHUNK`] buffered, before the rest of the body arrives.
    #[test]
    fn a_length_over_its_kinds_limit_is_refused_after_one_chunk(
        which in any::<usize>(),
        over in any::<u64>(),
        map in any::<bool>(),
        seed in any::<u64>(),
        sent in 0usize..(3 * CHUNK),
    ) {
        let all: Vec<_> = kinds().into_iter().filter(|k| k.2 < k.3).collect();
        let (what, name, limit, max, read) = all[which % all.len()];
        let len = limit + 1 + (over as usize % (max - limit));
        let mut stream = (len as u32).to_be_bytes().to_vec();
        stream.extend(tag(name, map));
        stream.extend(filler(seed, sent));
        let (got, usage) = measure(|| read(stream));
        let err = got.expect_err("refused");
        let want = format!("{what} {name} frame of {len} bytes exceeds the {limit}-byte limit");
        prop_assert!(err.to_string().contains(&want), "{} (wanted {})", err, want);
        prop_assert!(usage.largest <= CHUNK, "{} {}: one allocation of {}", what, name, usage.largest);
        prop_assert!(usage.peak <= CHUNK + 4096, "{} {}: {} bytes at peak", what, name, usage.peak);
    }
}

proptest! {
    #![proptest_config(heavy_config())]

    /// Within the kind's limit, a sender that announces much and sends little makes the reader
    /// buffer only about twice what it sent (at least one chunk), never the announced length.
    #[test]
    fn a_short_stream_is_buffered_only_as_it_arrives(
        which in any::<usize>(),
        len_pick in any::<u64>(),
        map in any::<bool>(),
        seed in any::<u64>(),
        sent_pick in any::<usize>(),
    ) {
        let all = kinds();
        let (what, name, limit, _, read) = all[which % all.len()];
        let head = tag(name, map);
        let sent = sent_pick % (limit - head.len() - 1).min(1 << 20);
        let room = limit - head.len() - sent;
        let len = head.len() + sent + 1 + (len_pick as usize % room);
        let mut stream = (len as u32).to_be_bytes().to_vec();
        stream.extend(head);
        stream.extend(filler(seed, sent));
        let arrived = stream.len() - 4;
        let (got, usage) = measure(|| read(stream));
        let err = got.expect_err("the stream ends early");
        prop_assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{}", err);
        // Plus a constant floor: the reader's own bookkeeping (its budget lease, the error it
        // returns, the runtime's) takes a few hundred bytes whatever was announced, which for a
        // frame announcing ~100 bytes is more than the frame (a 10-minute run found a 404-byte
        // allocation for a 130-byte frame).
        let bound = CHUNK.max(2 * arrived).min(len).max(FIXED_OVERHEAD);
        prop_assert!(
            usage.largest <= bound,
            "{} {} of {} announced bytes, {} sent: one allocation of {} (bound {})",
            what, name, len, arrived, usage.largest, bound
        );
    }
}
