//! The engine's end of the control socket: every client gets the snapshot,
//! the stored action log and each cluster's latest output lines (unless it
//! is a one-shot command), then live snapshots and events, and may ask for
//! operations (logged `via: attach`, or `via: cli` for a command, with its
//! pid and uid). Before the engine runs, clients are answered with the
//! step of the start instead ([`start_up`]).
//!
//! What a client can make the server hold is bounded: connections still in
//! their hello ([`MAX_GREETING`](greeting::MAX_GREETING), each for
//! [`HELLO_TIMEOUT`](greeting::HELLO_TIMEOUT); one more closes the oldest,
//! so silent connections cannot keep a console out), consoles past it
//! ([`MAX_CLIENTS`]), the process's descriptor budget, a request line
//! ([`super::MAX_CLIENT_LINE`]), requests in flight (one per client: the
//! next is read once the verdict is out), the history (read and sent to one
//! client at a time, in pages of about
//! [`PAGE_BYTES`](history::PAGE_BYTES)), the output backlog ([`Backlog`]),
//! and what waits for a slow reader (snapshots are coalesced, events wait
//! in the engine's bounded broadcast and are skipped past with a `lagged`
//! notice; a client that takes no line for [`WRITE_TIMEOUT`], or not the
//! whole history in [`HISTORY_TIMEOUT`], is dropped).

mod backlog;
mod greeting;
mod history;
mod start_up;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, watch, Semaphore};
use tokio_util::codec::{FramedRead, LinesCodec};

use super::{line, mismatch, Client, ClientMsg, Hello, ServerMsg, MAX_CLIENT_LINE, PROTOCOL};
use crate::engine::{next_snapshot, EngineHandle};
use crate::phase::{Lifecycle, Stop};
use crate::{fd_budget, socket_file};
use backlog::Backlog;
use greeting::{Greeting, Ticket};
use history::{Pages, Seen};
use mewld_core::model::state::Snapshot;
use mewld_core::model::Peer;
use mewld_core::model::{Event, Via};

/// Consoles attached at once (past their hello); more are told so and
/// closed.
const MAX_CLIENTS: usize = 64;
/// A client that takes no line for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that has not taken the whole history in this long is dropped:
/// the others wait for their turn meanwhile.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an ending engine waits for its clients to take its last news.
const FAREWELL: Duration = Duration::from_secs(2);
/// History entries remembered to drop their live copies (an entry written
/// while the history was read arrives both ways).
const DEDUP_TAIL: usize = 1000;
/// How long a new client waits for the engine to publish a current
/// snapshot before it takes the last one.
const FRESH_WAIT: Duration = Duration::from_secs(1);

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

    /// Answers every client from now on until the process ends: with the
    /// step of the start until [`Serving::run_engine`], then with the
    /// engine.
    pub fn open(self, hello: Hello, life: Lifecycle) -> Serving {
        let shared = Arc::new(Shared {
            backlog: Backlog::default(),
            slots: Arc::new(Semaphore::new(MAX_CLIENTS)),
            history_turn: Semaphore::new(1),
            life,
            hello,
        });
        tokio::spawn(accept(self.listener, shared.clone()));
        Serving { shared }
    }
}

/// The control socket being served.
pub struct Serving {
    shared: Arc<Shared>,
}

impl Serving {
    /// The engine `handle` is about to run: clients get it from now on,
    /// unless a stop abandoned the start first (`Err`, that stop).
    pub fn run_engine(&self, handle: &EngineHandle) -> Result<(), Stop> {
        // Subscribed before the engine runs: no output line is missed.
        let events = handle.events();
        self.shared.life.runs(handle.clone())?;
        tokio::spawn(keep_backlog(events, self.shared.clone()));
        Ok(())
    }

    /// Once the engine has ended (or the start was abandoned): waits (at
    /// most [`FAREWELL`]) until every client has been sent the engine's
    /// last snapshot (or step), which says why it ended, so that an
    /// attached console knows a shutdown from a crash.
    pub async fn farewell(self) {
        let all = u32::try_from(MAX_CLIENTS).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(FAREWELL, self.shared.slots.acquire_many(all)).await;
    }
}

/// What every client's task shares.
struct Shared {
    /// The engine once it runs; the start's step until then.
    life: Lifecycle,
    hello: Hello,
    backlog: Backlog,
    /// One per console past its hello.
    slots: Arc<Semaphore>,
    /// One history read and sent at a time, however many attach at once:
    /// an attach costs the daemon at most one history.
    history_turn: Semaphore,
}

/// Keeps each cluster's latest output lines.
async fn keep_backlog(mut events: broadcast::Receiver<Event>, shared: Arc<Shared>) {
    loop {
        match events.recv().await {
            Ok(event @ Event::Output { id, .. }) => {
                let msg: ServerMsg = ServerMsg::Event { event };
                let text = line(&msg);
                shared.backlog.lock().push(id, text.into());
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
        let peer = match crate::transport::peer_of(&stream) {
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
                // Another mewld checking that this socket is live, or a
                // probe: not a console.
                Served::NoHello(why) => {
                    tracing::debug!(%peer, %why, "a connection closed before its hello")
                }
                Served::Left(client, Ok(())) => {
                    tracing::info!(%peer, "{} detached", client.noun())
                }
                Served::Left(client, Err(why)) => {
                    tracing::info!(%peer, %why, "{} was disconnected", client.noun())
                }
            }
            drop(fd);
        });
    }
}

/// How a client's connection ended.
enum Served {
    /// Before it said what it is.
    NoHello(String),
    Left(Client, Result<(), String>),
}

/// One client, from hello to hang-up.
async fn serve_client(stream: UnixStream, peer: Peer, shared: &Shared, ticket: Ticket) -> Served {
    let (read, mut write) = stream.into_split();
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(MAX_CLIENT_LINE));
    let hello = ticket
        .greet(async {
            send(&mut write, &ServerMsg::Hello(shared.hello.clone())).await?;
            match lines.next().await {
                Some(Ok(text)) => match serde_json::from_str::<ClientMsg>(&text) {
                    Ok(ClientMsg::Hello { protocol, client }) => Ok((protocol, client)),
                    _ => Err("the first line was not a hello".to_string()),
                },
                _ => Err("no hello".to_string()),
            }
        })
        .await;
    let (theirs, client) = match hello {
        Ok(hello) => hello,
        Err(why) => return Served::NoHello(why),
    };
    let served = async {
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
        if client == Client::Console {
            tracing::info!(%peer, "a console attached");
        }
        let mut lines = lines;
        let answered = start_up::until_engine(&mut write, &mut lines, peer, client, &shared.life);
        match answered.await? {
            Some(handle) => serve_attached(&mut write, lines, peer, shared, client, &handle).await,
            None => Ok(()),
        }
    };
    Served::Left(client, served.await)
}

/// A client past its hello: what it asked for, then live news until it or
/// the engine is gone.
async fn serve_attached(
    write: &mut OwnedWriteHalf,
    lines: FramedRead<OwnedReadHalf, LinesCodec>,
    peer: Peer,
    shared: &Shared,
    client: Client,
    handle: &EngineHandle,
) -> Result<(), String> {
    // Subscribed before the history is read, and with the output backlog
    // held still, so nothing falls in between.
    let (events, output) = {
        let backlog = shared.backlog.lock();
        (handle.events(), backlog.lines())
    };
    // Snapshots are coalesced: ask for a current one first, so a command
    // run right after a change sees it. A wedged engine gets FRESH_WAIT,
    // then the client has the last one published.
    let _ = tokio::time::timeout(FRESH_WAIT, handle.alive()).await;
    let mut snapshots = handle.snapshot();
    let snapshot = Box::new(snapshots.borrow_and_update().as_ref().clone());
    send(write, &ServerMsg::Snapshot { snapshot }).await?;
    let seen = if client.wants_history() {
        let seen = {
            let _turn = shared
                .history_turn
                .acquire()
                .await
                .map_err(|_| "the server is closing".to_string())?;
            send_history(write, handle).await?
        };
        for text in output {
            send_line(write, &text).await?;
        }
        send(write, &ServerMsg::CaughtUp).await?;
        seen
    } else {
        Seen::of(std::iter::empty())
    };

    // Requests are read and carried out one at a time, in a task of their
    // own, so a slow verdict never holds up the stream to this client.
    let via = client.via(peer);
    let (verdicts_tx, verdicts) = mpsc::channel::<ServerMsg>(1);
    let requests = tokio::spawn(read_requests(lines, peer, via, handle.clone(), verdicts_tx));
    let live = Live {
        snapshots,
        events,
        verdicts,
        seen,
    };
    let outcome = live.send(write).await;
    requests.abort();
    outcome
}

/// What a client gets once it has caught up, as it happens.
struct Live {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    events: broadcast::Receiver<Event>,
    /// The verdicts on its requests.
    verdicts: mpsc::Receiver<ServerMsg>,
    /// History entries whose live copies are still to drop.
    seen: Seen,
}

impl Live {
    /// Sends each new snapshot, event and verdict until the engine or the
    /// client is gone.
    async fn send(mut self, write: &mut OwnedWriteHalf) -> Result<(), String> {
        loop {
            let msg = tokio::select! {
                s = next_snapshot(&mut self.snapshots) => match s {
                    Some(s) => ServerMsg::Snapshot { snapshot: Box::new(s.as_ref().clone()) },
                    None => return Ok(()),
                },
                event = self.events.recv() => match event {
                    Ok(Event::ActionLog(entry) | Event::ClusterLog(entry)) if self.seen.take(&entry) => continue,
                    Ok(event) => ServerMsg::Event { event },
                    Err(broadcast::error::RecvError::Lagged(skipped)) => ServerMsg::Lagged { skipped },
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                verdict = self.verdicts.recv() => match verdict {
                    Some(msg) => msg,
                    // The client hung up (or sent something unreadable).
                    None => return Ok(()),
                },
            };
            send(write, &msg).await?;
        }
    }
}

/// Reads the action log and sends it in pages; what is left to drop of its
/// live copies.
async fn send_history(write: &mut OwnedWriteHalf, handle: &EngineHandle) -> Result<Seen, String> {
    let entries = match handle.history().await {
        Ok(entries) => entries,
        // On its way out: nothing to say, the client sees the end.
        Err(e) if handle.snapshot().has_changed().is_err() => return Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the action log for an attached console");
            Vec::new()
        }
    };
    let seen = Seen::of(entries.iter().rev().take(DEDUP_TAIL));
    let mut pages = Pages::new(entries);
    let sent = tokio::time::timeout(HISTORY_TIMEOUT, async {
        for page in pages.by_ref() {
            send_line(write, &page).await?;
        }
        Ok::<_, String>(())
    })
    .await;
    if pages.skipped + pages.replaced > 0 {
        tracing::warn!(
            skipped = pages.skipped,
            replaced = pages.replaced,
            "the action log holds entries that are not JSON objects (skipped) or too long for a line (a notice sent in their place)"
        );
    }
    sent.map_err(|_| format!("did not take the whole history in {HISTORY_TIMEOUT:?}"))??;
    Ok(seen)
}

/// Reads requests until the client hangs up; each verdict goes out through
/// `verdicts` before the next request is read.
async fn read_requests(
    mut lines: FramedRead<OwnedReadHalf, LinesCodec>,
    peer: Peer,
    via: Via,
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
                let result = handle.request(op, via).await;
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
