//! Variant names. Exhaustive matches: a new variant does not compile until it is listed here
//! (and then the spec lacks its example).

use swarmstore::protocol::block::{BlockRequest, BlockResponse};
use swarmstore::protocol::client::ClientResponse;
use swarmstore::protocol::gossip::{Decision, DecisionState, ManagerMsg, RoleTag};
use swarmstore::protocol::meta::MetaResponse;
use swarmstore::record::RecordError;

pub(crate) fn block_request(r: &BlockRequest) -> String {
    r.kind().into()
}
pub(crate) fn block_response(r: &BlockResponse) -> &'static str {
    match r {
        BlockResponse::Stored => "Stored",
        BlockResponse::StoredBy { .. } => "StoredBy",
        BlockResponse::Data { .. } => "Data",
        BlockResponse::NotFound => "NotFound",
        BlockResponse::Have { .. } => "Have",
        BlockResponse::Proofs { .. } => "Proofs",
        BlockResponse::Error { .. } => "Error",
    }
}
pub(crate) const BLOCK_RESPONSES: &[&str] = &[
    "Stored", "StoredBy", "Data", "NotFound", "Have", "Proofs", "Error",
];

pub(crate) fn meta_response(r: &MetaResponse) -> &'static str {
    match r {
        MetaResponse::Published { .. } => "Published",
        MetaResponse::Replicated => "Replicated",
        MetaResponse::HoldersSet => "HoldersSet",
        MetaResponse::Digest { .. } => "Digest",
        MetaResponse::State { .. } => "State",
        MetaResponse::Rejected { .. } => "Rejected",
        MetaResponse::Error { .. } => "Error",
    }
}
pub(crate) const META_RESPONSES: &[&str] = &[
    "Published",
    "Replicated",
    "HoldersSet",
    "Digest",
    "State",
    "Rejected",
    "Error",
];

pub(crate) fn client_response(r: &ClientResponse) -> &'static str {
    match r {
        ClientResponse::BlockStored { .. } => "BlockStored",
        ClientResponse::Published { .. } => "Published",
        ClientResponse::File { .. } => "File",
        ClientResponse::Block { .. } => "Block",
        ClientResponse::Status(_) => "Status",
        ClientResponse::Peers { .. } => "Peers",
        ClientResponse::NotFound { .. } => "NotFound",
        ClientResponse::Rejected { .. } => "Rejected",
        ClientResponse::Error { .. } => "Error",
    }
}
pub(crate) const CLIENT_RESPONSES: &[&str] = &[
    "BlockStored",
    "Published",
    "File",
    "Block",
    "Status",
    "Peers",
    "NotFound",
    "Rejected",
    "Error",
];

pub(crate) fn record_error(e: &RecordError) -> &'static str {
    match e {
        RecordError::Invalid(_) => "Invalid",
        RecordError::BadSignature(_) => "BadSignature",
        RecordError::PermissionDenied { .. } => "PermissionDenied",
        RecordError::Conflict { .. } => "Conflict",
        RecordError::Stale { .. } => "Stale",
        RecordError::Unauthorized(_) => "Unauthorized",
    }
}
pub(crate) const RECORD_ERRORS: &[&str] = &[
    "Invalid",
    "BadSignature",
    "PermissionDenied",
    "Conflict",
    "Stale",
    "Unauthorized",
];

pub(crate) fn manager_msg(m: &ManagerMsg) -> &'static str {
    match m {
        ManagerMsg::Candidacy { .. } => "Candidacy",
        ManagerMsg::Vote(_) => "Vote",
        ManagerMsg::Heartbeat { .. } => "Heartbeat",
    }
}
pub(crate) const MANAGER_MSGS: &[&str] = &["Candidacy", "Vote", "Heartbeat"];

pub(crate) fn decision(d: &Decision) -> &'static str {
    match d {
        Decision::Replicate { .. } => "Replicate",
        Decision::Delegate { .. } => "Delegate",
        Decision::Move { .. } => "Move",
        Decision::Drop { .. } => "Drop",
        Decision::EndDelegation { .. } => "EndDelegation",
    }
}
pub(crate) fn decision_state(s: &DecisionState) -> &'static str {
    match s {
        DecisionState::Published => "Published",
        DecisionState::Applied => "Applied",
        DecisionState::Skipped(_) => "Skipped",
        DecisionState::Failed(_) => "Failed",
    }
}
pub(crate) fn role(r: &RoleTag) -> &'static str {
    match r {
        RoleTag::Follower => "Follower",
        RoleTag::Candidate => "Candidate",
        RoleTag::Manager => "Manager",
    }
}
