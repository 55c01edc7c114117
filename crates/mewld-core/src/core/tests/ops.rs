//! Operations (docs/protocol.md §5.1) and shutting down (§5.1, exit codes
//! in docs/operations.md).

use serde_json::json;

use super::{is_refusal, Sim, SECS};
use crate::actlog::LogEvent;
use crate::cluster_map::ClusterId;
use crate::core::{Command, Input};
use crate::model::state::ClusterState;
use crate::model::Peer;
use crate::model::{Exit, Operation, Refused, Via};
use crate::protocol::{Action, Request};

#[test]
fn start_stop_and_restart_are_refused_when_they_make_no_sense() {
    let mut sim = Sim::up(4, "");
    assert!(matches!(
        sim.op(Operation::Start(0)),
        Err(Refused::AlreadyRunning(_))
    ));
    assert_eq!(sim.op(Operation::Stop(9)), Err(Refused::NoSuchCluster(9)));
    assert_eq!(sim.op(Operation::Stop(1)), Ok(()));
    assert_eq!(sim.stopped(), vec![1]);
    // Not "already running": it is on its way out.
    assert!(matches!(
        sim.op(Operation::Start(1)),
        Err(Refused::Stopping(_))
    ));
    sim.exit(1, 0);
    assert_eq!(sim.state(1), ClusterState::Stopped);
    assert!(matches!(
        sim.op(Operation::Stop(1)),
        Err(Refused::NotRunning(_))
    ));
    assert!(matches!(
        sim.op(Operation::Restart(1)),
        Err(Refused::RestartNotRunning(_))
    ));
    // Every refusal is in the action log, an unknown id included.
    assert_eq!(sim.logged().iter().filter(|e| is_refusal(e)).count(), 5);
    // An operator's stop stays stopped: no crash restart is scheduled.
    sim.advance(SECS(3600));
    assert_eq!(sim.spawned(), Vec::<ClusterId>::new());
    assert_eq!(sim.op(Operation::Start(1)), Ok(()));
    assert_eq!(sim.spawned(), vec![1]);
}

#[test]
fn over_the_channel_a_refusal_is_acked_ok_but_a_failed_start_says_so() {
    let mut sim = Sim::up(4, "");
    sim.request(Action::Stop(7), "c1");
    assert_eq!(sim.reply("c1"), json!("ok"));
    sim.request(Action::Start(0), "c2");
    assert_eq!(sim.reply("c2"), json!("could not start instance"));
    sim.op(Operation::Stop(1)).ok();
    sim.exit(1, 0);
    sim.broken.insert(1);
    sim.request(Action::Start(1), "c3");
    assert_eq!(sim.reply("c3"), json!("could not start instance"));
    assert_eq!(sim.state(1), ClusterState::Failed);
    let logged = sim.logged();
    let refusal = logged.iter().rev().find(|e| is_refusal(e));
    assert!(
        matches!(
            refusal,
            Some(LogEvent::OperatorAction {
                host: None,
                action: "start",
                via: "redis",
                id: Some(1),
                ..
            })
        ),
        "{logged:?}"
    );
}

#[test]
fn restart_stops_then_starts_again() {
    let mut sim = Sim::up(4, "");
    assert_eq!(sim.op(Operation::Restart(0)), Ok(()));
    assert_eq!(sim.stopped(), vec![0]);
    assert_eq!(sim.state(0), ClusterState::Stopping);
    sim.exit(0, 0);
    assert_eq!(sim.spawned(), vec![0]);
    assert_eq!(sim.state(0), ClusterState::Starting);
}

#[test]
fn operations_over_the_socket_name_the_peer() {
    let mut sim = Sim::up(2, "");
    let peer = Peer {
        pid: Some(42),
        uid: 1000,
    };
    sim.input(Input::Request {
        request: Request {
            action: Action::Stop(0),
            command_id: None,
            reply_to: None,
        },
        via: Via::Unix(peer),
    });
    assert!(sim.logged().contains(&&LogEvent::OperatorAction {
        host: None,
        action: "stop",
        via: "unix",
        id: Some(0),
        peer_pid: Some(42),
        peer_uid: Some(1000),
        refused: None,
    }));
}

#[test]
fn statuses_and_num_processes_in_the_originals_shape() {
    let mut sim = Sim::up(5, "names: [Pika]\n");
    sim.request(Action::Statuses, "s");
    let st = sim.reply("s");
    assert_eq!(st["0"]["name"], "Pika");
    assert_eq!(st["0"]["status"], "running");
    assert_eq!(st["0"]["active"], true);
    assert_eq!(st["2"]["shard_list"], json!([4]));
    sim.request(Action::NumProcesses, "n");
    assert_eq!(sim.reply("n"), json!({"clusters": 3, "shards": 5}));
}

// Shutting down (docs/protocol.md §5.1, exit codes in docs/operations.md).

#[test]
fn shutdown_stops_every_cluster_then_exits_0_and_restartproc_exits_1() {
    for (action, exit) in [
        (Action::Shutdown, Exit::Shutdown),
        (Action::RestartProc, Exit::RestartProcess),
    ] {
        let mut sim = Sim::up(6, "");
        sim.request(action, "bye");
        // Acked before anything stops, so the asker hears back.
        let first = sim.since_mark().first().cloned();
        assert!(matches!(first, Some(Command::Publish { .. })), "{first:?}");
        assert_eq!(sim.reply("bye"), json!("ok"));
        assert_eq!(sim.stopped(), vec![0, 1, 2]);
        assert_eq!(sim.core.finished(), None);
        sim.exit(0, 0);
        sim.exit(1, 0);
        assert_eq!(sim.core.finished(), None);
        sim.exit(2, 0);
        assert_eq!(sim.core.finished(), Some(exit));
        assert_eq!(exit.code(), if exit == Exit::Shutdown { 0 } else { 1 });
        // Nothing is restarted on the way out, and nothing else is accepted.
        sim.advance(SECS(3600));
        assert!(sim.spawned().is_empty());
        assert_eq!(sim.op(Operation::Start(0)), Err(Refused::ShuttingDown));
    }
}
