//! Cluster processes that misbehave, and a manager that dies or is hung up
//! on: no process of any cluster may be left running, and shutdown must
//! not hang. Real `mewld --daemon`, real redis-server, real shell scripts
//! as clusters.

mod common;

use common::*;
use nix::sys::signal::Signal;
use serde_json::json;

/// The bot behind a wrapper script that does not `exec` it, and that
/// starts two helpers: one in the cluster's process group, one in a session
/// of its own (as a daemonising helper would).
const WRAPPER: &str = "#!/bin/sh\nsleep 1000 &\nsetsid sleep 1000 &\n./bot.sh \"$@\"\n";

/// The bot, ignoring SIGTERM (`FAKEBOT_IGNORE_SIGTERM`), after leaving its
/// own process group for its parent's.
const GROUP_LEAVER: &str = "#!/bin/sh\nexec perl -e 'setpgrp(0, getpgrp(getppid())) or die \"setpgrp: $!\"; exec { $ARGV[0] } @ARGV or die \"exec: $!\"' ./bot.sh \"$@\"\n";

/// A fixture whose clusters run `script` as their module, and a daemon on
/// it, waited on until every cluster is up. Every process started from the
/// test carries `PROCS_MARK=<mark>` in its environment.
fn launched_with(
    test: &str,
    shards: u32,
    extra: &str,
    script: &str,
    env: &[(&str, &str)],
) -> (Fixture, Manager, Mark) {
    let f = Fixture::new(test, vec![Answer::gateway(shards, 900, 0)]);
    write_executable(&f.bot.path().join("cluster.sh"), script);
    let config = f
        .config(extra)
        .replace("module: bot.sh", "module: cluster.sh");
    let mark = format!("{test}-{}-{}", std::process::id(), rand::random::<u64>());
    let mut env = env.to_vec();
    env.push(("PROCS_MARK", &mark));
    let mut manager = Manager::start_with(&config, &["--daemon"], Some(&f.redis), &f.bot, &env);
    manager.wait_launched(&f.listener);
    (f, manager, Mark(format!("PROCS_MARK={mark}")))
}

/// The environment entry every process of one test carries. Dropping it
/// SIGKILLs whatever still carries it, so a failing test leaves nothing.
struct Mark(String);

impl Drop for Mark {
    fn drop(&mut self) {
        for pid in marked(&self.0) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// Live processes (not zombies) whose environment has the entry `entry`.
fn marked(entry: &str) -> Vec<u32> {
    proc_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == entry.as_bytes()))
        })
        .filter(|pid| alive(*pid))
        .collect()
}

fn proc_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// (parent pid, process group, session) of `pid`.
fn ids(pid: u32) -> Option<(u32, u32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state, ppid, pgrp, session.
    let mut fields = stat.rsplit(')').next()?.split_whitespace().skip(1);
    let mut next = || fields.next()?.parse().ok();
    Some((next()?, next()?, next()?))
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// The process groups the clusters lead: each cluster's pid, from the log.
fn cluster_groups(f: &Fixture) -> Vec<u32> {
    events(&f.redis.action_log(&f.ch), "cluster_started")
        .iter()
        .filter_map(|e| e["pid"].as_u64())
        .map(|p| p as u32)
        .collect()
}

/// Waits until no live process carries `mark` or belongs to one of `groups`.
fn assert_nothing_left(mark: &str, groups: &[u32]) {
    wait_for_seen("every cluster process to be gone", DEADLINE, || {
        let in_groups: Vec<u32> = proc_pids()
            .into_iter()
            .filter(|p| alive(*p) && ids(*p).is_some_and(|(_, g, _)| groups.contains(&g)))
            .collect();
        let left: Vec<(u32, String)> = marked(mark)
            .into_iter()
            .chain(in_groups)
            .map(|p| (p, cmdline(p)))
            .collect();
        left.is_empty().then_some(()).ok_or(left)
    });
}

/// The pid of the manager's guardian.
fn guardian_of(manager: &Manager) -> u32 {
    wait_for("the manager's guardian", DEADLINE, || {
        proc_pids().into_iter().find(|p| {
            ids(*p).is_some_and(|(ppid, _, _)| ppid == manager.pid())
                && cmdline(*p).starts_with("mewld guardian ")
        })
    })
}

/// The wrapper's helpers are running: one in each cluster's group and one
/// outside every cluster group, per cluster.
fn wait_for_helpers(mark: &str, groups: &[u32]) {
    wait_for("both helpers of every cluster", DEADLINE, || {
        let sleeps: Vec<(u32, u32)> = marked(mark)
            .into_iter()
            .filter(|p| cmdline(*p).starts_with("sleep 1000"))
            .filter_map(|p| Some((p, ids(p)?.1)))
            .collect();
        let inside = sleeps.iter().filter(|(_, g)| groups.contains(g)).count();
        let outside = sleeps.len() - inside;
        (inside == groups.len() && outside == groups.len()).then_some(())
    });
}

#[test]
fn a_sigkilled_manager_leaves_nothing_of_wrapped_clusters() {
    let (f, mut manager, mark) = launched_with("wrapped", 3, "", WRAPPER, &[]);
    let groups = cluster_groups(&f);
    assert_eq!(groups.len(), 2, "two clusters");
    wait_for_helpers(&mark.0, &groups);

    manager.signal(Signal::SIGKILL);
    assert_eq!(manager.wait_exit(), None, "killed by a signal");
    // The guardian carries the mark too, and exits once it is done.
    assert_nothing_left(&mark.0, &groups);
}

#[test]
fn a_guardian_hit_by_the_operators_sigterm_still_cleans_up_after_a_clean_exit() {
    let (f, mut manager, mark) = launched_with("pkill", 3, "", WRAPPER, &[]);
    let groups = cluster_groups(&f);
    wait_for_helpers(&mark.0, &groups);
    let guardian = guardian_of(&manager);

    // As `pkill mewld` would: both get SIGTERM.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(guardian as i32), Signal::SIGTERM)
        .expect("signal the guardian");
    manager.signal(Signal::SIGTERM);
    assert_eq!(manager.wait_exit(), Some(0));
    // The manager swept its clusters' groups; the helpers that left them
    // are the guardian's, once the manager is gone.
    assert_nothing_left(&mark.0, &groups);
    wait_for("the guardian's report on stderr", DEADLINE, || {
        manager
            .stderr()
            .iter()
            .any(|l| l.contains("mewld guardian: the manager is gone; killed"))
            .then_some(())
    });
    assert!(
        !manager
            .stderr()
            .iter()
            .any(|l| l.contains("starting a new one")),
        "the first guardian did the work: {:?}",
        manager.stderr()
    );
}

#[test]
fn a_killed_guardian_is_replaced_and_the_replacement_cleans_up() {
    let (f, mut manager, mark) = launched_with("respawn", 3, "", WRAPPER, &[]);
    let groups = cluster_groups(&f);
    wait_for_helpers(&mark.0, &groups);
    let first = guardian_of(&manager);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first as i32), Signal::SIGKILL)
        .expect("kill the guardian");
    // The manager notices at its next message to the guardian: a restart.
    assert_eq!(
        ask(&f.redis, &f.listener, &f.ch, "restart", json!({"id": 1}))["output"],
        "ok"
    );
    wait_for("a new guardian", DEADLINE, || {
        manager
            .stderr()
            .iter()
            .any(|l| l.contains("the guardian stopped listening; starting a new one"))
            .then_some(())
    });
    wait_for("the restarted cluster 1 to be up", DEADLINE, || {
        let st = ask(&f.redis, &f.listener, &f.ch, "statuses", json!({}));
        (st["output"]["1"]["status"] == "running").then_some(())
    });
    let groups = cluster_groups(&f);
    assert_eq!(groups.len(), 3, "two first starts and a restart");

    manager.signal(Signal::SIGKILL);
    assert_eq!(manager.wait_exit(), None, "killed by a signal");
    assert_nothing_left(&mark.0, &groups);
}

#[test]
fn a_cluster_that_leaves_its_group_and_ignores_sigterm_cannot_hang_shutdown() {
    // Long enough for the bot to say it ignores SIGTERM on a busy machine.
    let (f, mut manager, mark) = launched_with(
        "leaver",
        1,
        "stop_grace_period: 3\n",
        GROUP_LEAVER,
        &[("FAKEBOT_IGNORE_SIGTERM", "1")],
    );
    let pid = f.bot.pids()[0];
    assert_eq!(
        ids(pid).map(|(_, g, _)| g),
        ids(manager.pid()).map(|(_, g, _)| g),
        "the cluster moved into the manager's group"
    );

    assert_eq!(
        ask(&f.redis, &f.listener, &f.ch, "shutdown", json!({}))["output"],
        "ok"
    );
    assert_eq!(manager.wait_exit(), Some(0), "shutdown finished");
    let stopped = events(&f.redis.action_log(&f.ch), "cluster_stopped");
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    assert_eq!(stopped[0]["signal"], 9, "it took SIGKILL: {stopped:?}");
    // The manager's last lines may still be on their way to the test.
    wait_for_seen(
        "SIGTERM to have reached it first, although it left its group",
        DEADLINE,
        || {
            let out = manager.stdout();
            out.iter()
                .any(|l| l.ends_with("fake bot: cluster 0 ignores SIGTERM"))
                .then_some(())
                .ok_or(out)
        },
    );
    // Nothing with the mark is left: not the cluster, nor the guardian,
    // which outlives the manager until it has swept.
    assert_nothing_left(&mark.0, &[]);
}

#[test]
fn sighup_stops_every_cluster_with_sigterm_then_exits_0() {
    let (f, mut manager) = launched("sighup", 5, "", &[]);
    let pids = f.bot.pids();
    manager.signal(Signal::SIGHUP);
    assert_eq!(manager.wait_exit(), Some(0), "after SIGHUP");
    assert_all_dead(&pids);
    for id in 0..3 {
        let line = format!("fake bot: cluster {id} got SIGTERM, exiting");
        assert!(
            manager.stdout().iter().any(|l| l.ends_with(&line)),
            "cluster {id} was stopped with SIGTERM: {:?}",
            manager.stdout()
        );
    }
    assert!(
        manager
            .stderr()
            .iter()
            .any(|l| l.contains("SIGHUP") && l.contains("stopping every cluster")),
        "{:?}",
        manager.stderr()
    );
    let stopped = events(&f.redis.action_log(&f.ch), "cluster_stopped");
    assert_eq!(stopped.len(), 3, "{stopped:?}");
}
