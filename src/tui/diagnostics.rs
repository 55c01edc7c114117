//! What the console remembers of diagnostics: every answer as it arrives
//! (the diagnostics pane) and each cluster's recent samples (the detail's
//! trend lines). Derived from snapshots, a cluster's `health.at` changing
//! being a new answer, so an attached console has it too.

use std::collections::{HashMap, VecDeque};
use std::time::SystemTime;

use crate::cluster_map::ClusterId;
use crate::engine::state::Snapshot;

/// Answers kept for the pane; the oldest go first.
pub const ANSWERS_CAP: usize = 1000;
/// Samples kept per cluster for its trend lines; the oldest go first.
pub const SAMPLES_CAP: usize = 120;

/// One diagnostic answer, as the pane lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub at: SystemTime,
    pub id: ClusterId,
    pub name: String,
    pub round_trip_ms: u64,
    pub shards_up: usize,
    pub shards: usize,
    pub latency_ms: Option<f64>,
    pub guilds: u64,
}

impl Answer {
    /// Whether the pane's filter (an id, or part of a name) lets it through.
    pub fn matches(&self, filter: &str) -> bool {
        let f = filter.trim().to_lowercase();
        f.is_empty() || self.id.to_string() == f || self.name.to_lowercase().contains(&f)
    }
}

/// A cluster's figures at one answer, for its trend lines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub latency_ms: Option<f64>,
    pub guilds: u64,
}

#[derive(Debug, Default)]
pub struct Diagnostics {
    pub answers: VecDeque<Answer>,
    samples: HashMap<ClusterId, (SystemTime, VecDeque<Sample>)>,
}

impl Diagnostics {
    /// Takes in the answers `snapshot` shows that were not seen before.
    pub fn observe(&mut self, snapshot: &Snapshot) {
        for c in &snapshot.clusters {
            let Some(h) = &c.health else { continue };
            let (last, samples) = self
                .samples
                .entry(c.id)
                .or_insert_with(|| (SystemTime::UNIX_EPOCH, VecDeque::new()));
            if *last == h.at {
                continue;
            }
            *last = h.at;
            let answer = Answer {
                at: h.at,
                id: c.id,
                name: c.name.clone(),
                round_trip_ms: h.round_trip_ms,
                shards_up: h.shards_up(),
                shards: h.shards.len(),
                latency_ms: h.mean_latency(),
                guilds: h.guilds(),
            };
            if samples.len() == SAMPLES_CAP {
                samples.pop_front();
            }
            samples.push_back(Sample {
                latency_ms: answer.latency_ms,
                guilds: answer.guilds,
            });
            if self.answers.len() == ANSWERS_CAP {
                self.answers.pop_front();
            }
            self.answers.push_back(answer);
        }
    }

    /// The cluster's samples, oldest first.
    pub fn samples(&self, id: ClusterId) -> Option<&VecDeque<Sample>> {
        self.samples.get(&id).map(|(_, s)| s)
    }
}
