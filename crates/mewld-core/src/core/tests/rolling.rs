//! Rolling restarts and resharding (docs/protocol.md §5.1).

use super::{Sim, SECS};
use crate::actlog::LogEvent;
use crate::cluster_map::ClusterId;
use crate::core::{Command, Input};
use crate::model::state::ClusterState;
use crate::model::{GatewayBot, SessionStartLimit};
use crate::model::{Operation, Refused};

#[test]
fn a_rolling_restart_goes_one_cluster_at_a_time_and_announces_the_bot_once() {
    let mut sim = Sim::up(6, "cluster_start_next_delay: 5\n");
    assert_eq!(sim.op(Operation::RollingRestart), Ok(()));
    for id in 0..3 {
        assert_eq!(sim.stopped().last(), Some(&id));
        sim.exit(id, 0);
        assert_eq!(sim.spawned().last(), Some(&id));
        assert_eq!(sim.stopped().len() as ClusterId, id + 1, "one at a time");
        sim.launch_next(id);
        assert_eq!(sim.announcements(), 0, "not per cluster");
        sim.advance(SECS(5));
    }
    assert!(sim.logged().contains(&&LogEvent::RollingRestartDone {}));
    assert_eq!(sim.announcements(), 1);
    assert!(sim.core.rolling.is_none());
}

#[test]
fn a_rolling_restart_moves_on_from_a_cluster_that_does_not_come_back() {
    let mut sim = Sim::up(4, "rolling_restart_timeout: 100\n");
    sim.op(Operation::RollingRestart).ok();
    sim.exit(0, 0);
    sim.advance(SECS(100));
    assert!(sim.logged().contains(&&LogEvent::RollingRestartTimeout {
        id: 0,
        waited_secs: 100
    }));
    assert_eq!(sim.stopped(), vec![0, 1]);
}

#[test]
fn an_operators_stop_during_a_rolling_restart_wins() {
    let mut sim = Sim::up(6, "");
    sim.op(Operation::RollingRestart).ok();
    sim.op(Operation::Stop(1)).ok();
    sim.exit(1, 0);
    sim.exit(0, 0);
    sim.launch_next(0);
    sim.advance(SECS(5));
    assert_eq!(
        sim.stopped(),
        vec![0, 1, 2],
        "1 was stopped by the operator"
    );
    assert_eq!(sim.spawned(), vec![0]);
    assert_eq!(sim.state(1), ClusterState::Stopped);
}

#[test]
fn rolling_restarts_and_reshards_wait_for_a_settled_bot() {
    let mut sim = Sim::new(4, "experimental_features: [reshard]\n");
    sim.input(Input::TransportUp);
    assert_eq!(sim.op(Operation::RollingRestart), Err(Refused::NotFullyUp));
    let mut sim = Sim::up(4, "experimental_features: [reshard]\n");
    sim.op(Operation::RollingRestart).ok();
    assert_eq!(
        sim.op(Operation::RollingRestart),
        Err(Refused::RollingUnderWay)
    );
    assert_eq!(sim.op(Operation::Reshard), Err(Refused::RollingUnderWay));
    let mut sim = Sim::up(4, "");
    assert_eq!(sim.op(Operation::Reshard), Err(Refused::ReshardDisabled));
}

pub(super) fn gateway(shards: u32) -> GatewayBot {
    GatewayBot {
        url: String::new(),
        shards,
        session_start_limit: SessionStartLimit {
            total: 1000,
            remaining: 1000,
            reset_after: 0,
            max_concurrency: 1,
        },
    }
}

#[test]
fn a_reshard_restarts_changed_clusters_and_launches_new_ones() {
    let mut sim = Sim::up(3, "experimental_features: [reshard]\n");
    assert_eq!(sim.op(Operation::Reshard), Ok(()));
    assert!(sim.since_mark().contains(&Command::FetchGateway));
    sim.input(Input::GatewayFetched(Ok(gateway(6))));
    // [0,1] unchanged; [2] becomes [2,3]; [4,5] is new.
    assert_eq!(sim.stopped(), vec![1]);
    sim.exit(1, 0);
    sim.launch_next(1);
    sim.advance(SECS(5));
    assert!(sim.logged().contains(&&LogEvent::ReshardRestartsDone {}));
    assert_eq!(sim.spawned(), vec![1, 2]);
    sim.launch_next(2);
    assert_eq!(sim.announcements(), 1);
    assert_eq!(sim.core.snapshot().shard_count, 6);
}

#[test]
fn a_reshard_never_shrinks_the_cluster_map() {
    let mut sim = Sim::up(6, "experimental_features: [reshard]\n");
    sim.op(Operation::Reshard).ok();
    sim.input(Input::GatewayFetched(Ok(gateway(2))));
    assert!(sim.logged().iter().any(|e| matches!(
        e,
        LogEvent::ReshardFailed {
            subsystem: "cluster_map",
            ..
        }
    )));
    assert!(sim.stopped().is_empty());
    sim.input(Input::GatewayFetched(Err("401".into())));
    assert_eq!(sim.core.snapshot().shard_count, 6);
}
