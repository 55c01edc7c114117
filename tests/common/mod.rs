//! Test harness: a real `redis-server` on a free loopback port, a local fake
//! of Discord's Get Gateway Bot, the real `mewld` binary, and the repo's fake
//! bot as clusters. Nothing here reaches the internet.

#![allow(dead_code)] // Each test file uses its own part of the harness.

pub mod tmux;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const MEWLD: &str = env!("CARGO_BIN_EXE_mewld");
pub const TOKEN: &str = "test-token-Zm9vYmFy.secret";
/// Generous: CI machines are small and busy.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Polls `check` until it returns `Some`, or panics with `what` after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    wait_until(what, deadline, || check().ok_or(NotYet))
}

#[derive(Debug)]
pub struct NotYet;

/// Polls `check` until it returns `Ok`, or panics after `deadline` with
/// `what` and the last `Err`: what it saw instead.
pub fn wait_until<T, S: std::fmt::Debug>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Result<T, S>,
) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(seen) if start.elapsed() > deadline => {
                panic!("timed out after {deadline:?} waiting for: {what}; last saw: {seen:?}")
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// A private `redis-server`, killed on drop.
pub struct Redis {
    pub port: u16,
    child: Child,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Redis {
        Self::start_with_args(port, &[])
    }

    /// A redis-server that also speaks TLS, with a self-signed certificate
    /// made in `dir` (`cert.pem`, to trust with `SSL_CERT_FILE`); returns it
    /// and its TLS port (the plain one stays, for the test's own looks).
    pub fn start_tls(dir: &Path) -> (Redis, u16) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run openssl ({e}): `apt-get install openssl`"));
        assert!(made.success(), "openssl could not make a certificate");
        let tls_port = free_port();
        let path = |p: &Path| p.display().to_string();
        let extra = [
            "--tls-port".to_string(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            path(&cert),
            "--tls-key-file".into(),
            path(&key),
            "--tls-ca-cert-file".into(),
            path(&cert),
            "--tls-auth-clients".into(),
            "no".into(),
        ];
        (Self::start_with_args(free_port(), &extra), tls_port)
    }

    fn start_with_args(port: u16, extra: &[String]) -> Redis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}). These tests need a real Redis: install it with \
                     `apt-get install redis-server` (Debian/Ubuntu) or `brew install redis` (macOS)"
                )
            });
        let redis = Redis { port, child };
        wait_for("redis-server to answer PING", DEADLINE, || {
            let mut conn = redis.try_conn()?;
            redis::cmd("PING").query::<String>(&mut conn).ok()
        });
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn try_conn(&self) -> Option<redis::Connection> {
        redis::Client::open(self.url()).ok()?.get_connection().ok()
    }

    pub fn conn(&self) -> redis::Connection {
        wait_for("a Redis connection", DEADLINE, || self.try_conn())
    }

    pub fn publish(&self, channel: &str, msg: &Value) {
        self.publish_raw(channel, msg.to_string().as_bytes());
    }

    pub fn publish_raw(&self, channel: &str, payload: &[u8]) {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query(&mut self.conn())
            .expect("publish");
    }

    /// The action log, parsed.
    pub fn action_log(&self, channel: &str) -> Vec<Value> {
        let raw: Vec<String> = redis::cmd("LRANGE")
            .arg(format!("{channel}/actlogs"))
            .arg(0)
            .arg(-1)
            .query(&mut self.conn())
            .expect("lrange");
        raw.iter()
            .map(|s| serde_json::from_str(s).expect("action log entries are JSON"))
            .collect()
    }

    /// Starts collecting every message published on `channel`.
    pub fn listen(&self, channel: &str) -> Listener {
        let messages = Arc::new(Mutex::new(Vec::new()));
        let client = redis::Client::open(self.url()).expect("client");
        let mut conn = client.get_connection().expect("connection");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sink = messages.clone();
        let channel = channel.to_string();
        thread::spawn(move || {
            let mut pubsub = conn.as_pubsub();
            pubsub.subscribe(&channel).expect("subscribe");
            let _ = ready_tx.send(());
            while let Ok(msg) = pubsub.get_message() {
                let payload: Vec<u8> = msg.get_payload_bytes().to_vec();
                let value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
                sink.lock().expect("lock").push(value);
            }
        });
        ready_rx.recv_timeout(DEADLINE).expect("subscribed");
        Listener { messages }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Messages seen on a channel.
#[derive(Clone)]
pub struct Listener {
    messages: Arc<Mutex<Vec<Value>>>,
}

impl Listener {
    pub fn all(&self) -> Vec<Value> {
        self.messages.lock().expect("lock").clone()
    }

    /// Waits for a message matching `pred`.
    pub fn wait(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_for(what, DEADLINE, || self.all().into_iter().find(|m| pred(m)))
    }

    /// Waits for the reply to `command_id`.
    pub fn reply(&self, command_id: &str) -> Value {
        self.wait(&format!("the reply to {command_id}"), |m| {
            m["command_id"] == command_id && m["scope"] == "bot"
        })
    }
}

/// One canned answer of the fake Discord.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<&'static str>,
}

impl Answer {
    pub fn gateway(shards: u32, remaining: u32, reset_after_ms: u64) -> Answer {
        Answer::gateway_with(shards, remaining, reset_after_ms, 1)
    }

    /// Get Gateway Bot for a bot whose shards may identify `max_concurrency`
    /// at a time.
    pub fn gateway_with(
        shards: u32,
        remaining: u32,
        reset_after_ms: u64,
        max_concurrency: u32,
    ) -> Answer {
        Answer {
            status: 200,
            body: json!({
                "url": "wss://gateway.discord.gg",
                "shards": shards,
                "session_start_limit": {"total": 1000, "remaining": remaining, "reset_after": reset_after_ms, "max_concurrency": max_concurrency}
            })
            .to_string(),
            retry_after: None,
        }
    }

    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            body: json!({"message": "nope", "code": 0}).to_string(),
            retry_after: None,
        }
    }
}

/// A local HTTP server that plays Discord's `/api/gateway/bot`. It gives
/// `answers` in order, then repeats the last one, and records each request.
pub struct FakeDiscord {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub authorization: Option<String>,
    pub user_agent: Option<String>,
    pub at: std::time::SystemTime,
}

impl FakeDiscord {
    pub fn start(answers: Vec<Answer>) -> FakeDiscord {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("fake discord");
        let port = server.server_addr().to_ip().expect("ip addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        thread::spawn(move || {
            for (served, req) in server.incoming_requests().enumerate() {
                let header = |name: &'static str| {
                    req.headers()
                        .iter()
                        .find(|h| h.field.equiv(name))
                        .map(|h| h.value.to_string())
                };
                log.lock().expect("lock").push(Request {
                    path: req.url().to_string(),
                    authorization: header("Authorization"),
                    user_agent: header("User-Agent"),
                    at: std::time::SystemTime::now(),
                });
                let answer = answers[served.min(answers.len() - 1)].clone();
                let mut resp = tiny_http::Response::from_string(answer.body)
                    .with_status_code(answer.status)
                    .with_header(
                        tiny_http::Header::from_bytes("Content-Type", "application/json")
                            .expect("header"),
                    );
                if let Some(after) = answer.retry_after {
                    resp.add_header(
                        tiny_http::Header::from_bytes("Retry-After", after).expect("header"),
                    );
                }
                let _ = req.respond(resp);
            }
        });
        FakeDiscord {
            url: format!("http://127.0.0.1:{port}"),
            requests,
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }
}

/// A bot directory with the fake bot behind a shell script, as a real
/// bot's entry point would be.
pub struct BotDir {
    pub dir: tempfile::TempDir,
}

impl BotDir {
    pub fn new() -> BotDir {
        let dir = tempfile::tempdir().expect("tempdir");
        // The script records exactly what it was given ($0 and every
        // argument, one per line), then becomes the fake bot.
        let script = format!(
            "#!/bin/sh\n{{ printf '%s\\n' \"$0\"; for a in \"$@\"; do printf '%s\\n' \"$a\"; done; }} > \"$FAKEBOT_RECORD/argv-$$\"\nexec '{MEWLD}' fake-bot \"$@\"\n"
        );
        write_executable(&dir.path().join("bot.sh"), &script);
        std::fs::create_dir(dir.path().join("records")).expect("records dir");
        BotDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn records_dir(&self) -> PathBuf {
        self.path().join("records")
    }

    /// The JSON each fake bot start wrote, oldest first.
    pub fn records(&self) -> Vec<Value> {
        let mut out: Vec<(std::time::SystemTime, Value)> = std::fs::read_dir(self.records_dir())
            .expect("read records")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| {
                let modified = e.metadata().ok()?.modified().ok()?;
                let text = std::fs::read_to_string(e.path()).ok()?;
                Some((modified, serde_json::from_str(&text).ok()?))
            })
            .collect();
        out.sort_by_key(|(t, _)| *t);
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// Every identify grant the fake bots recorded (`shard`, `bucket`,
    /// `at_us`), oldest first.
    pub fn grants(&self) -> Vec<Value> {
        self.read_all("grant")
    }

    /// The records with this extension, by their `at_us`.
    fn read_all(&self, extension: &str) -> Vec<Value> {
        let mut out: Vec<Value> = std::fs::read_dir(self.records_dir())
            .expect("read records")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == extension))
            .filter_map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok())
            .collect();
        out.sort_by_key(|g| g["at_us"].as_u64());
        out
    }

    /// Every `launch_next` the fake bots said (`cluster_id`, `pid`,
    /// `at_us`), oldest first.
    pub fn launches(&self) -> Vec<Value> {
        self.read_all("launched")
    }

    /// The argv the script recorded for the fake bot with process id `pid`
    /// (the script execs, so it has the bot's pid).
    pub fn script_argv(&self, pid: u64) -> Vec<String> {
        let text = std::fs::read_to_string(self.records_dir().join(format!("argv-{pid}")))
            .expect("argv record");
        text.lines().map(String::from).collect()
    }

    /// How many times cluster `id` has been started.
    pub fn starts_of(&self, id: u64) -> usize {
        self.records()
            .iter()
            .filter(|r| r["cluster_id"] == id)
            .count()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.records()
            .iter()
            .filter_map(|r| r["pid"].as_u64())
            .map(|p| p as u32)
            .collect()
    }
}

/// What most end-to-end tests start from: a private Redis, a fake Discord
/// giving `answers`, a bot directory, a channel and a listener on it.
pub struct Fixture {
    pub redis: Redis,
    pub discord: FakeDiscord,
    pub bot: BotDir,
    pub ch: String,
    pub listener: Listener,
}

impl Fixture {
    pub fn new(test: &str, answers: Vec<Answer>) -> Fixture {
        let redis = Redis::start();
        let ch = channel(test);
        let listener = redis.listen(&ch);
        Fixture {
            discord: FakeDiscord::start(answers),
            bot: BotDir::new(),
            redis,
            ch,
            listener,
        }
    }
}

impl Fixture {
    /// The test config on this fixture, with `extra` lines appended.
    pub fn config(&self, extra: &str) -> String {
        config_text(&self.redis, &self.discord, &self.bot, &self.ch, extra)
    }
}

/// A fixture for `shards` shards and a `mewld --daemon` on it (with the
/// config's `extra` lines and `env`), waited on until every cluster is up.
pub fn launched(test: &str, shards: u32, extra: &str, env: &[(&str, &str)]) -> (Fixture, Manager) {
    let f = Fixture::new(test, vec![Answer::gateway(shards, 900, 0)]);
    let config = f.config(extra);
    let mut manager = Manager::start_with(&config, &["--daemon"], Some(&f.redis), &f.bot, env);
    manager.wait_launched(&f.listener);
    (f, manager)
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

/// Writes a script and makes it executable.
pub fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write script");
    let mut perms = std::fs::metadata(path).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(path, perms).expect("chmod");
}

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or_else(|| panic!("no VmRSS for process {pid}"))
}

/// Is `pid` a live process (not gone, not a zombie)?
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the command name in parentheses.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

pub fn assert_all_dead(pids: &[u32]) {
    assert!(!pids.is_empty(), "no cluster pids were recorded");
    wait_for("every cluster process to be gone", DEADLINE, || {
        pids.iter().all(|p| !alive(*p)).then_some(())
    });
}

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
    _config_dir: tempfile::TempDir,
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
        (stdout, stderr): (Stdio, Stdio),
    ) -> Manager {
        let config_dir = tempfile::tempdir().expect("tempdir");
        let config_path = config_dir.path().join("config.yaml");
        std::fs::write(&config_path, config).expect("write config");
        cmd.args(args)
            .arg("--config")
            .arg(&config_path)
            .current_dir(config_dir.path())
            .env_remove("FAKEBOT_REDIS")
            .env("FAKEBOT_RECORD", bot.records_dir())
            .env_remove("MTOKEN")
            .env_remove("PER_CLUSTER")
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
            config_path,
            _config_dir: config_dir,
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

/// A channel name of its own for each test.
pub fn channel(test: &str) -> String {
    format!("mewld_test_{test}")
}

/// Sends a launcher request with a fresh command id and returns its reply.
pub fn ask(redis: &Redis, listener: &Listener, channel: &str, action: &str, args: Value) -> Value {
    let command_id = format!("{action}-{}", rand_suffix());
    redis.publish(
        channel,
        &json!({"scope": "launcher", "action": action, "args": args, "command_id": command_id}),
    );
    listener.reply(&command_id)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Entries of the action log with this `event`.
pub fn events(log: &[Value], event: &str) -> Vec<Value> {
    log.iter()
        .filter(|e| e["event"] == event)
        .cloned()
        .collect()
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

/// Config text for a manager on the Unix-socket transport at `socket` (no
/// Redis), `extra` lines appended.
pub fn unix_config(discord: &FakeDiscord, bot: &BotDir, socket: &Path, extra: &str) -> String {
    format!(
        "token: {TOKEN}\noverride_dir: {}\ninterp: /bin/sh\nmodule: bot.sh\nipc: unix\nipc_socket: {}\nper_cluster: 2\nproxy: {}\ncluster_start_next_delay: 0\n{extra}",
        bot.path().display(),
        socket.display(),
        discord.url
    )
}

/// A client of the manager's Unix socket, as a bot would be.
pub struct SocketClient {
    pub reader: BufReader<UnixStream>,
    pub writer: UnixStream,
}

impl SocketClient {
    pub fn connect(path: &Path) -> SocketClient {
        let stream = wait_for("the socket to accept", DEADLINE, || {
            UnixStream::connect(path).ok()
        });
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        SocketClient {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
        }
    }

    pub fn send(&mut self, v: &Value) {
        writeln!(self.writer, "{v}").expect("write");
    }

    /// Reads lines until one matches.
    pub fn wait(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .expect("read a line before the deadline");
            assert!(n > 0, "the manager closed the socket");
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if pred(&v) {
                    return v;
                }
            }
        }
    }

    /// Sends a launcher request with a fresh command id; returns its reply.
    pub fn ask(&mut self, action: &str, args: Value) -> Value {
        let command_id = format!("{action}-{}", rand_suffix());
        self.send(
            &json!({"scope": "launcher", "action": action, "args": args, "command_id": command_id}),
        );
        self.wait(|m| m["command_id"] == command_id.as_str() && m["scope"] == "bot")
    }
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

impl Redis {
    /// Freezes the server (SIGSTOP): connections stay open, nothing is
    /// answered, as with a Redis stuck on a slow disk or swapped out.
    pub fn freeze(&self) {
        self.send_signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a frozen server run again (SIGCONT).
    pub fn thaw(&self) {
        self.send_signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn send_signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig)
            .expect("signal redis-server");
    }
}

/// Each cluster prints this many lines of about 100 bytes (several MiB in
/// all, far beyond a pipe's 64 KiB), then leaves a `chatter-done-<pid>` mark.
pub const CHATTER_LINES: u32 = 20_000;

/// A bot entry point that chatters on stdout in the background, then
/// becomes the fake bot (the chatter is in the cluster's process group, so
/// it is stopped with the cluster). With `gated`, the chatter waits for
/// [`start_chatter`].
pub fn chatty_bot(bot: &BotDir, gated: bool) {
    let wait = if gated {
        "while [ ! -e \"$FAKEBOT_RECORD/chatter-go\" ]; do sleep 0.1; done; "
    } else {
        ""
    };
    write_executable(
        &bot.path().join("chatty.sh"),
        &format!(
            "#!/bin/sh\n( {wait}i=0; while [ $i -lt {CHATTER_LINES} ]; do echo \"chatter $i: lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor\"; i=$((i+1)); done; touch \"$FAKEBOT_RECORD/chatter-done-$$\" ) &\nexec /bin/sh \"$(dirname \"$0\")/bot.sh\" \"$@\"\n"
        ),
    );
}

/// Lets gated chatty bots start their chatter.
pub fn start_chatter(bot: &BotDir) {
    std::fs::write(bot.records_dir().join("chatter-go"), "").expect("write the chatter gate");
}

pub fn chatter_done(bot: &BotDir) -> usize {
    std::fs::read_dir(bot.records_dir())
        .expect("records dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("chatter-done-"))
        .count()
}

/// Discord's identify window for one bucket, in µs.
pub const WINDOW_US: u64 = 5_000_000;

/// Checks every recorded grant against Discord's rule: the bucket is the
/// shard's, and two grants of a bucket are at least 5 s apart.
pub fn assert_within_rate_limit(grants: &[Value], max_concurrency: u64) {
    let mut by_bucket: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for g in grants {
        let shard = g["shard"].as_u64().expect("shard");
        assert_eq!(g["bucket"].as_u64(), Some(shard % max_concurrency), "{g}");
        let at = g["at_us"].as_u64().expect("at_us");
        by_bucket
            .entry(shard % max_concurrency)
            .or_default()
            .push(at);
    }
    for (bucket, mut times) in by_bucket {
        times.sort();
        for pair in times.windows(2) {
            assert!(
                pair[1] - pair[0] >= WINDOW_US,
                "bucket {bucket} granted {} ms apart: {grants:?}",
                (pair[1] - pair[0]) / 1000
            );
        }
    }
}
