//! The launch policy: which clusters may start now, and what the launch is
//! waiting for. One object, so the rest of the engine does not care which
//! policy runs.
//!
//! - Sequential, the original's and the default, safe for every bot: one
//!   cluster at a time, in id order; the next starts
//!   `cluster_start_next_delay` after the previous one said `launch_next`
//!   (or was given up on).
//! - Concurrent (`launch: concurrent`, only with the identify queue): up
//!   to `at_once` clusters starting at the same time, in id order, the next
//!   as soon as one says `launch_next`; the queue spaces their identifies.

use std::collections::BTreeSet;
use std::time::Duration;

use super::state::ClusterState;
use crate::cluster_map::ClusterId;
use crate::config::LaunchPolicy;

#[derive(Debug)]
pub struct Launcher {
    policy: LaunchPolicy,
    /// Clusters that may be starting at once.
    at_once: usize,
    /// The launch has begun (the transport came up once).
    begun: bool,
    /// The clusters whose `launch_next` the launch waits for.
    waiting_on: BTreeSet<ClusterId>,
    /// Every cluster has launched once; `all_clusters_launched` was sent.
    fully_up: bool,
}

impl Default for Launcher {
    fn default() -> Launcher {
        Launcher::new(LaunchPolicy::Sequential, 1, 1)
    }
}

impl Launcher {
    /// The launcher for `policy`, for a bot whose shards may identify
    /// `max_concurrency` at a time, `per_cluster` shards per cluster.
    pub fn new(policy: LaunchPolicy, max_concurrency: u32, per_cluster: u32) -> Launcher {
        let at_once = match policy {
            LaunchPolicy::Sequential => 1,
            LaunchPolicy::Concurrent { at_once: Some(n) } => n as usize,
            // Enough clusters to have a shard waiting in every bucket, and
            // as many again queued behind them for the next window.
            LaunchPolicy::Concurrent { at_once: None } => {
                2 * max_concurrency.max(1).div_ceil(per_cluster.max(1)) as usize
            }
        };
        Launcher {
            policy,
            at_once: at_once.max(1),
            begun: false,
            waiting_on: BTreeSet::new(),
            fully_up: false,
        }
    }

    /// How many clusters may be starting at once.
    pub fn at_once(&self) -> usize {
        self.at_once
    }

    /// The transport is up. True only the first time: the launch begins.
    pub fn begin(&mut self) -> bool {
        !std::mem::replace(&mut self.begun, true)
    }

    /// The index of a cluster that may start now: the first never-started
    /// one, while fewer than `at_once` are starting.
    pub fn next_to_start(&self, states: impl IntoIterator<Item = ClusterState>) -> Option<usize> {
        if self.waiting_on.len() >= self.at_once {
            return None;
        }
        first_pending(states)
    }

    /// Whether any cluster is still to be launched.
    pub fn any_left(&self, states: impl IntoIterator<Item = ClusterState>) -> bool {
        first_pending(states).is_some()
    }

    /// `id` is being started by the launch; wait for its `launch_next`.
    pub fn started(&mut self, id: ClusterId) {
        self.waiting_on.insert(id);
    }

    pub fn is_waiting_on(&self, id: ClusterId) -> bool {
        self.waiting_on.contains(&id)
    }

    /// No started cluster is still to say `launch_next`.
    pub fn is_idle(&self) -> bool {
        self.waiting_on.is_empty()
    }

    /// `id` said `launch_next` or will never say it (failed, stopped, out
    /// of time). True when the launch was waiting on it and now goes on.
    pub fn release(&mut self, id: ClusterId) -> bool {
        self.waiting_on.remove(&id)
    }

    /// How long after a release the next cluster starts: the configured
    /// delay one at a time; at once when the identify queue does the spacing.
    pub fn gap(&self, cluster_start_next_delay: Duration) -> Duration {
        match self.policy {
            LaunchPolicy::Sequential => cluster_start_next_delay,
            LaunchPolicy::Concurrent { .. } => Duration::ZERO,
        }
    }

    pub fn fully_up(&self) -> bool {
        self.fully_up
    }

    /// Nothing left to launch and nothing waited on: the bot is up. (A
    /// reshard that adds clusters sets it back to false.)
    pub fn set_fully_up(&mut self, up: bool) {
        self.fully_up = up;
    }
}

fn first_pending(states: impl IntoIterator<Item = ClusterState>) -> Option<usize> {
    states.into_iter().position(|s| s == ClusterState::Pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ClusterState::*;

    #[test]
    fn first_pending_in_id_order() {
        let l = Launcher::default();
        assert_eq!(l.next_to_start([Running, Pending, Pending]), Some(1));
        // An operator may have started or stopped a later one out of turn.
        assert_eq!(
            l.next_to_start([Running, Stopped, Starting, Pending]),
            Some(3)
        );
        assert_eq!(l.next_to_start([Running, Crashed, Failed]), None);
        assert_eq!(l.next_to_start([]), None);
    }

    #[test]
    fn one_at_a_time() {
        let mut l = Launcher::default();
        assert!(l.begin());
        assert!(!l.begin(), "the launch begins once");
        l.started(0);
        assert_eq!(l.next_to_start([Starting, Pending]), None);
        assert!(!l.release(1), "not the one waited on");
        assert!(l.release(0));
        assert_eq!(l.next_to_start([Running, Pending]), Some(1));
        assert_eq!(l.gap(Duration::from_secs(5)), Duration::from_secs(5));
    }

    #[test]
    fn concurrent_up_to_its_bound() {
        let policy = LaunchPolicy::Concurrent { at_once: None };
        // 16 buckets, 4 shards a cluster: 4 clusters fill every bucket,
        // 4 more wait for the next window.
        assert_eq!(Launcher::new(policy, 16, 4).at_once(), 8);
        assert_eq!(Launcher::new(policy, 1, 4).at_once(), 2);
        let fixed = LaunchPolicy::Concurrent { at_once: Some(3) };
        let mut l = Launcher::new(fixed, 16, 4);
        assert_eq!(l.gap(Duration::from_secs(5)), Duration::ZERO);
        for id in 0..3 {
            assert_eq!(l.next_to_start([Pending]), Some(0));
            l.started(id);
        }
        assert_eq!(l.next_to_start([Pending]), None, "three starting");
        assert!(l.release(1));
        assert!(l.is_waiting_on(0) && !l.is_idle());
        assert_eq!(l.next_to_start([Pending]), Some(0));
    }
}
