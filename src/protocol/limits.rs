//! Frame-size limits per message kind, and how a frame's kind is told from its first bytes.
//!
//! One limit per protocol was the 64 MiB a file state may need, so a stranger could make a
//! node buffer 64 MiB for a `Fetch` that is a few hundred bytes when honest. Only frames that
//! carry block bytes or whole file records/states are large; lists bounded by the node's own
//! checks (`Has`, `Digest`) are medium; everything else is small. A reader learns the kind from
//! the first bytes of the body (see [`peek_variant`]) and refuses the frame as soon as its
//! announced length is over that kind's limit, before buffering more than a first chunk.
//!
//! Every variant of every request and response enum has an entry (a unit test enumerates the
//! variants through serde, so a new variant without a limit fails the build's tests).

use crate::record::MAX_BLOCK_SIZE;

/// A small message: ids, a name, a note, a handful of peers, an error string.
pub const SMALL: usize = 64 * 1024;
/// A list the node caps by count: `Has` (8192 ids, ~280 KiB) and `Digest` (8192 entries,
/// ~450 KiB), with room for another encoder's less compact CBOR.
pub const LIST: usize = 1024 * 1024;
/// Lists that grow with the swarm (`Status`, `Peers`): ~200 bytes per peer, so a few
/// thousand peers.
pub const SWARM_LIST: usize = 4 * 1024 * 1024;
/// One block plus its envelope (id, file name of at most 1 KiB, CBOR headers).
pub const BLOCK: usize = MAX_BLOCK_SIZE as usize + 64 * 1024;
/// A file record or a whole file state (retained versions, holder lists, users): records of
/// files up to ~100 GiB (1 MiB blocks, 3 holders each) with a few retained versions.
pub const STATE: usize = 64 * 1024 * 1024;

/// The limits of one message enum: each variant's name (as serde encodes it) and its limit.
#[derive(Debug)]
pub struct Kinds {
    /// What the enum is, for error messages ("meta request").
    pub what: &'static str,
    pub limits: &'static [(&'static str, usize)],
}

impl Kinds {
    /// The limit of the variant named `name`, or `None` for a name the enum does not have.
    pub fn limit_of(&self, name: &str) -> Option<usize> {
        self.limits
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, limit)| *limit)
    }

    /// The largest limit of any variant: an announced length over it is refused before a
    /// single body byte is read.
    pub fn max(&self) -> usize {
        self.limits.iter().map(|(_, l)| *l).max().unwrap_or(0)
    }
}

/// A wire enum whose frames have limits per kind.
pub trait FrameKinds {
    const LIMITS: Kinds;
}

macro_rules! kinds {
    ($ty:ty, $what:literal, [$(($name:literal, $limit:expr)),* $(,)?]) => {
        impl FrameKinds for $ty {
            const LIMITS: Kinds = Kinds {
                what: $what,
                limits: &[$(($name, $limit)),*],
            };
        }
    };
}

use super::{block, client, meta};

kinds!(
    block::BlockRequest,
    "block request",
    [
        ("Put", BLOCK),
        ("PutChain", BLOCK),
        ("Get", SMALL),
        ("Has", LIST),
        ("Pull", SMALL),
        ("Prove", SMALL),
    ]
);
kinds!(
    block::BlockResponse,
    "block response",
    [
        ("Stored", SMALL),
        ("StoredBy", SMALL),
        ("Data", BLOCK),
        ("NotFound", SMALL),
        ("Have", LIST),
        ("Proofs", SMALL),
        ("Error", SMALL),
    ]
);
kinds!(
    meta::MetaRequest,
    "meta request",
    [
        ("Publish", STATE),
        ("Replicate", STATE),
        ("Digest", LIST),
        ("SetHolders", SMALL),
        ("Fetch", SMALL),
        ("DelegateState", STATE),
    ]
);
kinds!(
    meta::MetaResponse,
    "meta response",
    [
        ("Published", SMALL),
        ("Replicated", SMALL),
        ("HoldersSet", SMALL),
        ("Digest", LIST),
        ("State", STATE),
        ("Rejected", SMALL),
        ("Error", SMALL),
    ]
);
kinds!(
    client::ClientRequest,
    "client request",
    [
        ("PutBlock", BLOCK),
        ("Publish", STATE),
        ("Fetch", SMALL),
        ("GetBlock", SMALL),
        ("Status", SMALL),
        ("Peers", SMALL),
    ]
);
kinds!(
    client::ClientResponse,
    "client response",
    [
        ("BlockStored", SMALL),
        ("Published", SMALL),
        ("File", STATE),
        ("Block", BLOCK),
        ("Status", SWARM_LIST),
        ("Peers", SWARM_LIST),
        ("NotFound", SMALL),
        ("Rejected", SMALL),
        ("Error", SMALL),
    ]
);

/// What the first bytes of a frame body say about its kind.
#[derive(Debug, PartialEq, Eq)]
pub enum Peek<'a> {
    /// The variant name (serde's external tag).
    Variant(&'a str),
    /// Not enough bytes yet to tell.
    More,
    /// Not an externally tagged enum value.
    Malformed(&'static str),
}

/// Reads a CBOR head (major type and argument) at the start of `b`: `None` when more bytes
/// are needed, `Err` for indefinite lengths and reserved values (serde's encoders never write
/// them for a tag; another encoder must not either, see docs/PROTOCOL.md).
fn head(b: &[u8]) -> Option<Result<(u8, u64, usize), &'static str>> {
    let first = *b.first()?;
    let (major, info) = (first >> 5, first & 0x1f);
    let width = match info {
        0..=23 => return Some(Ok((major, u64::from(info), 1))),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return Some(Err("indefinite or reserved CBOR length")),
    };
    let arg = b.get(1..1 + width)?;
    let value = arg.iter().fold(0u64, |v, byte| (v << 8) | u64::from(*byte));
    Some(Ok((major, value, 1 + width)))
}

/// Checks that no array or map in `body` announces more items than bytes are left after its
/// head (every item takes at least one), and that no string runs past the end.
///
/// serde sizes a `Vec` from the announced count (up to 1 MiB of elements), so without this a
/// 20-byte message announcing 2^32 peer ids made the decoder allocate 1 MiB before failing.
/// With it, what decoding allocates up front is bounded by the body's own length. One linear
/// pass over the heads; string payloads are skipped, not read.
pub fn counts_fit(body: &[u8]) -> Result<(), &'static str> {
    const INDEFINITE: u8 = 31;
    let mut at = 0;
    while at < body.len() {
        if body[at] & 0x1f == INDEFINITE {
            // Indefinite arrays, maps and strings announce no count; 0xff is their break.
            at += 1;
            continue;
        }
        let (major, arg, used) = match head(&body[at..]) {
            Some(Ok(h)) => h,
            Some(Err(e)) => return Err(e),
            None => return Err("CBOR head cut short"),
        };
        at += used;
        let left = (body.len() - at) as u64;
        match major {
            2 | 3 if arg > left => return Err("CBOR string runs past the end"),
            2 | 3 => at += arg as usize,
            4 if arg > left => return Err("CBOR array announces more items than bytes left"),
            5 if arg > left / 2 => return Err("CBOR map announces more entries than bytes left"),
            _ => {}
        }
    }
    Ok(())
}

/// The variant name at the start of a frame body: serde encodes an externally tagged enum as
/// a text string (unit variant) or a one-entry map `{ name: content }`.
pub fn peek_variant(body: &[u8]) -> Peek<'_> {
    const TEXT: u8 = 3;
    const MAP: u8 = 5;
    let mut at = 0;
    let Some(h) = head(body) else {
        return Peek::More;
    };
    let (major, arg, used) = match h {
        Ok(h) => h,
        Err(e) => return Peek::Malformed(e),
    };
    let (major, arg) = if major == MAP {
        if arg != 1 {
            return Peek::Malformed("a tagged variant is a map of one entry");
        }
        at = used;
        let rest = &body[at..];
        match head(rest) {
            None => return Peek::More,
            Some(Err(e)) => return Peek::Malformed(e),
            Some(Ok((major, arg, used))) => {
                at += used;
                (major, arg)
            }
        }
    } else {
        at += used;
        (major, arg)
    };
    if major != TEXT {
        return Peek::Malformed("a variant name is a text string");
    }
    // Names are short; a long one is not ours (and must not make us wait for its bytes).
    let Ok(len) = usize::try_from(arg) else {
        return Peek::Malformed("variant name too long");
    };
    if len > 64 {
        return Peek::Malformed("variant name too long");
    }
    let Some(end) = at.checked_add(len) else {
        return Peek::Malformed("variant name too long");
    };
    match body.get(at..end) {
        None => Peek::More,
        Some(name) => match std::str::from_utf8(name) {
            Ok(name) => Peek::Variant(name),
            Err(_) => Peek::Malformed("variant name is not UTF-8"),
        },
    }
}

/// The limit for a frame whose body starts with `body`: `Ok(None)` while more bytes are
/// needed to tell, `Err` for a body that names no variant of `K`.
pub fn limit_for<K: FrameKinds>(body: &[u8]) -> Result<Option<(usize, String)>, String> {
    match peek_variant(body) {
        Peek::More => Ok(None),
        Peek::Variant(name) => match K::LIMITS.limit_of(name) {
            Some(limit) => Ok(Some((limit, name.to_string()))),
            None => Err(format!("malformed {}: no kind {name:?}", K::LIMITS.what)),
        },
        Peek::Malformed(why) => Err(format!("malformed {}: {why}", K::LIMITS.what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::{self, DeserializeOwned, Visitor};

    #[derive(serde::Serialize)]
    enum Probe {
        Unit,
        Tuple(u8),
    }

    /// Stops deserialization at the enum, carrying serde's list of its variant names.
    #[derive(Debug)]
    enum Stop {
        Variants(&'static [&'static str]),
        Other(String),
    }
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Stop::Variants(v) => write!(f, "variants {v:?}"),
                Stop::Other(s) => f.write_str(s),
            }
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<T: std::fmt::Display>(msg: T) -> Self {
            Stop::Other(msg.to_string())
        }
    }

    struct VariantsOf;
    impl<'de> de::Deserializer<'de> for VariantsOf {
        type Error = Stop;
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Stop> {
            Err(Stop::Variants(variants))
        }
        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Stop> {
            Err(Stop::Other("not an enum".into()))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map struct
            identifier ignored_any
        }
    }

    /// Every variant name of a serde enum, as serde itself lists them.
    fn variants_of<T: DeserializeOwned>() -> &'static [&'static str] {
        match T::deserialize(VariantsOf) {
            Err(Stop::Variants(v)) => v,
            other => panic!("not an enum: {:?}", other.err()),
        }
    }

    fn covers<T: DeserializeOwned + FrameKinds>() {
        let variants = variants_of::<T>();
        let kinds = T::LIMITS;
        for v in variants {
            assert!(
                kinds.limit_of(v).is_some(),
                "{}: variant {v} has no frame limit in protocol/limits.rs",
                kinds.what
            );
        }
        for (name, _) in kinds.limits {
            assert!(
                variants.contains(name),
                "{}: limit for {name}, which is no variant",
                kinds.what
            );
        }
        assert_eq!(variants.len(), kinds.limits.len(), "{}", kinds.what);
    }

    #[test]
    fn every_request_and_response_variant_has_a_limit() {
        covers::<block::BlockRequest>();
        covers::<block::BlockResponse>();
        covers::<meta::MetaRequest>();
        covers::<meta::MetaResponse>();
        covers::<client::ClientRequest>();
        covers::<client::ClientResponse>();
        // The metrics' kind lists name the same variants.
        assert_eq!(
            block::BlockRequest::KINDS.len(),
            variants_of::<block::BlockRequest>().len()
        );
        assert_eq!(
            meta::MetaRequest::KINDS.len(),
            variants_of::<meta::MetaRequest>().len()
        );
        assert_eq!(
            client::ClientRequest::KINDS.len(),
            variants_of::<client::ClientRequest>().len()
        );
    }

    #[test]
    fn the_peek_reads_what_serde_writes() {
        let unit = cbor4ii::serde::to_vec(Vec::new(), &client::ClientRequest::Status).unwrap();
        assert_eq!(peek_variant(&unit), Peek::Variant("Status"));
        let get = block::BlockRequest::Get {
            id: crate::ids::BlockId::of(b"x"),
        };
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &get).unwrap();
        assert_eq!(peek_variant(&bytes), Peek::Variant("Get"));
        for cut in 0..5 {
            assert_eq!(peek_variant(&bytes[..cut]), Peek::More, "{cut} bytes");
        }
        let newtype = cbor4ii::serde::to_vec(Vec::new(), &Probe::Tuple(1)).unwrap();
        assert_eq!(peek_variant(&newtype), Peek::Variant("Tuple"));
        let unit = cbor4ii::serde::to_vec(Vec::new(), &Probe::Unit).unwrap();
        assert_eq!(peek_variant(&unit), Peek::Variant("Unit"));
        // A non-minimal head (map length in a following byte) is still read.
        assert_eq!(
            peek_variant(&[0xb8, 1, 0x63, b'G', b'e', b't']),
            Peek::Variant("Get")
        );
        assert!(matches!(peek_variant(&[0xbf]), Peek::Malformed(_)));
        assert!(matches!(
            peek_variant(&[0xa2, 0x61, b'x']),
            Peek::Malformed(_)
        ));
        assert!(matches!(peek_variant(&[0x01]), Peek::Malformed(_)));
        // Counts: what serde writes fits; counts or strings longer than the body do not.
        let has = block::BlockRequest::Has {
            ids: vec![crate::ids::BlockId::of(b"x"); 3],
        };
        assert_eq!(
            counts_fit(&cbor4ii::serde::to_vec(Vec::new(), &has).unwrap()),
            Ok(())
        );
        assert_eq!(
            counts_fit(&[0x9f, 0x01, 0x02, 0xff]),
            Ok(()),
            "indefinite array"
        );
        assert_eq!(counts_fit(&[0x82, 0x01, 0x02]), Ok(()));
        assert!(counts_fit(&[0x83, 0x01, 0x02]).is_err());
        assert!(
            counts_fit(&[0x9b, 0, 0, 0, 1, 0, 0, 0, 0]).is_err(),
            "2^32 items"
        );
        assert!(
            counts_fit(&[0xa2, 0x01, 0x02, 0x03]).is_err(),
            "two entries in three bytes"
        );
        assert!(
            counts_fit(&[0x43, 0x01, 0x02]).is_err(),
            "a cut byte string"
        );
        assert!(counts_fit(&[0x18]).is_err(), "a cut head");
        assert!(matches!(
            peek_variant(&[0x7a, 0xff, 0xff, 0xff, 0xff]),
            Peek::Malformed(_)
        ));
    }

    #[test]
    fn only_block_and_state_frames_are_large() {
        for kinds in [
            block::BlockRequest::LIMITS,
            block::BlockResponse::LIMITS,
            meta::MetaRequest::LIMITS,
            meta::MetaResponse::LIMITS,
            client::ClientRequest::LIMITS,
            client::ClientResponse::LIMITS,
        ] {
            for (name, limit) in kinds.limits {
                if *limit > SWARM_LIST {
                    assert!(
                        [
                            "Put",
                            "PutChain",
                            "Data",
                            "PutBlock",
                            "Block",
                            "Publish",
                            "Replicate",
                            "DelegateState",
                            "State",
                            "File"
                        ]
                        .contains(name),
                        "{} {name} is large",
                        kinds.what
                    );
                }
            }
        }
        assert_eq!(
            limit_for::<meta::MetaRequest>(&[0x65, b'F', b'e', b't', b'c', b'h'])
                .unwrap()
                .map(|l| l.0),
            Some(SMALL)
        );
        assert!(limit_for::<meta::MetaRequest>(&[0x63, b'F', b'o', b'o']).is_err());
    }
}
