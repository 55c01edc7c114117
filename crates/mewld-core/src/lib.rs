//! mewld's pure core: every rule a cluster's life follows, with no I/O.
//!
//! [`core::Core`] is the engine's state machine: one [`core::Input`] in
//! (an operator's request, a message from a cluster, a process's exit, a
//! timer, a fleet heartbeat), [`core::Command`]s out (spawn, stop,
//! publish, log, set a timer). Time, ids and the pid come in as inputs or
//! through the constructor, so every rule is tested in simulated time,
//! driven by the same [`core::driver`] the runner uses. The crate holds no
//! async runtime, no Redis, no HTTP and no terminal: `.ci/core-is-pure`
//! keeps it so. ARCHITECTURE.md shows where it sits.

pub mod actlog;
pub mod argv;
pub mod cluster_map;
pub mod config;
pub mod core;
pub mod fleet;
pub mod health;
pub mod identify;
pub mod launch;
pub mod model;
pub mod protocol;
pub mod restart;
pub mod rolling;
pub mod web;
