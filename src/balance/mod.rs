//! Load balancing, the patent's core, as pure code that knows nothing of the node: the
//! planner ([`plan`]) the manager runs each round, the view every node keeps of the swarm
//! ([`view`]), the manager election ([`election`]), the load meter ([`load`]) and the
//! capacity it learns when none is configured ([`capacity`]), the manager's
//! round as a function of the view ([`manager`]), and the simulator ([`sim`]) that runs the
//! very same planner over 10^3..10^5 nodes beside baseline strategies.
//!
//! The gossip messages these exchange are wire types (`crate::protocol::gossip`). The node runs
//! the core (`crate::node::balancing`): the core never calls back into it.

pub mod capacity;
pub mod config;
pub mod election;
pub mod load;
pub(crate) mod manager;
pub mod plan;
pub mod sim;
pub(crate) mod view;

pub use config::BalanceConfig;
