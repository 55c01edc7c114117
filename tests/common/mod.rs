//! Test harness: a real `redis-server` on a free loopback port, a local fake
//! of Discord's Get Gateway Bot, the real `mewld` binary, and the repo's fake
//! bot as clusters. Nothing here reaches the internet.

#![allow(dead_code)] // Each test file uses its own part of the harness.

mod ask;
mod bot;
mod discord;
mod fixture;
mod follow;
mod manager;
mod metrics;
mod net;
mod process;
mod ready;
mod redis;
mod socket;
pub mod tmux;
mod wait;

// Each test file uses some of these, so a file that needs none of one
// module's items would otherwise be told that its re-export is unused.
#[allow(unused_imports)]
pub use self::{
    ask::*, bot::*, discord::*, fixture::*, follow::*, manager::*, metrics::*, net::*, process::*,
    ready::*, redis::*, socket::*, wait::*,
};
