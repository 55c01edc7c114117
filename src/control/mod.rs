//! The control socket (docs/protocol.md §8): how `mewld attach` reaches an
//! engine that runs elsewhere (the daemon, or another console).
//!
//! One JSON object per line each way. The server speaks first with a
//! `hello` stating the protocol version; the client answers with its own.
//! Then the server sends the engine's snapshot, the stored action log in
//! pages, and from then on every new snapshot and engine event; the client
//! sends operations and gets a verdict for each. Everything on the wire is
//! the engine's own serde data: a console attached sees what an embedded
//! one sees. Before the engine runs (asking Discord, waiting for the
//! session budget's reset), the socket already answers: with the step of
//! the start, in place of the snapshot, until the engine runs.

pub mod client;
pub mod server;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use mewld_core::model::state::Snapshot;
use mewld_core::model::{Event, Exit, Operation, Peer, Refused, Via};

/// The version of these messages. A peer with another one is refused with
/// a message saying both, never shown garbage. 2: the history in pages;
/// 3: the snapshot says which exit is under way, and clients say what
/// they are.
pub const PROTOCOL: u32 = 3;

/// Longest line a client accepts: a snapshot of 10^5 clusters fits.
pub const MAX_SERVER_LINE: usize = 64 * 1024 * 1024;
/// Longest line the server accepts: requests are small.
pub const MAX_CLIENT_LINE: usize = 64 * 1024;

/// Who answered: shown in the attached console's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    /// mewld's version.
    pub version: String,
    pub pid: u32,
    /// The engine runs inside a console (quitting that console stops it).
    pub embedded: bool,
    pub config: PathBuf,
}

impl Hello {
    pub fn of_this_process(embedded: bool, config: PathBuf) -> Hello {
        Hello {
            protocol: PROTOCOL,
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            embedded,
            config,
        }
    }
}

/// Server to client. `E` is a history entry: the client reads objects;
/// the server sends them as stored, without parsing them into maps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg<E = Map<String, Value>> {
    Hello(Hello),
    /// The connection is refused (a version mismatch); it closes after this.
    Error {
        message: String,
    },
    Snapshot {
        snapshot: Box<Snapshot>,
    },
    /// The engine does not run yet: the step of its start ("asking
    /// Discord"), sent in place of the snapshot and again at each step.
    /// What follows once it runs is what any client gets, from the
    /// snapshot on. `exiting` as the snapshot's: a stop abandoned the
    /// start, and the connection closes after this.
    Starting {
        phase: String,
        exiting: Option<Exit>,
    },
    /// One page of the action log as stored, oldest first; the pages come
    /// once, before live entries, and the last says `done`.
    History {
        entries: Vec<E>,
        done: bool,
    },
    Event {
        event: Event,
    },
    /// The stored history and the clusters' latest output have all been
    /// sent (to a client that wants them); what follows is live.
    CaughtUp,
    /// This client fell behind and missed `skipped` events.
    Lagged {
        skipped: u64,
    },
    Verdict {
        id: u64,
        result: Result<(), Refused>,
    },
}

/// Client to server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    Hello {
        protocol: u32,
        #[serde(default)]
        client: Client,
    },
    Request {
        id: u64,
        op: Operation,
    },
}

/// What a client is, said in its hello: what it is sent, and how its
/// requests are logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Client {
    /// `mewld attach`: everything, its operations logged `via: attach`.
    #[default]
    Console,
    /// A one-shot command (`mewld status`, `mewld stop 3`): the snapshot
    /// and live news only, no stored history; operations logged `via: cli`.
    Command,
    /// `mewld logs`: the stored history and output too, as a console.
    Logs,
}

impl Client {
    /// Whether it is sent the action log and the clusters' latest output.
    fn wants_history(self) -> bool {
        self != Client::Command
    }

    /// How its operations are logged.
    fn via(self, peer: Peer) -> Via {
        match self {
            Client::Console => Via::Attach(peer),
            Client::Command | Client::Logs => Via::Cli(peer),
        }
    }

    /// Said in the manager's log when it comes and goes.
    fn noun(self) -> &'static str {
        match self {
            Client::Console => "a console",
            Client::Command | Client::Logs => "a command",
        }
    }
}

/// Why two ends cannot talk, said the same way on both.
pub fn mismatch(server: u32, client: u32) -> String {
    format!(
        "control protocol mismatch: the engine speaks version {server}, this mewld version {client}; run the same mewld version on both ends"
    )
}

/// One message as a line.
fn line<T: Serialize>(msg: &T) -> String {
    let mut text = serde_json::to_string(msg).unwrap_or_else(|e| {
        // Our own types always serialize; say so loudly if one ever does not.
        tracing::error!(error = %e, "a control message did not serialize");
        String::from("{}")
    });
    text.push('\n');
    text
}
