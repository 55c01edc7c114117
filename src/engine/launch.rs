//! The launch policy: which cluster may start now. Kept in one place so a
//! smarter policy (identify-aware, `max_concurrency` buckets) is a local
//! change.
//!
//! Today's policy is the original's, safe for every bot: one cluster at a
//! time, in id order; the next starts `cluster_start_next_delay` after the
//! previous one said `launch_next`.

use super::state::ClusterState;

/// The index of the next never-started cluster, if any is left.
pub fn next_to_start(states: impl IntoIterator<Item = ClusterState>) -> Option<usize> {
    states.into_iter().position(|s| s == ClusterState::Pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ClusterState::*;

    #[test]
    fn first_pending_in_id_order() {
        assert_eq!(next_to_start([Running, Pending, Pending]), Some(1));
        // An operator may have started or stopped a later one out of turn.
        assert_eq!(
            next_to_start([Running, Stopped, Starting, Pending]),
            Some(3)
        );
        assert_eq!(next_to_start([Running, Crashed, Failed]), None);
        assert_eq!(next_to_start([]), None);
    }
}
