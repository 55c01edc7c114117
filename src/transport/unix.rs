//! The Unix-socket transport (docs/protocol.md §7), for hosts without Redis.
//!
//! The manager listens on a socket file only its owner may use; every line
//! a client writes (one JSON object per line) goes to every connected
//! client, the writer included, and to the manager. What the manager
//! publishes goes to every client and back to the manager, as Redis gives a
//! publisher its own messages; the hub delivers each line to everyone in
//! one order. The action log lives in the manager's memory.
//!
//! Everything a client can make the manager hold is bounded: connections
//! ([`MAX_CLIENTS`]; more are closed at once), a line ([`MAX_LINE`]; a
//! longer one, or one that is not UTF-8, is dropped and the client stays),
//! lines waiting for the engine ([`INBOUND_BYTES`]; readers wait), and what
//! waits for a client that does not read ([`CLIENT_BACKLOG`]; past it the
//! client is disconnected). What the manager sends waits in the bounded
//! queue of [`super::outbox`] while the hub is held up (by the engine not
//! taking the manager's own lines back). A client is accepted only within
//! the process's descriptor budget (`fd_budget`); accept errors (out of
//! file descriptors all the same) back off instead of spinning.

mod lines;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use self::lines::{Frame, LineReader};
use super::outbox::{Item, Outbox};
use super::{Origin, Outbound, Payload, Peer, Transport, TransportEvent, INBOUND_QUEUE};
use crate::{fd_budget, socket_file};

/// Longest line accepted; longer ones are dropped (and logged), not fatal.
const MAX_LINE: usize = 8 * 1024 * 1024;
/// Bytes waiting to be written to one client; a client this far behind is
/// disconnected rather than holding the manager's memory.
const CLIENT_BACKLOG: usize = 64 * 1024 * 1024;
/// Bytes of client lines read but not yet handled by the engine; readers
/// wait for room (at least one line of [`MAX_LINE`] always fits).
const INBOUND_BYTES: usize = 32 * 1024 * 1024;
/// Connected clients at once; more are closed as soon as accepted.
const MAX_CLIENTS: usize = 1024;
/// Waits after a failed accept (out of file descriptors, …): doubling.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// After the first dropped line of a client, at most one log line per this.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

enum ClientOut {
    Line(Arc<str>),
    Flush(oneshot::Sender<()>),
}

/// The hub's handle on a connected client. Dropping it ends the client's
/// task, which closes the connection.
struct Client {
    peer: Peer,
    tx: mpsc::UnboundedSender<ClientOut>,
    /// Bytes queued in `tx` and not yet written; bounded by the hub.
    backlog: Arc<AtomicUsize>,
    _hang_up: oneshot::Sender<()>,
}

enum HubInput {
    Connected(u64, Client),
    /// A line and its share of the inbound budget.
    Line(Peer, String, OwnedSemaphorePermit),
    Gone(u64),
}

/// Binds `path` and starts serving (see [`socket_file::claim`]).
pub fn start(
    path: &Path,
    log_max_len: usize,
) -> std::io::Result<(Transport, mpsc::Receiver<TransportEvent>)> {
    let listener = socket_file::claim(path)?;
    let (in_tx, in_rx) = mpsc::channel(INBOUND_QUEUE);
    let (transport, outbox) = Transport::channel("unix socket");
    let (hub_tx, hub_rx) = mpsc::channel(INBOUND_QUEUE);
    tokio::spawn(accept(listener, path.to_path_buf(), hub_tx));
    tokio::spawn(hub(hub_rx, outbox, in_tx, log_max_len));
    Ok((transport, in_rx))
}

/// A run of like failures, logged when it starts and when it ends rather
/// than once per failure.
#[derive(Default)]
struct Episode {
    count: u64,
    since: Option<Instant>,
}

impl Episode {
    /// Counts one failure; true for the first of a run.
    fn hit(&mut self) -> bool {
        self.count += 1;
        self.since.get_or_insert_with(Instant::now);
        self.count == 1
    }

    /// Ends the run, if any: how many failures, over how long.
    fn end(&mut self) -> Option<(u64, Duration)> {
        let since = self.since.take()?;
        Some((std::mem::take(&mut self.count), since.elapsed()))
    }
}

async fn accept(listener: UnixListener, path: PathBuf, hub: mpsc::Sender<HubInput>) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    let budget = Arc::new(Semaphore::new(INBOUND_BYTES));
    let mut failing = Episode::default();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut refusing = Episode::default();
    let mut next_id = 0u64;
    let mut fds = fd_budget::Gate::new("unix socket");
    loop {
        let Some(fd) = fds.permit().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors the listener stays readable, so
                // retrying at once would spin (and log) as fast as it can.
                if failing.hit() {
                    tracing::warn!(error = %e, socket = %path.display(), "cannot accept socket clients; retrying with backoff");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        backoff = ACCEPT_BACKOFF_MIN;
        if let Some((failures, over)) = failing.end() {
            tracing::info!(failures, over = ?over, socket = %path.display(), "accepting socket clients again");
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if refusing.hit() {
                tracing::warn!(
                    max = MAX_CLIENTS,
                    "too many socket clients; closing new ones"
                );
            }
            continue;
        };
        if let Some((refused, over)) = refusing.end() {
            tracing::info!(refused, over = ?over, "admitting socket clients again");
        }
        let peer = match crate::transport::peer_of(&stream) {
            Ok(peer) => peer,
            Err(e) => {
                tracing::warn!(error = %e, "closed a socket client whose credentials are unknown");
                continue;
            }
        };
        next_id += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        let (hang_up_tx, hang_up) = oneshot::channel();
        let backlog = Arc::new(AtomicUsize::new(0));
        let client = Client {
            peer,
            tx,
            backlog: backlog.clone(),
            _hang_up: hang_up_tx,
        };
        if hub
            .send(HubInput::Connected(next_id, client))
            .await
            .is_err()
        {
            return;
        }
        let (read, write) = stream.into_split();
        let (hub, budget) = (hub.clone(), budget.clone());
        let id = next_id;
        tokio::spawn(async move {
            tokio::select! {
                () = read_lines(read, peer, &hub, budget) => {}
                () = write_lines(write, rx, &backlog) => {}
                _ = hang_up => {}
            }
            // Dropping the halves here closes the connection.
            let _ = hub.send(HubInput::Gone(id)).await;
            drop((slot, fd));
        });
    }
}

/// Hands a client's lines to the hub until it hangs up.
async fn read_lines(
    read: OwnedReadHalf,
    peer: Peer,
    hub: &mpsc::Sender<HubInput>,
    budget: Arc<Semaphore>,
) {
    let mut lines = LineReader::new(read, MAX_LINE);
    let mut dropped = DroppedLines::new(peer);
    while let Ok(Some(frame)) = lines.next().await {
        let line = match frame {
            Frame::Line(line) if line.trim().is_empty() => continue,
            Frame::Line(line) => line,
            Frame::TooLong => {
                dropped.count("longer than the limit");
                continue;
            }
            Frame::NotUtf8 => {
                dropped.count("not UTF-8");
                continue;
            }
        };
        // Within u32 and the budget: MAX_LINE is below both.
        let share = line.len().clamp(1, INBOUND_BYTES) as u32;
        let Ok(permit) = budget.clone().acquire_many_owned(share).await else {
            return;
        };
        if hub.send(HubInput::Line(peer, line, permit)).await.is_err() {
            return;
        }
    }
}

/// Logs a client's dropped lines: the first at once, then at most one line
/// per [`DROP_LOG_EVERY`] with a count, and any not yet told when it goes.
struct DroppedLines {
    peer: Peer,
    untold: u64,
    told_at: Option<Instant>,
}

impl DroppedLines {
    fn new(peer: Peer) -> Self {
        DroppedLines {
            peer,
            untold: 0,
            told_at: None,
        }
    }

    fn count(&mut self, why: &str) {
        self.untold += 1;
        if self.told_at.is_none_or(|t| t.elapsed() >= DROP_LOG_EVERY) {
            tracing::warn!(peer = %self.peer, why, dropped = self.untold, max_bytes = MAX_LINE, "dropped lines from a socket client");
            self.untold = 0;
            self.told_at = Some(Instant::now());
        }
    }
}

impl Drop for DroppedLines {
    fn drop(&mut self) {
        if self.untold > 0 {
            tracing::warn!(peer = %self.peer, dropped = self.untold, "dropped lines from a socket client");
        }
    }
}

/// Writes what the hub queues for a client until the hub lets it go or
/// the client stops reading for good.
async fn write_lines(
    write: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<ClientOut>,
    backlog: &AtomicUsize,
) {
    let mut out = BufWriter::new(write);
    while let Some(next) = rx.recv().await {
        match next {
            ClientOut::Line(line) => {
                if out.write_all(line.as_bytes()).await.is_err()
                    || out.write_all(b"\n").await.is_err()
                {
                    return;
                }
                backlog.fetch_sub(line.len() + 1, Ordering::Relaxed);
                if rx.is_empty() && out.flush().await.is_err() {
                    return;
                }
            }
            ClientOut::Flush(done) => {
                if out.flush().await.is_err() {
                    return;
                }
                let _ = done.send(());
            }
        }
    }
}

async fn hub(
    mut inputs: mpsc::Receiver<HubInput>,
    outbound: Arc<Outbox>,
    engine: mpsc::Sender<TransportEvent>,
    log_max_len: usize,
) {
    let mut clients: HashMap<u64, Client> = HashMap::new();
    let mut log: VecDeque<String> = VecDeque::new();
    // Listening is being connected: tell the engine at once.
    if engine.send(TransportEvent::Up).await.is_err() {
        return;
    }
    loop {
        let (line, from, budget) = tokio::select! {
            input = inputs.recv() => match input {
                Some(HubInput::Connected(id, client)) => { clients.insert(id, client); continue; }
                Some(HubInput::Gone(id)) => { clients.remove(&id); continue; }
                Some(HubInput::Line(peer, line, budget)) => (line, Origin::Unix(peer), Some(budget)),
                None => return,
            },
            out = outbound.recv() => match out.map(|item: Item| item.out) {
                // One socket, no channels: every line goes to everyone.
                Some(Outbound::Publish { payload, .. }) => (payload, Origin::Manager, None),
                Some(Outbound::PushLog(entry)) => {
                    log.push_back(entry);
                    while log.len() > log_max_len {
                        log.pop_front();
                    }
                    continue;
                }
                Some(Outbound::ReadLog(reply)) => {
                    let _ = reply.send(Ok(log.iter().cloned().collect()));
                    continue;
                }
                Some(Outbound::Flush(done)) => { flush(&clients, done); continue; }
                None => return,
            },
        };
        // Clients first, then the engine: each line reaches everyone in the
        // hub's order, the manager's own lines included.
        broadcast(&mut clients, Arc::from(line.as_str()));
        let payload = Payload::budgeted(line.into_bytes(), budget);
        if engine
            .send(TransportEvent::Message { payload, from })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Queues `line` for every client; one whose backlog would pass
/// [`CLIENT_BACKLOG`] is disconnected and what it had queued is dropped.
fn broadcast(clients: &mut HashMap<u64, Client>, line: Arc<str>) {
    let size = line.len() + 1;
    clients.retain(|id, client| {
        let queued = client.backlog.load(Ordering::Relaxed);
        if queued + size > CLIENT_BACKLOG {
            tracing::warn!(
                client = id,
                peer = %client.peer,
                dropped_bytes = queued + size,
                max = CLIENT_BACKLOG,
                "disconnected a socket client that is not reading its messages"
            );
            return false;
        }
        client.backlog.fetch_add(size, Ordering::Relaxed);
        client.tx.send(ClientOut::Line(line.clone())).is_ok()
    });
}

/// Answers `done` once every client's writer has written what it had.
fn flush(clients: &HashMap<u64, Client>, done: oneshot::Sender<()>) {
    let waits: Vec<_> = clients
        .values()
        .filter_map(|client| {
            let (t, r) = oneshot::channel();
            client.tx.send(ClientOut::Flush(t)).ok().map(|_| r)
        })
        .collect();
    tokio::spawn(async move {
        for w in waits {
            let _ = w.await;
        }
        let _ = done.send(());
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

    /// The engine sees every line, its own publishes included, in the order
    /// a client sees them, each with who sent it.
    #[tokio::test]
    async fn the_engine_gets_every_line_in_the_clients_order_its_own_included() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        let (transport, mut events) = start(&path, 10).expect("listen");
        assert!(matches!(events.recv().await, Some(TransportEvent::Up)));
        let (read, mut write) = tokio::net::UnixStream::connect(&path)
            .await
            .expect("connect")
            .into_split();
        let mut read = tokio::io::BufReader::new(read).lines();
        let me = Peer {
            pid: Some(std::process::id() as i32),
            uid: std::fs::metadata("/proc/self")
                .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
                .expect("own uid"),
        };
        // Once its own line is back, the client is in the hub's list.
        write.write_all(b"hello\n").await.expect("write");
        assert_eq!(
            read.next_line().await.expect("read").as_deref(),
            Some("hello")
        );
        match events.recv().await {
            Some(TransportEvent::Message { payload, from }) => {
                assert_eq!((&*payload, from), (&b"hello"[..], Origin::Unix(me)));
            }
            other => panic!("unexpected {other:?}"),
        }
        for i in 0..50 {
            write
                .write_all(format!("c{i}\n").as_bytes())
                .await
                .expect("write");
            transport.publish(String::new(), format!("m{i}"));
            if i % 7 == 0 {
                // Let the hub run, so the two kinds interleave.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let mut seen_by_client = Vec::new();
        while seen_by_client.len() < 100 {
            seen_by_client.push(read.next_line().await.expect("read").expect("a line"));
        }
        let mut seen_by_engine = Vec::new();
        while seen_by_engine.len() < 100 {
            match events.recv().await {
                Some(TransportEvent::Message { payload, from }) => {
                    let line = String::from_utf8(payload.to_vec()).expect("utf8");
                    let expected = if line.starts_with('c') {
                        Origin::Unix(me)
                    } else {
                        Origin::Manager
                    };
                    assert_eq!(from, expected, "{line}");
                    seen_by_engine.push(line);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen_by_engine, seen_by_client);
        // Interleaved, not one kind then the other.
        assert!(seen_by_engine[..50].iter().any(|l| l.starts_with('c')));
        assert!(seen_by_engine[..50].iter().any(|l| l.starts_with('m')));
    }
}
