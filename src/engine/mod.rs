//! The engine: the one owner of every cluster's state.
//!
//! Its decisions are a pure state machine, [`core::Core`]: one input in,
//! commands out, no I/O and no clock. The [`Engine`] (`runner.rs`) is the
//! actor around it (the handle + task pattern): it feeds the core operator
//! requests, messages from clusters, child exits and timers one at a time,
//! so no lock guards cluster state, and carries out the commands. Faces
//! hold an [`EngineHandle`]: they send [`Operation`]s, receive [`Event`]s,
//! and read the latest [`Snapshot`].

pub mod actlog;
pub mod argv;
pub mod core;
pub mod health;
pub mod launch;
pub mod process;
pub mod restart;
pub mod rolling;
mod runner;
pub mod state;

pub use runner::Engine;

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::cluster_map::{ClusterId, ClusterSpec};
use crate::config::Config;
use crate::discord::SessionStartLimit;
use crate::transport::{Origin, Peer};
use process::Stream;
use state::Snapshot;

/// Something an operator (over Redis, from the console, or a signal) asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Start(ClusterId),
    Stop(ClusterId),
    Restart(ClusterId),
    /// Send this cluster a diagnostic now.
    Diagnose(ClusterId),
    /// Restart every running cluster, one at a time.
    RollingRestart,
    /// Ask Discord again and grow the cluster map (experimental feature).
    Reshard,
    /// Stop every cluster, then exit 0.
    Shutdown,
    /// Stop every cluster, then exit 1 so a service manager restarts us.
    RestartProcess,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::Start(_) => "start",
            Operation::Stop(_) => "stop",
            Operation::Restart(_) => "restart",
            Operation::Diagnose(_) => "diagnose",
            Operation::RollingRestart => "rollingrestart",
            Operation::Reshard => "reshard",
            Operation::Shutdown => "shutdown",
            Operation::RestartProcess => "restartproc",
        }
    }

    pub fn cluster(self) -> Option<ClusterId> {
        match self {
            Operation::Start(id)
            | Operation::Stop(id)
            | Operation::Restart(id)
            | Operation::Diagnose(id) => Some(id),
            Operation::RollingRestart
            | Operation::Reshard
            | Operation::Shutdown
            | Operation::RestartProcess => None,
        }
    }
}

/// Who asked, recorded in the action log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Redis,
    /// A client of the Unix socket (the log names its process).
    Unix(Peer),
    Console,
    /// A console attached over the control socket (the log names its process).
    Attach(Peer),
    Daemon,
    /// A request the manager published itself: transports give the manager
    /// its own messages back. It publishes none today.
    Manager,
    /// Asked on another host of the fleet, which handed it here; the
    /// action log names that host too.
    Fleet(FleetVia),
}

/// How an operation handed over by another host was asked there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetVia {
    Console,
    Attach,
    Redis,
    Unix,
    Daemon,
    /// A step of the leader's rolling restart.
    Rolling,
    Other,
}

impl FleetVia {
    pub fn parse(s: &str) -> FleetVia {
        match s {
            "console" => FleetVia::Console,
            "attach" => FleetVia::Attach,
            "redis" => FleetVia::Redis,
            "unix" => FleetVia::Unix,
            "daemon" => FleetVia::Daemon,
            "rolling" => FleetVia::Rolling,
            _ => FleetVia::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FleetVia::Console => "console",
            FleetVia::Attach => "attach",
            FleetVia::Redis => "redis",
            FleetVia::Unix => "unix",
            FleetVia::Daemon => "daemon",
            FleetVia::Rolling => "rolling",
            FleetVia::Other => "fleet",
        }
    }
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Redis => "redis",
            Via::Unix(_) => "unix",
            Via::Console => "console",
            Via::Attach(_) => "attach",
            Via::Daemon => "daemon",
            Via::Manager => "manager",
            Via::Fleet(via) => via.as_str(),
        }
    }
}

impl From<Origin> for Via {
    fn from(origin: Origin) -> Self {
        match origin {
            Origin::Redis => Via::Redis,
            Origin::Unix(peer) => Via::Unix(peer),
            Origin::Manager => Via::Manager,
        }
    }
}

/// How the engine ended, and so how the process should exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Shutdown,
    RestartProcess,
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Shutdown => 0,
            Exit::RestartProcess => 1,
        }
    }
}

/// News for faces. Plain data, so it can travel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Event {
    /// One line a cluster printed.
    Output {
        id: ClusterId,
        name: String,
        stream: Stream,
        line: String,
    },
    /// An entry the manager wrote to the action log.
    ActionLog(Map<String, Value>),
    /// An entry a cluster sent (`action_logs`), written to the action log:
    /// kept apart so that nothing a bot says counts as the manager's.
    ClusterLog(Map<String, Value>),
}

/// Why an operation was refused. `Display` is for people (the console's
/// message line, the action log's `refused`); code matches the variants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refused {
    #[error("the manager is shutting down")]
    ShuttingDown,
    #[error("the engine has stopped")]
    EngineStopped,
    /// Said by an attached console while its engine is out of reach.
    #[error("not connected to the engine (reconnecting)")]
    NotConnected,
    #[error("there is no cluster {0}")]
    NoSuchCluster(ClusterId),
    #[error("{0} is already running")]
    AlreadyRunning(Label),
    #[error("{0} is not running")]
    NotRunning(Label),
    #[error("{0} is not running (use start)")]
    RestartNotRunning(Label),
    #[error("could not start {label}: {error}")]
    CouldNotStart { label: Label, error: String },
    #[error("the transport is not connected")]
    TransportDown,
    #[error("resharding is experimental: add `reshard` to experimental_features")]
    ReshardDisabled,
    #[error("a rolling restart is already under way")]
    RollingUnderWay,
    #[error("a reshard is already under way")]
    ReshardUnderWay,
    #[error("not every cluster has launched yet; wait until the bot is fully up")]
    NotFullyUp,
    #[error("{label} runs on host {host}; its own manager answers for it")]
    OnAnotherHost { label: Label, host: String },
    #[error("{0} is on a host that stopped heartbeating; nothing can reach it")]
    HostLost(Label),
    #[error("{0} is not supported across several hosts yet")]
    NotInFleet(String),
}

/// A cluster as people name it: id and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub id: ClusterId,
    pub name: String,
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cluster {} ({})", self.id, self.name)
    }
}

/// What the engine needs to run: the resolved config and the cluster map.
pub struct Setup {
    pub config: Arc<Config>,
    /// Variables from the config's env files, handed to every cluster.
    pub env_vars: Vec<(String, String)>,
    pub shard_count: u32,
    pub clusters: Vec<ClusterSpec>,
    /// Discord's session-start limit, when it was asked.
    pub session_limit: Option<SessionStartLimit>,
    /// This manager's claim in Redis: its place in a fleet, or every
    /// cluster alone (`solo`); `None` without Redis (`ipc: unix`).
    pub fleet: Option<crate::fleet::Membership>,
}

impl Setup {
    /// The print of the whole map, which every manager on the channel
    /// must share.
    pub fn map_print(&self) -> crate::cluster_map::MapPrint {
        crate::cluster_map::MapPrint::of(self.shard_count, &self.clusters)
    }
}

/// Waits for the engine's next snapshot; `None` once the engine is gone.
pub async fn next_snapshot(rx: &mut watch::Receiver<Arc<Snapshot>>) -> Option<Arc<Snapshot>> {
    rx.changed().await.ok()?;
    Some(rx.borrow_and_update().clone())
}

/// What a face asks of the engine, with where the answer goes. A console
/// attached over the control socket sends these to its own end, which
/// carries them to the daemon's engine.
pub enum FaceRequest {
    Op {
        op: Operation,
        via: Via,
        reply: oneshot::Sender<Result<(), Refused>>,
    },
    /// The action log, oldest first, each entry as stored: its JSON text
    /// (a face parses what it shows; the control socket passes it on).
    History(oneshot::Sender<Result<Vec<String>, String>>),
    /// Answered by the engine's loop itself: proof that it turns (for the
    /// systemd watchdog).
    Alive(oneshot::Sender<()>),
}

/// A face's end of the engine. Cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    /// Bounded: a face that asks faster than the engine answers waits.
    requests: mpsc::Sender<FaceRequest>,
    events: broadcast::Sender<Event>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
}

impl EngineHandle {
    /// A handle on an engine elsewhere: `requests` are carried to it,
    /// `events` and `snapshot` are fed from it (the control socket's client).
    pub fn remote(
        requests: mpsc::Sender<FaceRequest>,
        events: broadcast::Sender<Event>,
        snapshot: watch::Receiver<Arc<Snapshot>>,
    ) -> EngineHandle {
        EngineHandle {
            requests,
            events,
            snapshot,
        }
    }

    /// Asks for `op` and waits for the engine's verdict.
    pub async fn request(&self, op: Operation, via: Via) -> Result<(), Refused> {
        let (tx, rx) = oneshot::channel();
        let input = FaceRequest::Op { op, via, reply: tx };
        if self.requests.send(input).await.is_err() {
            return Err(Refused::EngineStopped);
        }
        rx.await.unwrap_or(Err(Refused::EngineStopped))
    }

    /// The action log as stored (oldest first, each entry's JSON text), for
    /// a face that starts late.
    pub async fn history(&self) -> Result<Vec<String>, String> {
        let (tx, rx) = oneshot::channel();
        if self.requests.send(FaceRequest::History(tx)).await.is_err() {
            return Err("the engine has stopped".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("the engine has stopped".into()))
    }

    /// Whether the engine's loop answers a request (at once, unless it is
    /// wedged).
    pub async fn alive(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        self.requests.send(FaceRequest::Alive(tx)).await.is_ok() && rx.await.is_ok()
    }

    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn snapshot(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.clone()
    }
}
