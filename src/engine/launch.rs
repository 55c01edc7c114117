//! The launch policy: which cluster may start now, and what the launch is
//! waiting for. One object, so a smarter policy (identify-aware,
//! `max_concurrency` buckets, several hosts) replaces it without touching
//! the rest of the engine.
//!
//! Today's policy is the original's, safe for every bot: one cluster at a
//! time, in id order; the next starts `cluster_start_next_delay` after the
//! previous one said `launch_next` (or was given up on).

use super::state::ClusterState;
use crate::cluster_map::ClusterId;

#[derive(Debug, Default)]
pub struct Launcher {
    /// The launch has begun (the transport came up once).
    begun: bool,
    /// The cluster whose `launch_next` the launch waits for.
    waiting_on: Option<ClusterId>,
    /// Every cluster has launched once; `all_clusters_launched` was sent.
    fully_up: bool,
}

impl Launcher {
    /// The transport is up. True only the first time: the launch begins.
    pub fn begin(&mut self) -> bool {
        !std::mem::replace(&mut self.begun, true)
    }

    /// The index of the cluster that may start now: the first never-started
    /// one, unless the launch is waiting on another.
    pub fn next_to_start(&self, states: impl IntoIterator<Item = ClusterState>) -> Option<usize> {
        if self.waiting_on.is_some() {
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
        self.waiting_on = Some(id);
    }

    pub fn waiting_on(&self) -> Option<ClusterId> {
        self.waiting_on
    }

    /// `id` said `launch_next` or will never say it (failed, stopped, out
    /// of time). True when the launch was waiting on it and now goes on.
    pub fn release(&mut self, id: ClusterId) -> bool {
        if self.waiting_on == Some(id) {
            self.waiting_on = None;
            return true;
        }
        false
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
    }
}
