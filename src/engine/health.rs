//! Diagnostics in flight (PROTOCOL.md §5.3): each ping has its own nonce,
//! so every answer reaches its own request however many are in flight.
//! (The original funnelled all answers through one channel and lost some.)

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::cluster_map::ClusterId;
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

/// One ping waiting for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    pub cluster: ClusterId,
    /// The process it was sent to; an answer for an older one is stale.
    pub generation: u64,
    pub sent_at: Instant,
    /// The transport connection it was sent on; after a reconnect a missing
    /// answer says nothing about the cluster.
    pub connection: u64,
}

#[derive(Debug, Default)]
pub struct Pings {
    in_flight: HashMap<String, Ping>,
}

impl Pings {
    pub fn sent(&mut self, nonce: String, ping: Ping) {
        self.in_flight.insert(nonce, ping);
    }

    /// The ping with this nonce, if it is still waited for; an answer and a
    /// timeout each take it, so whichever comes second finds nothing.
    pub fn take(&mut self, nonce: &str) -> Option<Ping> {
        self.in_flight.remove(nonce)
    }

    /// Forgets the pings of a cluster whose process has gone.
    pub fn forget(&mut self, cluster: ClusterId) {
        self.in_flight.retain(|_, p| p.cluster != cluster);
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(cluster: ClusterId) -> Ping {
        Ping {
            cluster,
            generation: 1,
            sent_at: Instant::now(),
            connection: 1,
        }
    }

    #[test]
    fn each_answer_reaches_its_own_ping() {
        let mut p = Pings::default();
        for c in 0..40 {
            p.sent(format!("n{c}"), ping(c));
        }
        // Answers in any order all match.
        for c in (0..40).rev() {
            assert_eq!(p.take(&format!("n{c}")).map(|x| x.cluster), Some(c));
        }
        assert!(p.is_empty());
        assert_eq!(p.take("n1"), None, "an answer counts once");
    }

    #[test]
    fn a_timeout_after_the_answer_is_nothing() {
        let mut p = Pings::default();
        p.sent("a".into(), ping(0));
        assert!(p.take("a").is_some());
        assert!(p.take("a").is_none());
        p.sent("b".into(), ping(3));
        p.forget(3);
        assert!(p.take("b").is_none());
    }

    #[test]
    fn health_summaries() {
        let h = Health {
            at: SystemTime::now(),
            round_trip_ms: 3,
            shards: vec![
                ShardHealth {
                    shard_id: 0,
                    up: true,
                    latency: Some(40.0),
                    guilds: Some(10),
                    users: None,
                },
                ShardHealth {
                    shard_id: 1,
                    up: false,
                    latency: None,
                    guilds: Some(5),
                    users: None,
                },
                ShardHealth {
                    shard_id: 2,
                    up: true,
                    latency: Some(60.0),
                    guilds: None,
                    users: None,
                },
            ],
        };
        assert_eq!(h.shards_up(), 2);
        assert_eq!(h.mean_latency(), Some(50.0));
        assert_eq!(h.guilds(), 15);
    }
}
