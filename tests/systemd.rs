//! systemd `Type=notify`, with a real `NOTIFY_SOCKET`: a datagram socket the
//! test binds, as systemd does, and a daemon with real clusters.

mod common;

use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::*;
use serde_json::json;

/// Every datagram received, with when it came.
fn receive_all(socket: UnixDatagram) -> Arc<Mutex<Vec<(Instant, String)>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            sink.lock().expect("lock").push((Instant::now(), text));
        }
    });
    got
}

#[test]
fn the_daemon_tells_systemd_ready_status_watchdog_and_stopping() {
    let f = Fixture::new("notify", vec![Answer::gateway(6, 900, 0)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let got = receive_all(UnixDatagram::bind(&path).expect("bind the notify socket"));
    let notify = path.display().to_string();
    // Clusters launch slowly enough that READY=1 can be seen to wait for them.
    let env = [
        ("NOTIFY_SOCKET", notify.as_str()),
        ("WATCHDOG_USEC", "1000000"),
        ("FAKEBOT_LAUNCH_DELAY_MS", "500"),
    ];
    let mut daemon =
        Manager::start_with(&f.config(""), &["--daemon"], Some(&f.redis), &f.bot, &env);
    let messages = || got.lock().expect("lock").clone();
    let ready_at = wait_for("READY=1", DEADLINE, || {
        messages()
            .into_iter()
            .find(|(_, m)| m.lines().any(|l| l == "READY=1"))
    });
    assert!(
        ready_at.1.contains("STATUS=3/3 clusters running, fully up"),
        "{ready_at:?}"
    );
    let log = f.redis.action_log(&f.ch);
    assert_eq!(
        events(&log, "all_clusters_launched").len(),
        1,
        "READY=1 only once all launched: {log:?}"
    );
    // While launching, the status said so.
    assert!(
        messages()
            .iter()
            .any(|(_, m)| m.contains("STATUS=launching")),
        "{:?}",
        messages()
    );
    // The watchdog is fed, about every half second.
    wait_for("three watchdog pings", DEADLINE, || {
        (messages()
            .iter()
            .filter(|(_, m)| m.contains("WATCHDOG=1"))
            .count()
            >= 3)
            .then_some(())
    });
    f.redis
        .publish(&f.ch, &json!({"scope": "launcher", "action": "shutdown"}));
    wait_for("STOPPING=1", DEADLINE, || {
        messages()
            .iter()
            .any(|(_, m)| m.lines().any(|l| l == "STOPPING=1"))
            .then_some(())
    });
    assert_eq!(daemon.wait_exit(), Some(0));
    // Nothing was sent twice that should be said once.
    let count = |what: &str| {
        messages()
            .iter()
            .filter(|(_, m)| m.lines().any(|l| l == what))
            .count()
    };
    assert_eq!((count("READY=1"), count("STOPPING=1")), (1, 1));
}

#[test]
fn clusters_do_not_inherit_the_notify_socket() {
    let f = Fixture::new("notifyenv", vec![Answer::gateway(2, 900, 0)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let _socket = UnixDatagram::bind(&path).expect("bind");
    let notify = path.display().to_string();
    let env = [
        ("NOTIFY_SOCKET", notify.as_str()),
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
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let got = receive_all(UnixDatagram::bind(&path).expect("bind the notify socket"));
    let notify = path.display().to_string();
    let env = [("NOTIFY_SOCKET", notify.as_str())];
    let mut daemon =
        Manager::start_with(&f.config(""), &["--daemon"], Some(&f.redis), &f.bot, &env);
    daemon.wait_launched(&f.listener);
    let pids = f.bot.pids();
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(), Some(0));
    assert_all_dead(&pids);
    // The datagram was sent before the exit; the reader may not have it yet.
    wait_for("STOPPING=1", DEADLINE, || {
        let messages = got.lock().expect("lock").clone();
        messages
            .iter()
            .any(|(_, m)| m.lines().any(|l| l == "STOPPING=1"))
            .then_some(())
    });
}
