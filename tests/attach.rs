//! `mewld attach` and the control socket, with real parts: a daemon on a
//! real redis-server with fake-bot clusters, the attached console in tmux,
//! and the socket itself (permissions, a second daemon, other versions).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::tmux::{mewld_script, Tmux};
use common::*;
use serde_json::{json, Value};

/// A private directory for the socket, and the config line that puts it there.
fn socket_dir() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("mewld.ctl");
    let line = format!("control_socket: '{}'\n", socket.display());
    (dir, socket, line)
}

/// A script that runs `mewld attach <args>` and records its exit status;
/// what it says on stderr once it leaves is in `attach.err`.
fn attach_script(dir: &Path, args: &str) -> (PathBuf, PathBuf) {
    let log = dir.join("attach.log");
    let err = dir.join("attach.err");
    let args = format!(
        "attach {args} --log-file '{}' 2>'{}'",
        log.display(),
        err.display()
    );
    mewld_script(dir, "attach", "", &args)
}

/// What the attached console said on stderr.
fn attach_said(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("attach.err")).unwrap_or_default()
}

/// A one-shot command on `config`, which must exit 0.
fn command(config: &Path, args: &[&str]) {
    let out = Command::new(MEWLD)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run mewld");
    assert_eq!(
        out.status.code(),
        Some(0),
        "mewld {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn statuses(f: &Fixture) -> Value {
    ask(&f.redis, &f.listener, &f.ch, "statuses", json!({}))
}

#[test]
fn an_attached_console_operates_the_daemon_detaches_and_reconnects() {
    let f = Fixture::new("attach", vec![Answer::gateway(6, 900, 0)]);
    let (dir, socket, line) = socket_dir();
    let config = f.config(&format!("names: [Pika, Eevee, Bulbasaur]\n{line}"));
    let mut daemon = Manager::start(&config, &f.redis, &f.bot);
    daemon.wait_launched(&f.listener);
    let mode = std::fs::metadata(&socket)
        .expect("the control socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "owner-only: {mode:o}");

    let (script, status) = attach_script(
        dir.path(),
        &format!("--config '{}'", daemon.config_path.display()),
    );
    let tmux = Tmux::start("attach", &script, 160, 40);
    tmux.wait_screen("the attached console with every cluster", |s| {
        s.contains(&format!("attached to {}", socket.display())) && s.contains("3/3 running")
    });
    // What happened before the attach is there: the action log's history,
    // and the selected cluster's output.
    tmux.wait_screen("the action log's history", |s| {
        s.contains("all_clusters_launched")
    });
    tmux.wait_screen("cluster 0's output from before the attach", |s| {
        s.contains("fake bot: cluster 0 launched")
    });

    // Stop cluster 1 from the attached console: the daemon does it.
    let first = f.bot.pids()[1];
    tmux.keys(&["j", "x"]);
    tmux.wait_screen("the stop dialog", |s| s.contains("Stop cluster 1 (Eevee)?"));
    tmux.keys(&["y"]);
    wait_for("cluster 1's process to end", DEADLINE, || {
        (!alive(first)).then_some(())
    });
    wait_for("statuses to show cluster 1 stopped", DEADLINE, || {
        (statuses(&f)["output"]["1"]["active"] == false).then_some(())
    });
    let stop = f
        .redis
        .action_log(&f.ch)
        .into_iter()
        .find(|e| e["event"] == "operator_action" && e["action"] == "stop")
        .expect("the stop in the action log");
    assert_eq!(stop["via"], "attach", "{stop}");
    assert!(stop["peer_pid"].as_u64().is_some(), "{stop}");
    tmux.wait_screen("cluster 1 shown stopped", |s| {
        s.lines()
            .any(|l| l.contains("Eevee") && l.contains("stopped"))
    });

    // Detach: the dialog says so, the console exits 0, the clusters stay.
    let running: Vec<u32> = f.bot.pids().into_iter().filter(|p| alive(*p)).collect();
    assert_eq!(running.len(), 2);
    tmux.keys(&["q"]);
    tmux.wait_screen("the detach dialog", |s| {
        s.contains("Every cluster keeps running")
    });
    tmux.keys(&["y"]);
    assert_eq!(tmux.wait_exit_status(&status), "0");
    assert!(
        running.iter().all(|p| alive(*p)),
        "detaching stopped a cluster"
    );
    assert_eq!(statuses(&f)["output"]["0"]["active"], true);

    // Attach again; then the daemon dies and a new one takes its place: the
    // console says the engine is gone, then shows the new one.
    let tmux = Tmux::start("reattach", &script, 160, 40);
    tmux.wait_screen("attached again", |s| s.contains("attached to"));
    daemon.signal(nix::sys::signal::Signal::SIGKILL);
    daemon.wait_exit();
    tmux.wait_screen("the engine shown gone", |s| s.contains("ENGINE GONE"));
    let mut second = Manager::start(&config, &f.redis, &f.bot);
    second.wait_launched(&f.listener);
    tmux.wait_screen("the new engine, attached", |s| {
        !s.contains("ENGINE GONE") && s.contains("attached again") && s.contains("3/3 running")
    });
    // `S` shuts the engine down, after confirmation; the console then
    // leaves by itself, exit 0, saying why.
    let pids = f.bot.pids();
    tmux.keys(&["S"]);
    tmux.wait_screen("the shutdown dialog", |s| {
        s.contains("Stop every cluster and exit mewld")
    });
    tmux.keys(&["y"]);
    assert_eq!(second.wait_exit(), Some(0));
    assert_all_dead(&pids);
    assert_eq!(tmux.wait_exit_status(&status), "0");
    let said = attach_said(dir.path());
    assert!(said.contains("the engine shut down (shutdown)"), "{said}");
}

#[test]
fn an_attached_console_waits_out_restartproc_and_leaves_after_mewld_shutdown() {
    let f = Fixture::new("attach-exit", vec![Answer::gateway(4, 900, 0)]);
    let (dir, _socket, line) = socket_dir();
    let config = f.config(&line);
    let mut daemon = Manager::start(&config, &f.redis, &f.bot);
    daemon.wait_launched(&f.listener);
    let config_path = daemon.config_path.clone();
    // No --log-file: attach writes no log file where it runs.
    let err = dir.path().join("plain.err");
    let (script, status) = mewld_script(
        dir.path(),
        "plain",
        "",
        &format!(
            "attach --config '{}' 2>'{}'",
            config_path.display(),
            err.display()
        ),
    );
    let tmux = Tmux::start("attach-exit", &script, 160, 40);
    tmux.wait_screen("attached", |s| {
        s.contains("attached to") && s.contains("2/2 running")
    });

    // restartproc: the engine exits 1 (its service manager would start it
    // again); the console waits for it and shows the new one.
    command(&config_path, &["restart-process"]);
    assert_eq!(daemon.wait_exit(), Some(1));
    tmux.wait_screen("the engine shown restarting", |s| s.contains("ENGINE GONE"));
    let mut second = Manager::start(&config, &f.redis, &f.bot);
    second.wait_launched(&f.listener);
    tmux.wait_screen("the new engine, attached", |s| {
        !s.contains("ENGINE GONE") && s.contains("2/2 running")
    });

    // `mewld shutdown` from a shell: the console leaves, exit 0.
    command(&config_path, &["shutdown"]);
    assert_eq!(second.wait_exit(), Some(0));
    assert_eq!(tmux.wait_exit_status(&status), "0");
    let said = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(said.contains("the engine shut down (shutdown)"), "{said}");
    assert!(
        !dir.path().join("mewld.log").exists(),
        "attach wrote a log file without --log-file"
    );
}

#[test]
fn a_second_daemon_on_the_same_config_refuses_to_start() {
    let f = Fixture::new("second", vec![Answer::gateway(2, 900, 0)]);
    let (_dir, socket, line) = socket_dir();
    let config = f.config(&line);
    let mut first = Manager::start(&config, &f.redis, &f.bot);
    first.wait_launched(&f.listener);
    let mut second = Manager::start(&config, &f.redis, &f.bot);
    assert_eq!(second.wait_exit(), Some(2));
    let said = second.stderr().join("\n");
    assert!(
        said.contains(&socket.display().to_string())
            && said.contains("another mewld runs with this config"),
        "{said}"
    );
    // The first is untouched: still answering, its one cluster started once.
    assert_eq!(statuses(&f)["output"]["0"]["active"], true);
    assert_eq!(f.bot.records().len(), 1);
    assert!(std::fs::metadata(&socket).is_ok_and(|m| m.file_type().is_socket()));
    // The second's check that the socket is live was no console.
    let log = first.stderr().join("\n");
    assert!(!log.contains("a console"), "{log}");
}

#[test]
fn a_control_socket_in_a_world_writable_directory_is_refused() {
    let f = Fixture::new("worldwritable", vec![Answer::gateway(2, 900, 0)]);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let socket = dir.path().join("mewld.ctl");
    let config = f.config(&format!("control_socket: '{}'\n", socket.display()));
    let mut manager = Manager::start(&config, &f.redis, &f.bot);
    assert_eq!(manager.wait_exit(), Some(2));
    let said = manager.stderr().join("\n");
    assert!(said.contains("writable by every user"), "{said}");
    assert!(f.bot.records().is_empty(), "no cluster started");
}

/// A daemon of another protocol version: `mewld attach` says so and exits,
/// instead of drawing what it cannot read.
#[test]
fn attach_to_another_protocol_version_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("other.ctl");
    let listener = UnixListener::bind(&socket).expect("bind");
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let hello = json!({"type": "hello", "protocol": 99, "version": "9.0.0", "pid": 1, "embedded": false, "config": "/x"});
            let _ = writeln!(stream, "{hello}");
            let mut line = String::new();
            let _ = BufReader::new(&stream).read_line(&mut line);
        }
    });
    let out = Command::new(MEWLD)
        .args(["attach", "--control-socket"])
        .arg(&socket)
        .arg("--log-file")
        .arg(dir.path().join("attach.log"))
        .output()
        .expect("run mewld attach");
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("control protocol mismatch") && said.contains("99"),
        "{said}"
    );

    // And nobody there at all.
    let said = attach_fails(&dir.path().join("gone.ctl"), dir.path());
    assert!(said.contains("is the daemon running?"), "{said}");
}

/// Runs `mewld attach` on `socket`, which must fail to start (exit 2);
/// returns what it said.
fn attach_fails(socket: &Path, dir: &Path) -> String {
    let out = Command::new(MEWLD)
        .args(["attach", "--control-socket"])
        .arg(socket)
        .arg("--log-file")
        .arg(dir.join("attach.log"))
        .output()
        .expect("run mewld attach");
    assert_eq!(out.status.code(), Some(2));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A client of another protocol version gets an error line from the daemon,
/// and the daemon carries on.
#[test]
fn the_daemon_refuses_a_client_of_another_version() {
    let f = Fixture::new("oldclient", vec![Answer::gateway(2, 900, 0)]);
    let (_dir, socket, line) = socket_dir();
    let mut daemon = Manager::start(&f.config(&line), &f.redis, &f.bot);
    daemon.wait_launched(&f.listener);
    let stream = UnixStream::connect(&socket).expect("connect");
    // A daemon that says nothing fails the test instead of hanging it.
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    let mut lines = BufReader::new(stream.try_clone().expect("clone")).lines();
    let hello: Value =
        serde_json::from_str(&lines.next().expect("hello").expect("read")).expect("json");
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["protocol"], mewld::control::PROTOCOL);
    assert_eq!(hello["embedded"], false);
    writeln!(&stream, "{}", json!({"type": "hello", "protocol": 99})).expect("write");
    let error: Value =
        serde_json::from_str(&lines.next().expect("error").expect("read")).expect("json");
    assert_eq!(error["type"], "error");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("mismatch")),
        "{error}"
    );
    assert_eq!(statuses(&f)["output"]["0"]["active"], true);
}

/// A control-socket client speaking the protocol by hand.
struct RawClient {
    stream: UnixStream,
    lines: std::io::Lines<BufReader<UnixStream>>,
}

impl RawClient {
    /// Connects and exchanges hellos.
    fn attach(socket: &Path) -> RawClient {
        let stream = UnixStream::connect(socket).expect("connect");
        // A daemon that says nothing fails the test instead of hanging it.
        stream
            .set_read_timeout(Some(DEADLINE))
            .expect("read timeout");
        let lines = BufReader::new(stream.try_clone().expect("clone")).lines();
        let mut client = RawClient { stream, lines };
        assert_eq!(client.next()["type"], "hello");
        client.send(&json!({"type": "hello", "protocol": mewld::control::PROTOCOL}));
        client
    }

    fn send(&mut self, msg: &Value) {
        writeln!(self.stream, "{msg}").expect("write");
    }

    fn next(&mut self) -> Value {
        let line = self.lines.next().expect("a line").expect("read");
        serde_json::from_str(&line).expect("json")
    }

    /// Reads until a message matches.
    fn wait(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..100_000 {
            let msg = self.next();
            if pred(&msg) {
                return msg;
            }
        }
        panic!("no {what}");
    }
}

/// Several consoles at once: each gets the snapshot and the history first,
/// one's operation is answered to it, and every one sees the result.
#[test]
fn several_clients_attach_at_once_and_see_each_others_operations() {
    let f = Fixture::new("rawclients", vec![Answer::gateway(4, 900, 0)]);
    let (_dir, socket, line) = socket_dir();
    let mut daemon = Manager::start(&f.config(&line), &f.redis, &f.bot);
    daemon.wait_launched(&f.listener);
    let mut a = RawClient::attach(&socket);
    let mut b = RawClient::attach(&socket);
    for c in [&mut a, &mut b] {
        let snapshot = c.next();
        assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
        assert_eq!(
            snapshot["snapshot"]["clusters"].as_array().map(Vec::len),
            Some(2)
        );
        // A short history: one page, the last.
        let history = c.next();
        assert_eq!(history["type"], "history", "{history}");
        assert_eq!(history["done"], true, "{history}");
        assert!(history["entries"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["event"] == "all_clusters_launched")));
    }
    a.send(&json!({"type": "request", "id": 7, "op": {"stop": 1}}));
    let verdict = a.wait("a verdict", |m| m["type"] == "verdict");
    assert_eq!(
        verdict,
        json!({"type": "verdict", "id": 7, "result": {"Ok": null}})
    );
    b.wait("cluster 1 stopped in b's snapshots", |m| {
        m["type"] == "snapshot" && m["snapshot"]["clusters"][1]["state"] == "stopped"
    });
    // A refusal names its reason as data.
    b.send(&json!({"type": "request", "id": 8, "op": {"stop": 1}}));
    let verdict = b.wait("a verdict", |m| m["type"] == "verdict");
    assert_eq!(
        verdict["result"]["Err"]["not_running"]["id"], 1,
        "{verdict}"
    );
}

/// A real flood: chatty clusters print megabytes while one client never
/// reads. That client is dropped; the daemon's memory stays bounded, and
/// another client, reading, is served all along.
#[test]
fn a_client_that_never_reads_is_dropped_and_holds_up_nobody() {
    let f = Fixture::new("flood", vec![Answer::gateway(6, 900, 0)]);
    chatty_bot(&f.bot, true);
    let (_dir, socket, line) = socket_dir();
    let config = f
        .config(&line)
        .replace("module: bot.sh\n", "module: chatty.sh\n");
    let mut daemon = Manager::start(&config, &f.redis, &f.bot);
    daemon.wait_launched(&f.listener);
    let _stuck = RawClient::attach(&socket);
    let reader = RawClient::attach(&socket);
    let mut requests = reader.stream.try_clone().expect("clone");
    // The reader reads everything, in a thread of its own.
    let (tx, messages) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        let mut reader = reader;
        while let Some(Ok(line)) = reader.lines.next() {
            let Ok(msg) = serde_json::from_str(&line) else {
                return;
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    });
    start_chatter(&f.bot);
    wait_for("every cluster's chatter to be read", DEADLINE, || {
        (chatter_done(&f.bot) == 3).then_some(())
    });
    wait_for("the stuck client to be dropped", DEADLINE, || {
        daemon
            .stderr()
            .iter()
            .any(|l| l.contains("a console was disconnected") && l.contains("took no line"))
            .then_some(())
    });
    let rss_kib = rss_kib(daemon.pid());
    assert!(rss_kib < 200 * 1024, "the daemon holds {rss_kib} KiB");
    writeln!(
        requests,
        "{}",
        json!({"type": "request", "id": 1, "op": {"diagnose": 0}})
    )
    .expect("write");
    let mut outputs = 0;
    let verdict = wait_for("the reader's verdict", DEADLINE, || loop {
        let msg = messages
            .recv_timeout(std::time::Duration::from_millis(100))
            .ok()?;
        if msg["event"]["Output"].is_object() {
            outputs += 1;
        }
        if msg["type"] == "verdict" {
            return Some(msg);
        }
    });
    assert_eq!(verdict["result"], json!({"Ok": null}), "{verdict}");
    assert!(outputs > 1000, "the reader got {outputs} output lines");
    eprintln!("flood: the reader got {outputs} output lines; the daemon held {rss_kib} KiB");
}

/// Entries in the big history, and the bytes of padding in each: ~80 MB.
const BIG_ENTRIES: usize = 10_000;
const BIG_PAD: usize = 8 * 1024;

/// A daemon whose action log in Redis holds ~80 MB: [`BIG_ENTRIES`]
/// entries, the oldest `history_oldest`, the newest `history_newest`,
/// written straight into the list the daemon reads.
fn big_history_daemon(test: &str) -> (Fixture, Manager, tempfile::TempDir, PathBuf) {
    let f = Fixture::new(test, vec![Answer::gateway(2, 900, 0)]);
    let (dir, socket, line) = socket_dir();
    let config = f.config(&format!("action_log_max_len: 20000\n{line}"));
    let mut daemon = Manager::start(&config, &f.redis, &f.bot);
    daemon.wait_launched(&f.listener);
    let pad = "x".repeat(BIG_PAD);
    let mut pipe = redis::pipe();
    for n in 0..BIG_ENTRIES {
        let event = match n {
            0 => "history_oldest",
            n if n == BIG_ENTRIES - 1 => "history_newest",
            _ => "history_bulk",
        };
        let entry =
            json!({"event": event, "n": n, "pad": pad, "ts": 1_700_000_000_000_000u64 + n as u64});
        pipe.rpush(format!("{}/actlogs", f.ch), entry.to_string())
            .ignore();
    }
    let () = pipe
        .query(&mut f.redis.conn())
        .expect("fill the action log");
    (f, daemon, dir, socket)
}

/// Samples `pid`'s resident memory every 20 ms until the returned flag is
/// cleared; the peak, in KiB, is in the counter.
fn rss_peak(
    pid: u32,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let running = std::sync::Arc::new(AtomicBool::new(true));
    let peak = std::sync::Arc::new(AtomicU64::new(0));
    let (r, p) = (running.clone(), peak.clone());
    std::thread::spawn(move || {
        while r.load(Ordering::Relaxed) && alive(pid) {
            p.fetch_max(rss_kib(pid), Ordering::Relaxed);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
    (running, peak)
}

/// What a raw client saw of the history: entries, and the longest line.
#[derive(Debug, Clone, Copy)]
struct HistorySeen {
    entries: usize,
    longest_line: usize,
}

/// Attaches by hand and reads the history pages through to the last one.
fn read_history(socket: &Path) -> Result<HistorySeen, String> {
    #[derive(serde::Deserialize)]
    struct Page {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        entries: Vec<serde::de::IgnoredAny>,
        #[serde(default)]
        done: bool,
    }
    let mut client = RawClient::attach(socket);
    let mut seen = HistorySeen {
        entries: 0,
        longest_line: 0,
    };
    loop {
        let line = match client.lines.next() {
            Some(Ok(line)) => line,
            other => return Err(format!("no more lines ({other:?}) after {seen:?}")),
        };
        let page: Page = serde_json::from_str(&line).map_err(|e| e.to_string())?;
        if page.kind != "history" {
            continue;
        }
        seen.entries += page.entries.len();
        seen.longest_line = seen.longest_line.max(line.len());
        if page.done {
            return Ok(seen);
        }
    }
}

/// Eight consoles attach at once to a daemon whose history is ~80 MB: each
/// gets the whole of it, in lines of about a MiB, while the daemon reads
/// and sends one history at a time (its memory stays within a bound that
/// eight at once, as one line each, went far past).
#[test]
fn eight_attaches_of_an_80_mb_history_get_it_in_pages_within_bounded_memory() {
    let (_f, daemon, _dir, socket) = big_history_daemon("bighistory8");
    let before = rss_kib(daemon.pid());
    let (running, peak) = rss_peak(daemon.pid());
    let (tx, results) = std::sync::mpsc::channel();
    for _ in 0..8 {
        let (socket, tx) = (socket.clone(), tx.clone());
        std::thread::spawn(move || {
            let _ = tx.send(read_history(&socket));
        });
    }
    let mut got = Vec::new();
    wait_for_seen(
        "eight histories",
        std::time::Duration::from_secs(240),
        || {
            got.extend(results.try_iter());
            if got.len() == 8 {
                Ok(())
            } else {
                let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
                Err(format!("{} of 8, daemon peak {peak} KiB", got.len()))
            }
        },
    );
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "8 attaches of an 80 MB history: daemon RSS {before} KiB before, peak {peak} KiB; {got:?}"
    );
    for seen in got {
        let seen = seen.expect("a history");
        // The daemon's own entries (the launch) come first.
        assert!(
            (BIG_ENTRIES..BIG_ENTRIES + 100).contains(&seen.entries),
            "{seen:?}"
        );
        assert!(
            seen.longest_line < 1024 * 1024 + 2 * BIG_PAD,
            "a history line over a page: {seen:?}"
        );
    }
    assert!(
        peak < before + 400 * 1024,
        "the daemon grew from {before} KiB to {peak} KiB"
    );
}

/// `mewld attach` on a daemon whose history is ~80 MB (over the client's
/// 64 MiB line): the console shows it, the newest entry and the oldest.
#[test]
fn an_attached_console_shows_an_80_mb_history() {
    let (_f, daemon, dir, socket) = big_history_daemon("bighistory");
    let (script, _status) = attach_script(
        dir.path(),
        &format!("--config '{}'", daemon.config_path.display()),
    );
    let started = std::time::Instant::now();
    let tmux = Tmux::start("bighistory", &script, 160, 40);
    tmux.wait_screen("the attached console", |s| {
        s.contains(&format!("attached to {}", socket.display()))
    });
    let newest = wait_for(
        "the newest entry of the history",
        std::time::Duration::from_secs(240),
        || {
            let s = tmux.screen();
            s.contains("history_newest").then_some(s)
        },
    );
    eprintln!("the history was shown after {:?}", started.elapsed());
    assert!(!newest.contains("ENGINE GONE"), "{newest}");
    // Filter the action log for the oldest entry.
    tmux.keys(&["Tab", "Tab", "/"]);
    tmux.keys(&["history_oldest"]);
    tmux.wait_screen("the oldest entry of the history", |s| {
        s.lines()
            .any(|l| l.contains("history_oldest") && l.contains("n=0"))
    });
}

/// More silent connections than the daemon takes consoles (they never say
/// hello) do not keep a console out: it attaches and has its snapshot
/// well within the time a silent connection is given to say hello.
#[test]
fn silent_connections_cannot_lock_a_console_out() {
    let f = Fixture::new("silent", vec![Answer::gateway(2, 900, 0)]);
    let (_dir, socket, line) = socket_dir();
    let mut daemon = Manager::start(&f.config(&line), &f.redis, &f.bot);
    daemon.wait_launched(&f.listener);
    let silent: Vec<UnixStream> = (0..100)
        .map(|_| UnixStream::connect(&socket).expect("connect"))
        .collect();
    // Every silent one has had its hello from the daemon (or was closed):
    // they are all accepted before the console connects.
    for mut s in &silent {
        s.set_read_timeout(Some(DEADLINE)).expect("read timeout");
        let mut byte = [0u8; 1];
        let _ = std::io::Read::read(&mut s, &mut byte);
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let started = std::time::Instant::now();
    let clusters = runtime.block_on(async {
        let attached = mewld::control::client::attach(&socket, mewld::control::Client::Console)
            .await
            .expect("attached");
        let mut snapshot = attached.handle.snapshot();
        let wait = snapshot.wait_for(|s| !s.clusters.is_empty());
        let clusters = tokio::time::timeout(DEADLINE, wait)
            .await
            .expect("a snapshot within the deadline")
            .expect("the link is up")
            .clusters
            .len();
        clusters
    });
    let took = started.elapsed();
    eprintln!("attached past 100 silent connections in {took:?}");
    assert_eq!(clusters, 1, "clusters in the snapshot");
    assert!(
        took < std::time::Duration::from_secs(3),
        "attaching took {took:?}"
    );
    drop(silent);
}

/// Past 64 consoles, one more is told so: `mewld attach` says it and
/// exits 2 (the daemon says it after the hellos).
#[test]
fn a_console_past_the_limit_is_told_there_are_too_many() {
    let f = Fixture::new("toomany", vec![Answer::gateway(2, 900, 0)]);
    let (dir, socket, line) = socket_dir();
    let mut daemon = Manager::start(&f.config(&line), &f.redis, &f.bot);
    daemon.wait_launched(&f.listener);
    let consoles: Vec<RawClient> = (0..64)
        .map(|_| {
            let mut c = RawClient::attach(&socket);
            let snapshot = c.next();
            assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
            c
        })
        .collect();
    let said = attach_fails(&socket, dir.path());
    assert!(said.contains("too many consoles attached"), "{said}");
    drop(consoles);
}
