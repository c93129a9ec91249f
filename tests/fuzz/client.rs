//! `/swarmstore/client/1`: the wire battery for `ClientRequest` and `ClientResponse`, with
//! their strategies (node status included).

use proptest::collection::vec;
use proptest::prelude::*;

use swarmstore::protocol::client::{Candidate, ClientRequest, ClientResponse};
use swarmstore::protocol::status::{
    BalanceStatus, ManagerInfo, NodeStatus, PeerStatus, RepairStatus,
};

use crate::strategies::{
    any_error, any_note, any_peer, any_record, any_state, block_id, bytes, file_key, multiaddr,
    peer_list, text,
};
use crate::wire::wire_decoder;

fn client_request() -> impl Strategy<Value = ClientRequest> {
    prop_oneof![
        (block_id(), text(), bytes(2048)).prop_map(|(id, file, data)| ClientRequest::PutBlock {
            id,
            file,
            data
        }),
        any_record().prop_map(|record| ClientRequest::Publish { record }),
        (text(), proptest::option::of(any_note()))
            .prop_map(|(name, note)| ClientRequest::Fetch { name, note }),
        (block_id(), peer_list(4))
            .prop_map(|(id, holders)| ClientRequest::GetBlock { id, holders }),
        Just(ClientRequest::Status),
        Just(ClientRequest::Peers),
    ]
}

fn any_status() -> impl Strategy<Value = NodeStatus> {
    let peer_status =
        (any_peer(), any::<bool>(), any::<bool>()).prop_map(|(peer, connected, live)| PeerStatus {
            peer,
            connected,
            live,
        });
    (
        (
            any_peer(),
            vec(multiaddr(), 0..3),
            any::<usize>(),
            any::<usize>(),
            any::<u64>(),
        ),
        (
            proptest::option::of(any::<u64>()),
            any::<usize>(),
            vec(peer_status, 0..4),
        ),
        (any::<u64>(), text(), vec((text(), any::<u64>()), 0..3)),
    )
        .prop_map(
            |(
                (peer, addrs, replication, blocks, used),
                (capacity, records, peers),
                (term, role, refused),
            )| {
                NodeStatus {
                    peer,
                    addrs,
                    replication,
                    blocks,
                    used,
                    capacity,
                    records,
                    peers,
                    repair: RepairStatus::default(),
                    balance: BalanceStatus {
                        manager: Some(ManagerInfo { peer, term }),
                        role,
                        term,
                        ..BalanceStatus::default()
                    },
                    refused: refused.into_iter().collect(),
                    front_doors: Vec::new(),
                }
            },
        )
}

fn client_response() -> impl Strategy<Value = ClientResponse> {
    prop_oneof![
        peer_list(4).prop_map(|holders| ClientResponse::BlockStored { holders }),
        (file_key(), any::<u64>(), any_peer(), peer_list(4)).prop_map(
            |(key, version, root, replicas)| ClientResponse::Published {
                key,
                version,
                root,
                replicas
            }
        ),
        (
            file_key(),
            any_peer(),
            peer_list(4),
            any_state(),
            vec((any_peer(), vec(multiaddr(), 0..3)), 0..3)
        )
            .prop_map(|(key, root, replicas, state, addrs)| ClientResponse::File {
                key,
                root,
                replicas,
                state,
                addrs
            }),
        bytes(2048).prop_map(|data| ClientResponse::Block { data }),
        any_status().prop_map(|s| ClientResponse::Status(Box::new(s))),
        (
            any::<usize>(),
            vec(
                (
                    any_peer(),
                    vec(multiaddr(), 0..3),
                    proptest::option::of(any::<u64>())
                ),
                0..4
            )
        )
            .prop_map(|(replication, cs)| ClientResponse::Peers {
                replication,
                candidates: cs
                    .into_iter()
                    .map(|(peer, addrs, free)| Candidate { peer, addrs, free })
                    .collect(),
            }),
        text().prop_map(|name| ClientResponse::NotFound { name }),
        any_error().prop_map(|error| ClientResponse::Rejected { error }),
        text().prop_map(|message| ClientResponse::Error { message }),
    ]
}

wire_decoder!(
    client_request_body,
    ClientRequest,
    "client-request",
    client_request()
);
wire_decoder!(
    client_response_body,
    ClientResponse,
    "client-response",
    client_response()
);
