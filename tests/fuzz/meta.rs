//! `/swarmstore/meta/1`: the wire battery for `MetaRequest` and `MetaResponse`, with their
//! strategies.

use proptest::collection::vec;
use proptest::prelude::*;

use swarmstore::protocol::meta::{MetaRequest, MetaResponse};
use swarmstore::record::Position;

use crate::strategies::{
    any_error, any_note, any_record, any_state, block_id, file_key, peer_list, text,
};
use crate::wire::wire_decoder;

fn position() -> impl Strategy<Value = Position> {
    (any::<u64>(), any::<u64>()).prop_map(|(version, rev)| Position { version, rev })
}

fn meta_request() -> impl Strategy<Value = MetaRequest> {
    prop_oneof![
        any_record().prop_map(|record| MetaRequest::Publish { record }),
        (file_key(), any_state()).prop_map(|(key, state)| MetaRequest::Replicate { key, state }),
        vec((file_key(), position()), 0..8).prop_map(|entries| MetaRequest::Digest { entries }),
        (text(), block_id(), peer_list(4), peer_list(4)).prop_map(|(name, block, add, remove)| {
            MetaRequest::SetHolders {
                name,
                block,
                add,
                remove,
            }
        }),
        (file_key(), proptest::option::of(any_note()))
            .prop_map(|(key, note)| MetaRequest::Fetch { key, note }),
        (file_key(), any_state())
            .prop_map(|(key, state)| MetaRequest::DelegateState { key, state }),
    ]
}

fn meta_response() -> impl Strategy<Value = MetaResponse> {
    prop_oneof![
        (any::<u64>(), peer_list(4))
            .prop_map(|(version, replicas)| MetaResponse::Published { version, replicas }),
        Just(MetaResponse::Replicated),
        Just(MetaResponse::HoldersSet),
        vec((file_key(), position()), 0..8).prop_map(|entries| MetaResponse::Digest { entries }),
        proptest::option::of(any_state()).prop_map(|state| MetaResponse::State { state }),
        any_error().prop_map(|error| MetaResponse::Rejected { error }),
        text().prop_map(|message| MetaResponse::Error { message }),
    ]
}

wire_decoder!(
    meta_request_body,
    MetaRequest,
    "meta-request",
    meta_request()
);
wire_decoder!(
    meta_response_body,
    MetaResponse,
    "meta-response",
    meta_response()
);
