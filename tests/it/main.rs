//! The multi-node integration tests, one binary (as Garage does): each module is one area,
//! and every test runs real nodes over real sockets on 127.0.0.1 (in this process, or as
//! `swarmstore node` child processes). `config` (which sets process environment variables)
//! and `scale` (release-only) stay binaries of their own.

#[path = "../common/mod.rs"]
mod common;

mod architecture;
mod bad_input;
mod balance;
mod chaos;
mod cli;
mod compose;
mod core;
mod crash;
mod durability;
mod lifecycle;
mod metrics;
mod partition;
mod private;
mod relay;
