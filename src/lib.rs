//! swarmstore: a peer-to-peer file storage network on libp2p.
//!
//! Storage nodes form a Kademlia DHT and keep files as content-addressed blocks, each on R
//! holders; every file's record (versions, blocks and holders, owner, users) lives on its root,
//! the node closest to the hash of its name, and that root's replica set. Clients publish,
//! query, update and delete files through an access node. See `README.md` and `DESIGN.md`.
//!
//! The library is what the `swarmstore` binary runs: [`node::Node`] is a storage node and
//! [`client::Client`] a client.

pub mod balance;
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod identity;
pub mod ids;
pub mod metrics;
pub mod node;
pub mod placement;
pub mod protocol;
pub mod record;
pub mod store;

pub use client::Client;
pub use error::{Error, Result};
pub use node::{Node, NodeConfig};
