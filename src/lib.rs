//! mewld: a Discord bot clusterer, the I/O around the pure core crate
//! (mewld-core; ARCHITECTURE.md). See README.md for how to run it and
//! docs/protocol.md for the contract with bots.

pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod discord;
pub mod engine;
pub mod fake_bot;
pub mod fd_budget;
pub mod fleet;
pub mod guardian;
pub mod host;
pub mod http;
pub mod identify;
pub mod logging;
pub mod metrics;
pub mod phase;
pub mod preflight;
pub mod redis_link;
pub mod socket_file;
pub mod startup;
pub mod systemd;
pub mod transport;
pub mod tui;
pub mod web;
