//! Running the `mewld` binary: configs, the manager's process and output,
//! and `check-config`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::{wait_for, BotDir, FakeDiscord, Listener, Redis, DEADLINE};

pub const MEWLD: &str = env!("CARGO_BIN_EXE_mewld");
pub const TOKEN: &str = "test-token-Zm9vYmFy.secret";

/// Config text for a test: `extra` lines are appended as they are.
pub fn config_text(
    redis: &Redis,
    discord: &FakeDiscord,
    bot: &BotDir,
    channel: &str,
    extra: &str,
) -> String {
    format!(
        "token: {TOKEN}\noverride_dir: {dir}\ninterp: /bin/sh\nmodule: bot.sh\nredis: 127.0.0.1:{port}\nredis_channel: {channel}\nper_cluster: 2\nproxy: {proxy}\ncluster_start_next_delay: 0\n{extra}",
        dir = bot.path().display(),
        port = redis.port,
        proxy = discord.url,
    )
}

/// A running `mewld --daemon`, its output collected line by line.
pub struct Manager {
    pub child: Child,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub config_path: PathBuf,
    _config_dir: Option<tempfile::TempDir>,
}

impl Manager {
    /// Starts `mewld --daemon` on `config`. The fake bot learns where Redis
    /// is and where to record from the environment the manager passes on.
    pub fn start(config: &str, redis: &Redis, bot: &BotDir) -> Manager {
        Self::start_with(config, &["--daemon"], Some(redis), bot, &[])
    }

    /// Starts `mewld <args> --config <config>`; without `redis` the fake
    /// bots are told no Redis (they then use the manager's socket).
    pub fn start_with(
        config: &str,
        args: &[&str],
        redis: Option<&Redis>,
        bot: &BotDir,
        env: &[(&str, &str)],
    ) -> Manager {
        Self::start_program(Command::new(MEWLD), config, args, redis, bot, env)
    }

    /// As [`Manager::start_with`], with `cmd` as the program that runs
    /// mewld: see [`mewld_under_sh`].
    pub fn start_program(
        cmd: Command,
        config: &str,
        args: &[&str],
        redis: Option<&Redis>,
        bot: &BotDir,
        env: &[(&str, &str)],
    ) -> Manager {
        let stdio = (Stdio::piped(), Stdio::piped());
        Self::spawn(cmd, config, args, redis, bot, env, stdio)
    }

    /// As `start_with`, with the manager's stdout and stderr given (a file,
    /// one end of a pipe of the test's own); only piped ones are collected.
    pub fn start_with_stdio(
        config: &str,
        args: &[&str],
        redis: Option<&Redis>,
        bot: &BotDir,
        env: &[(&str, &str)],
        stdout: Stdio,
        stderr: Stdio,
    ) -> Manager {
        let cmd = Command::new(MEWLD);
        Self::spawn(cmd, config, args, redis, bot, env, (stdout, stderr))
    }

    fn spawn(
        mut cmd: Command,
        config: &str,
        args: &[&str],
        redis: Option<&Redis>,
        bot: &BotDir,
        env: &[(&str, &str)],
        stdio: (Stdio, Stdio),
    ) -> Manager {
        let config_dir = tempfile::tempdir().expect("tempdir");
        let config_path = config_dir.path().join("config.yaml");
        std::fs::write(&config_path, config).expect("write config");
        cmd.args(args).arg("--config").arg(&config_path);
        let mut manager = Self::spawn_in(cmd, config_dir.path(), redis, bot, env, stdio);
        manager.config_path = config_path;
        manager._config_dir = Some(config_dir);
        manager
    }

    /// Runs `cmd` (the whole command line, config included) in `dir`, as
    /// a user would from there: several managers may share one config.
    pub fn start_in(cmd: Command, dir: &Path, redis: &Redis, bot: &BotDir) -> Manager {
        let stdio = (Stdio::piped(), Stdio::piped());
        Self::spawn_in(cmd, dir, Some(redis), bot, &[], stdio)
    }

    fn spawn_in(
        mut cmd: Command,
        dir: &Path,
        redis: Option<&Redis>,
        bot: &BotDir,
        env: &[(&str, &str)],
        (stdout, stderr): (Stdio, Stdio),
    ) -> Manager {
        cmd.current_dir(dir)
            .env_remove("FAKEBOT_REDIS")
            .env("FAKEBOT_RECORD", bot.records_dir())
            .env_remove("MTOKEN")
            .env_remove("PER_CLUSTER")
            .env_remove("MEWLD_HOST_INDEX")
            .env_remove("MEWLD_HOST_COUNT")
            .env_remove("MEWLD_HOST_NAME")
            .env_remove("MEWLD_METRICS_ADDR")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        if let Some(redis) = redis {
            cmd.env("FAKEBOT_REDIS", redis.url());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start mewld");
        let stdout = child.stdout.take().map(collect).unwrap_or_default();
        let stderr = child.stderr.take().map(collect).unwrap_or_default();
        Manager {
            child,
            stdout,
            stderr,
            config_path: dir.join("config.yaml"),
            _config_dir: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().expect("lock").clone()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().expect("lock").clone()
    }

    /// Waits until every cluster is launched; fails early, with the
    /// manager's log, if the manager exits first.
    pub fn wait_launched(&mut self, listener: &Listener) {
        self.wait_launched_within(listener, DEADLINE);
    }

    pub fn wait_launched_within(&mut self, listener: &Listener, deadline: Duration) {
        wait_for("all_clusters_launched", deadline, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "mewld exited ({status}) before launching:\n{}",
                    self.stderr().join("\n")
                );
            }
            listener
                .all()
                .iter()
                .any(|m| m["action"] == "all_clusters_launched")
                .then_some(())
        });
    }

    /// Waits for the manager to exit and returns its status code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let status = wait_for("mewld to exit", DEADLINE, || {
            self.child.try_wait().expect("try_wait")
        });
        status.code()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig)
            .expect("signal mewld");
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Collects `source`'s lines as they come, on a thread of its own.
pub fn collect(source: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    thread::spawn(move || {
        for line in BufReader::new(source).lines() {
            match line {
                Ok(l) => sink.lock().expect("lock").push(l),
                Err(_) => return,
            }
        }
    });
    lines
}

/// A command that runs the shell `setup` (`ulimit -n 64`, `umask 000`, …)
/// and then execs mewld with the arguments added to it, so the setup
/// applies to mewld alone and the pid is mewld's.
pub fn mewld_under_sh(setup: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("{setup} || exit 99; exec \"$0\" \"$@\""))
        .arg(MEWLD);
    cmd
}

/// The action-log entries a daemon printed on stderr (each is the JSON
/// after the `mewld::actlog` target, past any colour codes).
pub fn stderr_action_log(manager: &Manager) -> Vec<Value> {
    manager
        .stderr()
        .iter()
        .filter_map(|l| {
            let after = &l[l.find("mewld::actlog")?..];
            serde_json::from_str(&after[after.find('{')?..]).ok()
        })
        .collect()
}

/// `mewld check-config` on a small valid config (fixed shard count, a
/// module that exists) with `extra` lines from line 10 on: its exit code
/// and everything it said.
pub fn check_config_with(extra: &str) -> (Option<i32>, String) {
    check_config_args(extra, &[])
}

/// As [`check_config_with`], with more arguments after `check-config`.
pub fn check_config_args(extra: &str, args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("bot")).expect("bot dir");
    std::fs::write(dir.path().join("bot/bot.py"), "").expect("module");
    let base = "token: x\ninterp: sh\nmodule: bot.py\nredis: 127.0.0.1:1\nredis_channel: chan\nuse_current_directory: true\ndir: bot\nfixed_shard_count: 2\nper_cluster: 1\n";
    std::fs::write(dir.path().join("config.yaml"), format!("{base}{extra}")).expect("write");
    let out = Command::new(MEWLD)
        .arg("check-config")
        .args(args)
        .current_dir(dir.path())
        .env_remove("MTOKEN")
        .output()
        .expect("run mewld");
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), said)
}
