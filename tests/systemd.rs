//! systemd `Type=notify`, with a real `NOTIFY_SOCKET`: a datagram socket the
//! test binds, as systemd does, and a daemon with real clusters.

mod common;

use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::json;

/// A notify socket as systemd binds one, and every datagram it received.
struct Notify {
    _dir: tempfile::TempDir,
    /// For `NOTIFY_SOCKET`.
    path: String,
    got: Arc<Mutex<Vec<String>>>,
}

impl Notify {
    fn bind() -> Notify {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().expect("lock").push(text);
            }
        });
        let path = path.display().to_string();
        Notify {
            _dir: dir,
            path,
            got,
        }
    }

    fn messages(&self) -> Vec<String> {
        self.got.lock().expect("lock").clone()
    }

    /// Datagrams holding the line `what`.
    fn count(&self, what: &str) -> usize {
        let messages = self.messages();
        messages
            .iter()
            .filter(|m| m.lines().any(|l| l == what))
            .count()
    }

    /// Waits for a datagram holding the line `what`, and returns it.
    fn wait(&self, what: &str) -> String {
        wait_for(what, DEADLINE, || {
            self.messages()
                .into_iter()
                .find(|m| m.lines().any(|l| l == what))
        })
    }
}

#[test]
fn the_daemon_tells_systemd_ready_status_watchdog_and_stopping() {
    let f = Fixture::new("notify", vec![Answer::gateway(6, 900, 0)]);
    let notify = Notify::bind();
    // Clusters launch slowly enough that READY=1 can be seen to wait for them.
    let env = [
        ("NOTIFY_SOCKET", notify.path.as_str()),
        ("WATCHDOG_USEC", "1000000"),
        ("FAKEBOT_LAUNCH_DELAY_MS", "500"),
    ];
    let mut daemon =
        Manager::start_with(&f.config(""), &["--daemon"], Some(&f.redis), &f.bot, &env);
    let ready = notify.wait("READY=1");
    assert!(
        ready.contains("STATUS=3/3 clusters running, fully up"),
        "{ready:?}"
    );
    let log = f.redis.action_log(&f.ch);
    assert_eq!(
        events(&log, "all_clusters_launched").len(),
        1,
        "READY=1 only once all launched: {log:?}"
    );
    // While launching, the status said so.
    assert!(
        notify
            .messages()
            .iter()
            .any(|m| m.contains("STATUS=launching")),
        "{:?}",
        notify.messages()
    );
    // The watchdog is fed, about every half second.
    wait_for("three watchdog pings", DEADLINE, || {
        (notify.count("WATCHDOG=1") >= 3).then_some(())
    });
    f.redis
        .publish(&f.ch, &json!({"scope": "launcher", "action": "shutdown"}));
    notify.wait("STOPPING=1");
    assert_eq!(daemon.wait_exit(), Some(0));
    // Nothing was sent twice that should be said once.
    assert_eq!(
        (notify.count("READY=1"), notify.count("STOPPING=1")),
        (1, 1)
    );
}

#[test]
fn clusters_do_not_inherit_the_notify_socket() {
    let f = Fixture::new("notifyenv", vec![Answer::gateway(2, 900, 0)]);
    let notify = Notify::bind();
    let env = [
        ("NOTIFY_SOCKET", notify.path.as_str()),
        ("WATCHDOG_USEC", "1000000"),
    ];
    let mut daemon =
        Manager::start_with(&f.config(""), &["--daemon"], Some(&f.redis), &f.bot, &env);
    daemon.wait_launched(&f.listener);
    let pid = f.bot.pids()[0];
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("the cluster's environment");
    let environ = String::from_utf8_lossy(&environ);
    for var in ["NOTIFY_SOCKET=", "WATCHDOG_USEC="] {
        assert!(!environ.contains(var), "the cluster inherited {var}");
    }
}

/// systemd stops a service with SIGTERM: mewld says STOPPING=1, stops its
/// clusters and exits 0.
#[test]
fn sigterm_says_stopping_before_the_clusters_are_stopped() {
    let f = Fixture::new("notifyterm", vec![Answer::gateway(4, 900, 0)]);
    let notify = Notify::bind();
    let env = [("NOTIFY_SOCKET", notify.path.as_str())];
    let mut daemon =
        Manager::start_with(&f.config(""), &["--daemon"], Some(&f.redis), &f.bot, &env);
    daemon.wait_launched(&f.listener);
    let pids = f.bot.pids();
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(), Some(0));
    assert_all_dead(&pids);
    // The datagram was sent before the exit; the reader may not have it yet.
    notify.wait("STOPPING=1");
}

/// A `NOTIFY_SOCKET` nobody reads: its queue fills with watchdog pings and
/// statuses. The daemon never waits on it: it says once that it drops
/// notifications, and after a shutdown it exits 0 within
/// `stop_grace_period` + 5 s.
#[test]
fn a_notify_socket_nobody_reads_never_holds_the_daemon_up() {
    let f = Fixture::new("notifyfull", vec![Answer::gateway(4, 900, 0)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let _unread = UnixDatagram::bind(&path).expect("bind the notify socket");
    let grace = 2;
    // A watchdog ping every 10 ms.
    let env = [
        ("NOTIFY_SOCKET", path.to_str().expect("a UTF-8 path")),
        ("WATCHDOG_USEC", "20000"),
    ];
    let config = f.config(&format!("stop_grace_period: {grace}\n"));
    let mut daemon = Manager::start_with(&config, &["--daemon"], Some(&f.redis), &f.bot, &env);
    daemon.wait_launched(&f.listener);
    // Full: a datagram of the test's own no longer fits.
    let probe = UnixDatagram::unbound().expect("a socket");
    probe.set_nonblocking(true).expect("non-blocking");
    wait_for_seen(
        "the notify socket's queue to be full",
        DEADLINE,
        || match probe.send_to(b"X=1\n", &path) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            other => Err(other),
        },
    );
    let dropping = |d: &Manager| {
        d.stderr()
            .into_iter()
            .filter(|l| l.contains("dropping notifications"))
            .collect::<Vec<_>>()
    };

    let asked = std::time::Instant::now();
    f.redis
        .publish(&f.ch, &json!({"scope": "launcher", "action": "shutdown"}));
    let bound = std::time::Duration::from_secs(grace + 5);
    let status = wait_for_seen("the daemon to exit", bound, || {
        daemon
            .child
            .try_wait()
            .expect("try_wait")
            .ok_or(asked.elapsed())
    });
    assert_eq!(status.code(), Some(0), "after {:?}", asked.elapsed());
    // It tried at least STOPPING=1 on the full socket.
    let said = dropping(&daemon);
    assert_eq!(said.len(), 1, "said once: {said:?}");
}

/// Where the docs install the binary, and so where the shipped units run it.
const INSTALLED: &str = "/usr/local/bin/mewld";

/// The shipped units run mewld from where the README and operations.md
/// install it, and pass `systemd-analyze verify` once it is there (here:
/// with the path pointed at the binary under test, as an operator who
/// installed it elsewhere would edit `ExecStart=`).
#[test]
fn the_shipped_units_run_mewld_from_where_the_docs_install_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for doc in ["README.md", "docs/operations.md"] {
        let text = std::fs::read_to_string(root.join(doc)).expect("the doc");
        let install = format!("sudo install -m 0755 target/release/mewld {INSTALLED}");
        assert!(text.contains(&install), "{doc} installs to {INSTALLED}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // A template is verified as an instance of it.
    for (unit, verified) in [
        ("mewld.service", "mewld.service"),
        ("mewld@.service", "mewld@0.service"),
    ] {
        let text = std::fs::read_to_string(root.join("contrib").join(unit)).expect("the unit");
        let exec: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("ExecStart="))
            .collect();
        assert_eq!(exec.len(), 1, "{unit}: {exec:?}");
        assert!(
            exec[0].starts_with(&format!("{INSTALLED} --daemon ")),
            "{unit}: {exec:?}"
        );
        std::fs::write(dir.path().join(verified), text.replace(INSTALLED, MEWLD)).expect("copy");
    }
    let verify = |unit: &str| {
        std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(dir.path().join(unit))
            .output()
    };
    for unit in ["mewld.service", "mewld@0.service"] {
        let out = verify(unit).unwrap_or_else(|e| {
            panic!("cannot run systemd-analyze ({e}): install it (Debian: apt-get install systemd; tests/run.sh does)")
        });
        let said = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{unit}: {said}"
        );
    }
}
