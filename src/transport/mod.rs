//! How the manager exchanges messages with its clusters: publish on the
//! channel, receive what is published there, and keep the action log list.
//!
//! A transport is a pair of tasks behind two queues, so the engine never
//! waits on I/O: it hands [`Outbound`] work to a [`Transport`] (a bounded
//! queue that drops by a stated policy when full, see [`outbox`]) and
//! receives [`TransportEvent`]s. Redis is the production transport.

mod outbox;
pub mod redis;
pub mod unix;

use mewld_core::model::{Origin, Peer};
pub use outbox::{Backlog, Dropped};

use color_eyre::eyre::{Result, WrapErr};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use self::outbox::Outbox;

use crate::config::{Config, Ipc};

/// How many messages may wait for the engine before readers wait.
const INBOUND_QUEUE: usize = 4096;

/// Starts the transport the config asks for. Returns at once; connecting
/// happens in the background and is reported as [`TransportEvent::Up`].
pub fn start(config: &Config) -> Result<(Transport, mpsc::Receiver<TransportEvent>)> {
    match &config.ipc {
        Ipc::Redis { url } => redis::start(
            url,
            &config.channels(),
            config.action_log_key(),
            config.action_log_max_len,
        )
        .wrap_err("the `redis` setting is not a usable Redis URL"),
        Ipc::Unix { path } => unix::start(path, config.action_log_max_len).wrap_err_with(|| {
            format!(
                "cannot listen on the socket {} (`ipc_socket` in the config)",
                path.display()
            )
        }),
    }
}

/// Work for the transport's writer.
#[derive(Debug)]
pub enum Outbound {
    /// Publish a payload on a channel (the Unix socket has none: it sends
    /// it to every client). Dropped if the transport is behind for long: a
    /// stale reply or ping does more harm than good.
    Publish { channel: String, payload: String },
    /// Append an entry to the action log, capped to the configured length.
    /// Kept while the transport is down (within a bound) and written once
    /// it is back.
    PushLog(String),
    /// The whole action log, oldest first.
    ReadLog(oneshot::Sender<Result<Vec<String>, String>>),
    /// Answered once everything queued before it was written (or given up).
    Flush(oneshot::Sender<()>),
}

/// What the transport tells the engine.
#[derive(Debug)]
pub enum TransportEvent {
    /// A payload published on the manager's channels (by anyone, the manager
    /// included: every transport gives the manager back what it publishes
    /// there, in order).
    Message { payload: Payload, from: Origin },
    /// The subscription is up.
    Up,
    /// The subscription is lost; the next try is at `retry_at`.
    Down { retry_at: std::time::SystemTime },
}

/// The engine's end of a running transport. Nothing here waits on the
/// transport: work is queued, or dropped by the queue's policy.
#[derive(Clone)]
pub struct Transport {
    sender: Arc<Sender>,
}

/// Closes the queue when the last [`Transport`] clone goes, which ends the
/// transport's writer once it has taken what was queued.
struct Sender(Arc<Outbox>);

impl Drop for Sender {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("backlog", &self.backlog())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl Transport {
    /// A queue for a transport's writer (named `what` in the log), and the
    /// engine's end of it. Needs a Tokio runtime: it starts the reporter of
    /// drops.
    fn channel(what: &'static str) -> (Transport, Arc<Outbox>) {
        let outbox = Outbox::start(what);
        let transport = Transport {
            sender: Arc::new(Sender(outbox.clone())),
        };
        (transport, outbox)
    }

    pub fn publish(&self, channel: String, payload: String) {
        self.sender.0.push(Outbound::Publish { channel, payload });
    }

    pub fn push_log(&self, entry: String) {
        self.sender.0.push(Outbound::PushLog(entry));
    }

    pub async fn read_log(&self) -> Result<Vec<String>, String> {
        let (tx, rx) = oneshot::channel();
        self.sender.0.push(Outbound::ReadLog(tx));
        rx.await
            .unwrap_or_else(|_| Err("the transport has stopped".into()))
    }

    /// Waits until what was queued so far is written (or given up).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.sender.0.push(Outbound::Flush(tx));
        let _ = rx.await;
    }

    /// What waits to be written now, per kind.
    pub fn backlog(&self) -> Backlog {
        self.sender.0.backlog()
    }

    /// What was dropped so far, per kind.
    pub fn dropped(&self) -> Dropped {
        self.sender.0.dropped()
    }
}

/// The process at the other end of `stream` (SO_PEERCRED).
pub fn peer_of(stream: &tokio::net::UnixStream) -> std::io::Result<Peer> {
    let cred = stream.peer_cred()?;
    Ok(Peer {
        pid: cred.pid(),
        uid: cred.uid(),
    })
}

/// A message's bytes (read as `&[u8]`). A transport may attach its share of
/// an inbound byte budget, given back when the engine drops the message, so
/// what waits for the engine is bounded in bytes, not just in messages.
#[derive(Debug)]
pub struct Payload {
    bytes: Vec<u8>,
    _budget: Option<OwnedSemaphorePermit>,
}

impl Payload {
    pub fn budgeted(bytes: Vec<u8>, budget: Option<OwnedSemaphorePermit>) -> Self {
        Payload {
            bytes,
            _budget: budget,
        }
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Self {
        Payload::budgeted(bytes, None)
    }
}

impl std::ops::Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}
