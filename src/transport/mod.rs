//! How the manager exchanges messages with its clusters: publish on the
//! channel, receive what is published there, and keep the action log list.
//!
//! A transport is a pair of tasks behind two channels, so the engine never
//! waits on I/O: it hands [`Outbound`] work to a [`Transport`] and receives
//! [`TransportEvent`]s. Redis is the production transport.

pub mod redis;
pub mod unix;

use color_eyre::eyre::{Result, WrapErr};
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, Ipc};

/// How many messages may wait for the engine before readers wait.
const INBOUND_QUEUE: usize = 4096;

/// Starts the transport the config asks for. Returns at once; connecting
/// happens in the background and is reported as [`TransportEvent::Up`].
pub fn start(config: &Config) -> Result<(Transport, mpsc::Receiver<TransportEvent>)> {
    match &config.ipc {
        Ipc::Redis { url } => redis::start(
            url,
            &config.channel,
            config.action_log_key(),
            config.action_log_max_len,
        )
        .wrap_err("the `redis` setting is not a usable Redis URL"),
        Ipc::Unix { path } => unix::start(path, config.action_log_max_len)
            .wrap_err_with(|| format!("cannot listen on the socket {}", path.display())),
    }
}

/// Work for the transport's writer.
#[derive(Debug)]
pub enum Outbound {
    /// Publish a payload on the channel. Dropped if the transport is down
    /// for long: a stale reply or ping does more harm than good.
    Publish(String),
    /// Append an entry to the action log, capped to the configured length.
    /// Kept while the transport is down and written once it is back.
    PushLog(String),
    /// The whole action log, oldest first.
    ReadLog(oneshot::Sender<Result<Vec<String>, String>>),
    /// Answered once everything queued before it was written (or given up).
    Flush(oneshot::Sender<()>),
}

/// What the transport tells the engine.
#[derive(Debug)]
pub enum TransportEvent {
    /// A payload published on the channel (by anyone, the manager included).
    Message(Vec<u8>),
    /// The subscription is up.
    Up,
    /// The subscription is lost; the next try is at `retry_at`.
    Down { retry_at: std::time::SystemTime },
}

/// The engine's end of a running transport.
#[derive(Debug, Clone)]
pub struct Transport {
    tx: mpsc::UnboundedSender<Outbound>,
}

impl Transport {
    pub fn new(tx: mpsc::UnboundedSender<Outbound>) -> Self {
        Transport { tx }
    }

    pub fn publish(&self, payload: String) {
        self.send(Outbound::Publish(payload));
    }

    pub fn push_log(&self, entry: String) {
        self.send(Outbound::PushLog(entry));
    }

    pub async fn read_log(&self) -> Result<Vec<String>, String> {
        let (tx, rx) = oneshot::channel();
        self.send(Outbound::ReadLog(tx));
        rx.await
            .unwrap_or_else(|_| Err("the transport has stopped".into()))
    }

    /// Waits until what was queued so far is written.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.send(Outbound::Flush(tx));
        let _ = rx.await;
    }

    fn send(&self, out: Outbound) {
        // The writer only stops when the manager does; nothing to do then.
        let _ = self.tx.send(out);
    }
}
