//! The control socket before the engine runs: while the daemon asks
//! Discord (with retries) or waits hours for the session budget's reset,
//! `mewld status` says the step at once, operations are refused naming
//! it, `mewld shutdown` and SIGTERM give the start up (exit 0, the socket
//! removed), and `mewld logs -f` waits for the engine, then follows it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Discord asks to be asked again in a minute, each time: start-up stays
/// at "asking Discord" for the whole test.
fn retry_in_a_minute() -> Answer {
    Answer {
        retry_after: Some("60"),
        ..Answer::status(429)
    }
}

/// Two session starts left, the reset in an hour: start-up waits for it.
fn budget_low() -> Answer {
    Answer::gateway(2, 2, 3_600_000)
}

/// A reset soon enough to wait for in a test, late enough that a client
/// started meanwhile sees the wait on a busy machine (ms).
const RESET_SOON: u64 = 30_000;

const BUDGET_WAIT: &str = "waiting for the session budget's reset";

/// `mewld <args> --config <config>`, run to its end: its output and how
/// long it took.
fn mewld(config: &Path, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new(MEWLD)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("MTOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run mewld");
    (out, started.elapsed())
}

/// Runs a command that must exit with `code` within `within`; its stdout
/// and stderr.
fn expect(config: &Path, args: &[&str], code: i32, within: Duration) -> (String, String) {
    let (out, took) = mewld(config, args);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(code),
        "mewld {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(took < within, "mewld {args:?} took {took:?}");
    (stdout, stderr)
}

fn socket_of(daemon: &Manager) -> PathBuf {
    daemon.config_path.with_file_name("mewld.ctl")
}

/// A daemon on `answers` whose start has reached `step` (as `/healthz`
/// says it, without `starting: `), waited for through `mewld status`.
fn daemon_at(test: &str, answers: Vec<Answer>, step: &str) -> (Fixture, Manager) {
    let f = Fixture::new(test, answers);
    let daemon = Manager::start(&f.config(""), &f.redis, &f.bot);
    let want = format!("mewld: the engine is starting: {step} ");
    wait_for_seen(&format!("status to say {step}"), DEADLINE, || {
        let (out, _) = mewld(&daemon.config_path, &["status"]);
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        if said.starts_with(&want) {
            Ok(())
        } else {
            Err((said, String::from_utf8_lossy(&out.stderr).into_owned()))
        }
    });
    (f, daemon)
}

/// The step as `mewld status` says it now (for the wait for Discord's
/// reset, with when it ends).
fn step_said(config: &Path) -> String {
    let (out, _) = mewld(config, &["status"]);
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let step = line
        .strip_prefix("mewld: the engine is starting: ")
        .and_then(|rest| rest.rsplit_once(" (pid "));
    step.map(|(step, _)| step.to_string())
        .unwrap_or_else(|| panic!("not starting: {line}"))
}

/// Unix seconds `secs` from now, as RFC 3339 says them.
fn rfc3339_in(secs: i64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let at = time::OffsetDateTime::from_unix_timestamp(now + secs).expect("a time");
    at.format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
}

/// A daemon waiting for the session budget's reset, which comes in
/// [`RESET_SOON`]; then it starts.
fn waiting_for_the_reset(test: &str) -> (Fixture, Manager) {
    let answers = vec![
        Answer::gateway(2, 2, RESET_SOON),
        Answer::gateway(2, 900, 0),
    ];
    daemon_at(test, answers, BUDGET_WAIT)
}

/// The daemon's log lines that say it stopped during start-up.
fn stopped_lines(daemon: &Manager) -> Vec<String> {
    let lines = daemon.stderr();
    let said = lines
        .iter()
        .filter(|l| l.contains("stopped during start-up"));
    said.cloned().collect()
}

#[test]
fn status_says_the_step_at_once_while_discord_is_retried() {
    let f = Fixture::new("retried", vec![retry_in_a_minute()]);
    let daemon = Manager::start(&f.config(""), &f.redis, &f.bot);
    wait_for("Discord asked", DEADLINE, || {
        (!f.discord.requests().is_empty()).then_some(())
    });
    let config = &daemon.config_path;
    // Not the minute of Discord's retry, nor the hour of the reset, even
    // on a loaded machine.
    let quick = Duration::from_secs(20);
    let (line, _) = expect(config, &["status"], 1, quick);
    let want = format!(
        "mewld: the engine is starting: asking Discord (pid {} · {})\n",
        daemon.pid(),
        config.display()
    );
    assert_eq!(line, want);
    let (json, _) = expect(config, &["status", "--json"], 1, quick);
    let v: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(v["starting"], "asking Discord", "{v}");
    assert_eq!(v["engine"]["pid"], daemon.pid(), "{v}");
    assert_eq!(v.as_object().map(|o| o.len()), Some(2), "{v}");
    assert_eq!(f.discord.requests().len(), 1, "still in Discord's retries");
}

#[test]
fn operations_but_a_stop_are_refused_naming_the_step() {
    let (f, daemon) = daemon_at("refused", vec![budget_low()], BUDGET_WAIT);
    let config = &daemon.config_path;
    // Not the minute of Discord's retry, nor the hour of the reset, even
    // on a loaded machine.
    let quick = Duration::from_secs(20);
    // The wait says when it ends: the reset Discord gave, in an hour.
    let step = step_said(config);
    let until = step
        .strip_prefix(&format!("{BUDGET_WAIT} (until "))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{step}"));
    let (soonest, latest) = (rfc3339_in(3600 - 120), rfc3339_in(3600));
    assert!(
        soonest.as_str() <= until && until <= latest.as_str(),
        "{until} not in [{soonest}, {latest}]"
    );
    for (args, op) in [
        (&["start", "0"][..], "start"),
        (&["stop", "1"][..], "stop"),
        (&["rolling-restart"][..], "rollingrestart"),
    ] {
        let (_, why) = expect(config, args, 1, quick);
        let want = format!("mewld: {op} refused: the engine is starting: {step}\n");
        assert_eq!(why, want, "{args:?}");
    }
    let (_, why) = expect(config, &["logs"], 1, quick);
    assert_eq!(why, format!("mewld: the engine is starting: {step}\n"));
    assert!(f.bot.records().is_empty(), "no cluster started");
}

#[test]
fn shutdown_during_the_budget_wait_stops_the_daemon() {
    let (f, mut daemon) = daemon_at("shutdown", vec![budget_low()], BUDGET_WAIT);
    let socket = socket_of(&daemon);
    assert!(socket.exists());
    let step = step_said(&daemon.config_path);
    let (said, _) = expect(&daemon.config_path, &["shutdown"], 0, DEADLINE);
    assert_eq!(
        said,
        format!(
            "shutdown: accepted; giving up the start ({step})…\nthe engine shut down (shutdown)\n"
        )
    );
    assert_eq!(daemon.wait_exit(), Some(0));
    assert!(!socket.exists(), "the socket file is removed");
    let lines = stopped_lines(&daemon);
    assert_eq!(lines.len(), 1, "{:?}", daemon.stderr());
    assert!(lines[0].contains(&format!("({BUDGET_WAIT})")), "{lines:?}");
    assert!(lines[0].contains("a command (pid "), "{lines:?}");
    assert!(f.bot.records().is_empty(), "no cluster started");
}

#[test]
fn restart_process_during_start_up_exits_1_for_systemd() {
    let f = Fixture::new("restartproc", vec![retry_in_a_minute()]);
    let mut daemon = Manager::start(&f.config(""), &f.redis, &f.bot);
    wait_for("Discord asked", DEADLINE, || {
        (!f.discord.requests().is_empty()).then_some(())
    });
    let (said, _) = expect(&daemon.config_path, &["restart-process"], 0, DEADLINE);
    assert!(
        said.ends_with("the engine exited to be restarted (restartproc)\n"),
        "{said}"
    );
    assert_eq!(daemon.wait_exit(), Some(1));
    assert!(!socket_of(&daemon).exists());
}

#[test]
fn sigterm_during_start_up_exits_0_and_says_so() {
    let (_f, mut daemon) = daemon_at("sigterm", vec![budget_low()], BUDGET_WAIT);
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(), Some(0), "{:?}", daemon.stderr());
    assert!(!socket_of(&daemon).exists(), "the socket file is removed");
    let lines = stopped_lines(&daemon);
    assert_eq!(lines.len(), 1, "{:?}", daemon.stderr());
    assert!(lines[0].contains(&format!("({BUDGET_WAIT})")), "{lines:?}");
    assert!(lines[0].contains("SIGTERM"), "{lines:?}");
}

/// `mewld logs -f` during start-up says the step and waits on the same
/// connection; once the engine runs it follows it.
#[test]
fn logs_follow_waits_for_the_engine_then_follows_it() {
    let (f, mut daemon) = waiting_for_the_reset("follow");
    let mut follow = Command::new(MEWLD)
        .args(["logs", "-f", "--config"])
        .arg(&daemon.config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mewld logs -f");
    let stdout = collect(follow.stdout.take().expect("stdout"));
    let stderr = collect(follow.stderr.take().expect("stderr"));
    let said = |lines: &std::sync::Arc<std::sync::Mutex<Vec<String>>>, what: &str| {
        lines.lock().expect("lock").iter().any(|l| l.contains(what))
    };
    wait_for("logs -f to say the wait", DEADLINE, || {
        said(&stderr, &format!("the engine is starting: {BUDGET_WAIT}")).then_some(())
    });
    daemon.wait_launched(&f.listener);
    wait_for("logs -f to follow the engine", DEADLINE, || {
        said(&stdout, "cluster_launched").then_some(())
    });
    assert_eq!(follow.try_wait().ok().flatten(), None, "still following");
    let _ = follow.kill();
    let _ = follow.wait();
}

/// `mewld attach` during start-up: the header says the step, and the
/// console shows the engine once it runs, on the same connection.
#[test]
fn an_attached_console_shows_the_step_then_the_engine() {
    let (f, mut daemon) = waiting_for_the_reset("attach");
    let dir = tempfile::tempdir().expect("tempdir");
    let args = format!("attach --config '{}'", daemon.config_path.display());
    let (script, _) = tmux::mewld_script(dir.path(), "attach", "", &args);
    let tmux = tmux::Tmux::start("startup-attach", &script, 160, 40);
    let header = format!("ENGINE STARTING: {BUDGET_WAIT}");
    tmux.wait_screen("the step in the header", |s| s.contains(&header));
    daemon.wait_launched(&f.listener);
    tmux.wait_screen("the engine, attached", |s| {
        !s.contains("ENGINE STARTING") && s.contains("attached to") && s.contains("1/1 running")
    });
}
