//! Where messages go (docs/protocol.md §5.5): with `cluster_channels`, a
//! cluster's diagnostic on its own channel and the manager's own traffic
//! on the launcher channel; a request's `reply_to`, within the channel's
//! namespace only; in a fleet, one answer on it.

use serde_json::{json, Value};

use super::{host_a, Sim, SECS};
use crate::model::state::ClusterState;
use crate::model::Operation;
use crate::protocol::Channel::{self, Cluster, Launcher, Main};

const ON: &str = "cluster_channels: true\nping_interval: 10\nping_timeout: 20\n";

fn nonce(m: &Value) -> String {
    m["nonce"].as_str().unwrap_or_default().to_string()
}

#[test]
fn with_cluster_channels_each_ping_goes_to_its_cluster_alone() {
    let mut sim = Sim::up(6, ON);
    sim.advance(SECS(10));
    for id in 0..3 {
        let pings = sim.published_on(&Cluster(id));
        assert_eq!(pings.len(), 1, "cluster {id}: {pings:?}");
        assert_eq!(
            (pings[0]["id"].as_u64(), &pings[0]["diag"]),
            (Some(u64::from(id)), &json!(true))
        );
    }
    assert!(
        sim.published_on(&Main).is_empty(),
        "every cluster would hear it"
    );
    // One echo after each slot of the round that pinged someone: three
    // clusters, three slots.
    let echoes = sim.published_on(&Launcher);
    assert_eq!(echoes.len(), 3);
    assert!(echoes.iter().all(|e| e["action"] == "mewld_echo"));
    // The echo coming back on the launcher channel proves the pings
    // delivered: answers (on either channel, read alike) count.
    sim.echoes_return();
    for (_, n) in sim.pings() {
        sim.answer(&n);
    }
    sim.mark();
    sim.advance(SECS(25));
    sim.echoes_return();
    assert!(sim.stopped().is_empty());
    assert!(sim.core.clusters.iter().all(|c| c.health.is_some()));
}

#[test]
fn with_cluster_channels_a_silent_cluster_is_still_restarted() {
    let mut sim = Sim::up(4, ON);
    sim.advance(SECS(10));
    let first = sim.published_on(&Cluster(0));
    sim.echoes_return();
    sim.answer(&nonce(&first[0]));
    sim.mark();
    sim.advance(SECS(20));
    sim.echoes_return();
    assert_eq!(sim.stopped(), vec![1]);
}

#[test]
fn without_the_key_everything_stays_on_the_main_channel() {
    let mut sim = Sim::up(4, "ping_interval: 10\n");
    sim.advance(SECS(10));
    let main = sim.published_on(&Main);
    assert_eq!(main.iter().filter(|m| m["diag"] == true).count(), 2);
    assert_eq!(
        main.iter().filter(|m| m["action"] == "mewld_echo").count(),
        2,
        "an echo after each slot's ping"
    );
    assert_eq!(main.len(), sim.published().len(), "nothing elsewhere");
}

#[test]
fn the_bot_is_announced_and_answered_on_the_main_channel_with_the_key() {
    let mut sim = Sim::new(4, ON);
    sim.input(crate::core::Input::TransportUp);
    sim.launch_in_order(0..2);
    assert_eq!(sim.announcements(), 1);
    let main = sim.published_on(&Main);
    assert!(main.iter().any(|m| m["action"] == "all_clusters_launched"));
    sim.mark();
    sim.hear(json!({"scope": "launcher", "action": "num_processes", "command_id": "n"}));
    assert_eq!(
        sim.published_on(&Main)[0]["output"],
        json!({"clusters": 2, "shards": 4})
    );
}

#[test]
fn a_reply_goes_to_reply_to_under_the_channel_and_nowhere_else() {
    let mut sim = Sim::up(4, "");
    sim.mark();
    sim.hear(json!({"scope": "launcher", "action": "statuses", "command_id": "q", "reply_to": "c:replies:7"}));
    sim.hear(json!({"scope": "launcher", "action": "restart", "args": {"id": 1}, "command_id": "r", "reply_to": "c:launcher"}));
    let there = sim.published_on(&Channel::Reply("c:replies:7".into()));
    assert_eq!(there.len(), 1);
    assert_eq!(
        (&there[0]["command_id"], &there[0]["scope"]),
        (&json!("q"), &json!("bot"))
    );
    assert_eq!(there[0]["output"]["0"]["status"], "running");
    let launcher = sim.published_on(&Channel::Reply("c:launcher".into()));
    assert_eq!(
        launcher,
        vec![json!({"command_id": "r", "output": "ok", "scope": "bot", "action": ""})]
    );
    assert_eq!(sim.stopped(), vec![1]);
    assert!(sim.published_on(&Main).is_empty());
    // No fleet: no note that it was answered.
    assert_eq!(sim.published().len(), 2);
}

#[test]
fn a_reply_to_outside_the_channel_is_refused_and_nothing_is_done() {
    let mut sim = Sim::up(4, "");
    sim.mark();
    for outside in [
        "other:x",
        "c",
        "c:",
        "cx:1",
        "C:1",
        &format!("c:{}", "x".repeat(300)),
    ] {
        sim.hear(json!({"scope": "launcher", "action": "stop", "args": {"id": 0}, "command_id": "s", "reply_to": outside}));
        sim.hear(json!({"scope": "launcher", "action": "statuses", "command_id": "q", "reply_to": outside}));
    }
    assert!(sim.published().is_empty(), "{:?}", sim.since_mark());
    assert!(sim.stopped().is_empty());
    assert!(sim.logged().is_empty());
    // An empty or mistyped one is no `reply_to`, as the original reads it.
    sim.hear(
        json!({"scope": "launcher", "action": "num_processes", "command_id": "n", "reply_to": ""}),
    );
    sim.hear(
        json!({"scope": "launcher", "action": "num_processes", "command_id": "m", "reply_to": 5}),
    );
    assert_eq!(sim.published_on(&Main).len(), 2);
}

/// Host "b" of a fleet with the key, beside host "a" (clusters 0 and 2).
fn fleet_b(lead: bool) -> Sim {
    use ClusterState::Running;
    let mut sim = Sim::host_with(6, &[1], ON);
    sim.input(crate::core::Input::TransportUp);
    sim.view(vec![host_a(&[(0, Running), (2, Running)])], lead);
    sim
}

#[test]
fn in_a_fleet_the_leader_answers_on_reply_to_and_tells_the_hosts_once() {
    let mut sim = fleet_b(true);
    sim.mark();
    sim.hear(
        json!({"scope": "launcher", "action": "statuses", "command_id": "q", "reply_to": "c:r"}),
    );
    assert_eq!(sim.published_on(&Channel::Reply("c:r".into())).len(), 1);
    let note = sim.published_on(&Launcher);
    assert_eq!(
        note,
        vec![json!({"scope": "launcher", "action": "mewld_answered", "command_id": "q"})]
    );
    assert!(sim.published_on(&Main).is_empty());
    // Hand-offs go on the launcher channel too: no cluster hears them.
    sim.mark();
    assert_eq!(sim.op(Operation::Stop(0)), Ok(()));
    let handed = sim.published_on(&Launcher);
    assert_eq!(handed[0]["action"], "mewld_op");
    assert_eq!(handed.len(), sim.published().len());
}

#[test]
fn a_host_that_held_a_question_drops_it_on_the_note_and_answers_it_on_reply_to_otherwise() {
    let mut sim = fleet_b(false);
    sim.mark();
    sim.hear(
        json!({"scope": "launcher", "action": "statuses", "command_id": "q1", "reply_to": "c:r1"}),
    );
    sim.hear(json!({"scope": "launcher", "action": "num_processes", "command_id": "q2", "reply_to": "c:r2"}));
    assert!(sim.published().is_empty(), "host a leads");
    // The leader answered q1 (on its reply_to, where b does not listen), then died.
    sim.hear(json!({"scope": "launcher", "action": "mewld_answered", "command_id": "q1"}));
    sim.view(vec![host_a(&[(0, ClusterState::Running)])], true);
    assert!(
        sim.published_on(&Channel::Reply("c:r1".into())).is_empty(),
        "answered already"
    );
    let r2 = sim.published_on(&Channel::Reply("c:r2".into()));
    assert_eq!(r2.len(), 1);
    assert_eq!(r2[0]["output"], json!({"clusters": 3, "shards": 6}));
    assert!(sim
        .published_on(&Main)
        .iter()
        .all(|m| m["command_id"] != "q2"));
}
