//! The Unix-socket transport under faults, end to end on a real
//! `mewld --daemon`: a flood past the descriptor budget, a client that
//! never reads, bad lines, a permissive umask, and who asked for what.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use serde_json::json;

/// A daemon on the socket transport, one or more clusters of the fake bot.
struct Daemon {
    _discord: FakeDiscord,
    _bot: BotDir,
    _dir: tempfile::TempDir,
    sock: PathBuf,
    manager: Manager,
}

/// Starts the daemon after the shell `setup` (limits, umask) and waits
/// until its `shards / 2` clusters run.
fn daemon(setup: &str, shards: u32) -> Daemon {
    let discord = FakeDiscord::start(vec![Answer::gateway(shards, 900, 0)]);
    let bot = BotDir::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("mewld.sock");
    let config = unix_config(&discord, &bot, &sock, "");
    let mut manager = Manager::start_program(
        mewld_under_sh(setup),
        &config,
        &["--daemon"],
        None,
        &bot,
        &[],
    );
    wait_for("the socket", DEADLINE, || {
        if let Ok(Some(status)) = manager.child.try_wait() {
            panic!("mewld exited ({status}): {:?}", manager.stderr());
        }
        sock.exists().then_some(())
    });
    let mut client = SocketClient::connect(&sock);
    wait_for("every cluster to run", DEADLINE, || {
        let st = client.ask("statuses", json!({}));
        let running = st["output"]
            .as_object()?
            .values()
            .filter(|c| c["status"] == "running")
            .count();
        (running == shards as usize / 2).then_some(())
    });
    Daemon {
        _discord: discord,
        _bot: bot,
        _dir: dir,
        sock,
        manager,
    }
}

impl Daemon {
    fn stderr_has(&self, text: &str) -> bool {
        self.manager.stderr().iter().any(|l| l.contains(text))
    }
}

fn statuses_ok(client: &mut SocketClient) {
    let st = client.ask("statuses", json!({}));
    assert!(st["output"]["0"]["status"].is_string(), "{st}");
}

/// Under a limit far too low for its clusters (64 descriptors: a quarter
/// is left for connections), a flood of clients: the socket stops accepting
/// before the manager runs out, says so once, serves the clients it has,
/// and accepts again once the flood is gone.
#[test]
fn a_flood_of_clients_waits_in_the_backlog_and_the_socket_recovers() {
    let d = daemon("ulimit -n 64", 2);
    let mut client = SocketClient::connect(&d.sock);
    statuses_ok(&mut client);
    let before = d.manager.stderr().len();
    // Far more connections than the manager has descriptors.
    let flood: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(&d.sock).expect("connect"))
        .collect();
    wait_for("the socket to stop accepting", DEADLINE, || {
        d.stderr_has("stopped accepting connections").then_some(())
    });
    // The clients it has are still served meanwhile.
    statuses_ok(&mut client);
    // A retry loop without backoff logs thousands of lines a second: give
    // it a few seconds to show.
    thread::sleep(Duration::from_secs(3));
    let logged = d.manager.stderr().len() - before;
    assert!(
        logged < 100,
        "{logged} log lines while out of descriptors: {:?}",
        &d.manager.stderr()[before..before + 20.min(logged)]
    );
    assert!(
        !d.stderr_has("Too many open files"),
        "the manager ran out: {:?}",
        &d.manager.stderr()[before..]
    );
    drop(flood);
    let mut fresh = SocketClient::connect(&d.sock);
    statuses_ok(&mut fresh);
    wait_for_seen("the recovery to be logged", DEADLINE, || {
        // Said at the first connection after a quiet spell.
        let _knock = UnixStream::connect(&d.sock);
        let said: Vec<String> = d.manager.stderr()[before..]
            .iter()
            .filter(|l| l.contains("accepting connections"))
            .cloned()
            .collect();
        let again = said
            .iter()
            .filter(|l| l.contains("accepting connections again"));
        (again.count() == 1).then_some(()).ok_or(said)
    });
}

/// Resident memory of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

#[test]
fn a_client_that_never_reads_is_disconnected_and_memory_stays_bounded() {
    let d = daemon("true", 2);
    let pid = d.manager.pid();
    // Connected, never reads.
    let mut idle = UnixStream::connect(&d.sock).expect("connect");
    let mut flooder = SocketClient::connect(&d.sock);
    statuses_ok(&mut flooder);
    // The flooder drains what comes back to it, as a live client does.
    let drained = Arc::new(AtomicU64::new(0));
    let mut drain = flooder.reader.get_ref().try_clone().expect("clone");
    let counter = drained.clone();
    thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = drain.read(&mut buf) {
            if n == 0 {
                return;
            }
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    let peak = Arc::new(AtomicU64::new(0));
    let flooding = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, flooding) = (peak.clone(), flooding.clone());
        thread::spawn(move || {
            while flooding.load(Ordering::Relaxed) {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // About 1 GB in lines of 7 MB (not JSON: the engine drops each cheaply).
    let line = {
        let mut l = vec![b'x'; 7 * 1024 * 1024];
        l.push(b'\n');
        l
    };
    // The flooder keeps up with its own echo (a few lines in flight, well
    // under the backlog limit); the idle client falls ever further behind.
    for sent in 0..150u64 {
        wait_for("the flood to come back to the flooder", DEADLINE, || {
            (drained.load(Ordering::Relaxed) + 4 * line.len() as u64 >= sent * line.len() as u64)
                .then_some(())
        });
        flooder.writer.write_all(&line).expect("flood");
    }
    wait_for("the flood to come back to the flooder", DEADLINE, || {
        (drained.load(Ordering::Relaxed) >= 150 * line.len() as u64).then_some(())
    });
    flooding.store(false, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let peak = peak.load(Ordering::Relaxed);
    assert!(
        peak < 200 * 1024 * 1024,
        "the manager grew to {} MB",
        peak >> 20
    );
    // The idle client was cut off: what it got ends.
    idle.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut sink = Vec::new();
    idle.read_to_end(&mut sink)
        .expect("the idle client reaches the end before the deadline");
    assert!(d.stderr_has("disconnected a socket client that is not reading"));
    // Others carry on.
    let mut other = SocketClient::connect(&d.sock);
    statuses_ok(&mut other);
}

/// `line` without its terminal colour codes (`ESC [ … m`).
fn without_colours(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find('\u{1b}') {
        out.push_str(&rest[..at]);
        rest = rest[at..].split_once('m').map_or("", |(_, r)| r);
    }
    out + rest
}

#[test]
fn a_too_long_or_non_utf8_line_is_dropped_and_the_client_stays() {
    let d = daemon("true", 2);
    let mut client = SocketClient::connect(&d.sock);
    let mut long = vec![b'x'; 9 * 1024 * 1024];
    long.push(b'\n');
    client.writer.write_all(&long).expect("write");
    client.writer.write_all(b"\xff\xfe{}\n").expect("write");
    statuses_ok(&mut client);
    let told = || {
        d.manager
            .stderr()
            .into_iter()
            .map(|l| without_colours(&l))
            .filter(|l| l.contains("dropped lines from a socket client"))
            .collect::<Vec<_>>()
    };
    // The first drop is told at once; the next ones are counted.
    wait_for("the first drop to be logged", DEADLINE, || {
        let told = told();
        (told.len() == 1 && told[0].contains("longer than the limit")).then_some(())
    });
    statuses_ok(&mut client);
    drop(client);
    wait_for(
        "the count of later drops when the client goes",
        DEADLINE,
        || {
            let told = told();
            (told.len() == 2 && told[1].contains("dropped=1")).then_some(())
        },
    );
}

#[test]
fn the_socket_is_owner_only_whatever_the_umask() {
    let d = daemon("umask 000", 2);
    let mode = std::fs::metadata(&d.sock)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
}

#[test]
fn an_operation_over_the_socket_is_logged_with_the_peer() {
    let d = daemon("true", 2);
    let mut client = SocketClient::connect(&d.sock);
    assert_eq!(client.ask("stop", json!({"id": 0}))["output"], "ok");
    let uid = std::fs::metadata("/proc/self").expect("proc").uid();
    let entry = wait_for("the operator action", DEADLINE, || {
        stderr_action_log(&d.manager)
            .into_iter()
            .find(|e| e["event"] == "operator_action" && e["action"] == "stop")
    });
    assert_eq!(entry["via"], "unix", "{entry}");
    assert_eq!(entry["peer_pid"], std::process::id(), "{entry}");
    assert_eq!(entry["peer_uid"], uid, "{entry}");
    assert_eq!(entry["id"], 0, "{entry}");
}
