//! Every restart is counted in the view faces read, by its reason, when
//! the new process is asked for.

use super::rolling::gateway;
use super::{Sim, SECS};
use crate::actlog::LogEvent;
use crate::cluster_map::ClusterId;
use crate::core::Input;
use crate::model::{Operation, RestartCounts};

/// The restarts `id` shows, checking that its total is their sum.
fn counts(sim: &Sim, id: ClusterId) -> RestartCounts {
    let snapshot = sim.core.snapshot();
    let view = &snapshot.clusters[id as usize];
    assert_eq!(view.restarts, view.restarts_by.total(), "cluster {id}");
    view.restarts_by
}

#[test]
fn operator_crash_and_rolling_restarts_are_each_counted() {
    let mut sim = Sim::up(6, "cluster_start_next_delay: 5\nrestart_backoff_base: 3\n");
    // Two restarts asked before the process exits are one restart.
    assert_eq!(sim.op(Operation::Restart(0)), Ok(()));
    assert_eq!(sim.op(Operation::Restart(0)), Ok(()));
    assert_eq!(counts(&sim, 0).total(), 0, "not restarted yet");
    sim.exit(0, 0);
    sim.launch_next(0);
    assert_eq!(
        counts(&sim, 0),
        RestartCounts {
            operator: 1,
            ..Default::default()
        }
    );
    // A crash: counted when its restart starts it again.
    sim.exit(1, 1);
    assert_eq!(counts(&sim, 1).total(), 0, "crashed, not restarted yet");
    sim.advance(SECS(3));
    assert_eq!(
        counts(&sim, 1),
        RestartCounts {
            crash: 1,
            ..Default::default()
        }
    );
    // The action log's `restarts` stays the crash restarts (§5.4).
    assert!(sim
        .logged()
        .contains(&&LogEvent::ClusterRestarted { id: 1, restarts: 1 }));
    sim.launch_next(1);
    assert_eq!(sim.op(Operation::RollingRestart), Ok(()));
    for id in 0..3 {
        sim.exit(id, 0);
        sim.launch_next(id);
        sim.advance(SECS(5));
    }
    assert!(sim.logged().contains(&&LogEvent::RollingRestartDone {}));
    let rolled = RestartCounts {
        rolling_restart: 1,
        ..Default::default()
    };
    assert_eq!(
        counts(&sim, 0),
        RestartCounts {
            operator: 1,
            ..rolled
        }
    );
    assert_eq!(counts(&sim, 1), RestartCounts { crash: 1, ..rolled });
    assert_eq!(counts(&sim, 2), rolled);
    // Another operator restart adds to the same cluster's count.
    sim.op(Operation::Restart(0)).ok();
    sim.exit(0, 0);
    assert_eq!(counts(&sim, 0).total(), 3);
}

#[test]
fn a_ping_failure_restart_is_counted_as_one() {
    let mut sim = Sim::up(4, "ping_interval: 10\nping_timeout: 20\n");
    sim.advance(SECS(10));
    let pings = sim.pings();
    sim.echoes_return();
    sim.answer(&pings[0].1);
    sim.advance(SECS(20));
    sim.echoes_return();
    assert_eq!(sim.stopped(), vec![1]);
    sim.exit(1, 0);
    assert_eq!(
        counts(&sim, 1),
        RestartCounts {
            ping_failure: 1,
            ..Default::default()
        }
    );
    assert_eq!(counts(&sim, 0).total(), 0);
}

#[test]
fn a_reshards_restarts_are_counted_as_reshard_not_rolling() {
    let mut sim = Sim::up(3, "experimental_features: [reshard]\n");
    assert_eq!(sim.op(Operation::Reshard), Ok(()));
    sim.input(Input::GatewayFetched(Ok(gateway(6))));
    sim.exit(1, 0);
    sim.launch_next(1);
    sim.advance(SECS(5));
    assert_eq!(
        counts(&sim, 1),
        RestartCounts {
            reshard: 1,
            ..Default::default()
        }
    );
    assert_eq!(counts(&sim, 0).total(), 0, "its shards did not change");
    // A rolling restart after it is counted as one again.
    sim.launch_next(2);
    assert_eq!(sim.op(Operation::RollingRestart), Ok(()));
    sim.exit(0, 0);
    assert_eq!(
        counts(&sim, 0),
        RestartCounts {
            rolling_restart: 1,
            ..Default::default()
        }
    );
}
