//! swarmstore: a peer-to-peer file storage network on libp2p.
//!
//! Storage nodes form a Kademlia DHT and keep files as content-addressed blocks, each on R
//! holders; every file's record (versions, blocks and holders, owner, users) lives on its root,
//! the node closest to the hash of its name, and that root's replica set. Clients publish,
//! query, update and delete files through an access node. See `README.md` and `DESIGN.md`.
//!
//! The library is what the `swarmstore` binary runs: [`Node`] is a storage node (started from
//! a [`NodeConfig`], or from layered [`config::NodeSettings`]) and [`Client`] a client. The
//! layers, each importing only the ones before it:
//!
//! | layer | what it is |
//! |---|---|
//! | [`ids`], [`record`] | identifiers, the signed file record and its rules |
//! | [`protocol`] | every type that crosses the wire (and the frame codec) |
//! | [`store`] | blocks and records on disk |
//! | [`net`] | the transport and protocol builders nodes and clients share |
//! | [`balance`] | the pure balancer core: planner, view, election, simulator |
//! | [`node`] | a storage node |
//! | [`client`] | a client |
//!
//! The simulator's SVG plot needs the `plot` feature (on by default); a program that only
//! embeds the client can turn default features off.

// Command-line help texts come from doc comments and name placeholders like `<peer id>`.
#![allow(rustdoc::invalid_html_tags)]

pub mod balance;
#[doc(hidden)]
pub mod cli;
pub mod client;
pub mod client_config;
pub mod config;
pub mod error;
pub mod gateway;
pub(crate) mod identity;
pub mod ids;
pub mod net;
pub mod node;
pub(crate) mod placement;
pub mod protocol;
pub mod record;
pub mod store;
pub(crate) mod units;
#[doc(hidden)]
pub mod workload;

pub use client::Client;
pub use error::{Error, Result};
pub use node::{Node, NodeConfig};
