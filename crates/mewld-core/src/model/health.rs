//! A cluster's health as its latest diagnostic answer told it.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::protocol::ShardHealth;

/// A cluster's latest answer to a diagnostic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// When the answer arrived.
    pub at: SystemTime,
    pub round_trip_ms: u64,
    pub shards: Vec<ShardHealth>,
}

impl Health {
    pub fn shards_up(&self) -> usize {
        self.shards.iter().filter(|s| s.up).count()
    }

    /// Mean latency of the shards that reported one, in milliseconds.
    pub fn mean_latency(&self) -> Option<f64> {
        let lat: Vec<f64> = self.shards.iter().filter_map(|s| s.latency).collect();
        (!lat.is_empty()).then(|| lat.iter().sum::<f64>() / lat.len() as f64)
    }

    pub fn guilds(&self) -> u64 {
        self.shards.iter().filter_map(|s| s.guilds).sum()
    }
}
