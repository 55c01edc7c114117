//! What the console remembers of diagnostics: every answer as it arrives,
//! and every ping that got none (the diagnostics pane), and each cluster's
//! recent samples (the detail's trend lines). Derived from snapshots (a
//! cluster's `health.at` changing is a new answer) and the action log's
//! `ping_failure` entries, so an attached console has them too.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::SystemTime;

use mewld_core::cluster_map::ClusterId;
use mewld_core::model::state::Snapshot;

/// Answers kept for the pane; the oldest go first.
pub const ANSWERS_CAP: usize = 1000;
/// Samples kept per cluster for its trend lines; the oldest go first.
pub const SAMPLES_CAP: usize = 120;
/// A round trip this long is marked late: Redis carries a ping both ways
/// in a few milliseconds, so a second means a stalled bot or channel.
pub const LATE_MS: u64 = 1000;

/// One line of the pane: a cluster's answer, or a ping it left unanswered.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub at: SystemTime,
    pub id: ClusterId,
    pub name: String,
    /// `None`: no answer (the engine logged a `ping_failure`).
    pub reply: Option<Reply>,
}

/// What an answer said.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub round_trip_ms: u64,
    pub shards_up: usize,
    pub shards: usize,
    pub latency_ms: Option<f64>,
    pub guilds: u64,
}

impl Reply {
    pub fn late(&self) -> bool {
        self.round_trip_ms >= LATE_MS
    }
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
    /// The pane's filter: a cluster id or part of a name.
    pub filter: String,
    /// Matching answers scrolled up from the newest; 0 follows them.
    pub scroll: usize,
}

impl Diagnostics {
    /// Takes in the answers `snapshot` shows that were not seen before.
    pub fn observe(&mut self, snapshot: &Snapshot) {
        // A reshard can take clusters away; their samples go with them.
        if self.samples.len() > snapshot.clusters.len() {
            let ids: HashSet<ClusterId> = snapshot.clusters.iter().map(|c| c.id).collect();
            self.samples.retain(|id, _| ids.contains(id));
        }
        let mut new = 0;
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
            let reply = Reply {
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
                latency_ms: reply.latency_ms,
                guilds: reply.guilds,
            });
            self.push(Answer {
                at: h.at,
                id: c.id,
                name: c.name.clone(),
                reply: Some(reply),
            });
            new += 1;
        }
        self.hold_view(new);
    }

    /// A ping cluster `id` left unanswered, logged at `at`.
    pub fn missed(&mut self, at: SystemTime, id: ClusterId, snapshot: &Snapshot) {
        let name = snapshot
            .clusters
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.name.clone())
            .unwrap_or_default();
        self.push(Answer {
            at,
            id,
            name,
            reply: None,
        });
        self.hold_view(1);
    }

    /// Scrolled up, the same answers stay in view as `new` ones arrive.
    fn hold_view(&mut self, new: usize) {
        if self.scroll > 0 {
            let filter = &self.filter;
            let shown = self.answers.iter().rev().take(new);
            self.scroll += shown.filter(|a| a.matches(filter)).count();
            self.scroll = self.scroll.min(self.answers.len());
        }
    }

    /// Scrolls `by` answers, down towards the newest when positive.
    pub fn scroll_by(&mut self, by: isize) {
        self.scroll = self
            .scroll
            .saturating_add_signed(-by)
            .min(self.answers.len());
    }

    fn push(&mut self, answer: Answer) {
        if self.answers.len() == ANSWERS_CAP {
            self.answers.pop_front();
        }
        self.answers.push_back(answer);
    }

    /// The cluster's samples, oldest first.
    pub fn samples(&self, id: ClusterId) -> Option<&VecDeque<Sample>> {
        self.samples.get(&id).map(|(_, s)| s)
    }
}
