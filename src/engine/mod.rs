//! The engine: the one owner of every cluster's state.
//!
//! Its decisions are a pure state machine, [`core::Core`]: one input in,
//! commands out, no I/O and no clock. The [`Engine`] (`runner.rs`) is the
//! actor around it (the handle + task pattern): it feeds the core operator
//! requests, messages from clusters, child exits and timers one at a time,
//! so no lock guards cluster state, and carries out the commands. Faces
//! hold an [`EngineHandle`]: they send [`Operation`]s, receive [`Event`]s,
//! and read the latest [`Snapshot`].

mod children;
pub mod process;
mod runner;

pub use runner::Engine;

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::config::Config;
use mewld_core::cluster_map::{ClusterId, ClusterSpec};
use mewld_core::model::state::Snapshot;
use mewld_core::model::{Event, ExitInfo, GatewayBot, Operation, Refused, Via};

/// What the engine needs to run: the resolved config and the cluster map.
pub struct Setup {
    pub config: Arc<Config>,
    /// Variables from the config's env files, handed to every cluster.
    pub env_vars: Vec<(String, String)>,
    pub shard_count: u32,
    pub clusters: Vec<ClusterSpec>,
    /// Discord's Get Gateway Bot answer (its URL and the session-start
    /// limit), as start-up last had it; `None` if Discord could not be asked.
    pub gateway: Option<GatewayBot>,
    /// This manager's claim in Redis: its place in a fleet, or every
    /// cluster alone (`solo`); `None` without Redis (`ipc: unix`).
    pub fleet: Option<mewld_core::fleet::Membership>,
}

impl Setup {
    /// The print of the whole map, which every manager on the channel
    /// must share.
    pub fn map_print(&self) -> mewld_core::cluster_map::MapPrint {
        mewld_core::cluster_map::MapPrint::of(self.shard_count, &self.clusters)
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
    /// systemd watchdog), and, once answered, the snapshot is current.
    Alive(oneshot::Sender<()>),
}

/// What reaches the engine's inbox from its processes (`children.rs`) and
/// its own tasks.
enum Message {
    Exited {
        id: ClusterId,
        generation: u64,
        exit: ExitInfo,
    },
    GatewayFetched(Result<GatewayBot, String>),
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
    /// wedged). After a `true`, the snapshot holds everything the engine
    /// had done when it answered, coalescing or not.
    pub async fn alive(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        self.requests.send(FaceRequest::Alive(tx)).await.is_ok() && rx.await.is_ok()
    }

    /// Shows every face an action-log entry this process stored itself
    /// (the web API's publishes), as the engine's own entries are shown.
    pub fn tell(&self, event: Event) {
        // Nobody listening is not an error.
        let _ = self.events.send(event);
    }

    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn snapshot(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.clone()
    }
}
