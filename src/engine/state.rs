//! What the engine knows about each cluster, and the plain-data snapshot it
//! publishes for faces. Snapshots are serde data with no handles in them,
//! so a face elsewhere can receive them over the wire later.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::process::{ExitInfo, ProcHandle};
use crate::cluster_map::{ClusterId, ClusterSpec};

/// Where a cluster is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterState {
    /// Not started yet: waiting for its turn in the launch.
    Pending,
    /// Its process runs; it has not said `launch_next` yet.
    Starting,
    /// It said `launch_next`: all its shards are up.
    Running,
    /// Asked to stop; waiting for the process to exit.
    Stopping,
    /// Stopped by an operator; it stays stopped.
    Stopped,
    /// Exited unasked; a restart is scheduled.
    Crashed,
    /// Could not be started; left stopped until an operator starts it.
    Failed,
}

impl ClusterState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::Pending => "pending",
            ClusterState::Starting => "starting",
            ClusterState::Running => "running",
            ClusterState::Stopping => "stopping",
            ClusterState::Stopped => "stopped",
            ClusterState::Crashed => "crashed",
            ClusterState::Failed => "failed",
        }
    }
}

/// The engine's own record of one cluster.
#[derive(Debug)]
pub(super) struct Cluster {
    pub spec: ClusterSpec,
    pub state: ClusterState,
    /// The live process, if any. Present in Starting, Running, Stopping.
    pub proc: Option<ProcHandle>,
    /// Bumped on every spawn, so that late news of an old process is ignored.
    pub generation: u64,
    pub started_at: Option<SystemTime>,
    /// Start again once the current process has exited (a `restart`).
    pub restart_when_stopped: bool,
    /// Restarts after the process exited unasked.
    pub crash_restarts: u32,
    pub last_exit: Option<ExitInfo>,
}

impl Cluster {
    pub fn new(spec: ClusterSpec) -> Self {
        Cluster {
            spec,
            state: ClusterState::Pending,
            proc: None,
            generation: 0,
            started_at: None,
            restart_when_stopped: false,
            crash_restarts: 0,
            last_exit: None,
        }
    }

    pub fn is_alive(&self) -> bool {
        self.proc.is_some()
    }

    pub fn view(&self) -> ClusterView {
        ClusterView {
            id: self.spec.id,
            name: self.spec.name.clone(),
            shards: self.spec.shards.clone(),
            state: self.state,
            pid: self.proc.as_ref().map(|p| p.pid),
            started_at: self.started_at,
            restarts: self.crash_restarts,
            last_exit: self.last_exit,
        }
    }
}

/// One cluster as faces see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    pub id: ClusterId,
    pub name: String,
    pub shards: Vec<u32>,
    pub state: ClusterState,
    pub pid: Option<u32>,
    pub started_at: Option<SystemTime>,
    pub restarts: u32,
    pub last_exit: Option<ExitInfo>,
}

/// The whole engine as faces see it, replaced on every change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub shard_count: u32,
    pub clusters: Vec<ClusterView>,
    /// Every cluster has said `launch_next` once; `all_clusters_launched` was sent.
    pub fully_up: bool,
    pub transport_connected: bool,
    pub started_at: Option<SystemTime>,
    /// `session_start_limit.remaining` when the map was built.
    pub sessions_remaining: Option<u32>,
    /// Set once a shutdown or process restart is under way.
    pub exiting: bool,
}
