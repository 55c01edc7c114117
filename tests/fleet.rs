//! Several `mewld --daemon` managers on one real redis-server, each running
//! a slice of the clusters with real fake-bot processes, acting as one.

mod common;

use std::thread;
use std::time::Duration;

use common::tmux::{mewld_script, Tmux};
use common::*;
use serde_json::{json, Value};

/// `mewld --daemon` as host `name`, with the slice arguments `slice`.
fn host(f: &Fixture, config: &str, name: &str, slice: &[&str]) -> Manager {
    let mut args = vec!["--daemon", "--host-name", name];
    args.extend_from_slice(slice);
    Manager::start_with(config, &args, Some(&f.redis), &f.bot, &[])
}

/// The fake bot processes of cluster `id` recorded so far, oldest first.
fn pids_of(f: &Fixture, id: u64) -> Vec<u64> {
    f.bot
        .records()
        .iter()
        .filter(|r| r["cluster_id"] == id)
        .filter_map(|r| r["pid"].as_u64())
        .collect()
}

fn all_launched_count(f: &Fixture) -> usize {
    f.listener
        .all()
        .iter()
        .filter(|m| m["action"] == "all_clusters_launched")
        .count()
}

#[test]
fn two_hosts_launch_in_one_order_and_answer_once() {
    let f = Fixture::new("fleet-order", vec![Answer::gateway(8, 900, 0)]);
    let config = f.config("");
    // Host b first: its clusters (2, 3) must still wait for a's (0, 1).
    let mut b = f.fleet_host(&config, "b", 1, 2, &[]);
    thread::sleep(Duration::from_millis(1500));
    assert!(
        f.bot.records().is_empty(),
        "host b started a cluster before cluster 0 and 1 launched"
    );
    let a = f.fleet_host(&config, "a", 0, 2, &[]);
    b.wait_launched(&f.listener);

    // One order over both hosts: each cluster started after the one before
    // it said launch_next, wherever that one ran.
    let records = f.bot.records();
    let launches = f.bot.launches();
    for id in 1..4u64 {
        let started = records
            .iter()
            .find(|r| r["cluster_id"] == id)
            .expect("started");
        let before = launches
            .iter()
            .find(|l| l["cluster_id"] == id - 1)
            .expect("launched");
        assert!(
            started["started_us"].as_u64() >= before["at_us"].as_u64(),
            "cluster {id} started before cluster {} said launch_next",
            id - 1
        );
    }
    // Each host ran its own slice.
    for (id, manager) in [(0, &a), (1, &a), (2, &b), (3, &b)] {
        let pid = pids_of(&f, id)[0];
        assert_eq!(parent_of(pid), Some(manager.pid()), "cluster {id}'s parent");
    }

    // One answer to each question, covering the whole fleet (another
    // host's state reaches the leader within a heartbeat).
    statuses_when(&f, "every cluster running in statuses", |s| {
        (0..4).all(|id| status_of(s, id) == "running" && s[id.to_string()]["active"] == true)
    });
    let answers = ask_all(&f, "statuses", json!({}));
    assert_eq!(answers.len(), 1, "statuses answered {answers:?}");
    let answers = ask_all(&f, "num_processes", json!({}));
    assert_eq!(answers.len(), 1, "num_processes answered {answers:?}");
    assert_eq!(answers[0]["output"], json!({"clusters": 4, "shards": 8}));
    assert_eq!(all_launched_count(&f), 1, "all_clusters_launched once");

    // A stop for host b's cluster is done by host b, and acked once.
    let victim = pids_of(&f, 3)[0];
    let answers = ask_all(&f, "stop", json!({"id": 3}));
    assert_eq!(answers.len(), 1, "stop answered {answers:?}");
    wait_for("cluster 3 to stop", DEADLINE, || {
        (!alive(victim as u32)).then_some(())
    });
    let log = f.redis.action_log(&f.ch);
    let stops: Vec<Value> = events(&log, "operator_action")
        .into_iter()
        .filter(|e| e["action"] == "stop")
        .collect();
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(stops[0]["host"], "b", "done by the host that runs it");
    statuses_when(&f, "cluster 3 stopped in statuses", |s| {
        status_of(s, 3) == "stopped" && status_of(s, 2) == "running"
    });

    // A cluster's action_logs entry: every host hears it, the leader alone
    // stores it. The other host's refusal of a start, asked after the
    // entry, is stored after whatever it did with the entry (it reads the
    // channel in order and writes in order): once the refusal is in, a
    // second copy would be too.
    let leader = wait_for("a leader", DEADLINE, || {
        let log = f.redis.action_log(&f.ch);
        events(&log, "leader_elected")
            .last()
            .and_then(|e| e["host"].as_str().map(String::from))
    });
    let (other, its_cluster) = if leader == "a" { ("b", 2) } else { ("a", 0) };
    f.redis.publish(
        &f.ch,
        &json!({"scope": "launcher", "action": "action_logs", "data": {"event": "fleet_probe", "cluster": 1}}),
    );
    f.redis.publish(
        &f.ch,
        &json!({"scope": "launcher", "action": "start", "args": {"id": its_cluster}}),
    );
    // The leader's copy, and the other host's refusal (each host writes
    // its own entries: one does not wait for the other).
    wait_for(
        "the leader's copy and the other host's refusal stored",
        DEADLINE,
        || {
            let log = f.redis.action_log(&f.ch);
            let refused = events(&log, "operator_action")
                .iter()
                .any(|e| e["action"] == "start" && e["host"] == other && e["refused"].is_string());
            (refused && !events(&log, "fleet_probe").is_empty()).then_some(())
        },
    );
    let log = f.redis.action_log(&f.ch);
    assert_eq!(events(&log, "fleet_probe").len(), 1, "stored once: {log:?}");
}

#[test]
fn a_killed_host_is_lost_and_comes_back() {
    let f = Fixture::new("fleet-loss", vec![Answer::gateway(12, 900, 0)]);
    let config = f.config("");
    let mut hosts: Vec<Manager> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, name)| f.fleet_host(&config, name, i as u32, 3, &[]))
        .collect();
    hosts[0].wait_launched(&f.listener);
    let leader = wait_for("a leader", DEADLINE, || {
        let log = f.redis.action_log(&f.ch);
        events(&log, "leader_elected")
            .last()
            .and_then(|e| e["host"].as_str().map(String::from))
    });
    let names = ["a", "b", "c"];
    let index = names
        .iter()
        .position(|n| *n == leader)
        .expect("a known host");
    // The leader's slice of 6 clusters: two of them.
    let slice = [2 * index as u64, 2 * index as u64 + 1];
    let victims: Vec<u64> = slice.iter().map(|&id| pids_of(&f, id)[0]).collect();

    hosts[index].signal(nix::sys::signal::Signal::SIGKILL);
    hosts[index].wait_exit();
    for &pid in &victims {
        wait_for(
            "the killed host's clusters to die with it",
            DEADLINE,
            || (!alive(pid as u32)).then_some(()),
        );
    }
    let statuses = statuses_when(&f, "the lost host's clusters in statuses", |s| {
        slice.iter().all(|&id| status_of(s, id as u32) == "lost")
    });
    for id in 0..6u32 {
        let lost = slice.contains(&u64::from(id));
        assert_eq!(statuses[id.to_string()]["active"], !lost, "{statuses}");
    }
    let log = f.redis.action_log(&f.ch);
    let lost = events(&log, "host_lost");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0]["host"], leader.as_str());
    let elected = events(&log, "leader_elected");
    assert!(
        elected.last().is_some_and(|e| e["host"] != leader.as_str()),
        "the leadership moved: {elected:?}"
    );

    // The same host, started again, takes its clusters back.
    hosts[index] = f.fleet_host(&config, leader.as_str(), index as u32, 3, &[]);
    statuses_when(&f, "the host's clusters running again", |s| {
        (0..6).all(|id| status_of(s, id) == "running")
    });
    let log = f.redis.action_log(&f.ch);
    assert!(
        events(&log, "host_joined")
            .iter()
            .any(|e| e["host"] == leader.as_str()),
        "host_joined logged"
    );
}

#[test]
fn a_second_manager_for_the_same_clusters_refuses_to_start() {
    let f = Fixture::new("fleet-claim", vec![Answer::gateway(8, 900, 0)]);
    let config = f.config("");
    let a = f.fleet_host(&config, "a", 0, 2, &[]);
    wait_for("host a's clusters to launch", DEADLINE, || {
        (f.bot.launches().len() == 2).then_some(())
    });
    let mut intruder = host(&f, &config, "z", &["--clusters", "1-2"]);
    assert_eq!(intruder.wait_exit(), Some(2));
    let said = intruder.stderr().join("\n");
    assert!(
        said.contains("clusters 1 are already run by host a:"),
        "the refusal names the overlap and the host: {said}"
    );
    drop(a);
}

#[test]
fn shutdown_over_redis_stops_every_host() {
    let f = Fixture::new("fleet-shutdown", vec![Answer::gateway(8, 900, 0)]);
    let config = f.config("");
    let mut a = f.fleet_host(&config, "a", 0, 2, &[]);
    let mut b = f.fleet_host(&config, "b", 1, 2, &[]);
    a.wait_launched(&f.listener);
    let pids = f.bot.pids();
    let answers = ask_all(&f, "shutdown", json!({}));
    assert_eq!(answers.len(), 1, "shutdown acked once: {answers:?}");
    assert_eq!(a.wait_exit(), Some(0));
    assert_eq!(b.wait_exit(), Some(0));
    assert_all_dead(&pids);
}

#[test]
fn a_rolling_restart_walks_the_fleet_in_id_order() {
    let f = Fixture::new("fleet-rolling", vec![Answer::gateway(8, 900, 0)]);
    let config = f.config("");
    let mut a = f.fleet_host(&config, "a", 0, 2, &[]);
    let _b = f.fleet_host(&config, "b", 1, 2, &[]);
    a.wait_launched(&f.listener);
    statuses_when(&f, "every cluster running in statuses", |s| {
        (0..4).all(|id| status_of(s, id) == "running")
    });
    let answers = ask_all(&f, "rollingrestart", json!({}));
    assert_eq!(answers.len(), 1, "acked once: {answers:?}");
    wait_for("the rolling restart to finish", DEADLINE, || {
        let log = f.redis.action_log(&f.ch);
        (!events(&log, "rolling_restart_done").is_empty()).then_some(())
    });
    let second_starts: Vec<(u64, u64)> = (0..4u64)
        .map(|id| {
            let starts: Vec<u64> = f
                .bot
                .records()
                .iter()
                .filter(|r| r["cluster_id"] == id)
                .filter_map(|r| r["started_us"].as_u64())
                .collect();
            assert_eq!(
                starts.len(),
                2,
                "cluster {id} restarted once: {:#?}",
                f.redis.action_log(&f.ch)
            );
            (id, starts[1])
        })
        .collect();
    for pair in second_starts.windows(2) {
        assert!(
            pair[0].1 < pair[1].1,
            "restarted in id order: {second_starts:?}"
        );
    }
    let log = f.redis.action_log(&f.ch);
    assert_eq!(events(&log, "rolling_restart").len(), 1);
    assert_eq!(events(&log, "rolling_restart_done").len(), 1);
}

#[test]
fn the_fleet_console_sees_every_host_and_hands_operations_over() {
    let f = Fixture::new("fleet-attach", vec![Answer::gateway(8, 900, 0)]);
    let config = f.config("");
    let mut a = f.fleet_host(&config, "a", 0, 2, &[]);
    let mut b = f.fleet_host(&config, "b", 1, 2, &[]);
    a.wait_launched(&f.listener);

    // Attached through Redis alone, with the same config, from elsewhere.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("config.yaml"), &config).expect("config");
    let args = format!(
        "attach --redis --config '{}' --log-file '{}'",
        dir.path().join("config.yaml").display(),
        dir.path().join("attach.log").display()
    );
    let (script, status) = mewld_script(dir.path(), "attach", "", &args);
    let tmux = Tmux::start("fleet-attach", &script, 160, 30);
    tmux.wait_screen("every host's clusters, with their host", |s| {
        s.contains("4/4 running")
            && s.contains("hosts a")
            && s.lines().any(|l| l.contains(" 3 ") && l.contains(" b "))
    });

    // Stop cluster 3 from here: host b does it.
    let victim = pids_of(&f, 3)[0];
    tmux.keys(&["j", "j", "j", "x"]);
    tmux.wait_screen("the stop dialog", |s| s.contains("Stop cluster 3"));
    tmux.keys(&["y"]);
    wait_for("cluster 3 to stop", DEADLINE, || {
        (!alive(victim as u32)).then_some(())
    });
    let stop = events(&f.redis.action_log(&f.ch), "operator_action")
        .into_iter()
        .find(|e| e["action"] == "stop")
        .expect("the stop in the action log");
    assert_eq!(stop["via"], "attach", "{stop}");
    assert!(
        stop["host"].as_str().is_some_and(|h| !h.is_empty()),
        "{stop}"
    );
    tmux.wait_screen("cluster 3 stopped, live", |s| {
        s.lines()
            .any(|l| l.contains("cluster-3") && l.contains("stopped"))
            && s.contains("cluster_stopped")
    });

    // A host that dies shows as lost, in the table and the header.
    b.signal(nix::sys::signal::Signal::SIGKILL);
    b.wait_exit();
    tmux.wait_screen("host b's clusters lost", |s| {
        s.contains("2 lost") && s.contains("host_lost")
    });
    tmux.keys(&["q"]);
    tmux.wait_screen("the detach dialog", |s| {
        s.contains("Every cluster keeps running")
    });
    tmux.keys(&["y"]);
    assert_eq!(tmux.wait_exit_status(&status), "0");
    drop(a);
}

#[test]
fn hosts_share_the_identify_buckets_and_the_session_budget() {
    // Discord allows 4 at a time; each host runs its own queue for its own
    // clusters, and between them no bucket is granted twice in 5 s.
    let f = Fixture::new(
        "fleet-identify",
        vec![Answer::gateway_with(32, 1000, 3_600_000, 4)],
    );
    let config = f
        .config("identify_queue: 127.0.0.1:0\nlaunch: concurrent\nper_cluster: 4\n")
        .replace("per_cluster: 2\n", "");
    let mut a = f.fleet_host(&config, "a", 0, 2, &[]);
    let _b = f.fleet_host(&config, "b", 1, 2, &[]);
    a.wait_launched(&f.listener);
    let grants = f.bot.grants();
    let mut shards: Vec<u64> = grants.iter().filter_map(|g| g["shard"].as_u64()).collect();
    shards.sort_unstable();
    assert_eq!(
        shards,
        (0..32).collect::<Vec<u64>>(),
        "each shard granted once"
    );
    assert_within_rate_limit(&grants, 4);
    let budget: u32 = redis::cmd("GET")
        .arg(format!("{}/fleet/identify/budget", f.ch))
        .query(&mut f.redis.conn())
        .expect("the shared budget");
    assert_eq!(
        budget,
        1000 - 32,
        "every host's grants spend the one budget"
    );
}

/// No command id got more than one reply, over everything the channel saw.
fn assert_one_reply_each(f: &Fixture) {
    let mut seen = std::collections::HashMap::new();
    for m in f.listener.all() {
        if m["scope"] == "bot" && m["action"] == "" {
            if let Some(id) = m["command_id"].as_str().filter(|id| !id.is_empty()) {
                *seen.entry(id.to_string()).or_insert(0) += 1;
            }
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "answered more than once: {twice:?}");
}

#[test]
fn a_paused_leader_is_replaced_and_stays_silent_when_it_wakes() {
    use nix::sys::signal::Signal::{SIGCONT, SIGSTOP};
    let f = Fixture::new("fleet-pause", vec![Answer::gateway(8, 900, 0)]);
    let config = f.config("");
    let mut hosts = [
        f.fleet_host(&config, "a", 0, 2, &[]),
        f.fleet_host(&config, "b", 1, 2, &[]),
    ];
    hosts[0].wait_launched(&f.listener);
    statuses_when(&f, "every cluster running", |s| {
        (0..4).all(|id| status_of(s, id) == "running")
    });
    let leader = wait_for("a leader", DEADLINE, || {
        events(&f.redis.action_log(&f.ch), "leader_elected")
            .last()
            .and_then(|e| e["host"].as_str().map(String::from))
    });
    let (paused, other) = if leader == "a" { (0, 1) } else { (1, 0) };
    let slice = [2 * paused as u32, 2 * paused as u32 + 1];
    hosts[paused].signal(SIGSTOP);
    // Asked while the leader sleeps: answered once, by the next leader,
    // with the sleeping host's clusters lost (its processes run on).
    let statuses = statuses_when(&f, "the sleeping host's clusters lost", |s| {
        slice.iter().all(|&id| status_of(s, id) == "lost")
    });
    assert_eq!(status_of(&statuses, 2 * other as u32), "running");
    hosts[paused].signal(SIGCONT);
    statuses_when(&f, "the woken host's clusters back", |s| {
        (0..4).all(|id| status_of(s, id) == "running")
    });
    let answers = ask_all(&f, "statuses", json!({}));
    assert_eq!(answers.len(), 1, "one leader after the wake: {answers:?}");
    assert_one_reply_each(&f);
    let log = f.redis.action_log(&f.ch);
    let names = ["a", "b"];
    assert!(events(&log, "host_lost")
        .iter()
        .any(|e| e["host"] == names[paused]));
    assert!(events(&log, "host_joined")
        .iter()
        .any(|e| e["host"] == names[paused]));
}

#[test]
fn the_fleet_rides_out_a_redis_restart() {
    let mut f = Fixture::new("fleet-redis", vec![Answer::gateway(8, 900, 0)]);
    let config = f.config("");
    let mut a = f.fleet_host(&config, "a", 0, 2, &[]);
    let mut b = f.fleet_host(&config, "b", 1, 2, &[]);
    a.wait_launched(&f.listener);
    let pids = f.bot.pids();
    // Redis dies and comes back empty on the same port: every record, the
    // lease and the subscriptions are gone.
    let port = f.redis.port;
    f.redis.kill();
    wait_for("both hosts to see Redis gone", DEADLINE, || {
        [&a, &b]
            .iter()
            .all(|m| {
                m.stderr()
                    .iter()
                    .any(|l| l.contains("fleet heartbeat failed"))
            })
            .then_some(())
    });
    f.redis = Redis::start_on(port);
    f.listener = f.redis.listen(&f.ch);
    statuses_when(
        &f,
        "every cluster running again, per the hosts' records",
        |s| (0..4).all(|id| status_of(s, id) == "running"),
    );
    let answers = ask_all(&f, "statuses", json!({}));
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(
        a.child.try_wait().expect("wait").is_none(),
        "host a runs on"
    );
    assert!(
        b.child.try_wait().expect("wait").is_none(),
        "host b runs on"
    );
    assert_eq!(f.bot.pids(), pids, "no cluster was restarted");
    assert!(pids.iter().all(|p| alive(*p)));
}

#[test]
fn check_config_shows_a_hosts_slice_and_what_is_wrong_with_it() {
    // The base config makes 2 clusters.
    let listeners = "metrics_addr: 127.0.0.1:9464\nidentify_queue: 127.0.0.1:5000\n";
    let (code, said) = check_config_args(listeners, &["--host-index", "1", "--host-count", "2"]);
    assert_eq!(code, Some(0), "{said}");
    let machine = mewld::fleet::host_name(None);
    for shown in [
        "this host runs:    1 (1 of 2 clusters)".to_string(),
        format!("host name:         {machine}-1"),
        "mewld.1.ctl".into(),
        "http://127.0.0.1:9465/metrics (9464 + host index 1)".into(),
        "http://127.0.0.1:5001/<secret>?shard=<id> (5000 + host index 1; ".into(),
    ] {
        assert!(said.contains(&shown), "{shown}:\n{said}");
    }
    let (code, said) = check_config_args(listeners, &["--clusters", "1", "--host-name", "x"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("mewld.1.ctl") && said.contains("host name:         x"),
        "{said}"
    );
    assert!(
        said.contains(":9465/metrics (9464 + lowest cluster id 1)"),
        "{said}"
    );
    // Across 2 hosts on one machine, 9464-9465 and 9465-9466 would meet.
    let near = "metrics_addr: 127.0.0.1:9464\nidentify_queue: 127.0.0.1:9465\n";
    let (code, said) = check_config_args(near, &["--host-index", "0", "--host-count", "2"]);
    assert_eq!(code, Some(0), "a warning: {said}");
    assert!(
        said.contains("warning: with 2 hosts on one machine"),
        "{said}"
    );
    let (code, said) = check_config_args("", &["--clusters", "1-3"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("--clusters names 2, beyond the cluster map (clusters 0-1)"),
        "{said}"
    );
    let (code, said) = check_config_args("", &["--host-index", "2", "--host-count", "2"]);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("--host-index 2 is not below --host-count 2"),
        "{said}"
    );
}

#[test]
fn a_host_whose_clusters_were_claimed_while_it_slept_stops_them_and_exits() {
    use nix::sys::signal::Signal::{SIGCONT, SIGSTOP};
    let f = Fixture::new("fleet-displaced", vec![Answer::gateway(8, 900, 0)]);
    let config = f.config("");
    let mut a = f.fleet_host(&config, "a", 0, 2, &[]);
    let _b = f.fleet_host(&config, "b", 1, 2, &[]);
    a.wait_launched(&f.listener);
    let old: Vec<u64> = [0, 1].iter().map(|&id| pids_of(&f, id)[0]).collect();
    a.signal(SIGSTOP);
    statuses_when(&f, "host a's record lapsed", |s| {
        status_of(s, 0) == "lost" && status_of(s, 1) == "lost"
    });
    // Meanwhile another manager takes a's slice, as it may once a is gone.
    let _z = host(&f, &config, "z", &["--clusters", "0-1"]);
    wait_for("z's own clusters 0 and 1", DEADLINE, || {
        [0, 1]
            .iter()
            .all(|&id| pids_of(&f, id).len() == 2)
            .then_some(())
    });
    let new: Vec<u64> = [0, 1].iter().map(|&id| pids_of(&f, id)[1]).collect();
    a.signal(SIGCONT);
    assert_eq!(a.wait_exit(), Some(0), "a stops and leaves the slice to z");
    for pid in old {
        wait_for("a's clusters to stop", DEADLINE, || {
            (!alive(pid as u32)).then_some(())
        });
    }
    assert!(new.iter().all(|p| alive(*p as u32)), "z's clusters run on");
    let displaced = events(&f.redis.action_log(&f.ch), "host_displaced");
    assert_eq!(displaced.len(), 1, "{displaced:?}");
    assert_eq!(displaced[0]["host"], "a");
    statuses_when(&f, "z's clusters running", |s| {
        (0..4).all(|id| status_of(s, id) == "running")
    });
}

#[test]
fn garbage_in_the_fleets_keys_is_skipped() {
    let f = Fixture::new("fleet-garbage", vec![Answer::gateway(8, 900, 0)]);
    // What another program (or a broken version) might leave behind: a
    // record that is not JSON, a version that is not a number.
    let mut conn = f.redis.conn();
    for (id, record, version) in [("junk:1:x", "not json", "7"), ("junk:2:y", "{}", "NaN")] {
        let _: () = redis::pipe()
            .sadd(format!("{}/fleet/hosts", f.ch), id)
            .set_ex(format!("{}/fleet/host/{id}", f.ch), record, 600)
            .set_ex(format!("{}/fleet/version/{id}", f.ch), version, 600)
            .query(&mut conn)
            .expect("write garbage");
    }
    let config = f.config("");
    let mut a = f.fleet_host(&config, "a", 0, 2, &[]);
    let _b = f.fleet_host(&config, "b", 1, 2, &[]);
    a.wait_launched(&f.listener);
    statuses_when(&f, "every cluster running", |s| {
        (0..4).all(|id| status_of(s, id) == "running")
    });
    assert!(
        a.stderr()
            .iter()
            .any(|l| l.contains("ignored a host record that cannot be read")),
        "the bad record is reported"
    );
    // Nobody left: no host is reported lost (a host never sees itself as another).
    let lost = events(&f.redis.action_log(&f.ch), "host_lost");
    assert!(lost.is_empty(), "{lost:?}");
}

/// The fleet's host set deleted (or evicted): every host puts itself back
/// within a heartbeat, and a manager for clusters already run is refused
/// whether the set names their host or not.
#[test]
fn a_deleted_host_set_hides_nobody() {
    let f = Fixture::new("fleet-set-deleted", vec![Answer::gateway(8, 900, 0)]);
    let config = f.config("");
    let mut a = f.fleet_host(&config, "a", 0, 2, &[]);
    let _b = f.fleet_host(&config, "b", 1, 2, &[]);
    a.wait_launched(&f.listener);
    let mut conn = f.redis.conn();
    let set = format!("{}/fleet/hosts", f.ch);
    let _: () = redis::cmd("DEL").arg(&set).query(&mut conn).expect("DEL");
    let mut intruder = f.fleet_host(&config, "z", 0, 2, &[]);
    assert_eq!(intruder.wait_exit(), Some(2));
    let said = intruder.stderr().join("\n");
    assert!(
        said.contains("clusters 0-1 are already run by host a:"),
        "refused: {said}"
    );
    wait_for("both hosts back in the set", DEADLINE, || {
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&set)
            .query(&mut conn)
            .expect("SMEMBERS");
        (members.len() == 2).then_some(())
    });
    assert_eq!(f.bot.starts_of(0), 1, "{:?}", f.bot.records());
}

/// Two configs that make the same number of clusters from other shard
/// lists: the second host is refused, told how the maps differ.
#[test]
fn hosts_with_different_maps_are_refused() {
    // 6 shards: 4 per cluster makes 2 clusters (0-3, 4-5), 3 per cluster
    // makes 2 too (0-2, 3-5): shard 3 would run in both.
    let f = Fixture::new("fleet-maps", vec![Answer::gateway(6, 900, 0)]);
    let a_config = f.config("").replace("per_cluster: 2", "per_cluster: 4");
    let b_config = f.config("").replace("per_cluster: 2", "per_cluster: 3");
    let _a = f.fleet_host(&a_config, "a", 0, 2, &[]);
    wait_for("host a's cluster to launch", DEADLINE, || {
        (f.bot.launches().len() == 1).then_some(())
    });
    let mut b = f.fleet_host(&b_config, "b", 1, 2, &[]);
    assert_eq!(b.wait_exit(), Some(2));
    let said = b.stderr().join("\n");
    assert!(
        said.contains("different cluster map")
            && said.contains("4 shards per cluster, where this config puts 3"),
        "the refusal says how the maps differ: {said}"
    );
    assert!(f.bot.starts_of(1) == 0, "{:?}", f.bot.records());
}

/// A host started as one of three beside hosts started as one of two would
/// leave a cluster run by nobody: refused, naming both counts.
#[test]
fn hosts_counting_other_numbers_of_hosts_are_refused() {
    let f = Fixture::new("fleet-counts", vec![Answer::gateway(8, 900, 0)]);
    let config = f.config("");
    let _a = f.fleet_host(&config, "a", 0, 2, &[]);
    wait_for("host a's clusters to launch", DEADLINE, || {
        (f.bot.launches().len() == 2).then_some(())
    });
    let mut c = f.fleet_host(&config, "c", 2, 3, &[]);
    assert_eq!(c.wait_exit(), Some(2));
    let said = c.stderr().join("\n");
    assert!(
        said.contains("one of 2 hosts, this one as one of 3"),
        "both counts named: {said}"
    );
}

/// Keys another program broke: a leader key with no TTL, an epoch that is
/// not a number, a host set that is a string. Each is replaced (and said
/// once), the fleet goes on answering, and the fencing epoch only grows,
/// even across a FLUSHALL.
#[test]
fn broken_fleet_keys_are_replaced_and_the_epoch_never_goes_back() {
    let f = Fixture::new("fleet-broken-keys", vec![Answer::gateway(8, 900, 0)]);
    let config = f.config("");
    let mut a = f.fleet_host(&config, "a", 0, 2, &[]);
    let b = f.fleet_host(&config, "b", 1, 2, &[]);
    a.wait_launched(&f.listener);
    let mut conn = f.redis.conn();
    let key = |k: &str| format!("{}/fleet/{k}", f.ch);
    let epoch_of = |conn: &mut redis::Connection| -> Option<u64> {
        let holder: Option<String> = redis::cmd("GET").arg(key("leader")).query(conn).ok()?;
        holder?.rsplit_once(' ')?.1.parse().ok()
    };
    let _: () = redis::pipe()
        .set(key("leader"), "squatter 40")
        .set(key("epoch"), "NaN")
        .del(key("hosts"))
        .set(key("hosts"), "not a set")
        .query(&mut conn)
        .expect("break the keys");
    let elected = wait_for("a host to lead again", DEADLINE, || {
        epoch_of(&mut conn).filter(|&e| e > 40)
    });
    statuses_when(&f, "every cluster running", |s| {
        (0..4).all(|id| status_of(s, id) == "running")
    });
    // FLUSHALL takes the counter and the records: the next epoch is still higher.
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).expect("FLUSHALL");
    let after = wait_for("a leader after FLUSHALL", DEADLINE, || epoch_of(&mut conn));
    assert!(
        after > elected,
        "the epoch went from {elected} to {after} across FLUSHALL"
    );
    let replaced: Vec<String> = [a.stderr(), b.stderr()]
        .concat()
        .into_iter()
        .filter(|l| l.contains("replaced a fleet key") || l.contains("host set was not a set"))
        .collect();
    assert!(
        (1..=4).contains(&replaced.len()),
        "each broken key said once, not at every read: {replaced:#?}"
    );
    statuses_when(&f, "every cluster running after FLUSHALL", |s| {
        (0..4).all(|id| status_of(s, id) == "running")
    });
    for id in 0..4 {
        assert_eq!(f.bot.starts_of(id), 1, "{:?}", f.bot.records());
    }
}

/// The ids of the Redis connections subscribed to something now.
fn subscribers(conn: &mut redis::Connection) -> Vec<String> {
    // Ids, as CLIENT LIST gives them.
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query(conn)
        .expect("CLIENT LIST");
    list.lines()
        .filter_map(|l| l.split(' ').find_map(|kv| kv.strip_prefix("id=")))
        .map(str::to_string)
        .collect()
}

/// A host whose subscription was cut just as `shutdown` went by never
/// hears it: it stops all the same, from the leader's order in Redis.
#[test]
fn a_host_that_missed_shutdown_stops_all_the_same() {
    let f = Fixture::new("fleet-missed-shutdown", vec![Answer::gateway(8, 900, 0)]);
    let config = f.config("");
    let mut conn = f.redis.conn();
    let mut a = f.fleet_host(&config, "a", 0, 2, &[]);
    wait_for("host a's clusters to launch", DEADLINE, || {
        (f.bot.launches().len() == 2).then_some(())
    });
    let before = subscribers(&mut conn);
    let mut b = f.fleet_host(&config, "b", 1, 2, &[]);
    a.wait_launched(&f.listener);
    // b subscribes before it starts its clusters (which subscribe too):
    // the oldest new subscription is b's.
    let b_sub = subscribers(&mut conn)
        .into_iter()
        .filter(|id| !before.contains(id))
        .filter_map(|id| id.parse::<u64>().ok())
        .min()
        .expect("host b's subscription");
    // Cut b's subscription and publish in one transaction: b cannot have
    // subscribed again in between.
    let shutdown = json!({"scope": "launcher", "action": "shutdown", "command_id": "sd-missed"});
    let _: () = redis::pipe()
        .atomic()
        .cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(b_sub)
        .ignore()
        .publish(&f.ch, shutdown.to_string())
        .ignore()
        .query(&mut conn)
        .expect("kill and publish");
    assert_eq!(a.wait_exit(), Some(0), "{}", a.stderr().join("\n"));
    assert_eq!(b.wait_exit(), Some(0), "{}", b.stderr().join("\n"));
    assert!(
        b.stderr()
            .iter()
            .any(|l| l.contains("ordered every host to stop")),
        "b stopped on the order, not the message: {}",
        b.stderr().join("\n")
    );
}

/// `CLIENT PAUSE` longer than a record's TTL stalls every host at once:
/// their records lapse together, which says nothing about them. No host is
/// reported lost (nor joined again), and no cluster is restarted.
#[test]
fn a_paused_redis_is_a_stall_not_a_lost_host() {
    let f = Fixture::new("fleet-client-pause", vec![Answer::gateway(8, 900, 0)]);
    let config = f.config("");
    let mut a = f.fleet_host(&config, "a", 0, 2, &[]);
    let _b = f.fleet_host(&config, "b", 1, 2, &[]);
    a.wait_launched(&f.listener);
    let mut conn = f.redis.conn();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(7000)
        .arg("ALL")
        .query(&mut conn)
        .expect("CLIENT PAUSE");
    // Asked while Redis is paused, the question waits with it.
    statuses_when(&f, "every cluster running after the pause", |s| {
        (0..4).all(|id| status_of(s, id) == "running")
    });
    // A host lost would be said once the grace after the stall is over
    // (5 s): look past it.
    thread::sleep(Duration::from_secs(8));
    let log = f.redis.action_log(&f.ch);
    let lost = events(&log, "host_lost");
    let joined = events(&log, "host_joined");
    assert!(
        lost.is_empty() && joined.len() <= 2,
        "lost {lost:?}, joined {joined:?}"
    );
    for id in 0..4 {
        assert_eq!(f.bot.starts_of(id), 1, "{:?}", f.bot.records());
    }
}

/// `mewld attach --redis` leaves (status 0, saying why) once the fleet has
/// shut down on purpose; hosts that merely die leave it waiting for them.
#[test]
fn the_fleet_console_leaves_after_a_shutdown_not_after_a_crash() {
    use nix::sys::signal::Signal::SIGKILL;
    let f = Fixture::new("fleet-attach-end", vec![Answer::gateway(8, 900, 0)]);
    let config = f.config("");
    let hosts = || {
        (
            f.fleet_host(&config, "a", 0, 2, &[]),
            f.fleet_host(&config, "b", 1, 2, &[]),
        )
    };
    let (mut a, mut b) = hosts();
    a.wait_launched(&f.listener);
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, &config).expect("config");
    let said = dir.path().join("attach.err");
    let args = format!(
        "attach --redis --config '{}' --log-file '{}' 2>'{}'",
        config_path.display(),
        dir.path().join("attach.log").display(),
        said.display()
    );
    let (script, status) = mewld_script(dir.path(), "attach", "", &args);
    let tmux = Tmux::start("fleet-attach-end", &script, 160, 30);
    tmux.wait_screen("the fleet", |s| s.contains("4/4 running"));

    // Every host dies: the console waits, and takes them back.
    for host in [&mut a, &mut b] {
        host.signal(SIGKILL);
        host.wait_exit();
    }
    tmux.wait_screen("no host running, reconnecting", |s| {
        s.contains("ENGINE GONE") && s.contains("no host of this fleet is running")
    });
    let (mut a, mut b) = hosts();
    tmux.wait_screen("the fleet back", |s| {
        s.contains("4/4 running") && !s.contains("ENGINE GONE")
    });

    // Shut down on purpose: the console leaves once every host is gone.
    let out = std::process::Command::new(MEWLD)
        .args(["shutdown", "--redis", "--config"])
        .arg(&config_path)
        .output()
        .expect("mewld shutdown --redis");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(a.wait_exit(), Some(0));
    assert_eq!(b.wait_exit(), Some(0));
    assert_eq!(tmux.wait_exit_status(&status), "0");
    let said = std::fs::read_to_string(&said).expect("what attach said");
    assert!(
        said.contains("mewld attach: the fleet shut down (shutdown); detached"),
        "{said}"
    );
}
