//! A real `redis-server` on a free loopback port, clients of it, and its
//! pause (SIGSTOP) and kill helpers.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::{json, Value};

use super::{free_port, wait_for, DEADLINE};

/// A private `redis-server`, killed on drop.
pub struct Redis {
    pub port: u16,
    child: Child,
}

impl Redis {
    /// A redis-server on a free port. The port is free when it is picked,
    /// but another test's process may take it before redis-server binds it:
    /// then redis-server exits, and another port is tried.
    pub fn start() -> Redis {
        Self::start_on_a_free_port(&[])
    }

    pub fn start_on(port: u16) -> Redis {
        Self::start_with_args(port, &[])
            .unwrap_or_else(|why| panic!("redis-server on port {port}: {why}"))
    }

    fn start_on_a_free_port(extra: &[String]) -> Redis {
        let mut tried = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            match Self::start_with_args(port, extra) {
                Ok(redis) => return redis,
                Err(why) => tried.push(format!("port {port}: {why}")),
            }
        }
        panic!("no redis-server would start: {}", tried.join("; "))
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
        (Self::start_on_a_free_port(&extra), tls_port)
    }

    /// redis-server on `port`, once it answers PING; why not, if it exits
    /// first.
    fn start_with_args(port: u16, extra: &[String]) -> Result<Redis, String> {
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
        let mut redis = Redis { port, child };
        // The server that answers must be this one, not another test's that
        // holds the port while this one fails to bind it.
        let pid = format!("process_id:{}", redis.child.id());
        let started = wait_for("redis-server to answer or exit", DEADLINE, || {
            if let Ok(Some(status)) = redis.child.try_wait() {
                return Some(Err(format!("it exited ({status}) before it answered")));
            }
            let mut conn = redis.try_conn()?;
            let info: String = redis::cmd("INFO").arg("server").query(&mut conn).ok()?;
            info.lines().any(|l| l.trim() == pid).then_some(Ok(()))
        });
        started.map(|()| redis)
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

    /// A figure of `INFO <section>` (`total_net_output_bytes`, …), 0 when
    /// absent.
    pub fn info_figure(&self, section: &str, name: &str) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg(section)
            .query(&mut self.conn())
            .expect("INFO");
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
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
        self.collect(channel, false)
    }

    /// Starts collecting every message published on a channel matching
    /// `pattern` (PSUBSCRIBE), each as `{"channel": …, "message": …}`.
    pub fn listen_pattern(&self, pattern: &str) -> Listener {
        self.collect(pattern, true)
    }

    fn collect(&self, channel: &str, pattern: bool) -> Listener {
        let messages = Arc::new(Mutex::new(Vec::new()));
        let client = redis::Client::open(self.url()).expect("client");
        let mut conn = client.get_connection().expect("connection");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sink = messages.clone();
        let channel = channel.to_string();
        thread::spawn(move || {
            let mut pubsub = conn.as_pubsub();
            if pattern {
                pubsub.psubscribe(&channel).expect("psubscribe");
            } else {
                pubsub.subscribe(&channel).expect("subscribe");
            }
            let _ = ready_tx.send(());
            while let Ok(msg) = pubsub.get_message() {
                let payload: Vec<u8> = msg.get_payload_bytes().to_vec();
                let value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
                let value = if pattern {
                    json!({"channel": msg.get_channel_name(), "message": value})
                } else {
                    value
                };
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

/// Messages seen on a channel.
#[derive(Clone)]
pub struct Listener {
    messages: Arc<Mutex<Vec<Value>>>,
}

impl Listener {
    pub fn all(&self) -> Vec<Value> {
        self.messages.lock().expect("lock").clone()
    }

    /// How many messages so far.
    pub fn len(&self) -> usize {
        self.messages.lock().expect("lock").len()
    }

    /// The messages from the `n`th on.
    pub fn since(&self, n: usize) -> Vec<Value> {
        let messages = self.messages.lock().expect("lock");
        messages.get(n..).map(<[Value]>::to_vec).unwrap_or_default()
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

pub(super) fn rand_suffix() -> u128 {
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
