//! Load balancing, the patent's core: the pure planner ([`plan`]) that the manager runs each
//! round, and the simulator ([`sim`]) that runs the very same planner over 10^3..10^5 nodes
//! beside baseline strategies.
//!
//! On a node: [`load`] measures, [`wire`] is what goes over gossipsub, [`election`] picks the
//! manager, [`view`] is the published state every node keeps, [`manager`] plans from it,
//! [`apply`] carries decisions out, and [`service`] runs it all once per report interval.

pub mod apply;
pub mod config;
pub mod election;
pub mod load;
pub mod manager;
pub mod plan;
pub mod service;
pub mod sim;
pub mod view;
pub mod wire;
pub mod workload;

pub use config::BalanceConfig;
pub use service::{Balance, BalanceStatus};
