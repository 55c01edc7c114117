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

use crate::cluster_map::ClusterId;
use crate::config::LaunchPolicy;

/// A cluster's place in the launch. The core lists every cluster of the
/// fleet in id order, so every host walks the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Of this host, never started: the launch may start it (its index).
    Startable(usize),
    /// Of this host, started by the launch, not launched yet.
    Starting,
    /// Of another host, not launched yet (or its host is not up).
    Remote(ClusterId),
    /// Launched, given up on, or out of the launch (stopped, failed).
    Launched,
}

/// What the launch may do now: the first `at_once` unlaunched clusters in
/// id order make its window.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// A cluster of this host to start now.
    pub start: Option<usize>,
    /// Clusters of other hosts the launch waits for.
    pub remote: Vec<ClusterId>,
    /// Nothing is left to launch.
    pub empty: bool,
}

#[derive(Debug)]
pub struct Launcher {
    policy: LaunchPolicy,
    /// Clusters that may be starting at once (across the fleet).
    at_once: usize,
    /// The launch has begun (the transport came up once).
    begun: bool,
    /// This host's clusters whose `launch_next` the launch waits for.
    waiting_on: BTreeSet<ClusterId>,
    /// Other hosts' clusters it waits for, each with its own timeout.
    awaiting: BTreeSet<ClusterId>,
    /// Other hosts' clusters it gave up waiting for.
    skipped: BTreeSet<ClusterId>,
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
            awaiting: BTreeSet::new(),
            skipped: BTreeSet::new(),
            fully_up: false,
        }
    }

    /// How many clusters may be starting at once.
    pub fn at_once(&self) -> usize {
        self.at_once
    }

    /// The launch may begin. True only the first time.
    pub fn begin(&mut self) -> bool {
        !std::mem::replace(&mut self.begun, true)
    }

    pub fn begun(&self) -> bool {
        self.begun
    }

    /// The window over `turns` (every cluster, in id order).
    pub fn window(&self, turns: impl IntoIterator<Item = Turn>) -> Window {
        let mut window = Window::default();
        let mut taken = 0;
        for turn in turns {
            if taken >= self.at_once {
                break;
            }
            match turn {
                Turn::Launched => continue,
                Turn::Startable(idx) => {
                    window.start.get_or_insert(idx);
                }
                Turn::Starting => {}
                Turn::Remote(id) => window.remote.push(id),
            }
            taken += 1;
        }
        window.empty = taken == 0;
        window
    }

    /// Whether any cluster is still to be launched.
    pub fn any_left(&self, turns: impl IntoIterator<Item = Turn>) -> bool {
        turns.into_iter().any(|t| t != Turn::Launched)
    }

    /// `id` is being started by the launch; wait for its `launch_next`.
    pub fn started(&mut self, id: ClusterId) {
        self.waiting_on.insert(id);
    }

    pub fn is_waiting_on(&self, id: ClusterId) -> bool {
        self.waiting_on.contains(&id)
    }

    /// No started cluster of this host is still to say `launch_next`.
    pub fn is_idle(&self) -> bool {
        self.waiting_on.is_empty()
    }

    /// `id` said `launch_next` or will never say it (failed, stopped, out
    /// of time). True when the launch was waiting on it and now goes on.
    pub fn release(&mut self, id: ClusterId) -> bool {
        self.waiting_on.remove(&id)
    }

    /// Begin waiting for another host's `id`. True the first time (arm its
    /// timeout then).
    pub fn await_remote(&mut self, id: ClusterId) -> bool {
        self.awaiting.insert(id)
    }

    /// Another host's `id` launched or was given up on. True when the
    /// launch was waiting for it.
    pub fn release_remote(&mut self, id: ClusterId) -> bool {
        self.awaiting.remove(&id)
    }

    pub fn awaited_remote(&self) -> impl Iterator<Item = ClusterId> + '_ {
        self.awaiting.iter().copied()
    }

    /// Stop waiting for another host's `id` in this launch.
    pub fn skip(&mut self, id: ClusterId) {
        self.awaiting.remove(&id);
        self.skipped.insert(id);
    }

    pub fn is_skipped(&self, id: ClusterId) -> bool {
        self.skipped.contains(&id)
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

#[cfg(test)]
mod tests {
    use super::*;
    use Turn::*;

    #[test]
    fn first_startable_in_id_order() {
        let l = Launcher::default();
        assert_eq!(
            l.window([Launched, Startable(1), Startable(2)]).start,
            Some(1)
        );
        // An operator may have started or stopped a later one out of turn.
        assert_eq!(
            l.window([Launched, Launched, Launched, Startable(3)]).start,
            Some(3)
        );
        let done = l.window([Launched, Launched]);
        assert!(done.empty && done.start.is_none());
        assert!(l.window([]).empty);
    }

    #[test]
    fn one_at_a_time() {
        let mut l = Launcher::default();
        assert!(l.begin());
        assert!(!l.begin(), "the launch begins once");
        l.started(0);
        assert_eq!(l.window([Starting, Startable(1)]).start, None);
        assert!(!l.release(1), "not the one waited on");
        assert!(l.release(0));
        assert_eq!(l.window([Launched, Startable(1)]).start, Some(1));
        assert_eq!(l.gap(Duration::from_secs(5)), Duration::from_secs(5));
    }

    #[test]
    fn another_hosts_cluster_holds_the_window() {
        let l = Launcher::default();
        let w = l.window([Launched, Remote(1), Startable(2)]);
        assert_eq!((w.start, w.remote, w.empty), (None, vec![1], false));
        let fixed = LaunchPolicy::Concurrent { at_once: Some(2) };
        let w = Launcher::new(fixed, 16, 4).window([Remote(0), Startable(1), Startable(2)]);
        assert_eq!((w.start, w.remote), (Some(1), vec![0]));
        let mut l = Launcher::default();
        assert!(l.await_remote(1) && !l.await_remote(1));
        l.skip(1);
        assert!(l.is_skipped(1) && !l.release_remote(1));
    }

    #[test]
    fn concurrent_up_to_its_bound() {
        let policy = LaunchPolicy::Concurrent { at_once: None };
        // 16 buckets, 4 shards a cluster: 4 clusters fill every bucket,
        // 4 more wait for the next window.
        assert_eq!(Launcher::new(policy, 16, 4).at_once(), 8);
        assert_eq!(Launcher::new(policy, 1, 4).at_once(), 2);
        let fixed = LaunchPolicy::Concurrent { at_once: Some(3) };
        let l = Launcher::new(fixed, 16, 4);
        assert_eq!(l.gap(Duration::from_secs(5)), Duration::ZERO);
        assert_eq!(l.window([Starting, Starting, Startable(2)]).start, Some(2));
        assert_eq!(
            l.window([Starting, Starting, Starting, Startable(3)]).start,
            None,
            "three starting"
        );
        assert_eq!(
            l.window([Starting, Launched, Starting, Startable(3)]).start,
            Some(3)
        );
    }
}
