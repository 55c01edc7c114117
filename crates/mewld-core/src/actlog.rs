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
            | "rolling_restart_stopped" => Tone::Trouble,
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
            | "leader_elected" => Tone::Progress,
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
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_have_event_and_microsecond_ts() {
        let e = LogEvent::PingFailure { id: 3 }.entry(SystemTime::now());
        assert_eq!(e["event"], "ping_failure");
        assert_eq!(e["id"], 3);
        let ts = e["ts"].as_i64().expect("ts is a number");
        // Microseconds since 1970 are 16 digits for the next few centuries.
        assert!(ts > 1_600_000_000_000_000, "{ts}");
    }

    /// The stored JSON is what the original's readers and ours expect.
    #[test]
    fn events_serialise_as_the_original_shapes() {
        let without_ts = |e: LogEvent| {
            let mut m = e.entry(SystemTime::now());
            m.remove("ts");
            Value::Object(m)
        };
        assert_eq!(
            without_ts(LogEvent::ClusterExited {
                id: 2,
                exit: ExitFields {
                    code: None,
                    signal: Some(9)
                },
                restart_in_ms: Some(3000),
                quick_failures: None,
            }),
            json!({"event": "cluster_exited", "id": 2, "signal": 9, "restart_in_ms": 3000})
        );
        assert_eq!(
            without_ts(LogEvent::ClusterStartFailed {
                id: 1,
                via: StartVia::PingCheck,
                error: "e".into(),
                restart_in_ms: None,
            }),
            json!({"event": "cluster_start_failed", "id": 1, "via": "ping_check", "error": "e"})
        );
        assert_eq!(
            without_ts(LogEvent::ClusterRestartFailed {
                id: 1,
                via: RestartVia::Start,
                error: "e".into(),
                restart_in_ms: Some(3000),
            }),
            json!({"event": "cluster_restart_failed", "id": 1, "via": "start", "error": "e", "restart_in_ms": 3000})
        );
        assert_eq!(
            without_ts(LogEvent::RollingRestartDone {}),
            json!({"event": "rolling_restart_done"})
        );
        assert_eq!(
            without_ts(LogEvent::OperatorAction {
                host: None,
                action: "stop",
                via: "redis",
                id: Some(99),
                peer_pid: None,
                peer_uid: None,
                refused: Some("there is no cluster 99".into()),
            }),
            json!({"event": "operator_action", "action": "stop", "via": "redis", "id": 99, "refused": "there is no cluster 99"})
        );
    }

    /// Every name `Tone` knows is an event the manager writes.
    #[test]
    fn tones_name_real_events() {
        let id = 1;
        let exit = ExitFields {
            code: Some(1),
            signal: None,
        };
        let error = String::new();
        let events = [
            LogEvent::PingFailure { id },
            LogEvent::ClusterExited {
                id,
                exit,
                restart_in_ms: None,
                quick_failures: None,
            },
            LogEvent::ClusterFailed {
                id,
                quick_failures: 1,
                error: error.clone(),
            },
            LogEvent::ClusterStartFailed {
                id,
                via: StartVia::Observe,
                error: error.clone(),
                restart_in_ms: None,
            },
            LogEvent::ClusterRestartFailed {
                id,
                via: RestartVia::Start,
                error: error.clone(),
                restart_in_ms: None,
            },
            LogEvent::ReshardFailed {
                subsystem: "discord",
                error: error.clone(),
            },
            LogEvent::LaunchTimeout { id, waited_secs: 1 },
            LogEvent::RollingRestartTimeout { id, waited_secs: 1 },
            LogEvent::ChannelStall {
                waited_secs: 1,
                error,
            },
            LogEvent::IdentifyBudgetLow {
                remaining: 5,
                reserve: 5,
                resets_in_secs: 1,
            },
            LogEvent::HostLost {
                host: "b".into(),
                clusters: "3-5".into(),
            },
            LogEvent::IdentifyBudgetReset { remaining: 1 },
            LogEvent::HostJoined {
                host: "b".into(),
                pid: 1,
                clusters: "3-5".into(),
            },
            LogEvent::LeaderElected {
                host: "a".into(),
                epoch: 1,
            },
            LogEvent::ClusterStarted { id, pid: 1 },
            LogEvent::ClusterLaunched { id },
            LogEvent::ClusterRestarted { id, restarts: 1 },
            LogEvent::AllClustersLaunched { clusters: 1 },
            LogEvent::ChannelRecovered { stalled_secs: 1 },
            LogEvent::ReshardSuccess {
                subsystem: "cluster_map",
                old_shards: 1,
                new_shards: 2,
                clusters: 1,
                restarting: vec![],
            },
            LogEvent::RollingRestartDone {},
            LogEvent::ReshardRestartsDone {},
        ];
        let (trouble, progress): (Vec<_>, Vec<_>) = events
            .iter()
            .map(|e| {
                Tone::of(
                    e.entry(SystemTime::now())["event"]
                        .as_str()
                        .unwrap_or_default(),
                )
            })
            .partition(|t| *t == Tone::Trouble);
        assert_eq!(trouble.len(), 11);
        assert!(progress.iter().all(|t| *t == Tone::Progress));
        assert_eq!(Tone::of("shards_launched"), Tone::Plain);
    }

    #[test]
    fn cluster_entries_get_a_ts() {
        let Value::Object(data) = json!({"event": "shards_launched", "cluster": 1, "ts": 5}) else {
            unreachable!()
        };
        let e = from_cluster(data, SystemTime::now());
        assert!(e["ts"].as_i64() > Some(5));
        assert_eq!(e["cluster"], 1);
    }
}
