//! A fleet on one machine, started as README.md's "Several hosts" says:
//! its commands are read out of the README and run as written, in the
//! directory of a shared `config.yaml` (the test's: its Redis, its fake
//! Discord, per-host listeners), with only the binary ours. Each host
//! must start with no other flag, the fleet launch every cluster, answer
//! `statuses` once, and show one leader among uniquely named hosts.

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use common::tmux::{mewld_script, Tmux};
use common::*;
use mewld::redis_link::Keys;
use redis::Commands;
use serde_json::{json, Value};

/// The command lines of the shell block under README.md's "## Several
/// hosts", comments dropped.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Several hosts\n"))
        .expect("a \"## Several hosts\" section in README.md");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block in \"## Several hosts\"");
    let lines: Vec<String> = block
        .lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    for line in &lines {
        assert!(line.starts_with("mewld "), "not a mewld command: {line}");
    }
    lines
}

/// `line` from README.md, its `mewld` ours, run by sh in `dir`.
fn as_written(line: &str) -> Command {
    let line = line.trim_end_matches('&').trim();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec '{MEWLD}' {}", &line["mewld ".len()..]));
    cmd
}

/// Every log file the hosts wrote in `dir`, for a failure's message.
fn logs(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir)
        .expect("read the directory")
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let body = std::fs::read_to_string(&path).unwrap_or_default();
            text.push_str(&format!("--- {}\n{body}\n", path.display()));
        }
    }
    text
}

/// The live hosts' records in Redis, and the leader's host id.
fn records_and_leader(f: &Fixture) -> (Vec<Value>, Option<String>) {
    let keys = Keys::new(&f.ch);
    let mut conn = f.redis.conn();
    let ids: Vec<String> = conn.smembers(&keys.hosts).expect("SMEMBERS");
    let records = ids
        .iter()
        .filter_map(|id| conn.get::<_, Option<String>>(keys.host(id)).ok().flatten())
        .filter_map(|text| serde_json::from_str(&text).ok())
        .collect();
    let leader: Option<String> = conn.get(&keys.leader).expect("GET the leader");
    let leader = leader.and_then(|l| l.split(' ').next().map(String::from));
    (records, leader)
}

#[test]
fn the_readmes_fleet_runs_on_one_machine_as_written() {
    let commands = readme_commands();
    let (daemons, attaches): (Vec<&String>, Vec<&String>) =
        commands.iter().partition(|l| l.contains("--daemon"));
    assert!(daemons.len() >= 2 && !attaches.is_empty(), "{commands:?}");
    let hosts = daemons.len() as u16;
    let f = Fixture::new("readme-fleet", vec![Answer::gateway(8, 900, 0)]);
    let (metrics, queue) = (free_ports(hosts), free_ports(hosts));
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("metrics_addr: 127.0.0.1:{metrics}\nidentify_queue: 127.0.0.1:{queue}\n");
    std::fs::write(dir.path().join("config.yaml"), f.config(&extra)).expect("config");

    let mut managers: Vec<Manager> = daemons
        .iter()
        .map(|line| Manager::start_in(as_written(line), dir.path(), &f.redis, &f.bot))
        .collect();
    wait_for("every cluster launched", DEADLINE * 2, || {
        for (i, m) in managers.iter_mut().enumerate() {
            if let Ok(Some(status)) = m.child.try_wait() {
                panic!("host {i} exited ({status}):\n{}", logs(dir.path()));
            }
        }
        let all = f.listener.all();
        all.iter()
            .any(|m| m["action"] == "all_clusters_launched")
            .then_some(())
    });
    statuses_when(&f, "every cluster running", |s| {
        (0..4).all(|id| status_of(s, id) == "running")
    });
    let answers = ask_all(&f, "statuses", json!({}));
    assert_eq!(answers.len(), 1, "statuses answered {answers:?}");

    // Each host has its own name (the machine's and its index) and its
    // own metrics port (the configured one and its index).
    let machine = mewld::fleet::host_name(None);
    let names: BTreeSet<String> = (0..hosts).map(|i| format!("{machine}-{i}")).collect();
    let (records, leader) = records_and_leader(&f);
    let recorded: BTreeSet<String> = records
        .iter()
        .filter_map(|r| r["name"].as_str().map(String::from))
        .collect();
    assert_eq!(recorded, names, "{records:?}");
    assert_eq!(records.len(), names.len(), "one record per host");
    let leader = leader.expect("a leader");
    let leader_name = records
        .iter()
        .find(|r| r["id"] == leader.as_str())
        .and_then(|r| r["name"].as_str())
        .expect("the leader is a host")
        .to_string();
    for i in 0..hosts {
        let healthz = http_get(metrics + i, "/healthz");
        assert_eq!(healthz.map(|(s, _)| s), Some(200), "host {i}'s metrics");
    }

    // Without an index, attach names the hosts' sockets.
    let out = Command::new(MEWLD)
        .args(["attach", "--config", "config.yaml"])
        .current_dir(dir.path())
        .env_remove("MEWLD_HOST_INDEX")
        .output()
        .expect("run mewld attach");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("mewld.0.ctl (--host-index 0)")
            && said.contains("mewld.1.ctl (--host-index 1)"),
        "{said}"
    );

    // Each console the README shows sees every host, and one leader.
    for (i, line) in attaches.iter().enumerate() {
        let args = &line["mewld ".len()..];
        let (script, status) = mewld_script(dir.path(), &format!("attach{i}"), "", args);
        let tmux = Tmux::start(&format!("readme-fleet-{i}"), &script, 160, 30);
        let screen = tmux.wait_screen("every host in the header", |s| {
            names.iter().all(|n| s.contains(n.as_str())) && s.contains("★")
        });
        assert_eq!(screen.matches('★').count(), 1, "{line}:\n{screen}");
        assert!(
            screen.contains(&format!("{leader_name}★")),
            "{line}:\n{screen}"
        );
        tmux.keys(&["q"]);
        tmux.wait_screen("the detach dialog", |s| {
            s.contains("Every cluster keeps running")
        });
        tmux.keys(&["y"]);
        assert_eq!(tmux.wait_exit_status(&status), "0", "{line}");
    }
    assert!(
        managers
            .iter_mut()
            .all(|m| m.child.try_wait().ok() == Some(None)),
        "every host still runs:\n{}",
        logs(dir.path())
    );
}

#[test]
fn a_taken_port_or_name_is_refused_saying_which_host_and_what_to_do() {
    let f = Fixture::new("one-machine-refusals", vec![Answer::gateway(4, 900, 0)]);
    let metrics = free_ports(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("metrics_addr: 127.0.0.1:{metrics}\n");
    std::fs::write(dir.path().join("config.yaml"), f.config(&extra)).expect("config");
    let host = |index: &str, more: &[&str]| {
        let mut cmd = Command::new(MEWLD);
        cmd.args(["--daemon", "--config", "config.yaml", "--host-count", "2"])
            .args(["--host-index", index])
            .args(more);
        Manager::start_in(cmd, dir.path(), &f.redis, &f.bot)
    };

    // Host 1's port (the configured one plus 1) is taken.
    let taken = TcpListener::bind(("127.0.0.1", metrics + 1)).expect("bind");
    let mut refused = host("1", &[]);
    assert_eq!(refused.wait_exit(), Some(2));
    let said = refused.stderr().join("\n");
    let expected = format!(
        "metrics_addr 127.0.0.1:{} ({metrics} + host index 1): ",
        metrics + 1
    );
    assert!(said.contains(&expected), "{said}");
    assert!(said.contains("plus its index"), "{said}");
    drop(taken);

    // Two hosts given one name: the second is refused, naming the first.
    let mut a = host("0", &["--host-name", "twin"]);
    wait_for("host 0 to claim its clusters", DEADLINE, || {
        let (records, _) = records_and_leader(&f);
        (!records.is_empty()).then_some(())
    });
    let mut twin = host("1", &["--host-name", "twin"]);
    assert_eq!(twin.wait_exit(), Some(2));
    let said = twin.stderr().join("\n");
    assert!(
        said.contains("the host name twin is taken by host twin:") && said.contains("--host-name"),
        "{said}"
    );
    assert_eq!(a.child.try_wait().ok(), Some(None), "host 0 still runs");
    let mut b = host("1", &[]);
    b.wait_launched(&f.listener);
}
