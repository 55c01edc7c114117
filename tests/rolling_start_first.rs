//! `rolling_restart_mode: start_first` end to end (docs/protocol.md §6.1):
//! real redis-server, real fake-bot processes. Each cluster's replacement
//! starts beside its process, the old one is stopped only after the
//! replacement's `launch_next`, and a broken build is caught at the first
//! cluster with every other process untouched.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::{json, Value};

const START_FIRST: &str = "rolling_restart_mode: start_first\n";

/// The running pid of each cluster, from the fake bots' records.
fn pids_by_cluster(bot: &BotDir) -> BTreeMap<u64, u32> {
    bot.records()
        .iter()
        .filter_map(|r| Some((r["cluster_id"].as_u64()?, r["pid"].as_u64()? as u32)))
        .filter(|(_, pid)| alive(*pid))
        .collect()
}

/// The record of the process that replaced `old`.
fn replacement_of(bot: &BotDir, old: u32) -> Option<Value> {
    bot.records().into_iter().find(|r| {
        r["env"]["MEWLD_REPLACES"]
            .as_str()
            .and_then(|p| p.parse().ok())
            == Some(old)
    })
}

fn wait_event(f: &Fixture, event: &str) -> Vec<Value> {
    wait_for(event, DEADLINE * 2, || {
        let log = f.redis.action_log(&f.ch);
        (!events(&log, event).is_empty()).then_some(log)
    })
}

fn at_us(records: &[Value], pid: u32) -> Option<u64> {
    records
        .iter()
        .find(|r| r["pid"] == pid)
        .and_then(|r| r["at_us"].as_u64())
}

/// During a roll of 6 clusters, sampled every 100 ms, every cluster always
/// has a live process that has said `launch_next` and has not been told to
/// stop; each old process gets its SIGTERM only after its replacement said
/// `launch_next`, and is gone by the end.
#[test]
fn a_start_first_roll_leaves_no_cluster_without_a_ready_process() {
    let env = [("FAKEBOT_LAUNCH_DELAY_MS", "700")];
    let (f, _manager) = launched("sf-gaps", 12, START_FIRST, &env);
    let old = pids_by_cluster(&f.bot);
    assert_eq!(old.len(), 6, "{old:?}");
    let sampler = Sampler::start(&f.bot, 6);
    let reply = ask(&f.redis, &f.listener, &f.ch, "rollingrestart", json!({}));
    assert_eq!(reply["output"], "ok");
    let log = wait_event(&f, "rolling_restart_done");
    let samples = sampler.finish();
    assert!(samples.taken >= 30, "{} samples", samples.taken);
    assert!(
        samples.gaps.is_empty(),
        "clusters without a ready process: {:?}",
        samples.gaps
    );
    let (launches, terms) = (f.bot.launches(), f.bot.sigterms());
    for (&id, &pid) in &old {
        let new = replacement_of(&f.bot, pid).expect("a replacement");
        assert_eq!(new["cluster_id"], id);
        let new_pid = new["pid"].as_u64().expect("pid") as u32;
        let (said, stopped) = (at_us(&launches, new_pid), at_us(&terms, pid));
        assert!(
            said.is_some() && stopped.is_some() && said < stopped,
            "cluster {id}: launch_next at {said:?}, old SIGTERM at {stopped:?}"
        );
    }
    assert_all_dead(&old.values().copied().collect::<Vec<_>>());
    for id in 0..6u64 {
        let at = |event: &str| {
            log.iter()
                .position(|e| e["event"] == event && e["id"] == id)
                .unwrap_or_else(|| panic!("no {event} for {id}: {log:?}"))
        };
        assert!(at("replacement_started") < at("cluster_replaced"));
        assert!(at("cluster_replaced") < at("replaced_process_stopped"));
    }
    let now = pids_by_cluster(&f.bot);
    assert!(
        now.values().all(|p| !old.values().any(|o| o == p)),
        "{now:?}"
    );
    wait_for("all_clusters_launched again", DEADLINE, || {
        let told = f.listener.all();
        let n = told
            .iter()
            .filter(|m| m["action"] == "all_clusters_launched")
            .count();
        (n == 2).then_some(())
    });
}

/// The roll ended at cluster `id`: its abort entry, with no later
/// cluster touched and every process of the first launch still running
/// with its pid.
fn assert_aborted_at_0(f: &Fixture, old: &BTreeMap<u64, u32>, reason: &str) -> Value {
    let log = wait_event(f, "rolling_restart_aborted");
    let abort = events(&log, "rolling_restart_aborted").remove(0);
    assert_eq!(abort["id"], 0, "{abort}");
    let said = abort["reason"].as_str().unwrap_or_default();
    assert!(said.contains(reason), "{abort}");
    wait_for("the replacement to be gone", DEADLINE, || {
        let log = f.redis.action_log(&f.ch);
        let gone = ["replacement_stopped", "rolling_restart_aborted"]
            .iter()
            .any(|e| !events(&log, e).is_empty());
        (gone
            && f.bot.records().iter().all(|r| {
                r["pid"]
                    .as_u64()
                    .is_some_and(|p| old.values().any(|o| u64::from(*o) == p) || !alive(p as u32))
            }))
        .then_some(())
    });
    assert_eq!(
        &pids_by_cluster(&f.bot),
        old,
        "every old process runs, with its pid"
    );
    let stopped: Vec<Value> = f.bot.sigterms();
    assert!(
        !stopped.iter().any(|t| old.values().any(|o| t["pid"] == *o)),
        "no old process was stopped: {stopped:?}"
    );
    let log = f.redis.action_log(&f.ch);
    assert!(events(&log, "rolling_restart_done").is_empty());
    assert!(
        !events(&log, "replacement_started")
            .iter()
            .any(|e| e["id"] != 0),
        "no later cluster was touched: {log:?}"
    );
    abort
}

/// A build that crashes at start: the roll ends at cluster 0, the action
/// log says why (with the replacement's last lines), every old process
/// still runs with its pid, and `mewld rolling-restart --wait` fails.
#[test]
fn a_replacement_that_crashes_at_start_aborts_at_cluster_0() {
    let env = [("FAKEBOT_REPLACEMENT_EXIT_AT_START", "3")];
    let (f, manager) = launched("sf-crash", 12, START_FIRST, &env);
    let old = pids_by_cluster(&f.bot);
    let out = std::process::Command::new(MEWLD)
        .args(["rolling-restart", "--wait", "--config"])
        .arg(&manager.config_path)
        .output()
        .expect("mewld rolling-restart");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("cluster 0"), "{said}");
    let abort = assert_aborted_at_0(&f, &old, "exited (code 3)");
    let output: Vec<&str> = abort["output"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        output
            .iter()
            .any(|l| l.contains("exiting at start with code 3")),
        "the replacement's last lines: {abort}"
    );
}

/// A replacement that never says `launch_next` is stopped after
/// `rolling_restart_timeout`, with the same result.
#[test]
fn a_silent_replacement_is_stopped_after_the_timeout() {
    let env = [("FAKEBOT_REPLACEMENT_SILENT", "1")];
    let extra = format!("{START_FIRST}rolling_restart_timeout: 3\n");
    let (f, _manager) = launched("sf-silent", 12, &extra, &env);
    let old = pids_by_cluster(&f.bot);
    let reply = ask(&f.redis, &f.listener, &f.ch, "rollingrestart", json!({}));
    assert_eq!(reply["output"], "ok");
    let abort = assert_aborted_at_0(&f, &old, "within 3s");
    let pid = abort["pid"].as_u64().expect("the replacement's pid") as u32;
    wait_for("the silent replacement to be stopped", DEADLINE, || {
        (!alive(pid)).then_some(())
    });
    let log = f.redis.action_log(&f.ch);
    let stopped = events(&log, "replacement_stopped");
    assert_eq!(stopped.len(), 1, "{log:?}");
    assert_eq!(stopped[0]["pid"], pid);
}

/// An operator's stop during an overlap stops both processes; the cluster
/// is stopped, and the roll goes on with the next cluster.
#[test]
fn an_operators_stop_during_an_overlap_stops_both() {
    let env = [("FAKEBOT_REPLACEMENT_SILENT", "1")];
    let extra = format!("{START_FIRST}rolling_restart_timeout: 600\n");
    let (f, _manager) = launched("sf-stop", 8, &extra, &env);
    let old = pids_by_cluster(&f.bot);
    ask(&f.redis, &f.listener, &f.ch, "rollingrestart", json!({}));
    let replacement = wait_for("the replacement of cluster 0", DEADLINE, || {
        replacement_of(&f.bot, old[&0])
    });
    let new = replacement["pid"].as_u64().expect("pid") as u32;
    let statuses = statuses_when(&f, "cluster 0 replacing", |s| {
        s["0"]["replacing"].as_u64() == Some(u64::from(new))
    });
    assert_eq!(statuses["0"]["status"], "running", "{statuses}");
    let reply = ask(&f.redis, &f.listener, &f.ch, "stop", json!({"id": 0}));
    assert_eq!(reply["output"], "ok");
    wait_for("both processes of cluster 0 to be gone", DEADLINE, || {
        (!alive(old[&0]) && !alive(new)).then_some(())
    });
    statuses_when(&f, "cluster 0 stopped", |s| s["0"]["status"] == "stopped");
    // The roll went on: cluster 1's replacement (silent too) starts.
    wait_for("cluster 1's replacement", DEADLINE, || {
        replacement_of(&f.bot, old[&1])
    });
    assert!(alive(old[&1]) && alive(old[&2]) && alive(old[&3]));
}

/// Two hosts, two clusters each: the leader walks the order across hosts,
/// each host overlaps its own clusters, and no cluster is ever without a
/// ready process.
#[test]
fn a_fleet_of_two_hosts_rolls_in_id_order_with_zero_gaps() {
    let f = Fixture::new("sf-fleet", vec![Answer::gateway(8, 900, 0)]);
    let env = [("FAKEBOT_LAUNCH_DELAY_MS", "500")];
    let mut a = f.fleet_host(&f.config(START_FIRST), "a", 0, 2, &env);
    let b = f.fleet_host(&f.config(START_FIRST), "b", 1, 2, &env);
    a.wait_launched(&f.listener);
    statuses_when(&f, "every cluster running", |s| {
        (0..4).all(|id| status_of(s, id) == "running")
    });
    let old = pids_by_cluster(&f.bot);
    let sampler = Sampler::start(&f.bot, 4);
    assert_eq!(ask_all(&f, "rollingrestart", json!({})).len(), 1);
    wait_event(&f, "rolling_restart_done");
    let samples = sampler.finish();
    assert!(samples.gaps.is_empty(), "{:?}", samples.gaps);
    let (launches, terms) = (f.bot.launches(), f.bot.sigterms());
    let mut said = Vec::new();
    for (&id, &pid) in &old {
        let new = replacement_of(&f.bot, pid).expect("a replacement");
        let new_said = at_us(&launches, new["pid"].as_u64().expect("pid") as u32);
        assert!(new_said < at_us(&terms, pid), "cluster {id}");
        said.push(new_said);
    }
    assert!(
        said.windows(2).all(|w| w[0] < w[1]),
        "in id order: {said:?}"
    );
    // Each host replaced its own: the new processes are its children.
    for (id, pid) in pids_by_cluster(&f.bot) {
        let owner = if id < 2 { a.pid() } else { b.pid() };
        assert_eq!(parent_of(u64::from(pid)), Some(owner), "cluster {id}");
    }
}

/// A replacement that fails on another host than the leader's: that host
/// says why, the leader stops walking, and the clusters after it keep
/// their old processes.
#[test]
fn in_a_fleet_a_failing_replacement_stops_the_leaders_walk() {
    let f = Fixture::new("sf-fleet-abort", vec![Answer::gateway(8, 900, 0)]);
    let broken = [("FAKEBOT_REPLACEMENT_EXIT_AT_START", "4")];
    let mut a = f.fleet_host(&f.config(START_FIRST), "a", 0, 2, &[]);
    // Host a leads (it walks the roll); the broken build is b's.
    wait_for("host a to lead", DEADLINE, || {
        let log = f.redis.action_log(&f.ch);
        events(&log, "leader_elected")
            .iter()
            .any(|e| e["host"] == "a")
            .then_some(())
    });
    let _b = f.fleet_host(&f.config(START_FIRST), "b", 1, 2, &broken);
    a.wait_launched(&f.listener);
    statuses_when(&f, "every cluster running", |s| {
        (0..4).all(|id| status_of(s, id) == "running")
    });
    let old = pids_by_cluster(&f.bot);
    assert_eq!(ask_all(&f, "rollingrestart", json!({})).len(), 1);
    let log = wait_event(&f, "rolling_restart_stopped");
    let aborted = events(&log, "rolling_restart_aborted");
    assert_eq!(aborted.len(), 1, "{log:?}");
    assert_eq!(aborted[0]["id"], 2);
    let stopped = events(&log, "rolling_restart_stopped").remove(0);
    assert!(
        stopped["reason"]
            .as_str()
            .is_some_and(|r| r.contains("host b")),
        "{stopped}"
    );
    assert!(events(&log, "rolling_restart_done").is_empty());
    let now = pids_by_cluster(&f.bot);
    assert_eq!(
        (now[&2], now[&3]),
        (old[&2], old[&3]),
        "b's clusters untouched"
    );
    assert_ne!(now[&0], old[&0], "a's were replaced before");
}

/// A fixture whose Discord says 4 shards, then 6, and a manager on it
/// with `start_first` resharding every cluster, its clusters' `env`.
fn reshardable(test: &str, env: &[(&str, &str)]) -> (Fixture, Manager) {
    let answers = vec![Answer::gateway(4, 900, 0), Answer::gateway(6, 900, 0)];
    let f = Fixture::new(test, answers);
    let extra = format!("{START_FIRST}experimental_features: [reshard]\nreshard_all: true\n");
    let config = f.config(&extra);
    let mut manager = Manager::start_with(&config, &["--daemon"], Some(&f.redis), &f.bot, env);
    manager.wait_launched(&f.listener);
    (f, manager)
}

/// 4 → 6 shards: the new map (both clusters on the new count, and a new
/// cluster 2) starts beside the old one; the old processes stop only once
/// every new one said launch_next, and neither old cluster is ever
/// without a ready process.
#[test]
fn a_start_first_reshard_grows_4_to_6_shards_with_zero_gaps() {
    let env = [("FAKEBOT_LAUNCH_DELAY_MS", "500")];
    let (f, _manager) = reshardable("sf-reshard", &env);
    let old = pids_by_cluster(&f.bot);
    assert_eq!(old.len(), 2);
    let sampler = Sampler::start(&f.bot, 2);
    let reply = ask(&f.redis, &f.listener, &f.ch, "reshard", json!({}));
    assert_eq!(reply["output"], "ok");
    let log = wait_event(&f, "reshard_restarts_done");
    let samples = sampler.finish();
    assert!(samples.gaps.is_empty(), "{:?}", samples.gaps);
    let success = events(&log, "reshard_success").remove(0);
    assert_eq!(
        (
            success["old_shards"].as_u64(),
            success["new_shards"].as_u64()
        ),
        (Some(4), Some(6))
    );
    let launches = f.bot.launches();
    let last_new = launches.iter().filter_map(|l| l["at_us"].as_u64()).max();
    for (&id, &pid) in &old {
        let stopped = wait_for("the old process's SIGTERM", DEADLINE, || {
            at_us(&f.bot.sigterms(), pid)
        });
        assert!(
            Some(stopped) > last_new,
            "cluster {id}: stopped at {stopped} µs, before the new map was up ({last_new:?})"
        );
    }
    assert_eq!(
        ask(&f.redis, &f.listener, &f.ch, "num_processes", json!({}))["output"],
        json!({"clusters": 3, "shards": 6})
    );
    let now = pids_by_cluster(&f.bot);
    assert_eq!(now.len(), 3);
    for (id, pid) in &now {
        let record = f
            .bot
            .records()
            .into_iter()
            .find(|r| r["pid"] == *pid)
            .expect("record");
        assert_eq!(record["argv"][1], "6", "cluster {id} runs on the new count");
    }
    assert_all_dead(&old.values().copied().collect::<Vec<_>>());
}

/// A new process that fails: the reshard ends, every new process is
/// stopped, and the old map runs on with its pids.
#[test]
fn a_failing_start_first_reshard_keeps_the_old_map_running() {
    let env = [("FAKEBOT_REPLACEMENT_EXIT_AT_START", "5")];
    let (f, _manager) = reshardable("sf-reshard-fail", &env);
    let old = pids_by_cluster(&f.bot);
    ask(&f.redis, &f.listener, &f.ch, "reshard", json!({}));
    let log = wait_event(&f, "reshard_aborted");
    let aborted = events(&log, "reshard_aborted").remove(0);
    assert!(
        aborted["reason"]
            .as_str()
            .is_some_and(|r| r.contains("code 5")),
        "{aborted}"
    );
    assert!(events(&log, "reshard_success").is_empty(), "{log:?}");
    assert_eq!(&pids_by_cluster(&f.bot), &old, "the old map, with its pids");
    assert_eq!(
        ask(&f.redis, &f.listener, &f.ch, "num_processes", json!({}))["output"],
        json!({"clusters": 2, "shards": 4})
    );
    let st = ask(&f.redis, &f.listener, &f.ch, "statuses", json!({}));
    assert_eq!(st["output"]["1"]["shard_list"], json!([2, 3]));
    assert!(st["output"].get("2").is_none(), "{st}");
}

/// Started mid-roll with a replacement that never says `launch_next`:
/// the old process and its replacement, both alive.
fn overlapping(test: &str) -> (Fixture, Manager, u32, u32) {
    let env = [("FAKEBOT_REPLACEMENT_SILENT", "1")];
    let (f, manager) = launched(test, 2, START_FIRST, &env);
    let old = pids_by_cluster(&f.bot)[&0];
    ask(&f.redis, &f.listener, &f.ch, "rollingrestart", json!({}));
    let new = wait_for("the replacement", DEADLINE, || replacement_of(&f.bot, old));
    let new = new["pid"].as_u64().expect("pid") as u32;
    wait_for("both running", DEADLINE, || {
        (alive(old) && alive(new)).then_some(())
    });
    (f, manager, old, new)
}

/// A SIGKILLed manager leaves neither process of an overlap behind: the
/// guardian knows the replacement's group as it knows every cluster's.
#[test]
fn a_sigkilled_manager_leaves_neither_process_of_an_overlap() {
    let (_f, mut manager, old, new) = overlapping("sf-sigkill");
    manager.signal(nix::sys::signal::Signal::SIGKILL);
    assert_eq!(manager.wait_exit(), None);
    assert_all_dead(&[old, new]);
}

/// A shutdown during an overlap stops both processes and exits once both
/// have exited.
#[test]
fn a_shutdown_during_an_overlap_stops_both_processes() {
    let (f, mut manager, old, new) = overlapping("sf-shutdown");
    manager.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(manager.wait_exit(), Some(0));
    assert!(
        !alive(old) && !alive(new),
        "both stopped before the manager exited: old {old} alive {}, new {new} alive {}",
        alive(old),
        alive(new)
    );
    let log = f.redis.action_log(&f.ch);
    assert_eq!(events(&log, "replacement_stopped").len(), 1, "{log:?}");
    assert_eq!(events(&log, "cluster_stopped").len(), 1, "{log:?}");
}

/// Replacements identify through the identify queue like any process:
/// their shards wait for their turn, within Discord's rate limit.
#[test]
fn replacements_identify_through_the_queue() {
    let f = Fixture::new(
        "sf-identify",
        vec![Answer::gateway_with(4, 900, 3_600_000, 1)],
    );
    let extra = format!("{START_FIRST}identify_queue: 127.0.0.1:0\n");
    let env = [("FAKEBOT_IDENTIFY_MS", "20")];
    let mut m = Manager::start_with(
        &f.config(&extra),
        &["--daemon"],
        Some(&f.redis),
        &f.bot,
        &env,
    );
    m.wait_launched_within(&f.listener, DEADLINE * 2);
    assert_eq!(f.bot.grants().len(), 4);
    ask(&f.redis, &f.listener, &f.ch, "rollingrestart", json!({}));
    wait_event(&f, "rolling_restart_done");
    assert_eq!(
        f.bot.grants().len(),
        8,
        "each replacement's shards had a turn"
    );
    assert_within_rate_limit(&f.bot.grants(), 1);
}
