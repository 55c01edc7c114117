//! Crashes (docs/protocol.md §6).

use super::{Sim, SECS};
use crate::actlog::{LogEvent, StartVia};
use crate::model::state::ClusterState;
use crate::model::{Operation, Refused};

#[test]
fn a_crash_is_restarted_with_backoff_and_a_crash_loop_is_marked_failed() {
    let mut sim = Sim::up(
        2,
        "restart_backoff_base: 3\nrestart_backoff_max: 10\nrestart_max_failures: 4\n",
    );
    for (round, wait) in [3u64, 6, 10].into_iter().enumerate() {
        sim.mark();
        sim.exit(0, 1);
        assert_eq!(sim.state(0), ClusterState::Crashed, "round {round}");
        sim.advance(SECS(wait - 1));
        assert!(sim.spawned().is_empty(), "round {round}: too early");
        sim.advance(SECS(1));
        assert_eq!(sim.spawned(), vec![0], "round {round}: after {wait}s");
    }
    sim.mark();
    sim.exit(0, 1);
    assert_eq!(sim.state(0), ClusterState::Failed);
    assert!(sim.logged().iter().any(|e| matches!(
        e,
        LogEvent::ClusterFailed {
            id: 0,
            quick_failures: 4,
            ..
        }
    )));
    sim.advance(SECS(3600));
    assert!(sim.spawned().is_empty(), "a failed cluster stays stopped");
    // An operator's start gives it a fresh count.
    assert_eq!(sim.op(Operation::Start(0)), Ok(()));
    assert_eq!(sim.cluster(0).quick_failures, 0);
}

#[test]
fn a_cluster_that_ran_long_enough_starts_its_failure_count_afresh() {
    let mut sim = Sim::up(2, "restart_backoff_base: 3\nrestart_stable_after: 60\n");
    sim.exit(0, 1);
    sim.advance(SECS(3));
    sim.advance(SECS(61));
    sim.mark();
    sim.exit(0, 1);
    assert!(sim.logged().iter().any(|e| matches!(
        e,
        LogEvent::ClusterExited {
            id: 0,
            restart_in_ms: Some(3000),
            quick_failures: Some(0),
            ..
        }
    )));
}

#[test]
fn a_cluster_that_comes_back_is_announced_again() {
    let mut sim = Sim::up(4, "");
    sim.exit(1, 1);
    sim.advance(SECS(3));
    assert_eq!(sim.spawned(), vec![1]);
    assert_eq!(sim.announcements(), 0);
    sim.launch_next(1);
    assert_eq!(sim.announcements(), 1);
}

#[test]
fn a_spawn_short_of_descriptors_is_a_crash_retried_with_backoff_for_ever() {
    let mut sim = Sim::up(2, "restart_backoff_base: 3\nrestart_backoff_max: 10\n");
    sim.short.insert(0);
    sim.exit(0, 1);
    // The exit was the first quick failure, each failed spawn one more:
    // 3 s, then 6, then 10 (the most) for as long as the shortage lasts.
    let mut waits = Vec::new();
    for _ in 0..20 {
        let Some(wait) = sim.cluster(0).next_restart_at else {
            panic!("no restart scheduled: {:?}", sim.logged());
        };
        let wait = wait.duration_since(sim.now.wall).unwrap_or_default();
        waits.push(wait.as_secs());
        sim.mark();
        sim.advance(wait);
        assert_eq!(sim.spawned(), vec![0], "after {waits:?}");
        assert_eq!(sim.state(0), ClusterState::Crashed, "after {waits:?}");
    }
    assert_eq!(&waits[..4], &[3, 6, 10, 10], "{waits:?}");
    assert!(
        sim.logged().iter().any(|e| matches!(
            e,
            LogEvent::ClusterStartFailed {
                id: 0,
                via: StartVia::Observe,
                restart_in_ms: Some(10_000),
                ..
            }
        )),
        "{:?}",
        sim.logged()
    );
    // The shortage ends: the next try starts it.
    sim.short.clear();
    sim.mark();
    sim.advance(SECS(10));
    assert_eq!(sim.spawned(), vec![0]);
    assert_eq!(sim.state(0), ClusterState::Starting);
    assert!(
        sim.logged()
            .iter()
            .any(|e| matches!(e, LogEvent::ClusterRestarted { id: 0, .. })),
        "{:?}",
        sim.logged()
    );
}

#[test]
fn failed_spawns_count_toward_restart_max_failures_like_crashes() {
    let mut sim = Sim::up(2, "restart_backoff_base: 1\nrestart_max_failures: 3\n");
    sim.short.insert(0);
    sim.exit(0, 1);
    sim.advance(SECS(1));
    assert_eq!(sim.state(0), ClusterState::Crashed);
    sim.advance(SECS(2));
    assert_eq!(sim.state(0), ClusterState::Failed);
    assert!(
        sim.logged().iter().any(|e| matches!(
            e,
            LogEvent::ClusterFailed {
                id: 0,
                quick_failures: 3,
                ..
            }
        )),
        "{:?}",
        sim.logged()
    );
    sim.mark();
    sim.advance(SECS(3600));
    assert!(sim.spawned().is_empty(), "{:?}", sim.spawned());
    // An operator's start that meets the shortage is answered so, and
    // retried with a fresh count.
    let refused = sim.op(Operation::Start(0));
    assert!(
        matches!(refused, Err(Refused::CouldNotStart { .. })),
        "{refused:?}"
    );
    assert_eq!(sim.state(0), ClusterState::Crashed);
    assert_eq!(sim.cluster(0).quick_failures, 1);
    sim.short.clear();
    sim.advance(SECS(1));
    assert_eq!(sim.state(0), ClusterState::Starting);
}
