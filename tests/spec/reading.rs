//! Reading the spec: its CBOR blocks (`cbor`, `cbor-also`, `cbor-invalid`) with their claims,
//! and the decoders the `cbor-invalid` blocks are refused by.

use libp2p::{Multiaddr, PeerId};
use serde::de::DeserializeOwned;

use swarmstore::ids::{BlockId, FileKey};
use swarmstore::protocol::block::BlockRequest;
use swarmstore::protocol::client::ClientRequest;
use swarmstore::protocol::codec::decode_body;
use swarmstore::protocol::gossip::{LoadReport, ManagerMsg};
use swarmstore::protocol::meta::MetaRequest;

use crate::SPEC;

/// What a block of the spec claims about its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// ```` ```cbor <tag> ````: exactly what the code sends for example `<tag>`.
    Exact,
    /// ```` ```cbor-also <tag>: <why> ````: another encoding the code reads as `<tag>`.
    Also,
    /// ```` ```cbor-invalid <type>: <why> ````: bytes the code refuses to read as `<type>`.
    Invalid,
}

pub(crate) struct Block {
    pub(crate) claim: Claim,
    pub(crate) tag: String,
    pub(crate) bytes: Vec<u8>,
    /// Line of the opening fence.
    pub(crate) line: usize,
}

/// Every CBOR block of the spec: fences whose info string starts with `cbor`, `cbor-also` or
/// `cbor-invalid`; hex with whitespace and `#` comments.
pub(crate) fn spec_blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<(Claim, String, String, usize)> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        match current.as_mut() {
            None => {
                let opened = [
                    ("```cbor ", Claim::Exact),
                    ("```cbor-also ", Claim::Also),
                    ("```cbor-invalid ", Claim::Invalid),
                ]
                .into_iter()
                .find_map(|(p, c)| trimmed.strip_prefix(p).map(|info| (c, info)));
                if let Some((claim, info)) = opened {
                    let tag = match claim {
                        Claim::Exact => info.trim(),
                        _ => info.split(": ").next().unwrap_or(info).trim(),
                    };
                    current = Some((claim, tag.to_string(), String::new(), n + 1));
                }
            }
            Some((_, _, hex, _)) => {
                if trimmed.starts_with("```") {
                    let (claim, tag, hex, line) = current.take().unwrap();
                    let bytes = hex::decode(&hex)
                        .unwrap_or_else(|e| panic!("{SPEC}:{line}: `{tag}` is not hex: {e}"));
                    out.push(Block {
                        claim,
                        tag,
                        bytes,
                        line,
                    });
                } else {
                    let code = line.split('#').next().unwrap_or("");
                    hex.extend(code.chars().filter(|c| !c.is_whitespace()));
                }
            }
        }
    }
    assert!(current.is_none(), "{SPEC}: unterminated cbor block");
    out
}

/// Whether the codec refuses `bytes` as a `ty`: `Err` for a type this test does not know.
pub(crate) fn refused(ty: &str, bytes: &[u8]) -> Result<bool, String> {
    fn no<T: DeserializeOwned>(b: &[u8]) -> bool {
        decode_body::<T>(b, "spec").is_err()
    }
    Ok(match ty {
        "BlockId" => no::<BlockId>(bytes),
        "FileKey" => no::<FileKey>(bytes),
        "PeerId" => no::<PeerId>(bytes),
        "Multiaddr" => no::<Multiaddr>(bytes),
        "f64" => no::<f64>(bytes),
        "BlockRequest" => no::<BlockRequest>(bytes),
        "ClientRequest" => no::<ClientRequest>(bytes),
        "MetaRequest" => no::<MetaRequest>(bytes),
        "ManagerMsg" => no::<ManagerMsg>(bytes),
        "LoadReport" => no::<LoadReport>(bytes),
        other => return Err(format!("no decoder for `{other}` in tests/spec/reading.rs")),
    })
}
