//! The types every layer shares: plain data, no behaviour beyond naming
//! and formatting itself.

pub mod event;
pub mod fleet;
pub mod gateway;
pub mod health;
pub mod ops;
pub mod process;
pub mod restarts;
pub mod state;

pub use event::Event;
pub use gateway::{GatewayBot, SessionStartLimit};
pub use ops::{Exit, FleetVia, Label, Operation, Origin, Peer, Refused, Via};
pub use process::{CommandLine, ExitInfo, SpawnError, Stream};
pub use restarts::{RestartCounts, RestartReason};
