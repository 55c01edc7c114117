//! A fleet (docs/protocol.md §10): the launch across hosts, the questions
//! only the leader answers, operations handed to the owning host, hosts lost,
//! displaced and ordered to stop, and a manager alone on Redis.

use serde_json::{json, Value};

use super::{host_a, Sim, SECS};
use crate::actlog::LogEvent;
use crate::core::Input;
use crate::model::state::ClusterState;
use crate::model::{Exit, ExitInfo, Operation, Peer, Refused, Via};
use crate::protocol::{self, Action};

#[test]
fn a_host_starts_its_cluster_after_the_one_before_it_on_another_host() {
    use ClusterState::*;
    let mut sim = Sim::host(6, &[1]);
    sim.input(Input::TransportUp);
    assert!(
        sim.spawned().is_empty(),
        "nothing before the fleet is known"
    );
    sim.view(vec![host_a(&[(0, Starting), (2, Pending)])], false);
    assert!(sim.spawned().is_empty(), "cluster 0 has not launched");
    sim.launch_next(0);
    sim.advance(sim.core.config.cluster_start_next_delay);
    assert_eq!(sim.spawned(), vec![1]);
    sim.mark();
    sim.launch_next(1);
    sim.advance(SECS(10));
    assert!(
        !sim.core.launcher.fully_up(),
        "cluster 2 is still to launch"
    );
    sim.launch_next(2);
    assert!(sim.core.launcher.fully_up());
    assert_eq!(sim.announcements(), 0, "only the leader announces");
}

#[test]
fn a_missing_host_holds_the_launch_for_launch_timeout_only() {
    let mut sim = Sim::host(6, &[1]);
    sim.input(Input::TransportUp);
    sim.view(vec![], true);
    sim.mark();
    sim.advance(sim.core.config.launch_timeout - SECS(1));
    assert!(sim.spawned().is_empty());
    sim.advance(SECS(2) + sim.core.config.cluster_start_next_delay);
    assert_eq!(sim.spawned(), vec![1]);
    assert!(sim
        .logged()
        .iter()
        .any(|e| matches!(e, LogEvent::LaunchTimeout { id: 0, .. })));
    sim.mark();
    sim.launch_next(1);
    // Cluster 2 has no host either: not waited for a second time.
    assert!(sim.core.launcher.fully_up());
    assert_eq!(sim.announcements(), 1);
    assert!(sim
        .logged()
        .contains(&&LogEvent::AllClustersLaunched { clusters: 3 }));
    let snapshot = sim.core.snapshot();
    assert_eq!(snapshot.clusters.len(), 3);
    assert_eq!(snapshot.clusters[0].state, ClusterState::Lost);
    assert_eq!(snapshot.clusters[1].host.as_deref(), Some("b"));
}

#[test]
fn only_the_leader_answers_and_the_next_answers_what_the_last_left() {
    use ClusterState::*;
    let mut sim = Sim::beside_a(&[(0, Running), (2, Running)], false);
    sim.mark();
    sim.request(Action::Statuses, "q1");
    sim.request(Action::NumProcesses, "q2");
    assert!(sim.published().is_empty(), "another host leads");
    // The leader answered q1, then died.
    sim.request(Action::Answered, "q1");
    sim.view(vec![host_a(&[(0, Running), (2, Running)])], true);
    let published: Vec<Value> = sim
        .published()
        .into_iter()
        .filter(|m| m["scope"] == "bot")
        .collect();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0]["command_id"], "q2");
    assert_eq!(published[0]["output"], json!({"clusters": 3, "shards": 6}));
    assert!(sim.logged().contains(&&LogEvent::LeaderElected {
        host: "b".into(),
        epoch: 3
    }));
    sim.mark();
    sim.request(Action::Statuses, "q3");
    let statuses = sim.reply("q3");
    assert_eq!(statuses["0"]["status"], "running");
    assert_eq!(statuses["1"]["status"], "starting", "its turn came: 0 runs");
}

#[test]
fn operations_are_carried_out_by_the_host_that_runs_the_cluster() {
    use ClusterState::*;
    let mut sim = Sim::beside_a(&[(0, Running), (2, Running)], true);
    sim.launch_next(1);
    sim.mark();
    // Over the channel, host a acts and answers for its own cluster.
    sim.request(Action::Stop(0), "s0");
    assert!(sim.published().is_empty() && sim.stopped().is_empty());
    // From this host's console, it is handed to host a.
    assert_eq!(sim.op(Operation::Stop(0)), Ok(()));
    let handed = sim.published();
    assert_eq!(handed[0]["action"], "mewld_op");
    assert_eq!(
        (handed[0]["op"].as_str(), handed[0]["id"].as_u64()),
        (Some("stop"), Some(0))
    );
    assert!(matches!(
        sim.op(Operation::Diagnose(2)),
        Err(Refused::OnAnotherHost { .. })
    ));
    // What host a hands here is done here, and logged with a's name.
    sim.mark();
    sim.request(
        Action::FleetOp(protocol::FleetOp {
            op: "stop".into(),
            id: Some(1),
            via: "attach".into(),
            host: "a".into(),
            rolling: false,
            epoch: None,
            peer: None,
        }),
        "",
    );
    assert_eq!(sim.stopped(), vec![1]);
    assert!(
        sim.logged().iter().any(|e| matches!(e,
        LogEvent::OperatorAction { action: "stop", via: "attach", host: Some(h), .. } if h == "a"))
    );
}

/// A command's process, asked on one host, is in the handed-over
/// operation, and the owner logs it as the asking host would have; an
/// older host's `mewld_op` (no peer) is logged without it.
#[test]
fn a_handed_over_operation_is_logged_with_the_asking_process() {
    use ClusterState::*;
    let mut sim = Sim::beside_a(&[(0, Running), (2, Running)], true);
    sim.launch_next(1);
    sim.mark();
    let peer = Peer {
        pid: Some(4242),
        uid: 1000,
    };
    let asked = sim.input(Input::Op {
        op: Operation::Stop(0),
        via: Via::Cli(peer),
    });
    assert_eq!(asked, Some(Ok(())));
    let handed = sim.published();
    assert_eq!(
        (
            &handed[0]["via"],
            &handed[0]["peer_pid"],
            &handed[0]["peer_uid"]
        ),
        (&json!("cli"), &json!(4242), &json!(1000)),
        "{handed:?}"
    );
    // Carried out here, as host a handed it.
    for (peer, want) in [(Some(peer), Some(peer)), (None, None)] {
        sim.mark();
        sim.request(
            Action::FleetOp(protocol::FleetOp {
                op: "restart".into(),
                id: Some(1),
                via: "cli".into(),
                host: "a".into(),
                rolling: false,
                epoch: None,
                peer,
            }),
            "",
        );
        let logged = sim.logged();
        let Some(LogEvent::OperatorAction {
            via,
            host,
            peer_pid,
            peer_uid,
            refused: None,
            ..
        }) = logged
            .iter()
            .find(|e| matches!(e, LogEvent::OperatorAction { .. }))
        else {
            panic!("no operator_action: {logged:?}");
        };
        assert_eq!((*via, host.as_deref()), ("cli", Some("a")));
        assert_eq!(
            (*peer_pid, *peer_uid),
            (want.and_then(|p| p.pid), want.map(|p| p.uid))
        );
    }
}

#[test]
fn a_host_that_stops_heartbeating_is_lost_until_it_comes_back() {
    use ClusterState::*;
    let mut sim = Sim::beside_a(&[(0, Running), (2, Running)], true);
    let mut a = host_a(&[(0, Running), (2, Running)]);
    a.clusters[0].restarts = 3;
    sim.view(vec![a], true);
    sim.mark();
    sim.view(vec![], true);
    assert!(sim.logged().contains(&&LogEvent::HostLost {
        host: "a".into(),
        clusters: "0,2".into()
    }));
    let states: Vec<_> = sim
        .core
        .snapshot()
        .clusters
        .iter()
        .map(|c| c.state)
        .collect();
    assert_eq!(states[0], Lost);
    assert_eq!(states[2], Lost);
    // Shown where it ran, with the restarts it had (not `-` and 0).
    let lost = &sim.core.snapshot().clusters[0];
    assert_eq!((lost.host.as_deref(), lost.restarts), (Some("a"), 3));
    sim.request(Action::Stop(2), "s2");
    assert_eq!(sim.reply("s2"), "ok", "the leader answers for a lost host");
    sim.mark();
    sim.view(vec![host_a(&[(0, Running), (2, Starting)])], true);
    assert!(sim
        .logged()
        .iter()
        .any(|e| matches!(e, LogEvent::HostJoined { host, .. } if host == "a")));
    assert_eq!(sim.core.snapshot().clusters[2].state, Starting);
}

#[test]
fn a_launch_next_outruns_its_hosts_record_but_not_a_new_process() {
    use ClusterState::*;
    let mut sim = Sim::beside_a(&[(0, Starting), (2, Running)], true);
    sim.launch_next(0);
    // Host a's record still says starting (it is written every 250 ms).
    sim.view(vec![host_a(&[(0, Starting), (2, Running)])], true);
    assert_eq!(sim.core.snapshot().clusters[0].state, Running);
    // Another process of cluster 0 (a restart): its record is the truth.
    let mut record = host_a(&[(0, Starting), (2, Running)]);
    record.clusters[0].pid = Some(900);
    sim.view(vec![record], true);
    assert_eq!(sim.core.snapshot().clusters[0].state, Starting);
}

#[test]
fn a_launch_finished_while_nobody_led_is_announced_by_the_next_leader() {
    use ClusterState::*;
    let mut sim = Sim::beside_a(&[(0, Starting), (2, Pending)], false);
    sim.launch_in_order(0..3);
    assert!(sim.core.launcher.fully_up());
    assert_eq!(sim.announcements(), 0, "another host leads");
    // That leader died before it said so; this host is elected.
    sim.view(vec![host_a(&[(0, Running), (2, Running)])], true);
    assert_eq!(sim.announcements(), 1);
    sim.view(vec![host_a(&[(0, Running), (2, Running)])], true);
    assert_eq!(sim.announcements(), 1, "once");
}

#[test]
fn a_displaced_host_stops_its_clusters_and_exits() {
    use ClusterState::*;
    let mut sim = Sim::beside_a(&[(0, Running), (2, Running)], true);
    sim.launch_next(1);
    sim.mark();
    sim.input(Input::Fleet(crate::fleet::FleetView {
        displaced: Some("clusters 1 are already run by host z".into()),
        ..crate::fleet::FleetView::default()
    }));
    assert_eq!(sim.stopped(), vec![1]);
    assert!(sim
        .logged()
        .iter()
        .any(|e| matches!(e, LogEvent::HostDisplaced { .. })));
    // Cluster 1 is this host's only one: index 0 here.
    let generation = sim.core.clusters[0].generation;
    sim.input(Input::Exited {
        id: 1,
        generation,
        exit: ExitInfo {
            code: Some(0),
            signal: None,
        },
    });
    assert_eq!(sim.core.finished(), Some(Exit::Shutdown));
}

#[test]
fn a_launch_the_leader_announced_is_not_announced_again_by_the_next() {
    use ClusterState::*;
    let mut sim = Sim::beside_a(&[(0, Starting), (2, Pending)], false);
    sim.launch_in_order(0..3);
    // Host a, the leader, said it; then it died and this host is elected.
    sim.request(Action::Announced, "");
    sim.view(vec![host_a(&[(0, Running), (2, Running)])], true);
    assert_eq!(sim.announcements(), 0);
}

/// A manager alone on Redis: `shards` shards, its claim on every cluster
/// made by the fleet task (or not yet).
fn alone(shards: u32) -> Sim {
    let me = crate::fleet::Membership {
        id: "b:2".into(),
        name: "b".into(),
        pid: 2,
        owned: (0..shards.div_ceil(2)).collect(),
        host_count: None,
        solo: true,
    };
    Sim::with_fleet(shards, "", Some(me))
}

#[test]
fn alone_on_redis_nothing_starts_before_the_claim_is_in_redis() {
    let mut sim = alone(4);
    sim.input(Input::TransportUp);
    assert!(sim.spawned().is_empty(), "started before the claim");
    sim.input(Input::Fleet(crate::fleet::FleetView {
        me: "b".into(),
        ..crate::fleet::FleetView::default()
    }));
    assert_eq!(sim.spawned(), vec![0]);
    // Alone, it answers for itself: no lease, no other host.
    assert!(sim.core.leads());
    assert_eq!(sim.core.map_size(), (4, 2));
}

#[test]
fn alone_a_manager_whose_claim_was_taken_stops_its_clusters() {
    let mut sim = alone(4);
    sim.input(Input::TransportUp);
    sim.input(Input::Fleet(crate::fleet::FleetView::default()));
    sim.launch_next(0);
    sim.mark();
    sim.input(Input::Fleet(crate::fleet::FleetView {
        displaced: Some("clusters 0-1 are already run by host z".into()),
        me: "b".into(),
        ..crate::fleet::FleetView::default()
    }));
    // Cluster 1 was not started yet, and never will be.
    assert_eq!(sim.stopped(), vec![0]);
    sim.advance(SECS(3600));
    assert!(sim.spawned().is_empty(), "{:?}", sim.spawned());
    assert!(sim
        .logged()
        .iter()
        .any(|e| matches!(e, LogEvent::HostDisplaced { host, .. } if host == "b")));
}

#[test]
fn the_leaders_order_to_stop_reaches_a_host_that_missed_it() {
    use ClusterState::*;
    // The leader acks `restartproc` and keeps the order for the others.
    let mut leader = Sim::beside_a(&[(0, Running), (2, Running)], true);
    leader.request(Action::RestartProc, "r1");
    let order = leader.core.snapshot().fleet.and_then(|f| f.exit_order);
    assert_eq!(
        order,
        Some(crate::model::state::ExitOrder {
            restart: true,
            epoch: 3
        })
    );
    // A host that never heard the message stops when the order is read.
    let mut missed = Sim::beside_a(&[(0, Running), (2, Running)], false);
    missed.launch_next(1);
    missed.mark();
    missed.input(Input::Fleet(crate::fleet::FleetView {
        exit_order: order,
        ..crate::fleet::FleetView::default()
    }));
    assert_eq!(missed.stopped(), vec![1]);
    let generation = missed.core.clusters[0].generation;
    missed.input(Input::Exited {
        id: 1,
        generation,
        exit: ExitInfo {
            code: Some(0),
            signal: None,
        },
    });
    assert_eq!(missed.core.finished(), Some(Exit::RestartProcess));
}

#[test]
fn a_clusters_log_entry_is_shown_by_every_host_and_stored_by_the_leader_alone() {
    use crate::core::Command;
    use ClusterState::*;
    let entry = json!({"scope": "launcher", "action": "action_logs", "data": {"event": "hi"}});
    let stored = |sim: &Sim| -> Vec<bool> {
        sim.since_mark()
            .iter()
            .filter_map(|c| match c {
                Command::ClusterLog { data, store } => {
                    assert_eq!(data["event"], "hi");
                    Some(*store)
                }
                _ => None,
            })
            .collect()
    };
    // Every host hears it on the channel: each shows it, one writes it.
    let mut sim = Sim::beside_a(&[(0, Running), (2, Running)], false);
    sim.mark();
    sim.hear(entry.clone());
    assert_eq!(stored(&sim), vec![false], "host a leads and stores it");
    sim.view(vec![host_a(&[(0, Running), (2, Running)])], true);
    sim.mark();
    sim.hear(entry.clone());
    assert_eq!(stored(&sim), vec![true], "b leads now");
    // Alone, a manager stores what it hears.
    let mut alone = Sim::up(4, "");
    alone.mark();
    alone.hear(entry);
    assert_eq!(stored(&alone), vec![true]);
}
