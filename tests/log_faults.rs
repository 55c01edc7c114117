//! The daemon's own output never stops the engine: its stderr on a full
//! disk (/dev/full), on a pipe whose reader is gone, and its stdout and
//! stderr on pipes nobody reads, while real clusters chatter. Each time the
//! daemon keeps answering over Redis, its clusters keep running, and
//! `shutdown` still exits 0. Lines written to something other than a
//! terminal carry no colour codes.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::process::Stdio;

use common::*;
use serde_json::{json, Value};

/// A stream whose every write fails with ENOSPC.
fn dev_full() -> Stdio {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    Stdio::from(file)
}

/// A pipe of the test's own: (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe().expect("pipe")
}

/// Starts `mewld --daemon` on the fixture with the given stdout and stderr
/// and waits until every cluster is up.
fn daemon(f: &Fixture, extra: &str, stdout: Stdio, stderr: Stdio) -> Manager {
    let mut manager = Manager::start_with_stdio(
        &f.config(extra),
        &["--daemon"],
        Some(&f.redis),
        &f.bot,
        &[],
        stdout,
        stderr,
    );
    manager.wait_launched(&f.listener);
    manager
}

/// `statuses` answers, with every one of the fixture's 3 clusters running.
fn assert_all_running(f: &Fixture) -> Value {
    let st = ask(&f.redis, &f.listener, &f.ch, "statuses", json!({}));
    for id in ["0", "1", "2"] {
        assert_eq!(st["output"][id]["status"], "running", "{st}");
    }
    st
}

/// `shutdown` over Redis: exit status 0 and no cluster left.
fn assert_clean_shutdown(f: &Fixture, manager: &mut Manager) {
    let pids = f.bot.pids();
    pids.iter()
        .for_each(|p| assert!(alive(*p), "cluster {p} still running"));
    let reply = ask(&f.redis, &f.listener, &f.ch, "shutdown", json!({}));
    assert_eq!(reply["output"], "ok");
    assert_eq!(manager.wait_exit(), Some(0), "after shutdown");
    assert_all_dead(&pids);
}

#[test]
fn stderr_on_a_full_disk_loses_log_lines_not_the_engine() {
    let f = Fixture::new("stderr_full", vec![Answer::gateway(5, 900, 0)]);
    let mut manager = daemon(&f, "", Stdio::piped(), dev_full());
    assert_all_running(&f);
    // Cluster output still reaches stdout.
    wait_for("cluster output on stdout", DEADLINE, || {
        manager
            .stdout()
            .iter()
            .any(|l| l.starts_with("[cluster 2 cluster-2] fake bot:"))
            .then_some(())
    });
    assert_clean_shutdown(&f, &mut manager);
}

#[test]
fn stdout_and_stderr_on_pipes_whose_reader_is_gone() {
    let f = Fixture::new("closed_pipes", vec![Answer::gateway(5, 900, 0)]);
    let (out_read, out_write) = pipe();
    let (err_read, err_write) = pipe();
    drop((out_read, err_read));
    let mut manager = daemon(&f, "", Stdio::from(out_write), Stdio::from(err_write));
    assert_all_running(&f);
    assert_clean_shutdown(&f, &mut manager);
}

#[test]
fn stdout_and_stderr_nobody_reads_do_not_freeze_the_engine() {
    let f = Fixture::new("stuck_pipes", vec![Answer::gateway(5, 900, 0)]);
    chatty_bot(&f.bot, false);
    let (out_read, out_write) = pipe();
    let (err_read, err_write) = pipe();
    // Fill stderr's pipe up front, so that the log is stuck from the start
    // too (its own lines would take long to fill 64 KiB). The writing
    // thread ends when the test reads the pipe, or drops it.
    let mut filler = File::from(err_write.try_clone().expect("dup"));
    std::thread::spawn(move || {
        let _ = filler.write_all(&b"filler\n".repeat(64 * 1024 / 7 + 1));
    });
    let extra = "module: chatty.sh\n";
    let config = f.config("").replace("module: bot.sh\n", extra);
    let mut manager = Manager::start_with_stdio(
        &config,
        &["--daemon"],
        Some(&f.redis),
        &f.bot,
        &[],
        Stdio::from(out_write),
        Stdio::from(err_write),
    );
    manager.wait_launched(&f.listener);

    // The clusters' output is read (their chatter ends), and requests are
    // answered all along, while nothing reads the daemon's output.
    wait_for("every cluster's chatter to be read", DEADLINE, || {
        assert_all_running(&f);
        (chatter_done(&f.bot) == 3).then_some(())
    });
    assert_all_running(&f);

    // Once the readers come back, the daemon says what it dropped.
    let stdout = collect(File::from(out_read));
    let stderr = collect(File::from(err_read));
    let report = wait_for("the report of dropped output", DEADLINE, || {
        stderr
            .lock()
            .expect("lock")
            .iter()
            .find(|l| l.contains("dropped cluster output lines on stdout: too slow"))
            .cloned()
    });
    assert!(report.contains("lines="), "{report}");
    wait_for("cluster output on stdout", DEADLINE, || {
        stdout
            .lock()
            .expect("lock")
            .iter()
            .any(|l| l.starts_with("[cluster "))
            .then_some(())
    });
    assert_clean_shutdown(&f, &mut manager);
}

#[test]
fn no_colour_codes_in_logs_that_are_not_on_a_terminal() {
    // An empty NO_COLOR does not ask for no colour: only the stream decides.
    let (f, mut manager) = launched("no_ansi", 5, "", &[("NO_COLOR", "")]);
    assert_all_running(&f);
    assert_clean_shutdown(&f, &mut manager);
    let stderr = manager.stderr().join("\n");
    assert!(
        stderr.contains("every cluster has stopped"),
        "the log was captured: {stderr}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "escape codes in the log: {stderr}"
    );
    let stdout = manager.stdout().join("\n");
    assert!(
        !stdout.contains('\x1b'),
        "escape codes in the output: {stdout}"
    );
}
