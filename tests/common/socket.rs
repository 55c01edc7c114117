//! The Unix-socket transport: its config and a client, as a bot would be.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde_json::{json, Value};

use super::redis::rand_suffix;
use super::{wait_for, BotDir, FakeDiscord, DEADLINE, TOKEN};

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
