//! A manager short of file descriptors: a cluster whose restart cannot get
//! any is retried until it starts (a failed spawn is a crash, not a
//! verdict), and a flood of idle connections from another user cannot take
//! the descriptors the manager keeps for its clusters. Real `mewld
//! --daemon` under real limits, real connections, real fake-bot clusters.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use common::*;
use nix::libc;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use serde_json::{json, Value};

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
    wait_for_seen(
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
    let failed = wait_for_seen(
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
    let pid = wait_for_seen("cluster 0 running again", DEADLINE, || {
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

/// Connections the flood holds: more than the manager's limit below.
const FLOOD: usize = 5000;
/// The manager's open-file limit, as the finding had it.
const MANAGER_LIMIT: u64 = 4096;

/// Holds `want` connections to port `port` open, opening a new one for
/// each the server closes; says `held <want>` once all are open.
const FLOODER: &str = r#"
use strict; use warnings; use IO::Socket::INET; use IO::Poll qw(POLLIN POLLHUP POLLERR);
$| = 1;
my ($port, $want) = @ARGV;
my $poll = IO::Poll->new;
my $said = 0;
while (1) {
    while (scalar($poll->handles) < $want) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Proto => "tcp")
            or die "connect: $!\n";
        $poll->mask($s => POLLIN);
    }
    print "held $want\n" unless $said++;
    $poll->poll(1);
    for my $s ($poll->handles(POLLIN | POLLHUP | POLLERR)) { $poll->remove($s); close $s; }
}
"#;

/// The flooding process, killed on drop.
struct Flood {
    child: Child,
    said: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Flood {
    /// Starts holding [`FLOOD`] connections to `port`, as user nobody
    /// (65534) when the test runs as root: they are nobody's clusters. (Not
    /// root, it runs as the test's own user; the descriptors it takes from
    /// the manager are the same.)
    fn start(port: u16) -> Flood {
        let mut cmd = Command::new("perl");
        cmd.arg("-e")
            .arg(FLOODER)
            .arg(port.to_string())
            .arg(FLOOD.to_string())
            .current_dir("/")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: geteuid cannot fail and touches no memory of ours.
        if unsafe { libc::geteuid() } == 0 {
            cmd.uid(65534).gid(65534);
        }
        let mut child = cmd.spawn().expect("start the flood (perl)");
        let said = collect(child.stdout.take().expect("the flood's stdout"));
        Flood { child, said }
    }

    fn wait_held(&mut self) {
        wait_for_seen("the flood to hold all its connections", DEADLINE, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the flood ended: {status}");
            }
            let said = self.said.lock().expect("lock").clone();
            said.iter()
                .any(|l| l == &format!("held {FLOOD}"))
                .then_some(())
                .ok_or(said)
        });
    }

    fn end(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.end();
    }
}

/// The manager's log lines (stderr) holding `text`.
fn said(manager: &Manager, text: &str) -> Vec<String> {
    manager
        .stderr()
        .into_iter()
        .filter(|l| l.contains(text))
        .collect()
}

/// The finding: under a limit of 4 096 descriptors, 5 000 idle
/// connections to the identify queue (from another user) while a cluster
/// crashes. The queue stops accepting before the descriptors kept for the
/// clusters are touched, so the cluster is restarted during the flood; the
/// manager never runs out, says once that the queue stopped accepting, and
/// once that it accepts again after the flood.
#[test]
fn a_flood_of_idle_connections_cannot_keep_a_crashed_cluster_down() {
    // The flood inherits this process's limit and needs room for its own.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let need = FLOOD as u64 + 256;
    setrlimit(Resource::RLIMIT_NOFILE, need.max(hard), need.max(hard))
        .unwrap_or_else(|e| panic!("this test needs {need} open files (`ulimit -Hn`): {e}"));

    let f = Fixture::new("fd_flood", vec![Answer::gateway_with(6, 900, 0, 16)]);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("addr").port()
    };
    let extra = format!("identify_queue: 127.0.0.1:{port}\nrestart_backoff_base: 1\n");
    let mut manager = Manager::start_program(
        mewld_under_sh(&format!("ulimit -n {MANAGER_LIMIT}")),
        &f.config(&extra),
        &["--daemon"],
        Some(&f.redis),
        &f.bot,
        &[],
    );
    manager.wait_launched(&f.listener);
    let first = latest_pid(&f.bot, 1).expect("cluster 1's first start");

    let mut flood = Flood::start(port);
    flood.wait_held();
    crash(&f, 1);
    // Its restart identifies through the flooded queue too, in its turn.
    let pid = wait_for_seen("cluster 1 running again during the flood", DEADLINE, || {
        running_anew(&f, 1, first)
    });
    assert!(
        flood.child.try_wait().is_ok_and(|s| s.is_none()),
        "the flood still held when cluster 1 ({pid}) came back"
    );
    let out_of_fds = said(&manager, "Too many open files");
    assert!(out_of_fds.is_empty(), "the manager ran out: {out_of_fds:?}");
    let stopped = said(&manager, "stopped accepting connections");
    assert!(
        stopped.len() == 1 && stopped[0].contains("identify-queue"),
        "one warning, naming the queue: {stopped:?}"
    );

    flood.end();
    // Accepting again is said at the first connection after a quiet spell.
    wait_for_seen("the queue to say it accepts again", DEADLINE, || {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(s, "GET /?shard=x HTTP/1.0\r\n\r\n");
        }
        let again = said(&manager, "accepting connections again");
        (again.len() == 1 && again[0].contains("identify-queue"))
            .then_some(())
            .ok_or(again)
    });
    let statuses = ask(&f.redis, &f.listener, &f.ch, "statuses", json!({}));
    let states: Vec<&Value> = (0..3)
        .map(|id| &statuses["output"][id.to_string()]["status"])
        .collect();
    assert!(states.iter().all(|s| *s == "running"), "{states:?}");
    let log = f.redis.action_log(&f.ch);
    assert!(events(&log, "cluster_start_failed").is_empty(), "{log:?}");
}
