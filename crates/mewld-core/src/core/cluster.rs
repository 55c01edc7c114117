//! The core's own record of one cluster (faces see its [`ClusterView`]).

use std::time::SystemTime;

use crate::actlog::{LogEvent, RestartVia, StartVia};
use crate::cluster_map::ClusterId;
use crate::cluster_map::ClusterSpec;
use crate::model::health::Health;
use crate::model::state::{ClusterState, ClusterView};
use crate::model::{ExitInfo, RestartCounts, RestartReason};

/// The engine's own record of one cluster.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub spec: ClusterSpec,
    pub state: ClusterState,
    /// The live process's pid, if any: set in Starting (once spawned),
    /// Running and Stopping.
    pub pid: Option<u32>,
    /// The live process's generation: late news of another process (an
    /// earlier one, or its `second`) is told apart by it.
    pub generation: u64,
    /// The last generation handed out, to this cluster's process or its
    /// second: each process of the cluster gets its own.
    pub generations: u64,
    /// Its second process, during a `start_first` overlap (at most one).
    pub second: Option<Second>,
    pub started_at: Option<SystemTime>,
    /// Start again once the current process has exited, and why.
    pub restart_when_stopped: Option<RestartCause>,
    /// Its restarts so far, by reason: counted when the new process is
    /// asked for.
    pub restarts: RestartCounts,
    /// Unasked exits in a row, each soon after a start (crash-loop count).
    pub quick_failures: u32,
    pub next_restart_at: Option<SystemTime>,
    pub last_exit: Option<ExitInfo>,
    /// Why the last start failed, until one succeeds.
    pub start_error: Option<String>,
    pub health: Option<Health>,
    /// A spawn asked of the runner whose outcome is not in yet, and what
    /// it was for.
    pub spawning: Option<super::Purpose>,
    /// Its answers named shards not its own, and that was said.
    pub said_strays: bool,
}

impl Cluster {
    pub fn new(spec: ClusterSpec) -> Self {
        Cluster {
            spec,
            state: ClusterState::Pending,
            pid: None,
            generation: 0,
            generations: 0,
            second: None,
            started_at: None,
            restart_when_stopped: None,
            restarts: RestartCounts::default(),
            quick_failures: 0,
            next_restart_at: None,
            last_exit: None,
            start_error: None,
            health: None,
            spawning: None,
            said_strays: false,
        }
    }

    /// Some process of it runs: its own, or a second one (see [`Second`]).
    pub fn is_alive(&self) -> bool {
        self.pid.is_some() || self.second.is_some()
    }

    /// A generation no process of this cluster has had.
    pub fn next_generation(&mut self) -> u64 {
        self.generations += 1;
        self.generations
    }

    /// The replacement starting beside its process, if one is.
    pub fn replacement(&self) -> Option<&Second> {
        self.second
            .as_ref()
            .filter(|s| matches!(s.role, Role::Replacement(_) | Role::Ready(_)))
    }

    /// Alive and meant to stay so (not being stopped).
    pub fn is_up(&self) -> bool {
        matches!(self.state, ClusterState::Starting | ClusterState::Running)
    }

    pub fn view(&self) -> ClusterView {
        ClusterView {
            id: self.spec.id,
            name: self.spec.name.clone(),
            shards: self.spec.shards.clone(),
            state: self.state,
            pid: self.pid,
            started_at: self.started_at,
            restarts: self.restarts.total(),
            restarts_by: self.restarts,
            quick_failures: self.quick_failures,
            next_restart_at: self.next_restart_at,
            last_exit: self.last_exit,
            start_error: self.start_error.clone(),
            health: self.health.clone(),
            host: None,
            replacing: self.replacement().and_then(|s| s.pid),
            retiring: self
                .second
                .as_ref()
                .filter(|s| matches!(s.role, Role::Retiring | Role::Abandoned))
                .and_then(|s| s.pid),
        }
    }
}

/// A cluster's second process: the one deliberate exception to "one
/// process per cluster" (docs/protocol.md §6, `start_first`). A cluster has
/// at most one, and none of its other processes is started while it lives.
#[derive(Debug)]
pub(crate) struct Second {
    pub generation: u64,
    /// Set once spawned (its outcome comes back within the same drive).
    pub pid: Option<u32>,
    pub started_at: Option<SystemTime>,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The new process, started beside the cluster's, for this restart;
    /// it has not said `launch_next` yet.
    Replacement(RestartCause),
    /// A replacement that said `launch_next`, held beside the cluster's
    /// process until a start-first reshard's whole new map is up.
    Ready(RestartCause),
    /// The old process, being stopped: its replacement took over.
    Retiring,
    /// A replacement being stopped: given up, or its cluster stopped.
    Abandoned,
}

/// Why a running cluster is being stopped and started again. Decides the
/// action-log event if the start fails (docs/protocol.md §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartCause {
    Operator,
    PingCheck,
    RollingRestart,
    /// A reshard's restart of a cluster whose shards changed: a rolling
    /// restart on the channel and in the action log, counted apart.
    Reshard,
}

impl RestartCause {
    /// What the restart is counted as.
    pub fn reason(self) -> RestartReason {
        match self {
            RestartCause::Operator => RestartReason::Operator,
            RestartCause::PingCheck => RestartReason::PingFailure,
            RestartCause::RollingRestart => RestartReason::RollingRestart,
            RestartCause::Reshard => RestartReason::Reshard,
        }
    }

    /// What is logged when the new start fails (and is retried in
    /// `restart_in_ms`, if it is).
    pub fn failure_event(
        self,
        id: ClusterId,
        error: String,
        restart_in_ms: Option<u64>,
    ) -> LogEvent {
        match self {
            RestartCause::Operator => LogEvent::ClusterRestartFailed {
                id,
                via: RestartVia::Restart,
                error,
                restart_in_ms,
            },
            RestartCause::PingCheck => LogEvent::ClusterStartFailed {
                id,
                via: StartVia::PingCheck,
                error,
                restart_in_ms,
            },
            RestartCause::RollingRestart | RestartCause::Reshard => {
                LogEvent::ClusterRestartFailed {
                    id,
                    via: RestartVia::RollingRestart,
                    error,
                    restart_in_ms,
                }
            }
        }
    }
}
