//! The fleet's pure rules (docs/protocol.md §10), over the records hosts
//! keep in Redis ([`crate::model::fleet`]): the heartbeat's rules (renewal, versions, lease, stalls,
//! orders to stop), the slice of the map each host runs, and why a host
//! may not join. The heartbeat task and the Redis store are the main crate's.

pub mod heartbeat;
pub mod per_host;
pub mod refusal;
pub mod slice;
pub mod summary;

pub use crate::model::fleet::{FleetView, HostRecord, Leader, Membership};
pub use refusal::{refusal, Refusal};
