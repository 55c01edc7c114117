//! The launch (docs/protocol.md §6).

use std::time::SystemTime;

use super::{Sim, SECS};
use crate::actlog::{LogEvent, StartVia};
use crate::cluster_map::ClusterId;
use crate::core::{Command, Input, Timer};
use crate::model::state::ClusterState;
use crate::model::Operation;

#[test]
fn the_launch_waits_for_the_transport_then_goes_one_cluster_at_a_time() {
    let mut sim = Sim::new(6, "cluster_start_next_delay: 5\n");
    assert!(
        sim.spawned().is_empty(),
        "nothing starts before the subscription"
    );
    sim.input(Input::TransportUp);
    assert_eq!(sim.spawned(), vec![0]);
    sim.advance(SECS(60));
    assert_eq!(sim.spawned(), vec![0], "the next waits for launch_next");
    sim.launch_next(0);
    assert_eq!(sim.state(0), ClusterState::Running);
    sim.advance(SECS(4));
    assert_eq!(
        sim.spawned(),
        vec![0],
        "not before cluster_start_next_delay"
    );
    sim.advance(SECS(1));
    assert_eq!(sim.spawned(), vec![0, 1]);
    sim.launch_next(1);
    sim.advance(SECS(5));
    assert_eq!(sim.announcements(), 0);
    sim.launch_next(2);
    assert_eq!(sim.spawned(), vec![0, 1, 2]);
    assert_eq!(
        sim.announcements(),
        1,
        "all_clusters_launched after the last"
    );
    assert!(sim.core.snapshot().fully_up);
    // A reconnect does not start the launch again.
    sim.input(Input::TransportDown {
        retry_at: SystemTime::UNIX_EPOCH,
    });
    sim.input(Input::TransportUp);
    assert_eq!(sim.spawned().len(), 3);
}

/// With no start delay, the next cluster starts in the step that handles
/// `launch_next`: no timer (the runner's have a millisecond's granularity).
#[test]
fn with_no_start_delay_the_next_cluster_starts_on_launch_next_itself() {
    let mut sim = Sim::new(6, "cluster_start_next_delay: 0\n");
    sim.input(Input::TransportUp);
    sim.mark();
    sim.launch_next(0);
    assert_eq!(sim.spawned(), vec![1]);
    assert!(
        !sim.since_mark().iter().any(|c| matches!(
            c,
            Command::SetTimer {
                timer: Timer::StartNext,
                ..
            }
        )),
        "{:?}",
        sim.since_mark()
    );
}

const CONCURRENT: &str = "identify_queue: 127.0.0.1:5000\nlaunch: concurrent\n";

/// `launch: concurrent`: with `max_concurrency` 4 and 2 shards a cluster,
/// 4 clusters start at once; each `launch_next` lets the next one start at
/// once, whatever `cluster_start_next_delay` says; the bot is announced
/// once, after the last.
#[test]
fn a_concurrent_launch_keeps_its_bound_of_clusters_starting() {
    let mut sim = Sim::new(20, &format!("{CONCURRENT}cluster_start_next_delay: 5\n"));
    sim.input(Input::TransportUp);
    assert_eq!(sim.spawned(), vec![0, 1, 2, 3]);
    sim.launch_next(2);
    assert_eq!(sim.spawned(), vec![0, 1, 2, 3, 4], "no delay");
    sim.advance(SECS(60));
    assert_eq!(sim.spawned().len(), 5, "still four starting");
    for id in [0, 1, 3, 4, 5, 6, 7, 8] {
        sim.launch_next(id);
    }
    assert_eq!(sim.spawned(), (0..10).collect::<Vec<_>>());
    assert_eq!(sim.announcements(), 0, "cluster 9 is still starting");
    sim.launch_next(9);
    assert_eq!(sim.announcements(), 1);
    assert!(sim.core.snapshot().fully_up);
}

/// The spawns of a concurrent launch are answered in the order they were
/// asked, as the runner answers them: the clusters are logged started in
/// id order.
#[test]
fn a_concurrent_launchs_starts_are_told_in_the_order_asked() {
    let mut sim = Sim::new(20, CONCURRENT);
    sim.input(Input::TransportUp);
    let started: Vec<ClusterId> = sim
        .logged()
        .iter()
        .filter_map(|e| match e {
            LogEvent::ClusterStarted { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(started, vec![0, 1, 2, 3]);
}

/// A cluster of a concurrent launch that crashes is restarted and still
/// counted as starting: the launch neither waits on it for ever nor starts
/// a fifth; its `launch_next` after the restart releases its place.
#[test]
fn a_crash_during_a_concurrent_launch_keeps_its_place() {
    let mut sim = Sim::new(12, &format!("{CONCURRENT}restart_backoff_base: 1\n"));
    sim.input(Input::TransportUp);
    assert_eq!(sim.spawned(), vec![0, 1, 2, 3]);
    sim.exit(1, 1);
    sim.advance(SECS(1));
    assert_eq!(sim.spawned(), vec![0, 1, 2, 3, 1], "restarted, no fifth");
    sim.launch_next(1);
    assert_eq!(sim.spawned(), vec![0, 1, 2, 3, 1, 4]);
    for id in [0, 2, 3, 4, 5] {
        sim.launch_next(id);
    }
    assert_eq!(sim.announcements(), 1);
}

#[test]
fn a_cluster_that_never_says_launch_next_is_given_up_on_after_launch_timeout() {
    let mut sim = Sim::new(4, "launch_timeout: 30\ncluster_start_next_delay: 1\n");
    sim.input(Input::TransportUp);
    sim.advance(SECS(29));
    assert_eq!(sim.spawned(), vec![0]);
    sim.advance(SECS(1));
    assert!(sim.logged().contains(&&LogEvent::LaunchTimeout {
        id: 0,
        waited_secs: 30
    }));
    sim.advance(SECS(1));
    assert_eq!(sim.spawned(), vec![0, 1]);
    // Its late launch_next still marks it running, and moves nothing.
    sim.launch_next(0);
    assert_eq!(sim.state(0), ClusterState::Running);
    assert_eq!(sim.spawned(), vec![0, 1]);
}

/// A cluster that crashes before its `launch_next` is restarted; if the
/// restarted one never says it either, the launch moves on after
/// `launch_timeout` all the same.
#[test]
fn a_cluster_restarted_before_its_launch_next_is_given_up_on_too() {
    let mut sim = Sim::new(
        4,
        "launch_timeout: 30\ncluster_start_next_delay: 1\nrestart_backoff_base: 1\n",
    );
    sim.input(Input::TransportUp);
    sim.advance(SECS(10));
    sim.exit(0, 1);
    sim.advance(SECS(1));
    assert_eq!(sim.spawned(), vec![0, 0], "restarted");
    sim.advance(SECS(29));
    assert_eq!(
        sim.spawned(),
        vec![0, 0],
        "its own timeout runs from its restart"
    );
    sim.advance(SECS(2));
    assert!(sim.logged().contains(&&LogEvent::LaunchTimeout {
        id: 0,
        waited_secs: 30
    }));
    assert_eq!(sim.spawned(), vec![0, 0, 1]);
}

#[test]
fn a_cluster_that_cannot_start_does_not_hold_up_the_rest() {
    let mut sim = Sim::new(6, "");
    sim.broken.insert(0);
    sim.input(Input::TransportUp);
    assert_eq!(sim.state(0), ClusterState::Failed);
    assert!(sim.logged().iter().any(|e| matches!(
        e,
        LogEvent::ClusterStartFailed {
            id: 0,
            via: StartVia::StartNext,
            ..
        }
    )));
    sim.advance(SECS(5));
    assert_eq!(sim.spawned(), vec![0, 1]);
    // Faces show why; a start that works clears it.
    let error = |sim: &Sim| sim.core.snapshot().clusters[0].start_error.clone();
    assert_eq!(
        error(&sim).as_deref(),
        Some("No such file or directory (os error 2)")
    );
    sim.broken.clear();
    assert_eq!(sim.op(Operation::Start(0)), Ok(()));
    assert_eq!(error(&sim), None);
}

#[test]
fn a_launch_spawn_short_of_descriptors_keeps_its_place_and_is_retried() {
    let mut sim = Sim::new(6, "restart_backoff_base: 3\n");
    sim.short.insert(0);
    sim.input(Input::TransportUp);
    assert_eq!(sim.state(0), ClusterState::Crashed);
    assert!(sim.logged().contains(&&LogEvent::ClusterStartFailed {
        id: 0,
        via: StartVia::StartNext,
        error: "Too many open files (os error 24)".into(),
        restart_in_ms: Some(3000),
    }));
    // Like a crash before its launch_next: the launch waits for it.
    sim.advance(SECS(2));
    assert_eq!(sim.spawned(), vec![0]);
    sim.short.clear();
    sim.advance(SECS(1));
    assert_eq!(sim.spawned(), vec![0, 0]);
    assert_eq!(sim.state(0), ClusterState::Starting);
    sim.launch_in_order(0..1);
    assert_eq!(sim.spawned(), vec![0, 0, 1]);
}

#[test]
fn an_operators_stop_of_a_launch_cluster_waiting_to_be_retried_lets_the_launch_go_on() {
    let mut sim = Sim::new(6, "restart_backoff_base: 3\n");
    sim.short.insert(0);
    sim.input(Input::TransportUp);
    assert_eq!(sim.state(0), ClusterState::Crashed);
    assert_eq!(sim.op(Operation::Stop(0)), Ok(()));
    sim.advance(sim.core.config.cluster_start_next_delay);
    assert_eq!(sim.spawned(), vec![0, 1]);
    assert_eq!(sim.state(0), ClusterState::Stopped);
}
