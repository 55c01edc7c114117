//! The one-shot commands against a real daemon (real redis-server, real
//! fake-bot clusters): `mewld status [--json]`, `start|stop|restart <id>`,
//! `rolling-restart [--wait]`, `logs [-f] [--cluster ID]`,
//! `restart-process`, each with its exit status and what it prints.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::Value;

/// `mewld <args> --config <config>`, run to its end.
fn mewld(config: &Path, args: &[&str]) -> (Output, u32) {
    let child = Command::new(MEWLD)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("MTOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mewld");
    let pid = child.id();
    (child.wait_with_output().expect("mewld's output"), pid)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must exit with `code`; its stdout and stderr.
fn expect(config: &Path, args: &[&str], code: i32) -> (String, String) {
    let (out, _) = mewld(config, args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(code),
        "mewld {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

fn status_json(config: &Path) -> Value {
    let (out, _) = mewld(config, &["status", "--json"]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", text(&out.stdout)))
}

fn state_of(config: &Path, id: usize) -> String {
    status_json(config)["clusters"][id]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The operator_action entries for `action`, newest last.
fn operator_actions(f: &Fixture, action: &str) -> Vec<Value> {
    f.redis
        .action_log(&f.ch)
        .into_iter()
        .filter(|e| e["event"] == "operator_action" && e["action"] == action)
        .collect()
}

#[test]
fn status_start_stop_restart_and_logs_drive_a_daemon() {
    let (f, daemon) = launched("commands", 6, "names: [Pika, Eevee, Bulbasaur]\n", &[]);
    let config = daemon.config_path.clone();

    // status: every cluster runs, exit 0, a row each.
    let (table, _) = expect(&config, &["status"], 0);
    assert!(table.contains("3/3 clusters running, fully up"), "{table}");
    assert!(table.contains("RESTARTS"), "{table}");
    for name in ["Pika", "Eevee", "Bulbasaur"] {
        assert!(
            table
                .lines()
                .any(|l| l.contains(name) && l.contains("running")),
            "{name} running in:\n{table}"
        );
    }
    let json = status_json(&config);
    assert_eq!(json["all_running"], true, "{json}");
    assert_eq!(json["engine"]["pid"], daemon.pid(), "{json}");
    assert_eq!(json["shard_count"], 6, "{json}");
    let first = &json["clusters"][0];
    for key in [
        "id",
        "name",
        "host",
        "state",
        "pid",
        "started_at",
        "uptime_secs",
        "restarts",
        "shards",
        "shards_up",
        "latency_ms",
        "last_exit",
    ] {
        assert!(first.get(key).is_some(), "no {key} in {first}");
    }
    assert_eq!(first["shards"], serde_json::json!([0, 1]));

    // stop: accepted (exit 0), logged as the command's, with its pid.
    let (out, pid) = mewld(&config, &["stop", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stop = operator_actions(&f, "stop").pop().expect("the stop logged");
    assert_eq!(stop["via"], "cli", "{stop}");
    assert_eq!(stop["peer_pid"], pid, "{stop}");
    assert_eq!(stop["peer_uid"], nix::unistd::getuid().as_raw(), "{stop}");
    wait_for("cluster 1 stopped", DEADLINE, || {
        (state_of(&config, 1) == "stopped").then_some(())
    });
    // Not every cluster runs: status says so with 1. A stopped cluster
    // has no uptime (it showed the time since its last start).
    let (table, _) = expect(&config, &["status"], 1);
    assert!(table.contains("1 stopped"), "{table}");
    let row = table.lines().find(|l| l.contains("Eevee")).unwrap_or("");
    assert_eq!(
        row.split_whitespace().take(5).collect::<Vec<_>>(),
        ["1", "Eevee", "stopped", "-", "-"],
        "{table}"
    );
    let json = status_json(&config);
    assert_eq!(
        json["clusters"][1].get("uptime_secs"),
        Some(&Value::Null),
        "{json}"
    );
    // Refusals say why, with 1.
    let (_, said) = expect(&config, &["stop", "1"], 1);
    assert!(
        said.contains("stop refused") && said.contains("not running"),
        "{said}"
    );
    let (_, said) = expect(&config, &["restart", "9"], 1);
    assert!(said.contains("there is no cluster 9"), "{said}");
    expect(&config, &["start", "1"], 0);
    wait_for("cluster 1 running again", DEADLINE, || {
        (state_of(&config, 1) == "running").then_some(())
    });
    let old_pid = status_json(&config)["clusters"][0]["pid"].clone();
    expect(&config, &["restart", "0"], 0);
    wait_for("cluster 0 running in a new process", DEADLINE, || {
        let c = &status_json(&config)["clusters"][0];
        (c["state"] == "running" && c["pid"].is_u64() && c["pid"] != old_pid).then_some(())
    });
    let restart = operator_actions(&f, "restart")
        .pop()
        .expect("the restart logged");
    assert!(
        restart.get("refused").is_none_or(Value::is_null),
        "{restart}"
    );

    // logs: the action log's entries, one per line; --json as stored;
    // --cluster with that cluster's output.
    let (logs, _) = expect(&config, &["logs"], 0);
    assert!(
        logs.lines()
            .any(|l| l.contains("operator_action cluster 1") && l.contains("action=stop")),
        "{logs}"
    );
    let (logs, _) = expect(&config, &["logs", "--json", "-n", "5"], 0);
    assert_eq!(logs.lines().count(), 5, "{logs}");
    for line in logs.lines() {
        let entry: Value = serde_json::from_str(line).expect("a JSON entry per line");
        assert!(entry["event"].is_string(), "{entry}");
    }
    let (logs, _) = expect(&config, &["logs", "--cluster", "2"], 0);
    assert!(logs.contains("[Bulbasaur] fake bot: cluster 2"), "{logs}");
    assert!(!logs.contains("cluster 0"), "only cluster 2's: {logs}");

    // A reader that went away (`mewld logs | head -1`): the command ends
    // quietly as a SIGPIPE'd one would (141), without a panic. The pipe's
    // read end is closed before it starts, so its first line finds it so.
    let (read_end, write_end) = nix::unistd::pipe().expect("a pipe");
    drop(read_end);
    let out = Command::new(MEWLD)
        .args(["logs", "-n", "50", "--config"])
        .arg(&config)
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .expect("run mewld logs");
    assert_eq!(out.status.code(), Some(141), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));

    // restart-process: the engine stops every cluster and exits 1; the
    // command waits for that and says so.
    let pids = f.bot.pids();
    let mut daemon = daemon;
    let follower = LogsFollower::start(&config);
    let (said, _) = expect(&config, &["restart-process"], 0);
    assert!(said.contains("restartproc"), "{said}");
    assert_eq!(daemon.wait_exit(), Some(1));
    // logs -f says why its stream ended, and ends well.
    let (code, said) = follower.ended();
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("the engine exited to be restarted (restartproc)"),
        "{said}"
    );
    assert_all_dead(&pids);
    // Nobody there now: 2, saying where it looked.
    let (_, said) = expect(&config, &["status"], 2);
    assert!(said.contains("cannot reach the engine"), "{said}");
}

#[test]
fn rolling_restart_wait_follows_the_roll_and_logs_follow_sees_new_entries() {
    let (f, daemon) = launched("roll-wait", 6, "", &[]);
    let config = daemon.config_path.clone();
    let before = f.bot.pids();

    // logs -f, left running: it prints what comes.
    let follow = LogsFollower::start(&config);

    let (out, _) = expect(&config, &["rolling-restart", "--wait"], 0);
    assert!(out.contains("rolling_restart_done"), "{out}");
    assert!(out.contains("every cluster came back"), "{out}");
    let after = f.bot.pids();
    assert_eq!(after.len(), before.len() * 2, "every cluster started anew");
    assert_eq!(operator_actions(&f, "rollingrestart")[0]["via"], "cli");

    follow.wait_for_line("logs -f to print the roll", "rolling_restart_done");
}

#[test]
fn a_refused_rolling_restart_fails_the_wait() {
    // Clusters that ignore SIGTERM hold a roll at its first cluster for the
    // whole grace period: the second roll is asked while the first goes on.
    let (_f, daemon) = launched(
        "roll-refused",
        4,
        "stop_grace_period: 60\n",
        &[("FAKEBOT_IGNORE_SIGTERM", "1")],
    );
    let config = daemon.config_path.clone();
    let (out, _) = expect(&config, &["rolling-restart"], 0);
    assert!(out.contains("begun"), "{out}");
    let (_, said) = expect(&config, &["rolling-restart", "--wait"], 1);
    assert!(said.contains("already under way"), "{said}");
    let json = status_json(&config);
    assert_eq!(json["rolling_restart"]["total"], 2, "{json}");
}

#[test]
fn commands_reach_a_whole_fleet_through_its_redis() {
    let f = Fixture::new("commands-fleet", vec![Answer::gateway(8, 900, 0)]);
    let config_text = f.config("");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, &config_text).expect("config");

    // No host yet: said, with 2, by the commands and the console alike.
    let (_, said) = expect(&config, &["status", "--redis"], 2);
    assert!(said.contains("no host of this fleet is running"), "{said}");
    let (_, said) = expect(&config, &["attach", "--redis"], 2);
    assert!(said.contains("no host of this fleet is running"), "{said}");

    let mut a = f.fleet_host(&config_text, "a", 0, 2, &[]);
    let _b = f.fleet_host(&config_text, "b", 1, 2, &[]);
    a.wait_launched(&f.listener);

    let fleet_status = || {
        let (out, _) = mewld(&config, &["status", "--redis", "--json"]);
        serde_json::from_slice::<Value>(&out.stdout).ok()
    };
    let json = wait_for("both hosts in the fleet's status", DEADLINE, || {
        let json = fleet_status()?;
        (json["all_running"] == true && json["fleet"]["hosts"].as_array()?.len() == 2)
            .then_some(json)
    });
    assert_eq!(json["engine"], Value::Null, "{json}");
    assert!(json["fleet"]["leader"].is_string(), "{json}");
    assert_eq!(json["clusters"][3]["host"], "b", "{json}");
    let (table, _) = expect(&config, &["status", "--redis"], 0);
    assert!(
        table.contains("fleet of 2 hosts") && table.contains("HOST"),
        "{table}"
    );

    // An operation goes to the host that runs the cluster.
    expect(&config, &["stop", "3", "--redis"], 0);
    wait_for("cluster 3 stopped on host b", DEADLINE, || {
        (fleet_status()?["clusters"][3]["state"] == "stopped").then_some(())
    });
    let stop = operator_actions(&f, "stop").pop().expect("the stop logged");
    assert_eq!(stop["via"], "cli", "{stop}");
    expect(&config, &["status", "--redis"], 1);
    let (logs, _) = expect(&config, &["logs", "--redis", "-n", "3"], 0);
    assert_eq!(logs.lines().count(), 3, "{logs}");
}

/// The asking process, as an `operator_action` names it.
fn peer_of(entry: &Value) -> (Option<u64>, Option<u64>) {
    (entry["peer_pid"].as_u64(), entry["peer_uid"].as_u64())
}

/// Through the fleet's Redis, an operation a host would refuse (no such
/// cluster, its host lost) is refused here too, in the socket's words; one
/// handed from host to host is logged by the host that runs the cluster
/// with the asking process, as it is when done locally.
#[test]
fn fleet_commands_refuse_what_a_host_would_and_name_the_asker() {
    let f = Fixture::new("commands-fleet-refusals", vec![Answer::gateway(8, 900, 0)]);
    let config_text = f.config("");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, &config_text).expect("config");
    let a = f.fleet_host(&config_text, "a", 0, 2, &[]);
    let mut b = f.fleet_host(&config_text, "b", 1, 2, &[]);
    // Host a's control socket, as `mewld stop 2 --host-index 0` finds it.
    let on_a = |args: &[&str]| {
        let mut args = args.to_vec();
        args.extend(["--host-index", "0", "--host-count", "2"]);
        mewld(&a.config_path, &args)
    };
    let fleet_state = |id: usize| {
        let (out, _) = mewld(&config, &["status", "--redis", "--json"]);
        let json: Value = serde_json::from_slice(&out.stdout).ok()?;
        json["clusters"][id]["state"].as_str().map(str::to_string)
    };
    wait_for("every cluster running", DEADLINE, || {
        (0..4)
            .all(|id| fleet_state(id).as_deref() == Some("running"))
            .then_some(())
    });
    let uid = u64::from(nix::unistd::getuid().as_raw());

    let (_, said) = expect(&config, &["stop", "99", "--redis"], 1);
    let (socket, _) = on_a(&["stop", "99"]);
    assert_eq!(said, text(&socket.stderr), "the socket's words");
    assert!(
        said.contains("stop refused: there is no cluster 99"),
        "{said}"
    );

    // Asked on host a's socket, carried out (and logged) by host b.
    let (out, pid) = on_a(&["stop", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stop = wait_for("host b to log the stop", DEADLINE, || {
        stderr_action_log(&b)
            .into_iter()
            .find(|e| e["event"] == "operator_action" && e["id"] == 2)
    });
    assert!(stop["via"] == "cli" && stop["host"] == "a", "{stop}");
    assert_eq!(peer_of(&stop), (Some(u64::from(pid)), Some(uid)), "{stop}");
    // Through Redis: this process, and this machine's name.
    let (out, pid) = mewld(&config, &["stop", "3", "--redis"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stop = wait_for("the stop through Redis logged", DEADLINE, || {
        operator_actions(&f, "stop")
            .into_iter()
            .find(|e| e["id"] == 3)
    });
    assert_eq!(peer_of(&stop), (Some(u64::from(pid)), Some(uid)), "{stop}");

    // Host b dies: its clusters are lost, and nothing is handed to it.
    b.signal(nix::sys::signal::Signal::SIGKILL);
    b.wait_exit();
    // Lost in the records and to host a (which reads them on its own).
    wait_for("host b's clusters lost", DEADLINE, || {
        let (out, _) = on_a(&["status", "--json"]);
        let on_a: Value = serde_json::from_slice(&out.stdout).ok()?;
        (fleet_state(3).as_deref() == Some("lost") && on_a["clusters"][3]["state"] == "lost")
            .then_some(())
    });
    let (_, said) = expect(&config, &["restart", "3", "--redis"], 1);
    assert!(said.contains("stopped heartbeating"), "{said}");
    let (socket, _) = on_a(&["restart", "3"]);
    assert_eq!(said, text(&socket.stderr), "the socket's words");
    // No host left: said, with 2.
    drop(a);
    let said = wait_for("no host left", DEADLINE, || {
        let (out, _) = mewld(&config, &["stop", "0", "--redis"]);
        (out.status.code() == Some(2)).then(|| text(&out.stderr))
    });
    assert!(said.contains("no host of this fleet is running"), "{said}");
}
