//! Mutations and arbitrary inputs: bit flips, byte changes, truncation, extension, insertion
//! and rewritten CBOR length heads applied to a decoder's seeds; random bytes, random CBOR
//! tokens from a dictionary of the seeds' strings, and random bytes behind a valid variant tag.

use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;

use swarmstore::protocol::limits::FrameKinds;

use crate::corpus::seeds;

/// The CBOR heads in `b`, scanned linearly: (offset, major type, argument, head length).
/// String payloads are skipped; scanning stops at the first head that does not fit.
fn heads(b: &[u8]) -> Vec<(usize, u8, u64, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let (major, info) = (b[at] >> 5, b[at] & 0x1f);
        let width = match info {
            0..=23 => 0,
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => {
                at += 1;
                continue;
            }
        };
        let Some(arg) = b.get(at + 1..at + 1 + width) else {
            break;
        };
        let arg = if width == 0 {
            u64::from(info)
        } else {
            arg.iter().fold(0u64, |v, x| (v << 8) | u64::from(*x))
        };
        out.push((at, major, arg, 1 + width));
        at += 1 + width;
        if major == 2 || major == 3 {
            at = at.saturating_add(usize::try_from(arg).unwrap_or(usize::MAX));
        }
    }
    out
}

pub(crate) fn encode_head(major: u8, arg: u64) -> Vec<u8> {
    let m = major << 5;
    match arg {
        0..=23 => vec![m | arg as u8],
        24..=0xff => vec![m | 24, arg as u8],
        0x100..=0xffff => {
            let mut v = vec![m | 25];
            v.extend_from_slice(&(arg as u16).to_be_bytes());
            v
        }
        0x1_0000..=0xffff_ffff => {
            let mut v = vec![m | 26];
            v.extend_from_slice(&(arg as u32).to_be_bytes());
            v
        }
        _ => {
            let mut v = vec![m | 27];
            v.extend_from_slice(&arg.to_be_bytes());
            v
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Truncate(usize),
    Extend(Vec<u8>),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    /// Duplicate a slice in place (repeats a field or an element).
    Repeat(usize, usize),
    /// Rewrite the argument of the n-th CBOR head (a length, a count or a number).
    Relength(usize, u64),
    /// Nudge the n-th CBOR head's argument by a small amount.
    Nudge(usize, i8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let anywhere = any::<usize>();
    prop_oneof![
        3 => (anywhere, 0u8..8).prop_map(|(p, b)| Mutation::FlipBit(p, b)),
        2 => (anywhere, any::<u8>()).prop_map(|(p, v)| Mutation::SetByte(p, v)),
        1 => anywhere.prop_map(Mutation::Truncate),
        1 => vec(any::<u8>(), 1..16).prop_map(Mutation::Extend),
        1 => (anywhere, vec(any::<u8>(), 1..16)).prop_map(|(p, v)| Mutation::Insert(p, v)),
        1 => (anywhere, 1usize..16).prop_map(|(p, n)| Mutation::Remove(p, n)),
        1 => (anywhere, 1usize..64).prop_map(|(p, n)| Mutation::Repeat(p, n)),
        2 => (
            anywhere,
            prop_oneof![
                0u64..64,
                Just(u64::from(u32::MAX)),
                Just(u64::MAX),
                any::<u64>(),
                (0u64..32).prop_map(|s| 1u64 << (s * 2)),
            ]
        )
            .prop_map(|(h, v)| Mutation::Relength(h, v)),
        2 => (anywhere, -3i8..=3).prop_map(|(h, d)| Mutation::Nudge(h, d)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    let pos = |p: usize, plus: usize| p % (len + plus).max(1);
    match m {
        Mutation::FlipBit(p, b) if len > 0 => bytes[pos(*p, 0)] ^= 1 << b,
        Mutation::SetByte(p, v) if len > 0 => bytes[pos(*p, 0)] = *v,
        Mutation::Truncate(p) => bytes.truncate(pos(*p, 0)),
        Mutation::Extend(v) => bytes.extend_from_slice(v),
        Mutation::Insert(p, v) => {
            let at = pos(*p, 1);
            bytes.splice(at..at, v.iter().copied());
        }
        Mutation::Remove(p, n) if len > 0 => {
            let at = pos(*p, 0);
            bytes.drain(at..(at + n).min(len));
        }
        Mutation::Repeat(p, n) if len > 0 => {
            let at = pos(*p, 0);
            let piece = bytes[at..(at + n).min(len)].to_vec();
            bytes.splice(at..at, piece);
        }
        Mutation::Relength(h, v) => rehead(bytes, *h, |_| *v),
        Mutation::Nudge(h, d) => rehead(bytes, *h, |arg| arg.wrapping_add_signed(i64::from(*d))),
        _ => {}
    }
}

/// Rewrites the argument of the `n`-th CBOR head of `bytes` (modulo their number).
fn rehead(bytes: &mut Vec<u8>, n: usize, new: impl Fn(u64) -> u64) {
    let hs = heads(bytes);
    if hs.is_empty() {
        return;
    }
    let (at, major, arg, used) = hs[n % hs.len()];
    bytes.splice(at..at + used, encode_head(major, new(arg)));
}

/// A seed of `dir` with 1 to 4 mutations applied.
pub(crate) fn mutated(dir: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let corpus = seeds(dir);
    let n = corpus.len();
    (0..n, vec(mutation(), 1..5)).prop_map(move |(i, ms)| {
        let mut b = corpus[i].clone();
        for m in &ms {
            apply(&mut b, m);
        }
        b
    })
}

/// Text strings that appear in the corpus of `dir` (variant and field names): the
/// dictionary for random CBOR.
fn dictionary(dir: &'static str) -> Vec<String> {
    let mut words: Vec<String> = seeds(dir)
        .iter()
        .flat_map(|s| {
            heads(s)
                .into_iter()
                .filter(|h| h.1 == 3 && h.2 <= 64)
                .filter_map(|(at, _, arg, used)| {
                    let start = at + used;
                    let text = s.get(start..start + arg as usize)?;
                    std::str::from_utf8(text).ok().map(str::to_string)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    words.sort();
    words.dedup();
    words
}

#[derive(Debug, Clone)]
enum Token {
    Head(u8, u64),
    Word(usize),
    Bytes(Vec<u8>),
}

/// Random CBOR-shaped input: heads of every major type, the decoder's own words, byte strings.
fn cbor_tokens(dir: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let words = Arc::new(dictionary(dir));
    let token = prop_oneof![
        3 => (0u8..8, prop_oneof![0u64..24, 0u64..300, any::<u64>()])
            .prop_map(|(m, a)| Token::Head(m, a)),
        3 => any::<usize>().prop_map(Token::Word),
        1 => vec(any::<u8>(), 0..40).prop_map(Token::Bytes),
    ];
    vec(token, 1..40).prop_map(move |ts| {
        let mut out = Vec::new();
        for t in ts {
            match t {
                Token::Head(m, a) => out.extend(encode_head(m, a)),
                Token::Word(i) if !words.is_empty() => {
                    let w = &words[i % words.len()];
                    out.extend(encode_head(3, w.len() as u64));
                    out.extend_from_slice(w.as_bytes());
                }
                Token::Word(_) => {}
                Token::Bytes(b) => {
                    out.extend(encode_head(2, b.len() as u64));
                    out.extend(b);
                }
            }
        }
        out
    })
}

/// Arbitrary bodies for a decoder: raw bytes, CBOR tokens, or a real variant tag followed by
/// raw bytes.
pub(crate) fn arbitrary(dir: &'static str, tags: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let tags = Arc::new(tags);
    let tags_for_deep = tags.clone();
    let tagged = (any::<usize>(), vec(any::<u8>(), 0..256)).prop_map(move |(i, tail)| {
        let mut b = tags[i % tags.len()].clone();
        b.extend(tail);
        b
    });
    // Nesting far deeper than any type: arrays, one-entry maps, indefinite arrays.
    let deep = (any::<usize>(), 0usize..3, 1usize..20_000).prop_map(move |(i, shape, depth)| {
        let mut b = vec![0xa1];
        b.extend(encode_head(3, 1));
        b.push(b'x');
        let unit: &[u8] = [&[0x81][..], &[0xa1, 0x61, b'k'], &[0x9f]][shape];
        for _ in 0..depth {
            b.extend_from_slice(unit);
        }
        if i % 2 == 0 {
            // Behind a real tag, where the decoder expects a field.
            let mut t = tags_for_deep[i % tags_for_deep.len()].clone();
            t.extend(b);
            return t;
        }
        b
    });
    prop_oneof![
        4 => vec(any::<u8>(), 0..512),
        4 => cbor_tokens(dir),
        4 => tagged,
        1 => deep,
    ]
}

/// The first bytes of each variant of an enum as serde writes it: `"Name"` for a unit
/// variant, `{"Name": ` for the others.
pub(crate) fn variant_tags<T: FrameKinds>() -> Vec<Vec<u8>> {
    T::LIMITS
        .limits
        .iter()
        .flat_map(|(name, _)| {
            let mut text = encode_head(3, name.len() as u64);
            text.extend_from_slice(name.as_bytes());
            let mut map = vec![0xa1];
            map.extend_from_slice(&text);
            [text, map]
        })
        .collect()
}
