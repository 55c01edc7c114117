//! A start-first reshard (docs/protocol.md §6.1): the new map starts
//! beside the old one and is committed once all of it is up. Until then a
//! cluster's own process runs the old map and only second processes and
//! new clusters run the new one, so that an abort leaves nothing of the
//! new map running, whatever happens meanwhile: a crash, an operator's
//! start, stop or restart, a cluster that is down.

use super::start_first::{assert_invariant, stops, START_FIRST};
use super::{Sim, SECS};
use crate::actlog::LogEvent;
use crate::cluster_map::ClusterId;
use crate::core::{Command, Input};
use crate::model::state::ClusterState;
use crate::model::{Operation, Refused};

const RESHARD: &str = "experimental_features: [reshard]\n";

/// The command lines of the spawns since the mark.
fn spawn_lines(sim: &Sim) -> Vec<(ClusterId, Vec<String>)> {
    sim.since_mark()
        .iter()
        .filter_map(|c| match c {
            Command::Spawn { id, line, .. } => Some((*id, line.args.clone())),
            _ => None,
        })
        .collect()
}

/// 3 shards → 6: cluster 0 ([0, 1]) keeps its shards, cluster 1 goes from
/// [2] to [2, 3], cluster 2 ([4, 5]) is new.
fn resharding() -> Sim {
    let mut sim = Sim::up(3, &format!("{START_FIRST}{RESHARD}"));
    assert_eq!(sim.op(Operation::Reshard), Ok(()));
    sim.mark();
    sim.input(Input::GatewayFetched(Ok(super::rolling::gateway(6))));
    sim
}

/// The new map starts beside the old one; the old processes stop only
/// once every new one said launch_next, and only then is the map new.
#[test]
fn a_start_first_reshard_starts_the_new_map_beside_the_old() {
    let mut sim = resharding();
    let old = sim.cluster(1).pid;
    let lines = spawn_lines(&sim);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].0, 1);
    assert!(
        lines[0].1.iter().any(|a| a == "[2, 3]"),
        "the new shards: {lines:?}"
    );
    assert!(
        lines[0].1.iter().any(|a| a == "6"),
        "the new count: {lines:?}"
    );
    assert_eq!(sim.spawns(), vec![(1, old)]);
    assert_eq!(sim.cluster(1).spec.shards, vec![2], "the old map runs on");
    sim.launch_next(1);
    assert!(stops(&sim).is_empty(), "held until the whole new map is up");
    assert_eq!(sim.cluster(1).pid, old);
    sim.mark();
    sim.advance(SECS(5));
    assert_eq!(sim.spawns(), vec![(2, None)], "the new cluster");
    assert!(spawn_lines(&sim)[0].1.iter().any(|a| a == "6"));
    sim.launch_next(2);
    assert!(stops(&sim).is_empty());
    sim.advance(SECS(5));
    assert_eq!(stops(&sim).len(), 1, "now the old process of cluster 1");
    assert_ne!(sim.cluster(1).pid, old);
    assert_eq!(sim.cluster(1).spec.shards, vec![2, 3]);
    assert_eq!(sim.core.snapshot().shard_count, 6);
    assert!(sim.logged().contains(&&LogEvent::ReshardRestartsDone {}));
    assert!(sim
        .logged()
        .iter()
        .any(|e| matches!(e, LogEvent::ReshardSuccess { new_shards: 6, .. })));
    assert_eq!(sim.announcements(), 1);
    sim.exit_second(1, 0);
    assert_invariant(&sim);
}

/// A new process that fails: every new one is stopped, the new cluster
/// leaves the map once it has exited, and the old map runs as it was.
#[test]
fn a_failing_start_first_reshard_keeps_the_old_map() {
    let mut sim = resharding();
    let old = sim.cluster(1).pid;
    let replacement = sim.cluster(1).second.as_ref().map_or(0, |s| s.generation);
    sim.launch_next(1);
    sim.advance(SECS(5));
    sim.mark();
    sim.exit(2, 1);
    let aborted = sim.logged().into_iter().find_map(|e| match e {
        LogEvent::ReshardAborted { id, reason, .. } => Some((*id, reason.clone())),
        _ => None,
    });
    assert_eq!(aborted.map(|a| a.0), Some(2));
    assert_eq!(stops(&sim), vec![(1, replacement)], "the held replacement");
    assert_eq!(sim.core.clusters.len(), 2, "cluster 2 left the map");
    assert_eq!(sim.core.snapshot().shard_count, 3);
    assert_eq!(sim.cluster(1).spec.shards, vec![2]);
    assert_eq!(sim.cluster(1).pid, old);
    sim.advance(SECS(60));
    assert!(
        sim.spawns().is_empty(),
        "no crash restart for a cluster that left"
    );
    assert_eq!(sim.op(Operation::Reshard), Err(Refused::StillStopping));
    sim.exit_second(1, 0);
    assert_eq!(sim.op(Operation::Reshard), Ok(()));
}

/// A new cluster that stays silent: stopped after the timeout, and gone
/// from the map once it has exited.
#[test]
fn a_silent_new_cluster_leaves_the_map_once_stopped() {
    let mut sim = resharding();
    sim.launch_next(1);
    sim.advance(SECS(5));
    sim.mark();
    sim.advance(SECS(600));
    assert!(sim
        .logged()
        .iter()
        .any(|e| matches!(e, LogEvent::ReshardAborted { id: 2, .. })));
    assert_eq!(stops(&sim).len(), 2, "the replacement and the new cluster");
    assert_eq!(sim.core.clusters.len(), 3, "until it has exited");
    sim.exit(2, 0);
    assert_eq!(sim.core.clusters.len(), 2);
    assert_eq!(
        (sim.state(0), sim.state(1)),
        (ClusterState::Running, ClusterState::Running)
    );
}

fn reshard_aborted(sim: &Sim) -> Option<(ClusterId, String)> {
    sim.logged().into_iter().find_map(|e| match e {
        LogEvent::ReshardAborted { id, reason, .. } => Some((*id, reason.clone())),
        _ => None,
    })
}

/// Whether a spawn's command line is on the old map (3 shards) or the new
/// one (6): its shard count argument.
fn shard_counts(sim: &Sim, id: ClusterId) -> Vec<String> {
    spawn_lines(sim)
        .into_iter()
        .filter(|(of, _)| *of == id)
        .map(|(_, args)| args[args.len() - 5].clone())
        .collect()
}

/// An operator's start of a new cluster before its turn is refused (it
/// was started twice, and the first process was forgotten): the reshard
/// starts it, once.
#[test]
fn a_new_cluster_is_started_by_its_turn_alone() {
    let mut sim = resharding();
    sim.mark();
    let refused = sim.op(Operation::Start(2));
    assert!(
        matches!(refused, Err(Refused::InReshard(ref l)) if l.id == 2),
        "{refused:?}"
    );
    sim.launch_next(1);
    sim.advance(SECS(5));
    sim.launch_next(2);
    sim.advance(SECS(5));
    assert_eq!(shard_counts(&sim, 2), vec!["6"], "one process of cluster 2");
    assert_eq!(sim.core.snapshot().shard_count, 6);
    assert_eq!(
        sim.op(Operation::Start(2)),
        Err(Refused::AlreadyRunning(sim.core.label(2)))
    );
    assert_invariant(&sim);
}

/// The old process exits during its overlap: the reshard is aborted (its
/// new process stopped, never made the cluster's) and the crash rules
/// start the cluster again on the old map.
#[test]
fn an_old_process_exiting_during_its_overlap_aborts_the_reshard() {
    let mut sim = resharding();
    let replacement = sim.cluster(1).second.as_ref().map_or(0, |s| s.generation);
    sim.mark();
    sim.exit(1, 1);
    let (id, reason) = reshard_aborted(&sim).expect("aborted");
    assert_eq!(id, 1);
    assert!(reason.contains("old process exited"), "{reason}");
    assert_eq!(stops(&sim), vec![(1, replacement)], "its new process");
    assert_eq!(sim.state(1), ClusterState::Crashed);
    assert_eq!(sim.core.clusters.len(), 2, "cluster 2 was never started");
    sim.exit_second(1, 0);
    sim.mark();
    sim.advance(SECS(60));
    assert_eq!(shard_counts(&sim, 1), vec!["3"], "restarted on the old map");
    assert_eq!(sim.cluster(1).spec.shards, vec![2]);
    assert_eq!(sim.core.snapshot().shard_count, 3);
    assert_invariant(&sim);
}

/// A changed cluster that crashes before its turn comes back on the old
/// map; its turn then starts its replacement on the new one.
#[test]
fn a_crash_restart_before_its_turn_runs_the_old_map() {
    let mut sim = Sim::up(6, &format!("{START_FIRST}{RESHARD}reshard_all: true\n"));
    assert_eq!(sim.op(Operation::Reshard), Ok(()));
    sim.input(Input::GatewayFetched(Ok(super::rolling::gateway(12))));
    sim.mark();
    sim.exit(2, 1);
    sim.advance(SECS(4));
    assert_eq!(shard_counts(&sim, 2), vec!["6"], "the crash restart");
    sim.launch_next(2);
    for id in 0..2 {
        sim.launch_next(id);
        sim.advance(SECS(5));
    }
    assert_eq!(
        shard_counts(&sim, 2),
        vec!["6", "12"],
        "then its replacement"
    );
    assert!(sim.cluster(2).replacement().is_some());
    assert!(reshard_aborted(&sim).is_none());
    assert_invariant(&sim);
}

/// An operator's restart of a cluster whose new process is ready aborts
/// the reshard first: the restart is on the old map, and no process of
/// the new map is left.
#[test]
fn an_operators_restart_during_an_overlap_aborts_the_reshard_first() {
    let mut sim = resharding();
    sim.launch_next(1);
    sim.mark();
    assert_eq!(sim.op(Operation::Restart(1)), Ok(()));
    let (_, reason) = reshard_aborted(&sim).expect("aborted");
    assert_eq!(reason, "an operator's restart of cluster 1");
    sim.exit_second(1, 0);
    sim.exit(1, 0);
    assert_eq!(shard_counts(&sim, 1), vec!["3"], "one process, old map");
    sim.advance(SECS(60));
    assert_eq!(sim.core.clusters.len(), 2);
    assert_eq!(sim.core.snapshot().shard_count, 3);
    assert_invariant(&sim);
}

/// A stop of a new cluster aborts the reshard (the cluster leaves the
/// map), and a restart of one says it left.
#[test]
fn an_operators_stop_or_restart_of_a_new_cluster_aborts_the_reshard() {
    let mut sim = resharding();
    assert_eq!(sim.op(Operation::Stop(2)), Ok(()));
    assert!(reshard_aborted(&sim).is_some());
    assert_eq!(sim.core.clusters.len(), 2, "never started: gone at once");

    let mut sim = resharding();
    sim.launch_next(1);
    sim.advance(SECS(5));
    let label = sim.core.label(2);
    assert_eq!(
        sim.op(Operation::Restart(2)),
        Err(Refused::LeftTheMap(label))
    );
    sim.mark();
    sim.exit(2, 0);
    sim.advance(SECS(60));
    assert_eq!(sim.core.clusters.len(), 2);
    assert!(sim.spawns().is_empty(), "nothing started again");
}

/// A changed cluster left stopped is skipped by the walk and takes its
/// new shards at the commit; it cannot be started meanwhile.
#[test]
fn a_changed_cluster_left_stopped_takes_its_new_shards_at_the_commit() {
    let mut sim = Sim::up(3, &format!("{START_FIRST}{RESHARD}"));
    assert_eq!(sim.op(Operation::Stop(1)), Ok(()));
    sim.exit(1, 0);
    assert_eq!(sim.op(Operation::Reshard), Ok(()));
    sim.mark();
    sim.input(Input::GatewayFetched(Ok(super::rolling::gateway(6))));
    assert_eq!(sim.spawned(), vec![2], "only the new cluster starts");
    let refused = sim.op(Operation::Start(1));
    assert!(matches!(refused, Err(Refused::InReshard(_))), "{refused:?}");
    sim.launch_next(2);
    sim.advance(SECS(5));
    assert_eq!(sim.core.snapshot().shard_count, 6);
    assert_eq!(sim.cluster(1).spec.shards, vec![2, 3]);
    assert_eq!(sim.state(1), ClusterState::Stopped);
    sim.mark();
    assert_eq!(sim.op(Operation::Start(1)), Ok(()));
    let lines = spawn_lines(&sim);
    assert!(lines[0].1.iter().any(|a| a == "[2, 3]"), "{lines:?}");
    assert_eq!(shard_counts(&sim, 1), vec!["6"]);
}

/// A changed cluster waiting out a crash restart would come back on a map
/// about to change under it: the reshard is refused, saying why.
#[test]
fn a_start_first_reshard_waits_for_a_crashed_cluster() {
    let mut sim = Sim::up(
        3,
        &format!("{START_FIRST}{RESHARD}restart_backoff_base: 30\n"),
    );
    sim.exit(1, 1);
    assert_eq!(sim.op(Operation::Reshard), Ok(()));
    sim.mark();
    sim.input(Input::GatewayFetched(Ok(super::rolling::gateway(6))));
    let failed = sim.logged().into_iter().find_map(|e| match e {
        LogEvent::ReshardFailed { error, .. } => Some(error.clone()),
        _ => None,
    });
    assert!(failed.is_some_and(|e| e.contains("cluster 1 is crashed")));
    assert!(sim.spawns().is_empty());
    assert_eq!(sim.core.clusters.len(), 2);
}
