//! The Redis transport: one pub/sub subscription for what clusters say (on
//! the main channel and the launcher channel, docs/protocol.md §5.5), one
//! multiplexed connection for publishing and the action-log list. Both
//! reconnect with backoff on their own; Redis being down is a state, never
//! a reason for the manager to stop.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, Semaphore};

use super::outbox::{Item, Outbox};
use super::{Origin, Outbound, Transport, TransportEvent, INBOUND_QUEUE};
use crate::redis_link::{Backoff, Link, CONNECT_TIMEOUT};
use mewld_core::protocol::{Channel, Channels};

/// A publish older than this is not worth sending once Redis is back (or
/// catches up): it is dropped and counted as stale. What else bounds the
/// writer's backlog, connected or not, is in [`super::outbox`].
const PUBLISH_TTL: Duration = Duration::from_secs(10);
/// Most publishes sent in one pipeline (the most the writer holds outside
/// its queue while a write is under way).
const MAX_BATCH: usize = 512;
/// How long reading the whole action log may take: it may be large.
const READ_LOG_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts the subscriber and the writer. Returns at once; connecting
/// happens in the background and is reported as [`TransportEvent::Up`].
pub fn start(
    url: &str,
    channels: &Channels,
    log_key: String,
    log_max_len: usize,
) -> Result<(Transport, mpsc::Receiver<TransportEvent>), redis::RedisError> {
    let client = redis::Client::open(url)?;
    let (in_tx, in_rx) = mpsc::channel(INBOUND_QUEUE);
    let (transport, outbox) = Transport::channel("redis");
    // Both, so a bot may say anything to the manager on the launcher
    // channel, which no other cluster hears.
    let heard = vec![
        channels.name(&Channel::Main),
        channels.name(&Channel::Launcher),
    ];
    tokio::spawn(subscriber(client.clone(), heard, in_tx));
    let writer = Writer {
        client: client.clone(),
        link: Link::new(client),
        log_key,
        log_max_len,
        outbox,
        reading: Arc::new(Semaphore::new(1)),
    };
    tokio::spawn(writer.run());
    Ok((transport, in_rx))
}

/// Subscribes to `channels` on one connection: a message is heard once,
/// on the channel it was published on, and the manager's echo on one of
/// them shows the subscription to all of them alive.
async fn subscriber(
    client: redis::Client,
    channels: Vec<String>,
    events: mpsc::Sender<TransportEvent>,
) {
    let mut backoff = Backoff::new();
    // Named in every failure: "connection refused" alone does not say
    // which address was wrong (no password is in it).
    let redis = client.get_connection_info().addr().to_string();
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channels).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, subscribed).await {
            Ok(Ok(pubsub)) => {
                backoff.reset();
                tracing::info!(channels = ?channels, "subscribed to Redis");
                if events.send(TransportEvent::Up).await.is_err() {
                    return;
                }
                let mut stream = pubsub.into_on_message();
                while let Some(msg) = stream.next().await {
                    let payload = msg.get_payload_bytes().to_vec();
                    if events
                        .send(TransportEvent::Message {
                            payload: payload.into(),
                            from: Origin::Redis,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                tracing::warn!(%redis, "lost the Redis subscription; reconnecting");
            }
            Ok(Err(e)) => {
                tracing::warn!(%redis, error = %e, retry_in = ?backoff.peek(), "cannot subscribe to Redis")
            }
            Err(_) => {
                tracing::warn!(%redis, retry_in = ?backoff.peek(), "connecting to Redis timed out")
            }
        }
        let wait = backoff.wait();
        let retry_at = std::time::SystemTime::now() + wait;
        if events
            .send(TransportEvent::Down { retry_at })
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(wait).await;
    }
}

struct Writer {
    /// For reads of the whole log, each on a connection of its own.
    client: redis::Client,
    link: Link,
    log_key: String,
    log_max_len: usize,
    /// What waits to be written, bounded whether Redis is up, slow or down.
    outbox: Arc<Outbox>,
    /// Reads of the action log under way (at most one).
    reading: Arc<Semaphore>,
}

impl Writer {
    async fn run(mut self) {
        let mut backoff = Backoff::new();
        while self.outbox.ready().await {
            if self.link.connected().is_none() {
                match self.link.conn().await {
                    Ok(_) => {}
                    Err(_) => {
                        self.while_down();
                        // Keep answering work while waiting, so nothing
                        // waits on Redis being down.
                        let sleep = tokio::time::sleep(backoff.wait());
                        tokio::pin!(sleep);
                        loop {
                            tokio::select! {
                                _ = &mut sleep => break,
                                open = self.outbox.changed() => {
                                    if !open {
                                        return;
                                    }
                                    self.while_down();
                                }
                            }
                        }
                        continue;
                    }
                }
            }
            let items = self.next_items();
            if items.is_empty() {
                continue;
            }
            match self.write(items).await {
                Ok(()) => backoff.reset(),
                Err(retry) => {
                    self.link.reset();
                    self.outbox.put_back(retry);
                    // A connection that accepts and then fails at once must
                    // not turn into a busy loop.
                    tokio::time::sleep(backoff.wait()).await;
                }
            }
        }
    }

    /// The next thing to write, after dropping stale publishes. Publishes
    /// waiting in a row go out as one pipeline: one round trip for a whole
    /// round of diagnostics, so replies queued behind them are not held up
    /// when Redis is busy.
    fn next_items(&mut self) -> Vec<Item> {
        self.outbox.expire_publishes(PUBLISH_TTL);
        let Some(first) = self.outbox.pop() else {
            return Vec::new();
        };
        let run = matches!(first.out, Outbound::Publish { .. });
        let mut items = vec![first];
        while run && items.len() < MAX_BATCH {
            match self.outbox.pop_publish() {
                Some(item) => items.push(item),
                None => break,
            }
        }
        items
    }

    /// While Redis is down: answer reads and flushes now and drop stale
    /// publishes; action-log entries wait (bounded by the queue).
    fn while_down(&mut self) {
        self.outbox.answer_requests("Redis is not connected");
        self.outbox.expire_publishes(PUBLISH_TTL);
    }

    /// Writes a run of publishes or one other item. On a connection error,
    /// gives back what must be retried once reconnected. An error the
    /// server answered (a wrong key type, a read-only replica, out of
    /// memory) will not go away by retrying: it is logged and the items
    /// dropped, so they cannot hold up everything queued behind them.
    async fn write(&mut self, mut items: Vec<Item>) -> Result<(), Vec<Item>> {
        if self.link.connected().is_none() {
            return Err(items);
        }
        let result = match items.pop() {
            None => return Ok(()),
            Some(Item {
                out: Outbound::Flush(done),
                ..
            }) => {
                let _ = done.send(());
                return Ok(());
            }
            // Everything queued before it is written: a read from now on
            // has it. Read aside, so that nothing waits behind it.
            Some(Item {
                out: Outbound::ReadLog(reply),
                ..
            }) => {
                let (client, key) = (self.client.clone(), self.log_key.clone());
                let reading = self.reading.clone();
                tokio::spawn(async move {
                    // One at a time: each may hold a whole log.
                    let Ok(_turn) = reading.acquire().await else {
                        return;
                    };
                    let _ = reply.send(read_whole_log(&client, &key).await);
                });
                return Ok(());
            }
            Some(item) => {
                items.push(item);
                self.send(&items).await
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(e)
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_timeout()
                    || e.is_connection_refusal() =>
            {
                tracing::warn!(error = %e, "Redis connection lost while writing; will retry");
                Err(items)
            }
            Err(e) => {
                tracing::error!(error = %e, "Redis refused a write; dropped it");
                Ok(())
            }
        }
    }

    /// One action-log entry, or a run of publishes as one pipeline.
    async fn send(&mut self, items: &[Item]) -> redis::RedisResult<()> {
        if let [Item {
            out: Outbound::PushLog(entry),
            ..
        }] = items
        {
            let r = self.push(entry).await;
            if r.as_ref()
                .is_err_and(|e| e.to_string().contains("WRONGTYPE"))
            {
                tracing::error!(
                    key = %self.log_key,
                    "the action-log key holds something other than a list (the original mewld wrote it with SET); rename or delete it"
                );
            }
            return r;
        }
        let mut pipe = redis::pipe();
        for item in items {
            if let Outbound::Publish { channel, payload } = &item.out {
                pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
            }
        }
        pipe.query_async::<()>(self.connection()?).await
    }

    fn connection(&mut self) -> redis::RedisResult<&mut MultiplexedConnection> {
        self.link
            .connected()
            .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::Io, "not connected")))
    }

    async fn push(&mut self, entry: &str) -> redis::RedisResult<()> {
        let (key, cap) = (self.log_key.clone(), self.log_max_len as isize);
        let conn = self.connection()?;
        append_log(&mut redis::pipe(), &key, entry, cap)
            .query_async(conn)
            .await
    }
}

/// Adds to `pipe` the append of `entry` to the action log at `key`, RPUSH
/// then LTRIM in one round trip: the cap keeps the newest `cap` entries
/// (docs/protocol.md §5.4). The web API logs what it publishes this way.
pub fn append_log<'p>(
    pipe: &'p mut redis::Pipeline,
    key: &str,
    entry: &str,
    cap: isize,
) -> &'p mut redis::Pipeline {
    pipe.rpush(key, entry)
        .ignore()
        .ltrim(key, -cap, -1)
        .ignore()
}

/// The whole action log at `key`, oldest first (entries that are not text
/// left out), read on a connection of its own: a large log takes longer
/// than a command is given, and would hold up every publish behind it.
pub async fn read_whole_log(client: &redis::Client, key: &str) -> Result<Vec<String>, String> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(READ_LOG_TIMEOUT));
    let read = async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query_async::<Vec<Vec<u8>>>(&mut conn)
            .await
    };
    match read.await {
        Ok(entries) => Ok(entries
            .into_iter()
            .filter_map(|e| String::from_utf8(e).ok())
            .collect()),
        Err(e) => Err(e.to_string()),
    }
}
