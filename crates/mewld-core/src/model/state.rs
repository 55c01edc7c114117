//! What faces see of the engine: each cluster's state and view, and the
//! plain-data snapshot the engine publishes. Snapshots are serde data with no handles in them,
//! so a face elsewhere can receive them over the wire later.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::health::Health;
use crate::cluster_map::{ClusterId, ClusterSpec};
use crate::model::{Exit, ExitInfo, RestartCounts};

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
    /// Exited unasked; a restart is scheduled (with backoff).
    Crashed,
    /// Could not be started, or kept crashing; left stopped until an
    /// operator starts it.
    Failed,
    /// Run by another host of the fleet that stopped heartbeating: its
    /// state is unknown (its manager's death took its processes along).
    Lost,
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
            ClusterState::Lost => "lost",
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
    /// Every restart, whatever the reason: the sum of `restarts_by`
    /// (kept for consoles and hosts that read only this).
    pub restarts: u32,
    /// The restarts by reason.
    #[serde(default)]
    pub restarts_by: RestartCounts,
    pub quick_failures: u32,
    /// When a crashed cluster will be started again.
    pub next_restart_at: Option<SystemTime>,
    pub last_exit: Option<ExitInfo>,
    /// Why its last start failed (the program missing, out of processes),
    /// until a start succeeds.
    #[serde(default)]
    pub start_error: Option<String>,
    /// The latest answer to a diagnostic from the current process.
    pub health: Option<Health>,
    /// In a fleet: the name of the host that runs it.
    #[serde(default)]
    pub host: Option<String>,
    /// During a `start_first` rolling restart (ext): the pid of the
    /// replacement started beside `pid`, which has not said `launch_next`
    /// yet. `pid` is still the cluster's process.
    #[serde(default)]
    pub replacing: Option<u32>,
    /// A second process of this cluster being stopped beside `pid` (ext):
    /// the one its replacement took over from, or a replacement given up.
    #[serde(default)]
    pub retiring: Option<u32>,
}

impl ClusterView {
    /// A cluster of a host that stopped heartbeating: nothing is known of it.
    pub fn lost(spec: &ClusterSpec) -> ClusterView {
        ClusterView {
            id: spec.id,
            name: spec.name.clone(),
            shards: spec.shards.clone(),
            state: ClusterState::Lost,
            pid: None,
            started_at: None,
            restarts: 0,
            restarts_by: RestartCounts::default(),
            quick_failures: 0,
            next_restart_at: None,
            last_exit: None,
            start_error: None,
            health: None,
            host: None,
            replacing: None,
            retiring: None,
        }
    }
}

/// A rolling restart under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollingView {
    pub done: usize,
    pub total: usize,
    /// The cluster being restarted now (the first, with several at a time).
    pub current: Option<ClusterId>,
    /// Every cluster being restarted now, in id order (ext:
    /// `rolling_restart_parallel`).
    #[serde(default)]
    pub under_way: Vec<ClusterId>,
    /// New processes start beside the old ones (`rolling_restart_mode:
    /// start_first`).
    #[serde(default)]
    pub start_first: bool,
}

/// The whole engine as faces see it, replaced on every change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub shard_count: u32,
    pub clusters: Vec<ClusterView>,
    /// Every cluster has said `launch_next` once; `all_clusters_launched` was sent.
    pub fully_up: bool,
    pub transport_connected: bool,
    /// While disconnected: when the next reconnection try is.
    pub transport_retry_at: Option<SystemTime>,
    pub started_at: Option<SystemTime>,
    /// `session_start_limit.remaining` when the map was built.
    pub sessions_remaining: Option<u32>,
    /// Set once a shutdown or process restart is under way: which one.
    pub exiting: Option<Exit>,
    pub rolling: Option<RollingView>,
    pub resharding: bool,
    /// The identify queue, when it runs.
    #[serde(default)]
    pub identify: Option<IdentifyStatus>,
    /// The fleet this host belongs to, when it runs in one.
    #[serde(default)]
    pub fleet: Option<FleetSummary>,
}

impl Snapshot {
    /// The header's summary in a line: what `systemctl status` and `mewld
    /// status` show.
    pub fn summary(&self) -> String {
        let total = self.clusters.len();
        let count = |state: ClusterState| self.clusters.iter().filter(|c| c.state == state).count();
        let running = count(ClusterState::Running);
        let mut text = if self.exiting.is_some() {
            format!("stopping every cluster ({running}/{total} still running)")
        } else if let Some(r) = &self.rolling {
            format!(
                "rolling restart {}/{}; {running}/{total} clusters running",
                r.done, r.total
            )
        } else if self.resharding {
            format!("resharding; {running}/{total} clusters running")
        } else if self.fully_up {
            format!("{running}/{total} clusters running, fully up")
        } else {
            let started = total - count(ClusterState::Pending);
            format!("launching: {started}/{total} clusters started, {running} running")
        };
        for state in [
            ClusterState::Crashed,
            ClusterState::Failed,
            ClusterState::Stopped,
            ClusterState::Lost,
        ] {
            let n = count(state);
            if n > 0 {
                text.push_str(&format!(", {n} {}", state.as_str()));
            }
        }
        if !self.transport_connected && self.exiting.is_none() {
            text.push_str("; IPC (Redis) down, retrying");
        }
        text
    }
}

/// The fleet as one host sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetSummary {
    /// This host's name.
    pub me: String,
    /// The leader's name and fencing token, when one is known.
    pub leader: Option<(String, u64)>,
    /// Whether this host leads now.
    pub leading: bool,
    /// Every host, this one first, then the others by name.
    pub hosts: Vec<HostSummary>,
    /// This host, leading, ordered every host to stop: the fleet task
    /// keeps the order in Redis for a host that missed the message.
    #[serde(default)]
    pub exit_order: Option<ExitOrder>,
}

/// `shutdown` or `restartproc` for the whole fleet, by the leader of `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitOrder {
    pub restart: bool,
    pub epoch: u64,
}

/// One host of the fleet, for the console's header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSummary {
    pub name: String,
    pub pid: u32,
    pub clusters: usize,
    pub running: usize,
}

/// The identify queue as the console header and the metrics show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentifyStatus {
    pub waiting: usize,
    /// Grants in the last [`crate::identify::WINDOW`].
    pub granted_in_window: u32,
    pub granted_total: u64,
    pub max_concurrency: u32,
    /// Session starts left; `None` when Discord was not asked.
    pub budget_remaining: Option<u32>,
    /// Grants are held until the budget resets.
    pub held: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_map;

    fn snapshot(states: &[ClusterState]) -> Snapshot {
        let clusters = cluster_map::build(states.len() as u32, 1, &[]);
        Snapshot {
            clusters: clusters
                .into_iter()
                .zip(states)
                .map(|(spec, state)| ClusterView {
                    state: *state,
                    ..ClusterView::lost(&spec)
                })
                .collect(),
            transport_connected: true,
            ..Snapshot::default()
        }
    }

    #[test]
    fn the_summary_says_where_the_bot_is() {
        use ClusterState::*;
        let mut s = snapshot(&[Running, Starting, Pending]);
        assert_eq!(s.summary(), "launching: 2/3 clusters started, 1 running");
        s = snapshot(&[Running, Running, Crashed]);
        s.fully_up = true;
        assert_eq!(s.summary(), "2/3 clusters running, fully up, 1 crashed");
        s.transport_connected = false;
        assert_eq!(
            s.summary(),
            "2/3 clusters running, fully up, 1 crashed; IPC (Redis) down, retrying"
        );
        s.exiting = Some(Exit::Shutdown);
        assert_eq!(
            s.summary(),
            "stopping every cluster (2/3 still running), 1 crashed"
        );
    }
}
