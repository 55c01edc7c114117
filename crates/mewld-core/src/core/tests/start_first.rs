//! `rolling_restart_mode: start_first` (docs/protocol.md §6): each
//! cluster's replacement starts beside its process, which is stopped only
//! once the replacement said `launch_next`; a replacement that fails ends
//! the roll with the old processes untouched. Every rule, in simulated
//! time, with the invariant checked after each step: a cluster has at most
//! one second process, and only during its own overlap.

use super::{Sim, SECS};
use crate::actlog::LogEvent;
use crate::cluster_map::ClusterId;
use crate::core::{Command, Input, Timer};
use crate::model::state::ClusterState;
use crate::model::{Operation, Refused};

pub(super) const START_FIRST: &str = "rolling_restart_mode: start_first\n";

/// A bot of `clusters` clusters, up, rolling start-first (`extra` added).
pub(super) fn up(clusters: u32, extra: &str) -> Sim {
    Sim::up(clusters * 2, &format!("{START_FIRST}{extra}"))
}

/// The processes stopped since the mark: cluster and generation.
pub(super) fn stops(sim: &Sim) -> Vec<(ClusterId, u64)> {
    sim.since_mark()
        .iter()
        .filter_map(|c| match c {
            Command::Stop { id, generation } => Some((*id, *generation)),
            _ => None,
        })
        .collect()
}

pub(super) fn aborted(sim: &Sim) -> Option<(ClusterId, String, Option<u32>)> {
    sim.logged().into_iter().find_map(|e| match e {
        LogEvent::RollingRestartAborted {
            id, reason, pid, ..
        } => Some((*id, reason.clone(), *pid)),
        _ => None,
    })
}

/// The invariant: every cluster runs in one process, plus at most one
/// second process, which only a cluster under way in the roll, one
/// stopping its last, or one whose new process a reshard holds may have.
pub(super) fn assert_invariant(sim: &Sim) {
    let under_way = sim
        .core
        .rolling
        .as_ref()
        .map(|r| r.under_way())
        .unwrap_or_default();
    for c in &sim.core.clusters {
        if let Some(second) = &c.second {
            assert_ne!(second.generation, c.generation, "cluster {}", c.spec.id);
            use super::super::cluster::Role;
            let settling = c.state == ClusterState::Stopping
                || matches!(second.role, Role::Retiring | Role::Abandoned);
            // A start-first reshard holds each ready one until its commit.
            let held = matches!(second.role, Role::Ready(_)) && sim.core.plan.is_some();
            assert!(
                under_way.contains(&c.spec.id) || settling || held,
                "cluster {} has a second process out of its turn",
                c.spec.id
            );
        }
    }
}

/// Each cluster: the replacement starts beside the old process (which
/// is not stopped), says launch_next, then the old one is stopped; the next
/// cluster starts once it has exited and the gap is over.
#[test]
fn each_replacement_starts_beside_the_old_process_which_stops_after_its_launch_next() {
    let mut sim = up(3, "");
    let old: Vec<Option<u32>> = (0..3).map(|id| sim.cluster(id).pid).collect();
    sim.mark();
    assert_eq!(sim.op(Operation::RollingRestart), Ok(()));
    for id in 0..3 {
        assert_eq!(sim.spawns(), vec![(id, old[id as usize])], "cluster {id}");
        assert!(stops(&sim).is_empty(), "the old process runs on");
        let view = sim.core.snapshot().clusters[id as usize].clone();
        assert_eq!(view.state, ClusterState::Running);
        assert_eq!(view.pid, old[id as usize], "the old pid is the cluster's");
        let new = view.replacing.expect("the replacement's pid");
        assert!(sim.logged().contains(&&LogEvent::ReplacementStarted {
            id,
            pid: new,
            replaces: old[id as usize].unwrap_or(0),
        }));
        assert_invariant(&sim);
        let old_generation = sim.cluster(id).generation;
        sim.mark();
        sim.launch_next(id);
        assert_eq!(stops(&sim), vec![(id, old_generation)]);
        let view = sim.core.snapshot().clusters[id as usize].clone();
        assert_eq!((view.pid, view.retiring), (Some(new), old[id as usize]));
        assert_eq!(view.replacing, None);
        sim.advance(SECS(60));
        assert!(sim.spawns().is_empty(), "the next waits for the old exit");
        sim.exit_second(id, 0);
        assert!(sim.logged().contains(&&LogEvent::ReplacedProcessStopped {
            id,
            pid: old[id as usize].unwrap_or(0),
            exit: crate::actlog::ExitFields {
                code: Some(0),
                signal: None
            },
        }));
        assert_eq!(sim.cluster(id).restarts.rolling_restart, 1);
        sim.mark();
        sim.advance(SECS(5));
    }
    assert!(sim.logged().contains(&&LogEvent::RollingRestartDone {}));
    assert_eq!(sim.announcements(), 1);
    assert!(sim.core.clusters.iter().all(|c| c.second.is_none()));
}

/// A replacement that exits before its launch_next ends the roll there:
/// the old process is never stopped, and no later cluster is touched.
#[test]
fn a_replacement_that_exits_aborts_the_roll_and_leaves_the_old_process() {
    let mut sim = up(3, "");
    let old = sim.cluster(0).pid;
    sim.op(Operation::RollingRestart).ok();
    let new = sim.core.snapshot().clusters[0].replacing;
    sim.mark();
    sim.exit_second(0, 3);
    let (id, reason, pid) = aborted(&sim).expect("rolling_restart_aborted");
    assert_eq!((id, pid), (0, new));
    assert!(reason.contains("exited (code 3)"), "{reason}");
    sim.advance(SECS(3600));
    assert!(
        stops(&sim).is_empty() && sim.spawns().is_empty(),
        "{:?}",
        sim.since_mark()
    );
    assert_eq!(sim.cluster(0).pid, old);
    assert_eq!(sim.state(0), ClusterState::Running);
    assert!(sim.core.rolling.is_none());
    assert_eq!(sim.cluster(0).restarts.total(), 0);
    assert_eq!(sim.announcements(), 0, "nothing was restarted");
    assert_eq!(
        sim.op(Operation::RollingRestart),
        Ok(()),
        "a new roll may begin"
    );
}

/// A replacement silent for `rolling_restart_timeout` is stopped, the roll
/// ends, and a new roll waits until it has exited.
#[test]
fn a_silent_replacement_is_stopped_after_the_timeout() {
    let mut sim = up(3, "rolling_restart_timeout: 100\n");
    let old = sim.cluster(0).pid;
    sim.op(Operation::RollingRestart).ok();
    let second = sim.cluster(0).second.as_ref().map(|s| s.generation);
    sim.mark();
    sim.advance(SECS(99));
    assert!(aborted(&sim).is_none());
    sim.advance(SECS(1));
    assert_eq!(
        stops(&sim),
        vec![(0, second.unwrap_or(0))],
        "the replacement alone"
    );
    let (_, reason, _) = aborted(&sim).expect("rolling_restart_aborted");
    assert!(reason.contains("within 100s"), "{reason}");
    let view = sim.core.snapshot().clusters[0].clone();
    assert_eq!((view.pid, view.replacing), (old, None));
    assert!(view.retiring.is_some(), "shown while it stops");
    assert_eq!(
        sim.op(Operation::RollingRestart),
        Err(Refused::StillStopping)
    );
    sim.exit_second(0, 0);
    assert!(sim
        .logged()
        .iter()
        .any(|e| matches!(e, LogEvent::ReplacementStopped { id: 0, .. })));
    assert_eq!(sim.cluster(0).pid, old);
    assert!(sim.spawned().iter().all(|&id| id == 0) && sim.spawned().len() <= 1);
    assert_invariant(&sim);
    // A late launch_next (the replacement said it as it was stopped) is
    // the old process's now, which is running already: nothing changes.
    sim.mark();
    sim.launch_next(0);
    assert!(stops(&sim).is_empty());
}

#[test]
fn a_replacement_that_cannot_start_aborts_at_once() {
    let mut sim = up(3, "");
    sim.broken.insert(0);
    sim.mark();
    sim.op(Operation::RollingRestart).ok();
    let (id, reason, pid) = aborted(&sim).expect("rolling_restart_aborted");
    assert_eq!((id, pid), (0, None));
    assert!(reason.contains("could not be started"), "{reason}");
    assert!(stops(&sim).is_empty());
    assert_eq!(sim.state(0), ClusterState::Running);
    assert!(sim.cluster(0).second.is_none());
}

/// An operator's stop during an overlap stops both processes; the cluster
/// is stopped once both have exited, and the roll goes on without it.
#[test]
fn an_operators_stop_during_an_overlap_stops_both_and_the_roll_goes_on() {
    let mut sim = up(3, "");
    sim.op(Operation::RollingRestart).ok();
    let (old, new) = (
        sim.cluster(0).generation,
        sim.cluster(0).second.as_ref().map_or(0, |s| s.generation),
    );
    sim.mark();
    assert_eq!(sim.op(Operation::Stop(0)), Ok(()));
    assert_eq!(stops(&sim), vec![(0, old), (0, new)]);
    assert_eq!(
        sim.spawns().first().map(|s| s.0),
        Some(1),
        "the roll moved on"
    );
    sim.exit(0, 0);
    assert_eq!(
        sim.state(0),
        ClusterState::Stopping,
        "its replacement still runs"
    );
    assert!(sim.op(Operation::Start(0)).is_err(), "it runs");
    sim.exit_second(0, 0);
    assert_eq!(sim.state(0), ClusterState::Stopped);
    assert!(!sim.cluster(0).is_alive());
    assert_invariant(&sim);
}

/// An operator's restart during an overlap: both go, then one new process
/// starts (as a stop-first restart would), and the roll goes on.
#[test]
fn an_operators_restart_during_an_overlap_starts_one_process_once_both_are_gone() {
    let mut sim = up(3, "");
    sim.op(Operation::RollingRestart).ok();
    sim.mark();
    assert_eq!(sim.op(Operation::Restart(0)), Ok(()));
    assert_eq!(stops(&sim).len(), 2);
    sim.exit_second(0, 0);
    assert!(!sim.spawned().contains(&0), "not while the old one runs");
    sim.exit(0, 0);
    assert_eq!(sim.spawns().last(), Some(&(0, None)));
    assert_eq!(sim.state(0), ClusterState::Starting);
    assert_eq!(sim.cluster(0).restarts.operator, 1);
    assert_invariant(&sim);
}

/// The old process crashing during its overlap is not restarted: the
/// replacement is the cluster's process from then on, and the roll waits
/// for its launch_next as usual.
#[test]
fn an_old_process_that_crashes_during_its_overlap_is_not_restarted() {
    let mut sim = up(3, "");
    sim.op(Operation::RollingRestart).ok();
    let new = sim.core.snapshot().clusters[0].replacing;
    sim.mark();
    sim.exit(0, 139);
    sim.advance(SECS(120));
    assert!(sim.spawns().is_empty(), "{:?}", sim.since_mark());
    assert!(!sim
        .timers
        .keys()
        .any(|t| matches!(t, Timer::CrashRestart { .. })));
    assert_eq!(sim.cluster(0).pid, new);
    assert_eq!(sim.state(0), ClusterState::Starting);
    assert!(sim.logged().iter().any(|e| matches!(
        e,
        LogEvent::ClusterExited {
            id: 0,
            restart_in_ms: None,
            ..
        }
    )));
    sim.launch_next(0);
    assert_eq!(sim.state(0), ClusterState::Running);
    sim.advance(SECS(5));
    assert_eq!(
        sim.spawns().last().map(|s| s.0),
        Some(1),
        "the roll goes on"
    );
}

/// ...and if that replacement fails too, the crash rules apply (no old
/// process is left to keep) and the roll ends.
#[test]
fn a_replacement_alone_that_crashes_is_crash_restarted_and_the_roll_ends() {
    let mut sim = up(3, "");
    sim.op(Operation::RollingRestart).ok();
    sim.exit(0, 139);
    sim.mark();
    sim.exit(0, 1);
    assert!(aborted(&sim).is_some());
    assert_eq!(sim.state(0), ClusterState::Crashed);
    sim.advance(SECS(3));
    assert_eq!(sim.spawns(), vec![(0, None)]);
}

/// A crash restart waits while a second process of the cluster still runs.
#[test]
fn a_crash_restart_waits_for_the_replaced_process_to_exit() {
    let mut sim = up(3, "");
    sim.op(Operation::RollingRestart).ok();
    sim.launch_next(0);
    sim.mark();
    sim.exit(0, 1);
    assert!(aborted(&sim).is_some(), "its new process failed");
    sim.advance(SECS(30));
    assert!(sim.spawns().is_empty(), "the old process is still stopping");
    sim.exit_second(0, 0);
    assert_eq!(sim.spawns(), vec![(0, None)]);
    assert_invariant(&sim);
}

#[test]
fn a_ping_failure_during_an_overlap_restarts_nothing() {
    let mut sim = up(3, "ping_interval: 10\nping_timeout: 20\n");
    sim.op(Operation::RollingRestart).ok();
    sim.advance(SECS(10));
    sim.echoes_return();
    sim.mark();
    sim.advance(SECS(20));
    sim.echoes_return();
    assert!(sim.logged().contains(&&LogEvent::PingFailure { id: 0 }));
    assert!(
        !stops(&sim).iter().any(|&(id, _)| id == 0),
        "{:?}",
        stops(&sim)
    );
}

/// A diagnostic goes to the cluster; during an overlap both of its
/// processes hear it, and the first answer counts.
#[test]
fn a_diagnostic_answered_by_either_process_counts() {
    let mut sim = up(3, "ping_interval: 10\n");
    sim.op(Operation::RollingRestart).ok();
    sim.mark();
    sim.advance(SECS(10));
    let nonce = sim
        .pings()
        .into_iter()
        .find(|(id, _)| *id == 0)
        .map(|p| p.1);
    sim.answer(&nonce.expect("a diagnostic for cluster 0"));
    assert!(sim.cluster(0).health.is_some());
}

/// A shutdown during an overlap stops both processes and ends only once
/// both have exited.
#[test]
fn a_shutdown_during_an_overlap_stops_both_and_waits_for_both() {
    let mut sim = up(3, "");
    sim.op(Operation::RollingRestart).ok();
    sim.mark();
    sim.op(Operation::Shutdown).ok();
    assert_eq!(stops(&sim).iter().filter(|s| s.0 == 0).count(), 2);
    for id in 0..3 {
        sim.exit(id, 0);
    }
    assert_eq!(sim.core.finished(), None, "the replacement still runs");
    sim.exit_second(0, 0);
    assert!(sim.core.finished().is_some());
}

/// `rolling_restart_parallel: 2` overlaps two clusters at a time; an
/// abort gives up every replacement under way.
#[test]
fn k_clusters_overlap_at_a_time_and_an_abort_gives_up_all_of_them() {
    let mut sim = up(4, "rolling_restart_parallel: 2\n");
    sim.mark();
    sim.op(Operation::RollingRestart).ok();
    let spawned: Vec<_> = sim.spawns().into_iter().map(|s| s.0).collect();
    assert_eq!(spawned, vec![0, 1]);
    assert_eq!(
        sim.core.snapshot().rolling.map(|r| r.under_way),
        Some(vec![0, 1])
    );
    let one = sim.cluster(1).second.as_ref().map_or(0, |s| s.generation);
    sim.mark();
    sim.exit_second(0, 1);
    assert_eq!(stops(&sim), vec![(1, one)], "cluster 1's replacement too");
    assert!(sim.spawns().is_empty());
    assert_eq!(sim.state(1), ClusterState::Running);
}

/// Stop-first takes K clusters at a time too.
#[test]
fn stop_first_with_parallel_restarts_k_at_a_time() {
    let mut sim = Sim::up(8, "rolling_restart_parallel: 2\n");
    sim.mark();
    sim.op(Operation::RollingRestart).ok();
    assert_eq!(sim.stopped(), vec![0, 1]);
    sim.exit(0, 0);
    sim.launch_next(0);
    sim.advance(SECS(5));
    assert_eq!(sim.stopped(), vec![0, 1, 2]);
}

/// The abandoned replacement's late news never touches the process that
/// runs the cluster after it: each process has its own generation.
#[test]
fn an_abandoned_replacements_exit_is_told_from_the_clusters_process() {
    let mut sim = up(3, "rolling_restart_timeout: 100\n");
    sim.op(Operation::RollingRestart).ok();
    let abandoned = sim.cluster(0).second.as_ref().map_or(0, |s| s.generation);
    sim.advance(SECS(100));
    sim.exit(0, 1);
    sim.exit_second(0, 0);
    sim.advance(SECS(3));
    let current = sim.cluster(0).generation;
    assert_ne!(current, abandoned);
    sim.input(Input::Exited {
        id: 0,
        generation: abandoned,
        exit: crate::model::ExitInfo {
            code: Some(0),
            signal: None,
        },
    });
    assert_eq!(sim.state(0), ClusterState::Starting, "untouched");
}

/// Host "b" of a fleet, leading or not, beside host "a" (clusters 0, 2),
/// every cluster launched, rolling start-first.
fn fleet_b(lead: bool) -> Sim {
    use ClusterState::Running;
    let mut sim = Sim::host_with(6, &[1], START_FIRST);
    sim.input(Input::TransportUp);
    sim.view(vec![super::host_a(&[(0, Running), (2, Running)])], lead);
    sim.launch_in_order(0..3);
    sim.view(vec![super::host_a(&[(0, Running), (2, Running)])], lead);
    sim
}

/// The leader's step on another host's cluster: that host replaces it
/// start-first, and when the replacement fails says why and tells the
/// leader, which stops walking there.
#[test]
fn in_a_fleet_the_owner_replaces_and_the_leader_stops_at_its_failure() {
    let mut owner = fleet_b(false);
    let old = owner.cluster(1).pid;
    owner.mark();
    owner.hear(
        serde_json::json!({"scope": "launcher", "action": "mewld_op", "op": "restart",
        "id": 1, "via": "rolling", "host": "a", "rolling": true, "epoch": 3}),
    );
    assert_eq!(owner.spawns(), vec![(1, old)], "beside the old process");
    owner.exit_second(1, 2);
    assert!(aborted(&owner).is_some(), "the owner logs why");
    let notice = owner
        .published()
        .into_iter()
        .find(|m| m["action"] == "mewld_roll_aborted")
        .expect("the leader is told");
    assert_eq!(notice["args"]["id"], 1);

    let mut leader = fleet_b(true);
    leader.mark();
    leader.op(Operation::RollingRestart).ok();
    let step = leader
        .published()
        .into_iter()
        .find(|m| m["action"] == "mewld_op");
    assert_eq!(step.map(|m| m["id"].clone()), Some(serde_json::json!(0)));
    leader.mark();
    leader.hear(
        serde_json::json!({"scope": "launcher", "action": "mewld_roll_aborted",
        "args": {"id": 0}, "host": "a"}),
    );
    assert!(leader.logged().iter().any(|e| matches!(e,
        LogEvent::RollingRestartStopped { reason: Some(r), .. } if r.contains("host a"))));
    assert!(leader.core.rolling.is_none());
    leader.advance(SECS(3600));
    assert!(
        leader.spawns().is_empty(),
        "its own cluster 1 is not touched"
    );
}

/// An owner that never says: the leader's backstop ends the roll after
/// `rolling_restart_timeout` plus the grace period and a margin.
#[test]
fn in_a_fleet_the_leader_ends_the_roll_if_the_owner_never_says() {
    let mut leader = fleet_b(true);
    leader.op(Operation::RollingRestart).ok();
    leader.mark();
    leader.advance(SECS(600 + 10));
    assert!(
        aborted(&leader).is_none(),
        "the owner's own timer comes first"
    );
    leader.advance(SECS(10));
    let (id, reason, _) = aborted(&leader).expect("rolling_restart_aborted");
    assert_eq!(id, 0);
    assert!(reason.contains("its host"), "{reason}");
    assert!(leader.spawns().is_empty());
}

/// A leader that loses its lease mid-roll leaves no timer of that roll
/// behind: one armed for another host's turn (step 1) ended the next
/// roll's step 1, one of ours, with "no launch_next from its host".
#[test]
fn a_roll_given_up_with_the_lease_leaves_no_timer_for_the_next() {
    use ClusterState::{Running, Stopped};
    let mut sim = Sim::host_with(
        6,
        &[1],
        &format!("{START_FIRST}rolling_restart_timeout: 600\n"),
    );
    sim.input(Input::TransportUp);
    sim.view(vec![super::host_a(&[(0, Running), (2, Running)])], true);
    sim.launch_in_order(0..3);
    sim.view(vec![super::host_a(&[(0, Running), (2, Running)])], true);
    assert_eq!(sim.op(Operation::RollingRestart), Ok(()));
    sim.view(vec![super::host_a(&[(0, Running), (2, Running)])], false);
    assert!(sim.core.rolling.is_none(), "the lease is gone");
    sim.advance(SECS(300));
    sim.view(vec![super::host_a(&[(0, Stopped), (2, Stopped)])], true);
    sim.mark();
    assert_eq!(sim.op(Operation::RollingRestart), Ok(()));
    assert_eq!(sim.spawns().len(), 1, "cluster 1's replacement");
    sim.advance(SECS(400));
    assert!(aborted(&sim).is_none(), "{:?}", aborted(&sim));
    sim.launch_next(1);
    assert!(
        sim.cluster(1).second.is_some(),
        "replaced: the old one stops"
    );
}

/// A cluster still starting at its turn is restarted stop-first; an
/// operator's stop of it then ends its turn, and the roll goes on (it
/// waited out the timeout, then aborted as if another host had not said).
#[test]
fn an_operators_stop_of_a_turn_restarted_stop_first_moves_the_roll_on() {
    let mut sim = up(3, "rolling_restart_timeout: 100\n");
    assert_eq!(sim.op(Operation::Restart(0)), Ok(()));
    sim.exit(0, 0);
    assert_eq!(sim.state(0), ClusterState::Starting);
    assert_eq!(sim.op(Operation::RollingRestart), Ok(()));
    assert_eq!(sim.state(0), ClusterState::Stopping, "stop-first");
    sim.mark();
    assert_eq!(sim.op(Operation::Stop(0)), Ok(()));
    sim.exit(0, 0);
    sim.advance(SECS(10));
    assert!(aborted(&sim).is_none(), "{:?}", aborted(&sim));
    let old = sim.cluster(1).pid;
    assert_eq!(sim.spawns(), vec![(1, old)], "cluster 1's turn");
    assert_eq!(sim.state(0), ClusterState::Stopped);
    assert_invariant(&sim);
}

/// A new leader's step on a cluster whose replacement from the last
/// leader's roll is still under way leaves it be (it stopped both, and
/// the cluster went down): the replacement's launch_next ends both turns.
#[test]
fn a_new_leaders_step_on_a_replacement_under_way_waits_for_it() {
    let step = serde_json::json!({"scope": "launcher", "action": "mewld_op", "op": "restart",
        "id": 1, "via": "rolling", "host": "a", "rolling": true, "epoch": 3});
    let mut owner = fleet_b(false);
    let old = owner.cluster(1).pid;
    owner.hear(step.clone());
    owner.mark();
    owner.hear(step);
    assert!(owner.since_mark().is_empty(), "{:?}", owner.since_mark());
    owner.launch_next(1);
    assert_eq!(stops(&owner).len(), 1, "the old process alone");
    assert_ne!(owner.cluster(1).pid, old);
    assert_invariant(&owner);
}
