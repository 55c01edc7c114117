//! The Redis transport: one pub/sub subscription for what clusters say, one
//! multiplexed connection for publishing and the action-log list. Both
//! reconnect with backoff on their own; Redis being down is a state, never
//! a reason for the manager to stop.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;

use super::{Origin, Outbound, Transport, TransportEvent, INBOUND_QUEUE};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A publish older than this is not worth sending once Redis is back.
const PUBLISH_TTL: Duration = Duration::from_secs(10);
/// Most publishes sent in one pipeline.
const MAX_BATCH: usize = 512;
/// Action-log entries kept while Redis is down; the oldest go first.
const LOG_BUFFER: usize = 10_000;

/// Starts the subscriber and the writer. Returns at once; connecting
/// happens in the background and is reported as [`TransportEvent::Up`].
pub fn start(
    url: &str,
    channel: &str,
    log_key: String,
    log_max_len: usize,
) -> Result<(Transport, mpsc::Receiver<TransportEvent>), redis::RedisError> {
    let client = redis::Client::open(url)?;
    let (in_tx, in_rx) = mpsc::channel(INBOUND_QUEUE);
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    tokio::spawn(subscriber(client.clone(), channel.to_string(), in_tx));
    let writer = Writer {
        client,
        channel: channel.to_string(),
        log_key,
        log_max_len,
        conn: None,
        pending: VecDeque::new(),
    };
    tokio::spawn(writer.run(out_rx));
    Ok((Transport::new(out_tx), in_rx))
}

fn next_backoff(current: Duration) -> Duration {
    (current * 2).min(BACKOFF_MAX)
}

async fn subscriber(client: redis::Client, channel: String, events: mpsc::Sender<TransportEvent>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, subscribed).await {
            Ok(Ok(pubsub)) => {
                backoff = BACKOFF_MIN;
                tracing::info!(channel = %channel, "subscribed to Redis");
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
                tracing::warn!("lost the Redis subscription; reconnecting");
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot subscribe to Redis")
            }
            Err(_) => tracing::warn!(retry_in = ?backoff, "connecting to Redis timed out"),
        }
        let retry_at = std::time::SystemTime::now() + backoff;
        if events
            .send(TransportEvent::Down { retry_at })
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = next_backoff(backoff);
    }
}

/// Work waiting to be written, with the time it was queued.
enum Pending {
    Publish(String, Instant),
    /// Publishes taken together by [`Writer::next_item`].
    Publishes(Vec<(String, Instant)>),
    Log(String),
    Read(tokio::sync::oneshot::Sender<Result<Vec<String>, String>>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

struct Writer {
    client: redis::Client,
    channel: String,
    log_key: String,
    log_max_len: usize,
    conn: Option<MultiplexedConnection>,
    pending: VecDeque<Pending>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Outbound>) {
        let mut backoff = BACKOFF_MIN;
        loop {
            if self.pending.is_empty() {
                match rx.recv().await {
                    Some(out) => self.queue(out),
                    None => return,
                }
            }
            while let Ok(out) = rx.try_recv() {
                self.queue(out);
            }
            if self.conn.is_none() {
                match tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    self.client.get_multiplexed_async_connection(),
                )
                .await
                {
                    Ok(Ok(conn)) => self.conn = Some(conn),
                    _ => {
                        self.while_down();
                        // Keep taking work while waiting, so nothing blocks.
                        let sleep = tokio::time::sleep(backoff);
                        tokio::pin!(sleep);
                        loop {
                            tokio::select! {
                                _ = &mut sleep => break,
                                out = rx.recv() => match out {
                                    Some(out) => { self.queue(out); self.while_down(); }
                                    None => return,
                                },
                            }
                        }
                        backoff = next_backoff(backoff);
                        continue;
                    }
                }
            }
            if let Some(item) = self.next_item() {
                match self.write(item).await {
                    Ok(()) => backoff = BACKOFF_MIN,
                    Err(item) => {
                        self.conn = None;
                        if let Some(item) = item {
                            self.pending.push_front(item);
                        }
                        // A connection that accepts and then fails at once must
                        // not turn into a busy loop.
                        tokio::time::sleep(backoff).await;
                        backoff = next_backoff(backoff);
                    }
                }
            }
        }
    }

    /// The next thing to write. Publishes waiting in a row go out as one
    /// pipeline: one round trip for a whole round of diagnostics, so replies
    /// queued behind them are not held up when Redis is busy.
    fn next_item(&mut self) -> Option<Pending> {
        let first = self.pending.pop_front()?;
        let Pending::Publish(payload, at) = first else {
            return Some(first);
        };
        let mut batch = vec![(payload, at)];
        while batch.len() < MAX_BATCH {
            match self.pending.pop_front() {
                Some(Pending::Publish(p, t)) => batch.push((p, t)),
                Some(other) => {
                    self.pending.push_front(other);
                    break;
                }
                None => break,
            }
        }
        Some(Pending::Publishes(batch))
    }

    fn queue(&mut self, out: Outbound) {
        let item = match out {
            Outbound::Publish(p) => Pending::Publish(p, Instant::now()),
            Outbound::PushLog(e) => Pending::Log(e),
            Outbound::ReadLog(tx) => Pending::Read(tx),
            Outbound::Flush(tx) => Pending::Flush(tx),
        };
        self.pending.push_back(item);
    }

    /// While Redis is down: answer reads and flushes now, drop stale
    /// publishes, and cap the buffered action log (oldest first).
    fn while_down(&mut self) {
        let mut logs = self
            .pending
            .iter()
            .filter(|p| matches!(p, Pending::Log(_)))
            .count();
        let mut dropped = 0usize;
        let mut kept = VecDeque::with_capacity(self.pending.len());
        for item in self.pending.drain(..) {
            match item {
                Pending::Read(tx) => {
                    let _ = tx.send(Err("Redis is not connected".into()));
                }
                Pending::Flush(tx) => {
                    let _ = tx.send(());
                }
                Pending::Publish(_, at) if at.elapsed() > PUBLISH_TTL => {}
                Pending::Publishes(mut batch) => {
                    batch.retain(|(_, at)| at.elapsed() <= PUBLISH_TTL);
                    if !batch.is_empty() {
                        kept.push_back(Pending::Publishes(batch));
                    }
                }
                Pending::Log(_) if logs > LOG_BUFFER => {
                    logs -= 1;
                    dropped += 1;
                }
                other => kept.push_back(other),
            }
        }
        self.pending = kept;
        if dropped > 0 {
            tracing::warn!(
                dropped,
                kept = LOG_BUFFER,
                "Redis is down: dropped the oldest buffered action-log entries"
            );
        }
    }

    /// Writes one item. On a connection error, gives back what must be
    /// retried once reconnected. An error the server answered (a wrong key
    /// type, a read-only replica, out of memory) will not go away by
    /// retrying: it is logged and the item dropped, so it cannot hold up
    /// everything queued behind it.
    async fn write(&mut self, item: Pending) -> Result<(), Option<Pending>> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(Some(item));
        };
        let (result, retry) = match item {
            Pending::Flush(tx) => {
                let _ = tx.send(());
                return Ok(());
            }
            Pending::Publish(payload, at) => {
                let r: redis::RedisResult<()> = redis::cmd("PUBLISH")
                    .arg(&self.channel)
                    .arg(&payload)
                    .query_async(conn)
                    .await;
                (r, Some(Pending::Publish(payload, at)))
            }
            Pending::Publishes(batch) => {
                let mut pipe = redis::pipe();
                for (payload, _) in &batch {
                    pipe.cmd("PUBLISH").arg(&self.channel).arg(payload).ignore();
                }
                let r: redis::RedisResult<()> = pipe.query_async(conn).await;
                (r, Some(Pending::Publishes(batch)))
            }
            Pending::Log(entry) => {
                let r = self.push(&entry).await;
                if r.as_ref()
                    .is_err_and(|e| e.to_string().contains("WRONGTYPE"))
                {
                    tracing::error!(
                        key = %self.log_key,
                        "the action-log key holds something other than a list (the original mewld wrote it with SET); rename or delete it"
                    );
                }
                (r, Some(Pending::Log(entry)))
            }
            Pending::Read(tx) => {
                let r: redis::RedisResult<Vec<String>> = redis::cmd("LRANGE")
                    .arg(&self.log_key)
                    .arg(0)
                    .arg(-1)
                    .query_async(conn)
                    .await;
                let (r, answer) = match r {
                    Ok(entries) => (Ok(()), Ok(entries)),
                    Err(e) => {
                        let text = e.to_string();
                        (Err(e), Err(text))
                    }
                };
                let _ = tx.send(answer);
                (r, None)
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
                Err(retry)
            }
            Err(e) => {
                tracing::error!(error = %e, "Redis refused a write; dropped it");
                Ok(())
            }
        }
    }

    async fn push(&mut self, entry: &str) -> redis::RedisResult<()> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "not connected",
            )));
        };
        // RPUSH and LTRIM in one round trip; the cap keeps the newest entries.
        redis::pipe()
            .rpush(&self.log_key, entry)
            .ignore()
            .ltrim(&self.log_key, -(self.log_max_len as isize), -1)
            .ignore()
            .query_async(conn)
            .await
    }
}
