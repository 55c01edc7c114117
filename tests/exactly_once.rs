//! One process per cluster, whatever the operator does: managers on one
//! channel meet in Redis, where each claims its clusters before it starts
//! any (docs/protocol.md §10), and a socket nobody could reach is refused.

mod common;

use common::*;

/// The same config copied into two directories (two control sockets): the
/// second manager refuses to start, naming the first; each cluster runs in
/// one process.
#[test]
fn a_second_lone_manager_on_the_channel_refuses_to_start() {
    let (f, first) = launched("once-two-managers", 4, "", &[]);
    // `Manager` writes each config into a directory of its own.
    let mut second = Manager::start(&f.config(""), &f.redis, &f.bot);
    assert_eq!(
        second.wait_exit(),
        Some(2),
        "{}",
        second.stderr().join("\n")
    );
    let said = second.stderr().join("\n");
    assert!(
        said.contains("clusters 0-1 are already run by host")
            && said.contains(&format!("(pid {})", first.pid())),
        "the refusal names the clusters, the holder and its pid: {said}"
    );
    for id in 0..2 {
        assert_eq!(
            f.bot.starts_of(id),
            1,
            "cluster {id} started once: {:?}",
            f.bot.records()
        );
    }
    let alive: Vec<u32> = f.bot.pids().into_iter().filter(|&p| alive(p)).collect();
    assert_eq!(alive.len(), 2, "one live process per cluster: {alive:?}");
}

/// Once the first manager has gone, its claim goes with it: the next one
/// starts at once.
#[test]
fn a_manager_that_left_releases_its_claim() {
    let (f, mut first) = launched("once-released", 2, "", &[]);
    first.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(first.wait_exit(), Some(0));
    let mut next = Manager::start(&f.config(""), &f.redis, &f.bot);
    wait_for("the next manager to launch its cluster", DEADLINE, || {
        if let Ok(Some(status)) = next.child.try_wait() {
            panic!("exited ({status}):\n{}", next.stderr().join("\n"));
        }
        (f.bot.starts_of(0) == 2).then_some(())
    });
}

/// A control socket path the OS cannot connect to (over 107 bytes) is
/// refused at start, naming the setting, before anything runs.
#[test]
fn a_socket_path_nobody_could_reach_is_refused() {
    let f = Fixture::new("once-long-socket", vec![Answer::gateway(2, 900, 0)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().display().to_string();
    // 120 bytes in all.
    let name = "s".repeat(120 - base.len() - 1);
    let path = format!("{base}/{name}");
    assert_eq!(path.len(), 120);
    let mut manager = Manager::start(
        &f.config(&format!("control_socket: {path}\n")),
        &f.redis,
        &f.bot,
    );
    assert_eq!(manager.wait_exit(), Some(2));
    let said = manager.stderr().join("\n");
    assert!(
        said.contains("120 bytes") && said.contains("control_socket"),
        "the refusal says why and names the setting: {said}"
    );
    assert!(f.bot.records().is_empty(), "nothing started");
    let (code, out) = check_config_with(&format!("control_socket: {path}\n"));
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("120 bytes"), "check-config says it too: {out}");
}
