//! The Unix-socket transport (PROTOCOL.md §7), for hosts without Redis.
//!
//! The manager listens on a socket file; every line a client writes (one
//! JSON object per line) goes to every connected client, the writer
//! included, and to the manager. What the manager publishes goes to every
//! client. The action log lives in the manager's memory.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite, LinesCodec, LinesCodecError};

use super::{Outbound, Transport, TransportEvent, INBOUND_QUEUE};

/// Longest line accepted; longer ones are dropped (and logged), not fatal.
const MAX_LINE: usize = 8 * 1024 * 1024;
/// Lines waiting for one client; a client this far behind is disconnected
/// rather than slowing everyone down.
const CLIENT_QUEUE: usize = 4096;

/// Socket files this process made, removed by [`remove_sockets`] at exit.
static SOCKETS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Removes the socket files this process listens on; for the end of `main`.
pub fn remove_sockets() {
    if let Ok(mut paths) = SOCKETS.lock() {
        for p in paths.drain(..) {
            let _ = std::fs::remove_file(p);
        }
    }
}

enum ClientOut {
    Line(String),
    Flush(oneshot::Sender<()>),
}

enum HubInput {
    Connected(u64, mpsc::Sender<ClientOut>),
    Line(String),
    Gone(u64),
}

/// Binds `path` and starts serving. A stale socket (nobody listening) is
/// replaced; a live one, or anything that is not a socket, is an error, so
/// two managers cannot share it and no file is deleted by mistake.
pub fn start(
    path: &Path,
    log_max_len: usize,
) -> std::io::Result<(Transport, mpsc::Receiver<TransportEvent>)> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another process is listening on it",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    let (in_tx, in_rx) = mpsc::channel(INBOUND_QUEUE);
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (hub_tx, hub_rx) = mpsc::channel(INBOUND_QUEUE);
    tokio::spawn(accept(listener, path.to_path_buf(), hub_tx));
    // The socket file goes when the manager does.
    let _ = SOCKETS.lock().map(|mut s| s.push(path.to_path_buf()));
    tokio::spawn(hub(hub_rx, out_rx, in_tx, log_max_len));
    Ok((Transport::new(out_tx), in_rx))
}

async fn accept(listener: UnixListener, path: PathBuf, hub: mpsc::Sender<HubInput>) {
    let mut next_id = 0u64;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, socket = %path.display(), "accept failed");
                continue;
            }
        };
        next_id += 1;
        if !serve_client(next_id, stream, hub.clone()).await {
            return;
        }
    }
}

/// Starts a client's reader and writer. Returns false once the hub is gone.
async fn serve_client(id: u64, stream: UnixStream, hub: mpsc::Sender<HubInput>) -> bool {
    let (read, write) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<ClientOut>(CLIENT_QUEUE);
    if hub.send(HubInput::Connected(id, tx)).await.is_err() {
        return false;
    }
    tokio::spawn(async move {
        let mut sink = FramedWrite::new(write, LinesCodec::new());
        while let Some(out) = rx.recv().await {
            match out {
                ClientOut::Line(line) => {
                    if sink.send(line).await.is_err() {
                        return;
                    }
                }
                ClientOut::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    });
    tokio::spawn(async move {
        let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(MAX_LINE));
        while let Some(item) = lines.next().await {
            match item {
                Ok(line) if line.trim().is_empty() => {}
                Ok(line) => {
                    if hub.send(HubInput::Line(line)).await.is_err() {
                        return;
                    }
                }
                Err(LinesCodecError::MaxLineLengthExceeded) => {
                    tracing::warn!(client = id, max = MAX_LINE, "dropped an over-long line");
                }
                Err(LinesCodecError::Io(_)) => break,
            }
        }
        let _ = hub.send(HubInput::Gone(id)).await;
    });
    true
}

async fn hub(
    mut inputs: mpsc::Receiver<HubInput>,
    mut outbound: mpsc::UnboundedReceiver<Outbound>,
    engine: mpsc::Sender<TransportEvent>,
    log_max_len: usize,
) {
    let mut clients: HashMap<u64, mpsc::Sender<ClientOut>> = HashMap::new();
    let mut log: VecDeque<String> = VecDeque::new();
    // Listening is being connected: tell the engine at once.
    if engine.send(TransportEvent::Up).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            input = inputs.recv() => match input {
                Some(HubInput::Connected(id, tx)) => { clients.insert(id, tx); }
                Some(HubInput::Gone(id)) => { clients.remove(&id); }
                Some(HubInput::Line(line)) => {
                    broadcast(&mut clients, &line);
                    if engine.send(TransportEvent::Message(line.into_bytes())).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            out = outbound.recv() => match out {
                Some(Outbound::Publish(payload)) => broadcast(&mut clients, &payload),
                Some(Outbound::PushLog(entry)) => {
                    log.push_back(entry);
                    while log.len() > log_max_len {
                        log.pop_front();
                    }
                }
                Some(Outbound::ReadLog(reply)) => {
                    let _ = reply.send(Ok(log.iter().cloned().collect()));
                }
                Some(Outbound::Flush(done)) => flush(&clients, done),
                None => return,
            },
        }
    }
}

/// Sends `line` to every client; one that cannot keep up is dropped.
fn broadcast(clients: &mut HashMap<u64, mpsc::Sender<ClientOut>>, line: &str) {
    clients.retain(
        |id, tx| match tx.try_send(ClientOut::Line(line.to_string())) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    client = id,
                    "a socket client fell too far behind; disconnected it"
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        },
    );
}

/// Answers `done` once every client's writer has written what it had.
fn flush(clients: &HashMap<u64, mpsc::Sender<ClientOut>>, done: oneshot::Sender<()>) {
    let waits: Vec<_> = clients
        .values()
        .filter_map(|tx| {
            let (t, r) = oneshot::channel();
            tx.try_send(ClientOut::Flush(t)).ok().map(|_| r)
        })
        .collect();
    tokio::spawn(async move {
        for w in waits {
            let _ = w.await;
        }
        let _ = done.send(());
    });
}
