//! The fleet's pure rules (docs/protocol.md §10): the records hosts keep
//! in Redis, the heartbeat's rules (renewal, versions, lease, stalls,
//! orders to stop), the slice of the map each host runs, and why a host
//! may not join. The heartbeat task and the Redis store are the main crate's.

pub mod heartbeat;
pub mod record;
pub mod refusal;
pub mod slice;
pub mod summary;

pub use record::{FleetView, HostRecord, Leader, Membership};
pub use refusal::{refusal, Refusal};
