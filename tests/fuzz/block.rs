//! `/swarmstore/block/1`: the wire battery for `BlockRequest` and `BlockResponse`, with their
//! strategies.

use proptest::collection::vec;
use proptest::prelude::*;

use swarmstore::ids::{Nonce, Proof};
use swarmstore::protocol::block::{BlockRequest, BlockResponse};

use crate::strategies::{block_id, bytes, peer_list, text};
use crate::wire::wire_decoder;

fn block_request() -> impl Strategy<Value = BlockRequest> {
    prop_oneof![
        (block_id(), text(), bytes(2048)).prop_map(|(id, file, data)| BlockRequest::Put {
            id,
            file,
            data
        }),
        (block_id(), text(), bytes(2048), peer_list(8)).prop_map(|(id, file, data, then)| {
            BlockRequest::PutChain {
                id,
                file,
                data,
                then,
            }
        }),
        block_id().prop_map(|id| BlockRequest::Get { id }),
        vec(block_id(), 0..20).prop_map(|ids| BlockRequest::Has { ids }),
        (block_id(), text(), peer_list(4)).prop_map(|(id, file, sources)| BlockRequest::Pull {
            id,
            file,
            sources
        }),
        (any::<[u8; 32]>(), vec(block_id(), 0..20)).prop_map(|(n, ids)| BlockRequest::Prove {
            nonce: Nonce(n),
            ids
        }),
    ]
}

fn block_response() -> impl Strategy<Value = BlockResponse> {
    prop_oneof![
        Just(BlockResponse::Stored),
        peer_list(8).prop_map(|holders| BlockResponse::StoredBy { holders }),
        bytes(2048).prop_map(|data| BlockResponse::Data { data }),
        Just(BlockResponse::NotFound),
        vec(block_id(), 0..20).prop_map(|ids| BlockResponse::Have { ids }),
        vec((block_id(), any::<[u8; 32]>().prop_map(Proof)), 0..8)
            .prop_map(|proofs| BlockResponse::Proofs { proofs }),
        text().prop_map(|message| BlockResponse::Error { message }),
    ]
}

wire_decoder!(
    block_request_body,
    BlockRequest,
    "block-request",
    block_request()
);
wire_decoder!(
    block_response_body,
    BlockResponse,
    "block-response",
    block_response()
);
