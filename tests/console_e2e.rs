//! The real console in a real terminal: `mewld` runs inside tmux against a
//! real redis-server and fake-bot clusters; the test types keys and reads
//! the screen and the processes, as an operator would.

mod common;

use std::path::{Path, PathBuf};

use common::tmux::{mewld_script, Tmux};
use common::*;

/// A script that runs the console with the fake bots' settings and records
/// its exit status (tmux does not keep it).
fn console_script(dir: &Path, config: &str, redis: &Redis, bot: &BotDir) -> (PathBuf, PathBuf) {
    let config_path = dir.join("config.yaml");
    std::fs::write(&config_path, config).expect("write config");
    let setup = format!(
        "export FAKEBOT_REDIS='{}' FAKEBOT_RECORD='{}'\nunset MTOKEN PER_CLUSTER",
        redis.url(),
        bot.records_dir().display(),
    );
    let log = dir.join("mewld.log");
    let args = format!(
        "--config '{}' --log-file '{}'",
        config_path.display(),
        log.display()
    );
    mewld_script(dir, "run", &setup, &args)
}

/// The RST cell of the table's row for the cluster named `name`.
fn restarts_shown(screen: &str, name: &str) -> Option<u32> {
    let row = screen.lines().find(|l| l.contains(&format!(" {name} ")))?;
    // ID NAME SHARDS STATE PID UPTIME RST …
    row.split(['│', '┃'])
        .nth(1)?
        .split_whitespace()
        .nth(6)?
        .parse()
        .ok()
}

fn pid_of(bot: &BotDir, cluster: u64, nth: usize) -> u32 {
    bot.records()
        .iter()
        .filter(|r| r["cluster_id"] == cluster)
        .nth(nth)
        .and_then(|r| r["pid"].as_u64())
        .expect("a recorded pid") as u32
}

#[test]
fn operator_stops_starts_rolls_and_quits_from_the_console() {
    let f = Fixture::new("console", vec![Answer::gateway(6, 900, 0)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = f.config("names: [Pika, Eevee, Bulbasaur]\nstop_grace_period: 2\n");
    let (script, status) = console_script(dir.path(), &config, &f.redis, &f.bot);
    let tmux = Tmux::start("ops", &script, 120, 40);

    tmux.wait_screen("the console fully up", |s| {
        s.contains("fully up") && s.contains("3/3 running")
    });
    // The console serves its engine on the control socket beside the
    // config, for `mewld attach`.
    let ctl = std::os::unix::net::UnixStream::connect(dir.path().join("mewld.ctl"))
        .expect("the console's control socket");
    let mut hello = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(ctl), &mut hello).expect("hello");
    let hello: serde_json::Value = serde_json::from_str(&hello).expect("json");
    assert_eq!(hello["embedded"], true, "{hello}");
    assert!(
        !dir.path()
            .join("mewld.log")
            .metadata()
            .map(|m| m.len() == 0)
            .unwrap_or(true),
        "logs go to the file"
    );

    // Stop cluster 1, after a confirmation that names it.
    tmux.keys(&["j", "x"]);
    tmux.wait_screen("the stop dialog", |s| s.contains("Stop cluster 1 (Eevee)?"));
    let first = pid_of(&f.bot, 1, 0);
    tmux.keys(&["y"]);
    wait_for("cluster 1's process to end", DEADLINE, || {
        (!alive(first)).then_some(())
    });
    tmux.wait_screen("cluster 1 shown stopped", |s| {
        s.lines()
            .any(|l| l.contains("Eevee") && l.contains("stopped"))
    });

    // Start it again: no dialog, a new process.
    tmux.keys(&["s"]);
    wait_for("a second cluster 1 process", DEADLINE, || {
        (f.bot.starts_of(1) == 2).then_some(())
    });
    tmux.wait_screen("cluster 1 running again", |s| s.contains("3/3 running"));

    // Rolling restart, confirmed; every cluster gets a new process.
    tmux.keys(&["R"]);
    tmux.wait_screen("the rolling restart dialog", |s| {
        s.contains("Rolling restart")
    });
    tmux.keys(&["y"]);
    wait_for("the rolling restart to finish", DEADLINE, || {
        (!events(&f.redis.action_log(&f.ch), "rolling_restart_done").is_empty()).then_some(())
    });
    let log = f.redis.action_log(&f.ch);
    assert!(events(&log, "operator_action")
        .iter()
        .any(|e| e["action"] == "rollingrestart" && e["via"] == "console"));
    assert_eq!(f.bot.records().len(), 3 + 1 + 3);
    // Every restart counts, whatever its reason (the start after the stop
    // is no restart).
    tmux.wait_screen("one restart each after the roll", |s| {
        ["Pika", "Eevee", "Bulbasaur"]
            .iter()
            .all(|name| restarts_shown(s, name) == Some(1))
    });

    // A refused action says why in the message line, and nothing crashes.
    tmux.keys(&["s"]);
    tmux.wait_screen("the refusal", |s| {
        s.contains("refused") && s.contains("already running")
    });

    // An operator's restart counts too, and the detail says by what.
    tmux.keys(&["r"]);
    tmux.wait_screen("the restart dialog", |s| {
        s.contains("Restart cluster 1 (Eevee)?")
    });
    tmux.keys(&["y"]);
    tmux.wait_screen("two restarts for cluster 1", |s| {
        restarts_shown(s, "Eevee") == Some(2) && s.contains("3/3 running")
    });
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the restarts by reason in the detail", |s| {
        s.contains("restarts 2: operator 1, rolling_restart 1")
    });
    tmux.keys(&["Escape"]);

    // Help lists the keys; Ctrl-C there asks to quit in its place, and no
    // goes back to the console.
    tmux.keys(&["?"]);
    tmux.wait_screen("the help", |s| {
        s.contains("rolling restart of every cluster")
    });
    tmux.keys(&["C-c"]);
    tmux.wait_screen("the quit dialog instead of the help", |s| {
        s.contains("Quitting stops every cluster") && !s.contains("rolling restart of every")
    });
    tmux.keys(&["n"]);
    tmux.wait_screen("the dialog gone", |s| {
        !s.contains("Quitting stops every cluster") && s.contains("cancelled")
    });

    // Quit: asks, then stops every cluster and exits 0.
    let pids = f.bot.pids();
    tmux.keys(&["q"]);
    tmux.wait_screen("the quit dialog", |s| {
        s.contains("Quitting stops every cluster")
    });
    tmux.keys(&["y"]);
    assert_eq!(tmux.wait_exit_status(&status), "0");
    assert_all_dead(&pids);
}

/// A script in `dir` that runs `mewld demo <args>` as a new user would, with
/// no token and no Redis settings (the demo brings its own of everything),
/// and writes its exit status; returns the script and the status file.
/// `env` is exported first (`NAME='value' ...`, or empty).
fn demo_script(dir: &Path, env: &str, args: &str) -> (PathBuf, PathBuf) {
    let setup = format!("unset MTOKEN FAKEBOT_REDIS\nexport TERM=xterm-256color {env}");
    mewld_script(dir, "demo", &setup, &format!("demo {args}"))
}

#[test]
fn the_demo_runs_with_nothing_installed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (script, status) = demo_script(dir.path(), "", "");
    let tmux = Tmux::start("demo", &script, 80, 24);
    let screen = tmux.wait_screen("every demo cluster up with health", |s| {
        s.contains("6/6 run") && s.contains("fully up") && s.contains("4/4")
    });
    assert!(screen.contains("Pika"), "{screen}");
    tmux.keys(&["q", "y"]);
    assert_eq!(tmux.wait_exit_status(&status), "0");
}

#[test]
fn a_log_file_that_cannot_be_opened_is_said_once_in_the_message_line() {
    unwritable_log_file(
        "nolog",
        "/proc/nonexistent/mewld.log",
        "unwritable: No such file or directory (os error 2); logging off",
    );
}

#[test]
fn a_log_file_on_a_full_disk_is_said_once_in_the_message_line() {
    unwritable_log_file(
        "fulllog",
        "/dev/full",
        "unwritable: No space left on device (os error 28); log lines are dropped",
    );
}

/// Runs the demo with `--log-file log_file` and checks the console says
/// `says` about it once and runs on.
fn unwritable_log_file(name: &str, log_file: &str, says: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    // The demo's clusters, without the demo's slow identify.
    let env = "FAKEBOT_LAUNCH_DELAY_MS=100";
    let (script, status) = demo_script(dir.path(), env, &format!("--log-file '{log_file}'"));
    let tmux = Tmux::start(name, &script, 140, 30);
    let first = tmux.wait_screen("the log file problem in the message line", |s| {
        s.contains(&format!("log file {log_file} {says}"))
    });
    // The clusters run regardless, and nothing else reached the screen.
    let running = tmux.wait_screen("the demo clusters running", |s| s.contains("6/6 run"));
    for screen in [first, running] {
        assert!(!screen.contains("tracing"), "{screen}");
        assert!(!screen.contains("Unable to write"), "{screen}");
    }
    // Said once: it goes after its time (said again, it would stay).
    tmux.wait_screen("the message to go", |s| !s.contains("unwritable"));
    tmux.keys(&["q", "y"]);
    assert_eq!(tmux.wait_exit_status(&status), "0", "{name}");
}
