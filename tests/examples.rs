//! The example bots of `examples/` (docs/writing-a-bot.md as programs) run
//! under a real `mewld --daemon`, on a real redis-server, with the fake
//! Discord: three clusters each, which must launch in turn, answer the
//! health pings on their own channels (`cluster_channels: true`; the
//! engine reads the answers: every shard's health is in the metrics), hear `all_clusters_launched`, and stop on shutdown with
//! exit 0, not SIGKILL. They find Redis through `MEWLD_REDIS_URL` alone,
//! with a password in it that the manager's output never shows.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{json, Value};

/// Redis's password for the manager and the bots (an ACL user's).
const PASSWORD: &str = "Pw-only-in-the-url-7Qe";
/// At 2 shards per cluster: [0, 1] [2, 3] [4].
const SHARDS: u32 = 5;
const CLUSTERS: u64 = 3;

#[test]
fn the_python_example_runs_under_mewld() {
    let python = python_with_redis();
    let dir = repo().join("examples/python-bot");
    run_example(
        "example_python",
        &format!("interp: {python}\nmodule: bot.py"),
        &dir,
    );
}

#[test]
fn the_rust_example_runs_under_mewld() {
    let program = rust_example();
    let dir = repo().join("examples/rust-bot");
    run_example(
        "example_rust",
        &format!("module: {}", program.display()),
        &dir,
    );
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `python3` (as mewld finds it, on PATH), which must have redis-py.
fn python_with_redis() -> &'static str {
    let check = Command::new("python3")
        .args(["-c", "import redis.asyncio"])
        .output();
    let why = match check {
        Ok(out) if out.status.success() => return "python3",
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
        Err(e) => format!("cannot run python3: {e}"),
    };
    panic!(
        "the Python example needs python3 with redis-py 4.2 or later ({why}). \
         tests/run.sh installs it; by hand: `apt-get install python3-redis` for \
         Debian's python3, otherwise `python3 -m pip install -r examples/python-bot/requirements.txt`"
    );
}

/// The Rust example's program. `cargo test` builds every example, but
/// `cargo test --test examples` does not: build it (a no-op when it is
/// current) beside the mewld under test.
fn rust_example() -> PathBuf {
    let bin_dir = Path::new(MEWLD).parent().expect("mewld's directory");
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--quiet", "--example", "rust-bot"]);
    // What cargo set for this test's own run (CARGO_MANIFEST_DIR, …) would
    // look like a changed environment to build scripts that watch it, and
    // rebuild half the dependencies, twice.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let set_for_crates = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|prefix| key.starts_with(prefix))
            || [
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&key.as_ref());
        if set_for_crates {
            cargo.env_remove(key.as_ref());
        }
    }
    if bin_dir.ends_with("release") {
        cargo.arg("--release");
    }
    let status = cargo
        .current_dir(repo())
        .status()
        .expect("run cargo build --example rust-bot");
    assert!(status.success(), "cargo build --example rust-bot failed");
    bin_dir.join("examples/rust-bot")
}

/// Runs the bot (`program`: the config's `interp`/`module` lines) from
/// `dir` as three clusters under `mewld --daemon`, and checks its life.
fn run_example(test: &str, program: &str, dir: &Path) {
    let f = Fixture::new(test, vec![Answer::gateway(SHARDS, 900, 0)]);
    let password = format!(">{PASSWORD}");
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "bot",
            "on",
            password.as_str(),
            "~*",
            "&*",
            "+@all",
        ])
        .query(&mut f.redis.conn())
        .expect("ACL SETUSER");
    let metrics = free_port();
    let config = format!(
        "token: {TOKEN}\noverride_dir: {dir}\n{program}\nredis: redis://bot:{PASSWORD}@127.0.0.1:{port}/0\nredis_channel: {ch}\nper_cluster: 2\nproxy: {proxy}\ncluster_start_next_delay: 0\nping_interval: 1\nping_timeout: 30\nmetrics_addr: 127.0.0.1:{metrics}\ncluster_channels: true\n",
        dir = dir.display(),
        port = f.redis.port,
        ch = f.ch,
        proxy = f.discord.url,
    );
    // The bots speak on the launcher's channel (mewld gives it), and with
    // `cluster_channels` hear their pings on their own: the health in the
    // metrics shows they do.
    let launcher = f.redis.listen(&format!("{}:launcher", f.ch));
    // No FAKEBOT_REDIS: the bots know Redis from MEWLD_REDIS_URL only.
    let mut manager = Manager::start_with(&config, &["--daemon"], None, &f.bot, &[]);
    manager.wait_launched(&f.listener);
    launched_in_turn(&f, &launcher);
    every_shard_reports(metrics, SHARDS, 2);
    for id in 0..CLUSTERS {
        printed(&manager, id, "every cluster is up");
    }

    let pids: Vec<u32> = events(&f.redis.action_log(&f.ch), "cluster_started")
        .iter()
        .filter_map(|e| e["pid"].as_u64().map(|p| p as u32))
        .collect();
    let bye = ask(&f.redis, &f.listener, &f.ch, "shutdown", json!({}));
    assert_eq!(bye["output"], "ok", "{bye}");
    assert_eq!(manager.wait_exit(), Some(0), "{:?}", manager.stderr());
    assert_all_dead(&pids);
    let log = f.redis.action_log(&f.ch);
    for id in 0..CLUSTERS {
        let stopped = events(&log, "cluster_stopped")
            .into_iter()
            .find(|e| e["id"] == id)
            .unwrap_or_else(|| panic!("cluster {id} was not stopped: {log:?}"));
        // A SIGKILL after the grace period would show as "signal": 9.
        assert_eq!(stopped["code"], 0, "cluster {id} on SIGTERM: {stopped}");
        assert_eq!(stopped.get("signal"), None, "{stopped}");
        printed(&manager, id, "SIGTERM, exiting");
    }
    for trouble in ["cluster_exited", "ping_failure", "launch_timeout"] {
        assert_eq!(events(&log, trouble), Vec::<Value>::new(), "{trouble}");
    }
    let said = [manager.stdout(), manager.stderr()].concat().join("\n");
    assert!(!said.contains(PASSWORD), "the Redis password was printed");
}

/// Each cluster started only once the one before it said `launch_next`.
fn launched_in_turn(f: &Fixture, launcher: &Listener) {
    let said: Vec<u64> = launcher
        .all()
        .iter()
        .filter(|m| m["action"] == "launch_next")
        .filter_map(|m| m["args"]["id"].as_u64())
        .collect();
    assert_eq!(said, (0..CLUSTERS).collect::<Vec<_>>());
    let log = f.redis.action_log(&f.ch);
    let at = |event: &str, id: u64| {
        log.iter()
            .position(|e| e["event"] == event && e["id"] == id)
            .unwrap_or_else(|| panic!("no {event} for cluster {id} in {log:?}"))
    };
    for id in 1..CLUSTERS {
        assert!(
            at("cluster_launched", id - 1) < at("cluster_started", id),
            "{log:?}"
        );
    }
}

/// Waits for cluster `id` to print a line ending with `text`.
fn printed(manager: &Manager, id: u64, text: &str) {
    let prefix = format!("[cluster {id} cluster-{id}] ");
    wait_for(&format!("cluster {id} to say {text:?}"), DEADLINE, || {
        manager
            .stdout()
            .iter()
            .any(|l| l.starts_with(&prefix) && l.ends_with(text))
            .then_some(())
    });
}
