//! The engine's end of the control socket: every client gets the snapshot,
//! the stored action log, each cluster's latest output lines, then live
//! snapshots and events, and may ask for operations (logged `via: attach`
//! with its pid and uid).
//!
//! What a client can make the server hold is bounded: connections still in
//! their hello ([`MAX_GREETING`], each for [`HELLO_TIMEOUT`]; one more
//! closes the oldest, so silent connections cannot keep a console out),
//! consoles past it ([`MAX_CLIENTS`]), the process's descriptor budget, a
//! request line ([`super::MAX_CLIENT_LINE`]), requests in flight (one per
//! client: the next is read once the verdict is out), and what waits for a
//! slow reader (snapshots are coalesced, events wait in the engine's
//! bounded broadcast and are skipped past with a `lagged` notice; a client
//! that takes no line for [`WRITE_TIMEOUT`] is dropped).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use tokio_util::codec::{FramedRead, LinesCodec};

use super::{line, mismatch, ClientMsg, Hello, ServerMsg, MAX_CLIENT_LINE, PROTOCOL};
use crate::cluster_map::ClusterId;
use crate::engine::{next_snapshot, EngineHandle, Event, Via};
use crate::transport::Peer;
use crate::{fd_budget, socket_file};

/// Consoles attached at once (past their hello); more are told so and
/// closed.
const MAX_CLIENTS: usize = 64;
/// Connections still in their hello at once; one more closes the oldest.
const MAX_GREETING: usize = 64;
/// How long a connection has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that takes no line for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// History entries remembered to drop their live copies (an entry written
/// while the history was read arrives both ways).
const DEDUP_TAIL: usize = 1000;
/// Output lines kept per cluster for consoles that attach later (an
/// embedded console has every line from the start); older ones are dropped.
const BACKLOG_LINES: usize = 200;

/// The control socket, claimed before anything starts, so a second
/// manager on the same config refuses to start instead of fighting the
/// first over the clusters.
pub struct Control {
    listener: UnixListener,
}

impl Control {
    /// Claims `path`, refusing a world-writable directory or a live socket
    /// of another manager.
    pub fn bind(path: &Path) -> Result<Control, String> {
        socket_file::check_private_dir(path).map_err(|e| format!("control socket: {e}"))?;
        let listener = socket_file::claim(path).map_err(|e| {
            let who = match e.kind() {
                std::io::ErrorKind::AddrInUse => {
                    " (another mewld runs with this config; `mewld attach` reaches it)"
                }
                std::io::ErrorKind::InvalidInput => {
                    " (set by `control_socket` in the config, or --control-socket)"
                }
                _ => "",
            };
            format!("control socket {}: {e}{who}", path.display())
        })?;
        Ok(Control { listener })
    }

    /// Serves `handle` to every client until the process ends.
    pub fn serve(self, handle: EngineHandle, hello: Hello) {
        let shared = Arc::new(Shared {
            backlog: Mutex::default(),
            slots: Arc::new(Semaphore::new(MAX_CLIENTS)),
            handle,
            hello,
        });
        tokio::spawn(keep_backlog(shared.handle.events(), shared.clone()));
        tokio::spawn(accept(self.listener, shared));
    }
}

/// What every client's task shares.
struct Shared {
    handle: EngineHandle,
    hello: Hello,
    /// The latest output lines of each cluster.
    backlog: Mutex<HashMap<ClusterId, VecDeque<Event>>>,
    /// One per console past its hello.
    slots: Arc<Semaphore>,
}

/// Keeps the last [`BACKLOG_LINES`] output lines of every cluster.
async fn keep_backlog(mut events: broadcast::Receiver<Event>, shared: Arc<Shared>) {
    loop {
        match events.recv().await {
            Ok(event @ Event::Output { id, .. }) => {
                let Ok(mut lines) = shared.backlog.lock() else {
                    return;
                };
                let lines = lines.entry(id).or_default();
                if lines.len() == BACKLOG_LINES {
                    lines.pop_front();
                }
                lines.push_back(event);
            }
            Ok(Event::ActionLog(_) | Event::ClusterLog(_)) => {}
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                tracing::warn!(
                    skipped,
                    "output came faster than the attach backlog kept it"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn accept(listener: UnixListener, shared: Arc<Shared>) {
    let greeting = Greeting::default();
    let mut fds = fd_budget::Gate::new("control socket");
    loop {
        let Some(fd) = fds.permit().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors: the listener stays readable.
                tracing::warn!(error = %e, "cannot accept a control client; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let peer = match Peer::of(&stream) {
            Ok(peer) => peer,
            Err(e) => {
                tracing::warn!(error = %e, "closed a control client whose credentials are unknown");
                continue;
            }
        };
        let ticket = greeting.enter();
        let shared = shared.clone();
        tokio::spawn(async move {
            match serve_client(stream, peer, &shared, ticket).await {
                Ok(()) => tracing::info!(%peer, "a console detached"),
                Err(why) => tracing::info!(%peer, %why, "a console was disconnected"),
            }
            drop(fd);
        });
    }
}

/// One client, from hello to hang-up.
async fn serve_client(
    stream: UnixStream,
    peer: Peer,
    shared: &Shared,
    ticket: Ticket,
) -> Result<(), String> {
    let (read, mut write) = stream.into_split();
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(MAX_CLIENT_LINE));
    let theirs = ticket
        .greet(async {
            send(&mut write, &ServerMsg::Hello(shared.hello.clone())).await?;
            match lines.next().await {
                Some(Ok(text)) => match serde_json::from_str::<ClientMsg>(&text) {
                    Ok(ClientMsg::Hello { protocol }) => Ok(protocol),
                    _ => Err("the first line was not a hello".to_string()),
                },
                _ => Err("no hello".to_string()),
            }
        })
        .await?;
    if theirs != PROTOCOL {
        let message = mismatch(PROTOCOL, theirs);
        send(&mut write, &ServerMsg::Error { message }).await?;
        return Err(format!("protocol {theirs}"));
    }
    let Ok(_slot) = shared.slots.clone().try_acquire_owned() else {
        tracing::warn!(%peer, max = MAX_CLIENTS, "too many attached consoles; closed one");
        let message = format!("too many consoles attached (at most {MAX_CLIENTS})");
        send(&mut write, &ServerMsg::Error { message }).await?;
        return Err("too many consoles".into());
    };
    tracing::info!(%peer, "a console attached");
    let handle = &shared.handle;
    // Subscribed before the history is read, and with the output backlog
    // held still, so nothing falls in between.
    let (mut events, output) = match shared.backlog.lock() {
        Ok(lines) => (handle.events(), lines.values().flatten().cloned().collect()),
        Err(_) => (handle.events(), Vec::new()),
    };
    let mut snapshots = handle.snapshot();
    let snapshot = Box::new(snapshots.borrow_and_update().as_ref().clone());
    send(&mut write, &ServerMsg::Snapshot { snapshot }).await?;
    let entries = handle.history().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not read the action log for an attached console");
        Vec::new()
    });
    let mut seen: HashSet<String> = entries
        .iter()
        .rev()
        .take(DEDUP_TAIL)
        .map(|e| Value::Object(e.clone()).to_string())
        .collect();
    send(&mut write, &ServerMsg::History { entries }).await?;
    for event in output {
        send(&mut write, &ServerMsg::Event { event }).await?;
    }

    // Requests are read and carried out one at a time, in a task of their
    // own, so a slow verdict never holds up the stream to this client.
    let (verdicts_tx, mut verdicts) = mpsc::channel::<ServerMsg>(1);
    let requests = tokio::spawn(read_requests(lines, peer, handle.clone(), verdicts_tx));
    let outcome = loop {
        let msg = tokio::select! {
            s = next_snapshot(&mut snapshots) => match s {
                Some(s) => ServerMsg::Snapshot { snapshot: Box::new(s.as_ref().clone()) },
                None => break Ok(()),
            },
            event = events.recv() => match event {
                Ok(Event::ActionLog(entry) | Event::ClusterLog(entry)) if !seen.is_empty()
                    && seen.remove(&Value::Object(entry.clone()).to_string()) => continue,
                Ok(event) => ServerMsg::Event { event },
                Err(broadcast::error::RecvError::Lagged(skipped)) => ServerMsg::Lagged { skipped },
                Err(broadcast::error::RecvError::Closed) => break Ok(()),
            },
            verdict = verdicts.recv() => match verdict {
                Some(msg) => msg,
                // The client hung up (or sent something unreadable).
                None => break Ok(()),
            },
        };
        if let Err(e) = send(&mut write, &msg).await {
            break Err(e);
        }
    };
    requests.abort();
    outcome
}

/// Connections still in their hello, oldest first. One more than
/// [`MAX_GREETING`] closes the oldest: a flood of silent connections turns
/// over, and a console (which says hello at once) gets through.
#[derive(Default)]
struct Greeting(Arc<Mutex<Greeters>>);

#[derive(Default)]
struct Greeters {
    next: u64,
    /// Dropping a sender tells its connection to give up.
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
}

impl Greeting {
    fn lock(&self) -> MutexGuard<'_, Greeters> {
        // Nothing under the lock can leave it half-changed.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more connection in its hello.
    fn enter(&self) -> Ticket {
        let (tx, evicted) = oneshot::channel();
        let mut greeters = self.lock();
        if greeters.waiting.len() >= MAX_GREETING {
            greeters.waiting.pop_front();
        }
        let id = greeters.next;
        greeters.next += 1;
        greeters.waiting.push_back((id, tx));
        Ticket {
            id,
            pool: Greeting(self.0.clone()),
            evicted,
        }
    }
}

/// A connection's place among those in their hello; left when dropped.
struct Ticket {
    id: u64,
    pool: Greeting,
    evicted: oneshot::Receiver<()>,
}

impl Ticket {
    /// Runs the hello within [`HELLO_TIMEOUT`], unless newer connections
    /// need the place first.
    async fn greet<T>(
        mut self,
        hello: impl std::future::Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        tokio::select! {
            done = tokio::time::timeout(HELLO_TIMEOUT, hello) => {
                done.unwrap_or_else(|_| Err("no hello".into()))
            }
            _ = &mut self.evicted => Err("no hello yet, and newer connections needed the place".into()),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.pool.lock().waiting.retain(|(id, _)| *id != self.id);
    }
}

/// Reads requests until the client hangs up; each verdict goes out through
/// `verdicts` before the next request is read.
async fn read_requests(
    mut lines: FramedRead<tokio::net::unix::OwnedReadHalf, LinesCodec>,
    peer: Peer,
    handle: EngineHandle,
    verdicts: mpsc::Sender<ServerMsg>,
) {
    while let Some(text) = lines.next().await {
        let text = match text {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "an unreadable line from an attached console; disconnecting it");
                return;
            }
        };
        match serde_json::from_str::<ClientMsg>(&text) {
            Ok(ClientMsg::Request { id, op }) => {
                let result = handle.request(op, Via::Attach(peer)).await;
                if verdicts
                    .send(ServerMsg::Verdict { id, result })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(ClientMsg::Hello { .. }) => {}
            Err(e) => {
                tracing::warn!(%peer, error = %e, "ignored an unknown message from an attached console");
            }
        }
    }
}

async fn send(write: &mut OwnedWriteHalf, msg: &ServerMsg) -> Result<(), String> {
    send_line(write, &line(msg)).await
}

async fn send_line(write: &mut OwnedWriteHalf, text: &str) -> Result<(), String> {
    match tokio::time::timeout(WRITE_TIMEOUT, write.write_all(text.as_bytes())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("took no line for {WRITE_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_in_its_hello_makes_way_for_a_newer_one() {
        let greeting = Greeting::default();
        let first = greeting.enter();
        let rest: Vec<Ticket> = (1..MAX_GREETING).map(|_| greeting.enter()).collect();
        // Full: one more makes the oldest give up its hello, at once.
        let _newest = greeting.enter();
        let gave_up = first.greet(std::future::pending::<Result<(), String>>());
        let gave_up = tokio::time::timeout(Duration::from_secs(1), gave_up).await;
        assert!(matches!(gave_up, Ok(Err(_))), "{gave_up:?}");
        // Those done with their hello leave their places: nobody goes.
        drop(rest);
        let mut second = greeting.enter();
        let _third = greeting.enter();
        assert_eq!(greeting.lock().waiting.len(), 3);
        assert_eq!(
            second.evicted.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        );
    }
}
