//! Action-log entries (docs/protocol.md §5.4): JSON objects with at least
//! `event` and `ts` (unix microseconds).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::cluster_map::ClusterId;
use crate::model::ExitInfo;

/// `t` in unix microseconds, an entry's `ts`.
pub fn unix_micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An event the manager writes to the action log (docs/protocol.md §5.4).
/// Serialised as the entry's fields with `event` as the variant's name, so
/// the list in Redis reads exactly as the original's events did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LogEvent {
    ClusterStarted {
        id: ClusterId,
        pid: u32,
    },
    ClusterLaunched {
        id: ClusterId,
    },
    /// Exited unasked (or during a shutdown), with its status.
    ClusterExited {
        id: ClusterId,
        #[serde(flatten)]
        exit: ExitFields,
        #[serde(skip_serializing_if = "Option::is_none")]
        restart_in_ms: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        quick_failures: Option<u32>,
    },
    /// Exited after being asked to stop.
    ClusterStopped {
        id: ClusterId,
        #[serde(flatten)]
        exit: ExitFields,
    },
    ClusterRestarted {
        id: ClusterId,
        restarts: u32,
    },
    ClusterFailed {
        id: ClusterId,
        quick_failures: u32,
        error: String,
    },
    /// A spawn failed; `restart_in_ms` when it was a shortage (out of file
    /// descriptors, memory, processes) and the crash rules retry it.
    ClusterStartFailed {
        id: ClusterId,
        via: StartVia,
        error: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        restart_in_ms: Option<u64>,
    },
    ClusterRestartFailed {
        id: ClusterId,
        via: RestartVia,
        error: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        restart_in_ms: Option<u64>,
    },
    LaunchTimeout {
        id: ClusterId,
        waited_secs: u64,
    },
    AllClustersLaunched {
        clusters: usize,
    },
    PingFailure {
        id: ClusterId,
    },
    ChannelStall {
        waited_secs: u64,
        error: String,
    },
    ChannelRecovered {
        stalled_secs: u64,
    },
    RollingRestart {
        clusters: Vec<ClusterId>,
    },
    RollingRestartTimeout {
        id: ClusterId,
        waited_secs: u64,
    },
    RollingRestartDone {},
    ReshardBegin {
        subsystem: &'static str,
        shards: u32,
    },
    ReshardSuccess {
        subsystem: &'static str,
        old_shards: u32,
        new_shards: u32,
        clusters: usize,
        restarting: Vec<ClusterId>,
    },
    ReshardFailed {
        subsystem: &'static str,
        error: String,
    },
    ReshardRestartsDone {},
    /// A start-first reshard ended at cluster `id`: a process of the new
    /// map failed. Every one of them is stopped; the old map runs on.
    ReshardAborted {
        id: ClusterId,
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        output: Vec<String>,
    },
    /// `start_first` (ext): a cluster's replacement was started beside its
    /// process `replaces`.
    ReplacementStarted {
        id: ClusterId,
        pid: u32,
        replaces: u32,
    },
    /// The replacement said `launch_next`: it is the cluster's process now,
    /// and the one it replaced (`old_pid`) is being stopped.
    ClusterReplaced {
        id: ClusterId,
        pid: u32,
        old_pid: u32,
    },
    /// The process a replacement took over from has exited.
    ReplacedProcessStopped {
        id: ClusterId,
        pid: u32,
        #[serde(flatten)]
        exit: ExitFields,
    },
    /// A replacement given up (the roll aborted, or an operator stopped
    /// the cluster) has exited.
    ReplacementStopped {
        id: ClusterId,
        pid: u32,
        #[serde(flatten)]
        exit: ExitFields,
    },
    /// A `start_first` rolling restart ended at cluster `id`: its
    /// replacement exited, could not start or did not say `launch_next` in
    /// time. The old process runs on; no later cluster was touched.
    /// `output` is the replacement's last lines (the engine adds them).
    RollingRestartAborted {
        id: ClusterId,
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        output: Vec<String>,
    },
    /// The identify queue holds every grant: the session-start budget is
    /// down to `minimum_safe_sessions_remaining`.
    IdentifyBudgetLow {
        remaining: u32,
        reserve: u32,
        resets_in_secs: u64,
    },
    /// A budget reset ended a hold; the identify queue grants again.
    IdentifyBudgetReset {
        remaining: u32,
    },
    /// A host of the fleet began heartbeating.
    HostJoined {
        host: String,
        pid: u32,
        clusters: String,
    },
    /// A host of the fleet stopped heartbeating: its clusters are lost.
    HostLost {
        host: String,
        clusters: String,
    },
    /// This host's record lapsed and another host has claimed its clusters
    /// since: it stops them and exits.
    HostDisplaced {
        host: String,
        error: String,
    },
    /// The leader lost its lease during a rolling restart: it stops walking
    /// (the next leader does not resume it).
    RollingRestartStopped {
        done: usize,
        total: usize,
        /// Why, when it was not the lease: another host's replacement
        /// failed (`start_first`).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// This host leads the fleet now (answers `statuses`, announces the
    /// launch, walks rolling restarts); `epoch` is its fencing token.
    LeaderElected {
        host: String,
        epoch: u64,
    },
    OperatorAction {
        action: &'static str,
        via: &'static str,
        /// The host the operator asked on, in a fleet.
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<ClusterId>,
        #[serde(skip_serializing_if = "Option::is_none")]
        peer_pid: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        peer_uid: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
    },
}

/// How an action-log event reads to an operator, by its `event` name (the
/// console colours it so). Clusters' own events are `Plain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Something went wrong.
    Trouble,
    /// Something came up.
    Progress,
    Plain,
}

impl Tone {
    pub fn of(event: &str) -> Tone {
        match event {
            "ping_failure"
            | "cluster_exited"
            | "cluster_failed"
            | "cluster_start_failed"
            | "cluster_restart_failed"
            | "reshard_failed"
            | "launch_timeout"
            | "rolling_restart_timeout"
            | "channel_stall"
            | "identify_budget_low"
            | "host_lost"
            | "host_displaced"
            | "rolling_restart_stopped"
            | "rolling_restart_aborted"
            | "reshard_aborted" => Tone::Trouble,
            "cluster_started"
            | "cluster_launched"
            | "cluster_restarted"
            | "all_clusters_launched"
            | "channel_recovered"
            | "reshard_success"
            | "rolling_restart_done"
            | "reshard_restarts_done"
            | "identify_budget_reset"
            | "host_joined"
            | "leader_elected"
            | "replacement_started"
            | "cluster_replaced" => Tone::Progress,
            _ => Tone::Plain,
        }
    }
}

/// How a process ended, as the entry's `code` or `signal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExitFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

impl From<ExitInfo> for ExitFields {
    fn from(e: ExitInfo) -> Self {
        ExitFields {
            code: e.code,
            signal: e.signal,
        }
    }
}

/// `via` of `cluster_start_failed`: what was starting the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StartVia {
    StartNext,
    PingCheck,
    Observe,
}

/// `via` of `cluster_restart_failed`: who asked for the restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartVia {
    RollingRestart,
    Start,
    Restart,
}

impl LogEvent {
    /// Where a replacement's last output lines go, which only the engine
    /// has: the cluster, the replacement's pid and the list to fill.
    pub fn replacement_output(&mut self) -> Option<(ClusterId, u32, &mut Vec<String>)> {
        match self {
            LogEvent::RollingRestartAborted {
                id,
                pid: Some(pid),
                output,
                ..
            }
            | LogEvent::ReshardAborted {
                id,
                pid: Some(pid),
                output,
                ..
            } => Some((*id, *pid, output)),
            _ => None,
        }
    }

    /// The entry as stored: the event's fields, `event` and `ts` (`at`).
    pub fn entry(&self, at: SystemTime) -> Map<String, Value> {
        let mut map = match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            // A tagged enum of plain fields always serialises to an object.
            _ => Map::new(),
        };
        map.insert("ts".into(), Value::from(unix_micros(at)));
        map
    }
}

/// An entry sent by a cluster (`action_logs`): its `data` with `ts` set, so
/// every entry's time is on the manager's clock and in microseconds.
pub fn from_cluster(mut data: Map<String, Value>, at: SystemTime) -> Map<String, Value> {
    data.insert("ts".into(), Value::from(unix_micros(at)));
    data
}

#[cfg(test)]
mod tests;
