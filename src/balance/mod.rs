//! Load balancing, the patent's core: the pure planner ([`plan`]) that the manager runs each
//! round, and the simulator ([`sim`]) that runs the very same planner over 10^3..10^5 nodes
//! beside baseline strategies.

pub mod plan;
pub mod sim;
