//! A manager short of file descriptors: a cluster whose restart cannot get
//! any is retried until it starts (a failed spawn is a crash, not a
//! verdict). Real `mewld --daemon` under real limits, real fake-bot
//! clusters.

mod common;

use std::collections::BTreeSet;

use common::*;
use nix::libc;
use serde_json::json;

/// The open-file limit of process `pid`, after setting its soft limit to
/// `soft` (its hard limit stays) if asked.
fn open_file_limit(pid: u32, soft: Option<u64>) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let new = soft.map(|soft| libc::rlimit {
        rlim_cur: soft,
        rlim_max: libc::RLIM_INFINITY,
    });
    // SAFETY: `old` and `new` outlive the calls; prlimit reads the one and
    // writes the other.
    let got = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut old,
        )
    };
    assert_eq!(
        got,
        0,
        "prlimit of {pid}: {}",
        std::io::Error::last_os_error()
    );
    if let Some(mut new) = new {
        new.rlim_max = old.rlim_max;
        // SAFETY: as above.
        let set = unsafe {
            libc::prlimit(
                pid as libc::pid_t,
                libc::RLIMIT_NOFILE,
                &new,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(
            set,
            0,
            "prlimit of {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    old
}

/// The descriptor numbers process `pid` has open.
fn open_fds(pid: u32) -> BTreeSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the manager's descriptors")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The lowest descriptor number `pid` has free: the one it would get next.
fn lowest_free_fd(pid: u32) -> u64 {
    let open = open_fds(pid);
    (0..).find(|n| !open.contains(n)).unwrap_or(0)
}

/// Lowers the soft open-file limit of `pid` to its lowest free descriptor,
/// so that it cannot open one more; returns the soft limit it had.
fn starve(pid: u32) -> u64 {
    let had = open_file_limit(pid, None).rlim_cur;
    wait_until(
        "the manager to be left no free descriptor",
        DEADLINE,
        || {
            let lowest = lowest_free_fd(pid);
            open_file_limit(pid, Some(lowest));
            // Something may have closed meanwhile: then set it again.
            let now = lowest_free_fd(pid);
            if now == lowest {
                Ok(())
            } else {
                Err(format!("limit {lowest}, lowest free now {now}"))
            }
        },
    );
    had
}

/// The pid of the latest start of cluster `id`, from the fake bots' records.
fn latest_pid(bot: &BotDir, id: u64) -> Option<u64> {
    bot.records()
        .iter()
        .rev()
        .find(|r| r["cluster_id"] == id)
        .and_then(|r| r["pid"].as_u64())
}

/// Cluster `id` runs (it said `launch_next`) as a live process other than
/// `old_pid`; else what it is instead.
fn running_anew(f: &Fixture, id: u64, old_pid: u64) -> Result<u64, String> {
    let statuses = ask(&f.redis, &f.listener, &f.ch, "statuses", json!({}));
    let status = &statuses["output"][id.to_string()]["status"];
    let pid = latest_pid(&f.bot, id);
    match pid {
        Some(pid) if pid != old_pid && status == "running" && alive(pid as u32) => Ok(pid),
        _ => Err(format!(
            "status {status}, latest pid {pid:?} (was {old_pid})"
        )),
    }
}

fn crash(f: &Fixture, id: u64) {
    f.redis.publish(
        &f.ch,
        &json!({"scope": "fakebot", "action": "crash", "args": {"id": id}}),
    );
}

/// A cluster crashes while the manager can open no descriptor at all: its
/// restart fails (`Too many open files`), is logged, and is tried again
/// with the crash backoff until the manager has descriptors again, though
/// nothing else happens (`restart_max_failures` is 0: never give up).
#[test]
fn a_restart_that_finds_the_manager_out_of_descriptors_is_retried_until_it_starts() {
    let extra = "restart_backoff_base: 1\nrestart_backoff_max: 2\n";
    let (f, manager) = launched("fd_starved", 4, extra, &[]);
    let first = latest_pid(&f.bot, 0).expect("cluster 0's first start");
    let limit = starve(manager.pid());

    crash(&f, 0);
    let failed = wait_until(
        "a restart of cluster 0 out of descriptors",
        DEADLINE,
        || {
            let log = f.redis.action_log(&f.ch);
            let failed = events(&log, "cluster_start_failed");
            failed
                .into_iter()
                .find(|e| {
                    e["id"] == 0
                        && e["error"]
                            .as_str()
                            .is_some_and(|s| s.contains("Too many open files"))
                })
                .ok_or_else(|| events(&log, "cluster_exited"))
        },
    );

    open_file_limit(manager.pid(), Some(limit));
    let pid = wait_until("cluster 0 running again", DEADLINE, || {
        running_anew(&f, 0, first)
    });
    // The crash was the first quick failure (1 s), the failed start the
    // second: 1 s doubled.
    assert_eq!(
        failed["restart_in_ms"], 2000,
        "retried after the backoff: {failed}"
    );
    let log = f.redis.action_log(&f.ch);
    assert!(
        events(&log, "cluster_failed").is_empty(),
        "never given up on: {log:?}"
    );
    assert!(
        events(&log, "cluster_started")
            .iter()
            .any(|e| e["id"] == 0 && e["pid"] == pid),
        "{log:?}"
    );
}
