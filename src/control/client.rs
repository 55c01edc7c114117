//! `mewld attach`'s end of the control socket: an [`EngineHandle`] on an
//! engine in another process. The console uses it exactly as it uses an
//! embedded engine; this module carries requests over, feeds snapshots and
//! events back, says which step of its start an engine that does not run
//! yet is at, and reconnects when the engine goes away and comes back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::codec::{FramedRead, LinesCodec};

use super::{line, mismatch, Client, ClientMsg, Hello, ServerMsg, MAX_SERVER_LINE, PROTOCOL};
use crate::engine::{EngineHandle, FaceRequest};
use mewld_core::model::state::Snapshot;
use mewld_core::model::{Event, Exit, Refused};

/// Requests from the console waiting to be sent.
const REQUESTS: usize = 16;
/// Events waiting for the console (as the engine's own broadcast).
const EVENTS: usize = 8192;
/// Between tries to reach an engine that went away.
const RETRY_EVERY: Duration = Duration::from_secs(1);
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A write the engine does not take in this long means it is wedged.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// News about the link, for the console's header and message line.
#[derive(Debug, Clone)]
pub enum LinkStatus {
    /// Reached, and the engine runs: on a new connection, or on this one
    /// once the engine it waited for runs.
    Connected(Hello),
    /// Reached, but the engine does not run yet: the step of its start
    /// ("asking Discord"), at each step. `Connected` follows once it runs.
    Starting(String),
    /// Out of reach, and being retried (a console's link only).
    Lost(String),
    /// The link is over for good: the engine shut down on purpose (said
    /// why), or a one-shot command's engine went away.
    Ended(String),
}

pub struct Attached {
    pub handle: EngineHandle,
    pub hello: Hello,
    pub status: mpsc::Receiver<LinkStatus>,
    /// Subscribed before the link starts, so the output backlog the engine
    /// sends at once is not missed by a console that subscribes later.
    pub events: broadcast::Receiver<Event>,
}

/// Connects to the engine on `path` as `client`: an error says why not
/// (nobody there, another version). Once attached, a console's link
/// reconnects by itself, unless the engine shut down on purpose.
pub async fn attach(path: &Path, client: Client) -> Result<Attached, String> {
    let session = Session::connect(path, client).await?;
    let hello = session.hello.clone();
    let (requests_tx, requests) = mpsc::channel(REQUESTS);
    let (events, events_rx) = broadcast::channel(EVENTS);
    let (snapshot, snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
    let (status, status_rx) = mpsc::channel(REQUESTS);
    let handle = EngineHandle::remote(requests_tx, events.clone(), snapshot_rx);
    let link = Link {
        path: path.to_path_buf(),
        client,
        exiting: None,
        requests,
        events,
        snapshot,
        status,
        hello: hello.clone(),
        starting: false,
        history: None,
        pages: Vec::new(),
        history_waiting: Vec::new(),
    };
    tokio::spawn(link.run(session));
    Ok(Attached {
        handle,
        hello,
        status: status_rx,
        events: events_rx,
    })
}

type HistoryReply = oneshot::Sender<Result<Vec<String>, String>>;

/// The console's side of the link, kept across reconnections.
struct Link {
    path: PathBuf,
    client: Client,
    /// What the engine's latest snapshot said it was exiting for.
    exiting: Option<Exit>,
    requests: mpsc::Receiver<FaceRequest>,
    events: broadcast::Sender<Event>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    status: mpsc::Sender<LinkStatus>,
    /// Who answered on this connection.
    hello: Hello,
    /// This connection waits for the engine to run.
    starting: bool,
    /// The action log as the engine sent it on this connection, once its
    /// last page is in.
    history: Option<Vec<String>>,
    /// The entries of the pages in so far.
    pages: Vec<String>,
    history_waiting: Vec<HistoryReply>,
}

impl Link {
    /// Runs sessions until the console drops its handle.
    async fn run(mut self, first: Session) {
        let mut session = Some(first);
        loop {
            match session.take() {
                Some(s) => {
                    let Some(why) = self.session(s).await else {
                        return;
                    };
                    let news = self.after(why);
                    let ended = matches!(news, LinkStatus::Ended(_));
                    let _ = self.status.try_send(news);
                    if ended {
                        return;
                    }
                }
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_EVERY) => {
                            if let Ok(s) = Session::connect(&self.path, self.client).await {
                                let _ = self.status.try_send(LinkStatus::Connected(s.hello.clone()));
                                session = Some(s);
                            }
                        }
                        request = self.requests.recv() => match request {
                            Some(request) => refuse(request),
                            None => return,
                        },
                    }
                }
            }
        }
    }

    /// What a lost connection means: a console reconnects unless the
    /// engine shut down on purpose; a one-shot command does not.
    fn after(&self, why: String) -> LinkStatus {
        match (self.exiting, self.client) {
            (Some(exit @ Exit::Shutdown), _) => LinkStatus::Ended(farewell(exit).into()),
            (Some(Exit::RestartProcess), Client::Console) => {
                LinkStatus::Lost(format!("the engine is restarting (restartproc): {why}"))
            }
            (Some(exit @ Exit::RestartProcess), _) => LinkStatus::Ended(farewell(exit).into()),
            (None, Client::Console) => LinkStatus::Lost(why),
            (None, Client::Command | Client::Logs) => LinkStatus::Ended(why),
        }
    }

    /// One connection: `None` when the console has gone, else why it ended.
    async fn session(&mut self, mut s: Session) -> Option<String> {
        self.hello = s.hello.clone();
        self.starting = false;
        self.exiting = None;
        self.history = None;
        self.pages.clear();
        let mut pending: HashMap<u64, oneshot::Sender<Result<(), Refused>>> = HashMap::new();
        let mut next_id = 0u64;
        if let Some(msg) = s.first.take() {
            if let Some(why) = self.on_server(msg, &mut pending) {
                return Some(why);
            }
        }
        let why = loop {
            tokio::select! {
                text = s.lines.next() => {
                    let msg = match text {
                        Some(Ok(text)) => serde_json::from_str::<ServerMsg>(&text),
                        Some(Err(e)) => break format!("the engine's socket failed: {e}"),
                        None => break "the engine closed the connection".to_string(),
                    };
                    match msg {
                        Ok(msg) => {
                            if let Some(why) = self.on_server(msg, &mut pending) {
                                break why;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "ignored an unknown message from the engine"),
                    }
                }
                request = self.requests.recv() => match request {
                    Some(FaceRequest::Op { op, reply, .. }) => {
                        next_id += 1;
                        pending.insert(next_id, reply);
                        if let Err(e) = s.send(&ClientMsg::Request { id: next_id, op }).await {
                            break e;
                        }
                    }
                    // Only the daemon's own watchdog asks this.
                    Some(FaceRequest::Alive(_)) => {}
                    Some(FaceRequest::History(reply)) => match &self.history {
                        Some(entries) => {
                            let _ = reply.send(Ok(entries.clone()));
                        }
                        None => self.history_waiting.push(reply),
                    },
                    None => return None,
                },
            }
        };
        for (_, reply) in pending {
            let _ = reply.send(Err(Refused::NotConnected));
        }
        Some(why)
    }

    /// Takes in one message; `Some(why)` when the engine refused us.
    fn on_server(
        &mut self,
        msg: ServerMsg,
        pending: &mut HashMap<u64, oneshot::Sender<Result<(), Refused>>>,
    ) -> Option<String> {
        match msg {
            ServerMsg::Snapshot { snapshot } => {
                if std::mem::take(&mut self.starting) {
                    let _ = self
                        .status
                        .try_send(LinkStatus::Connected(self.hello.clone()));
                }
                self.exiting = snapshot.exiting;
                self.snapshot.send_replace(Arc::new(*snapshot));
            }
            ServerMsg::Starting { phase, exiting } => {
                self.starting = true;
                self.exiting = exiting;
                let _ = self.status.try_send(LinkStatus::Starting(phase));
            }
            ServerMsg::History { entries, done } => {
                // Kept as text, as the engine keeps its own.
                let entries = entries.into_iter().map(|e| Value::Object(e).to_string());
                self.pages.extend(entries);
                if done {
                    let entries = std::mem::take(&mut self.pages);
                    for reply in self.history_waiting.drain(..) {
                        let _ = reply.send(Ok(entries.clone()));
                    }
                    self.history = Some(entries);
                }
            }
            ServerMsg::Event { event } => {
                let _ = self.events.send(event);
            }
            ServerMsg::Lagged { skipped } => {
                tracing::warn!(skipped, "this console fell behind the engine's events");
            }
            ServerMsg::Verdict { id, result } => {
                if let Some(reply) = pending.remove(&id) {
                    let _ = reply.send(result);
                }
            }
            ServerMsg::Error { message } => return Some(message),
            ServerMsg::Hello(_) | ServerMsg::CaughtUp => {}
        }
        None
    }
}

/// While the engine is out of reach, requests are refused at once.
fn refuse(request: FaceRequest) {
    match request {
        FaceRequest::Op { reply, .. } => {
            let _ = reply.send(Err(Refused::NotConnected));
        }
        FaceRequest::History(reply) => {
            let _ = reply.send(Err(Refused::NotConnected.to_string()));
        }
        FaceRequest::Alive(_) => {}
    }
}

/// One connection read message by message, in the order the engine sent
/// them, for a command that needs that order (`mewld logs`: the history,
/// then the output backlog, then what is live).
pub struct Stream(Session);

impl Stream {
    pub async fn open(path: &Path, client: Client) -> Result<(Hello, Stream), String> {
        let session = Session::connect(path, client).await?;
        Ok((session.hello.clone(), Stream(session)))
    }

    /// The next message; `None` once the engine closed the connection.
    pub async fn next(&mut self) -> Result<Option<ServerMsg>, String> {
        if let Some(first) = self.0.first.take() {
            return Ok(Some(first));
        }
        loop {
            match self.0.lines.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(format!("the engine's socket failed: {e}")),
                Some(Ok(text)) => match serde_json::from_str::<ServerMsg>(&text) {
                    Ok(msg) => return Ok(Some(msg)),
                    Err(e) => {
                        tracing::warn!(error = %e, "ignored an unknown message from the engine")
                    }
                },
            }
        }
    }
}

/// One connection, past the hellos.
struct Session {
    hello: Hello,
    /// The engine's first message after the hellos, not yet taken in.
    first: Option<ServerMsg>,
    lines: FramedRead<OwnedReadHalf, LinesCodec>,
    write: OwnedWriteHalf,
}

impl Session {
    async fn connect(path: &Path, client: Client) -> Result<Session, String> {
        let stream = UnixStream::connect(path).await.map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound => {
                    " (is the daemon running? it listens on `control_socket`, by default mewld.ctl beside its config, or mewld.<I>.ctl for a fleet's host I: add --host-index I)"
                }
                std::io::ErrorKind::ConnectionRefused => {
                    " (nobody is listening: a socket left by a mewld that is gone)"
                }
                _ => "",
            };
            format!("cannot reach the engine at {}: {e}{hint}", path.display())
        })?;
        let (read, write) = stream.into_split();
        let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(MAX_SERVER_LINE));
        let first = match tokio::time::timeout(HELLO_TIMEOUT, lines.next()).await {
            Ok(Some(Ok(text))) => serde_json::from_str::<ServerMsg>(&text).ok(),
            _ => None,
        };
        let hello = match first {
            Some(ServerMsg::Hello(hello)) => hello,
            Some(ServerMsg::Error { message }) => return Err(message),
            _ => {
                return Err(format!(
                    "{} did not answer as a mewld control socket",
                    path.display()
                ))
            }
        };
        let mut session = Session {
            hello,
            first: None,
            lines,
            write,
        };
        session
            .send(&ClientMsg::Hello {
                protocol: PROTOCOL,
                client,
            })
            .await?;
        if session.hello.protocol != PROTOCOL {
            return Err(mismatch(session.hello.protocol, PROTOCOL));
        }
        // Then the snapshot (or, before the engine runs, the step of its
        // start), or why the engine will not serve us (too many consoles):
        // said as the attach's failure.
        let first = match tokio::time::timeout(HELLO_TIMEOUT, session.lines.next()).await {
            Ok(Some(Ok(text))) => serde_json::from_str::<ServerMsg>(&text)
                .map_err(|e| format!("the engine sent what this mewld cannot read: {e}"))?,
            Ok(Some(Err(e))) => return Err(format!("the engine's socket failed: {e}")),
            Ok(None) => return Err("the engine closed the connection".into()),
            Err(_) => return Err("the engine said nothing after its hello".into()),
        };
        if let ServerMsg::Error { message } = first {
            return Err(message);
        }
        session.first = Some(first);
        Ok(session)
    }

    async fn send(&mut self, msg: &ClientMsg) -> Result<(), String> {
        let text = line(msg);
        match tokio::time::timeout(WRITE_TIMEOUT, self.write.write_all(text.as_bytes())).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("the engine's socket failed: {e}")),
            Err(_) => Err("the engine took no request for 10 s".into()),
        }
    }
}

/// Why an engine's connection ended when it exited on purpose, as a
/// one-shot command or `logs -f` says it.
pub fn farewell(exit: Exit) -> &'static str {
    match exit {
        Exit::Shutdown => "the engine shut down (shutdown)",
        Exit::RestartProcess => "the engine exited to be restarted (restartproc)",
    }
}
