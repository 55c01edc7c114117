//! Diagnostics (docs/protocol.md §5.3).

use std::time::SystemTime;

use super::{Sim, SECS};
use crate::actlog::LogEvent;
use crate::core::Input;
use crate::model::Operation;

#[test]
fn every_running_cluster_is_pinged_each_interval_and_answers_count_by_nonce() {
    let mut sim = Sim::up(6, "ping_interval: 10\nping_timeout: 20\n");
    sim.advance(SECS(10));
    let pings = sim.pings();
    assert_eq!(pings.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 1, 2]);
    sim.echoes_return();
    // Answers in any order reach their own request.
    for (_, nonce) in pings.iter().rev() {
        sim.answer(nonce);
    }
    assert!(sim.core.clusters.iter().all(|c| c.health.is_some()));
    // A duplicate answer is nothing; no timeout fires for answered pings.
    sim.answer(&pings[0].1);
    sim.advance(SECS(9));
    sim.mark();
    sim.advance(SECS(20));
    assert!(sim.stopped().is_empty());
    assert!(!sim
        .logged()
        .iter()
        .any(|e| matches!(e, LogEvent::PingFailure { .. })));
}

#[test]
fn an_unanswered_diagnostic_restarts_the_cluster_once_the_channel_is_shown_working() {
    let mut sim = Sim::up(4, "ping_interval: 10\nping_timeout: 20\n");
    sim.advance(SECS(10));
    let pings = sim.pings();
    sim.echoes_return();
    sim.answer(&pings[0].1);
    sim.mark();
    sim.advance(SECS(20));
    // Out of time: an echo goes out first, and only its return decides.
    assert!(sim.stopped().is_empty());
    sim.echoes_return();
    assert_eq!(sim.stopped(), vec![1]);
    assert!(sim.logged().contains(&&LogEvent::PingFailure { id: 1 }));
    sim.exit(1, 0);
    assert_eq!(sim.spawned(), vec![1], "restarted after the ping failure");
    // Its late answer is for a process that is gone: ignored.
    sim.answer(&pings[1].1);
    assert!(sim.cluster(1).health.is_none());
}

#[test]
fn a_stalled_channel_restarts_nobody_and_is_logged_once() {
    let mut sim = Sim::up(6, "ping_interval: 10\nping_timeout: 20\n");
    // Nothing comes back: not the pings' echoes, not the answers.
    sim.advance(SECS(60));
    assert!(sim.stopped().is_empty());
    let stalls = sim
        .logged()
        .iter()
        .filter(|e| matches!(e, LogEvent::ChannelStall { .. }))
        .count();
    assert_eq!(stalls, 1);
    sim.echoes_return();
    assert!(sim
        .logged()
        .iter()
        .any(|e| matches!(e, LogEvent::ChannelRecovered { .. })));
}

#[test]
fn pings_sent_before_a_reconnect_or_during_an_outage_count_for_nothing() {
    let mut sim = Sim::up(4, "ping_interval: 10\nping_timeout: 20\n");
    sim.advance(SECS(10));
    sim.echoes_return();
    sim.input(Input::TransportDown {
        retry_at: SystemTime::UNIX_EPOCH,
    });
    sim.mark();
    sim.advance(SECS(15));
    assert!(sim.pings().is_empty(), "no diagnostics while down");
    sim.input(Input::TransportUp);
    sim.advance(SECS(60));
    sim.echoes_return();
    assert!(sim.stopped().is_empty());
    assert!(matches!(sim.op(Operation::Diagnose(0)), Ok(())));
}

#[test]
fn a_round_is_spread_over_the_interval_in_tenths() {
    // 20 clusters (two shards each): cluster i in tenth i mod 10.
    let mut sim = Sim::up(40, "ping_interval: 10\nping_timeout: 20\n");
    sim.advance(SECS(1));
    let first: Vec<_> = sim.pings().iter().map(|p| p.0).collect();
    assert_eq!(first, vec![0, 10], "the first tenth");
    sim.advance(SECS(9));
    let mut round: Vec<_> = sim.pings().iter().map(|p| p.0).collect();
    round.sort_unstable();
    assert_eq!(round, (0..20).collect::<Vec<_>>(), "each once per round");
    sim.echoes_return();
    for (_, nonce) in sim.pings() {
        sim.answer(&nonce);
    }
    sim.mark();
    sim.advance(SECS(10));
    let mut second: Vec<_> = sim.pings().iter().map(|p| p.0).collect();
    second.sort_unstable();
    assert_eq!(second, (0..20).collect::<Vec<_>>(), "and again the next");
}
