//! The series mewld exports and how they follow the engine: gauges from
//! each snapshot, counters from each action-log entry. Labels come from
//! the cluster map, never from what a bot says: a cluster's health counts
//! only its own shards, and its `action_logs` entries only their own
//! counter, so no bot can add series or move the manager's counters.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::{Map, Value};

use crate::cluster_map::ClusterId;
use crate::engine::state::{ClusterState, ClusterView, Snapshot};

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Distinct `event` labels kept, per counter; clusters write entries with
/// names of their own, and each name is a series.
const EVENT_NAMES: usize = 64;
/// Longer event names are counted as `other`.
const EVENT_NAME_LEN: usize = 64;

const STATES: [ClusterState; 8] = [
    ClusterState::Pending,
    ClusterState::Starting,
    ClusterState::Running,
    ClusterState::Stopping,
    ClusterState::Stopped,
    ClusterState::Crashed,
    ClusterState::Failed,
    ClusterState::Lost,
];

const ROUND_TRIP_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Every series mewld exports (README: Metrics), and what following the
/// engine needs to remember.
pub(super) struct Series {
    clusters: Family<Labels, Gauge>,
    cluster_up: Family<Labels, Gauge>,
    restarts: Family<Labels, Counter>,
    ping_failures: Family<Labels, Counter>,
    diag_round_trip: Histogram,
    shard_up: Family<Labels, Gauge>,
    shard_latency: Family<Labels, FloatGauge>,
    shard_guilds: Family<Labels, Gauge>,
    redis_connected: Gauge,
    log_entries: Family<Labels, Counter>,
    cluster_log_entries: Family<Labels, Counter>,
    /// Without labels: a family so that it is served only once known.
    sessions_remaining: Family<Labels, Gauge>,
    /// The identify queue's (families: served only while it runs).
    identify_waiting: Family<Labels, Gauge>,
    identify_grants: Family<Labels, Counter>,
    identify_held: Family<Labels, Gauge>,
    /// The fleet's (families: served only in a fleet).
    fleet_hosts: Family<Labels, Gauge>,
    fleet_leader: Family<Labels, Gauge>,
    /// Grants already counted, to add the difference.
    identify_granted: u64,
    /// When each cluster's last diagnostic answer arrived (observed once).
    last_diag: HashMap<ClusterId, SystemTime>,
    /// The cluster and shard series set by the last snapshot.
    clusters_up: HashSet<Labels>,
    shards: HashSet<Labels>,
    /// The `event` labels in use: the manager's, the clusters'.
    events: EventNames,
    cluster_events: EventNames,
}

/// The `event` labels of one counter: at most [`EVENT_NAMES`].
struct EventNames {
    counter: &'static str,
    names: HashSet<String>,
}

impl Series {
    /// The series and the registry that serves them.
    pub(super) fn registered() -> (Series, Registry) {
        let s = Series {
            clusters: Family::default(),
            cluster_up: Family::default(),
            restarts: Family::default(),
            ping_failures: Family::default(),
            diag_round_trip: Histogram::new(ROUND_TRIP_BUCKETS),
            shard_up: Family::default(),
            shard_latency: Family::default(),
            shard_guilds: Family::default(),
            redis_connected: Gauge::default(),
            log_entries: Family::default(),
            cluster_log_entries: Family::default(),
            sessions_remaining: Family::default(),
            identify_waiting: Family::default(),
            identify_grants: Family::default(),
            identify_held: Family::default(),
            fleet_hosts: Family::default(),
            fleet_leader: Family::default(),
            identify_granted: 0,
            last_diag: HashMap::new(),
            clusters_up: HashSet::new(),
            shards: HashSet::new(),
            events: EventNames::new("action_log_entries"),
            cluster_events: EventNames::new("cluster_log_entries"),
        };
        let mut r = Registry::with_prefix("mewld");
        let c = &s;
        r.register("clusters", "Clusters in each state", c.clusters.clone());
        r.register(
            "cluster_up",
            "1 while the cluster's process runs",
            c.cluster_up.clone(),
        );
        r.register(
            "cluster_restarts",
            "Restarts of a cluster, by reason",
            c.restarts.clone(),
        );
        r.register(
            "ping_failures",
            "Diagnostics a cluster left unanswered",
            c.ping_failures.clone(),
        );
        r.register(
            "diag_round_trip_seconds",
            "Diagnostic round trips",
            c.diag_round_trip.clone(),
        );
        r.register(
            "shard_up",
            "1 while the shard reports up",
            c.shard_up.clone(),
        );
        r.register(
            "shard_latency_seconds",
            "The shard's gateway latency",
            c.shard_latency.clone(),
        );
        r.register(
            "shard_guilds",
            "Guilds on the shard",
            c.shard_guilds.clone(),
        );
        r.register(
            "redis_connected",
            "1 while the IPC transport is connected",
            c.redis_connected.clone(),
        );
        r.register(
            "action_log_entries",
            "Action-log entries the manager wrote, by event",
            c.log_entries.clone(),
        );
        r.register(
            "cluster_log_entries",
            "Action-log entries the clusters sent (action_logs), by event",
            c.cluster_log_entries.clone(),
        );
        r.register(
            "session_starts_remaining",
            "Discord's session-start budget left when the map was built",
            c.sessions_remaining.clone(),
        );
        s.register_identify(&mut r);
        (s, r)
    }

    fn register_identify(&self, r: &mut Registry) {
        r.register(
            "identify_waiting",
            "Identify requests waiting for their turn",
            self.identify_waiting.clone(),
        );
        r.register(
            "identify_grants",
            "Identifies the queue granted",
            self.identify_grants.clone(),
        );
        r.register(
            "identify_held",
            "1 while the queue holds every grant (session budget low)",
            self.identify_held.clone(),
        );
        r.register(
            "fleet_hosts",
            "Hosts of the fleet heartbeating, this one included",
            self.fleet_hosts.clone(),
        );
        r.register(
            "fleet_leader",
            "1 while this host leads the fleet",
            self.fleet_leader.clone(),
        );
    }

    /// Gauges from the engine's state.
    pub(super) fn on_snapshot(&mut self, s: &Snapshot) {
        // In a fleet, each host's metrics are its own clusters', and the
        // leader's also the lost hosts' (`lost`): summed over the hosts,
        // nothing is counted twice.
        let counted = |c: &&ClusterView| match &s.fleet {
            Some(f) => {
                c.host.as_deref() == Some(f.me.as_str())
                    || (f.leading && c.state == ClusterState::Lost)
            }
            None => true,
        };
        for state in STATES {
            let n = s
                .clusters
                .iter()
                .filter(counted)
                .filter(|c| c.state == state)
                .count();
            let labels = vec![("state", state.as_str().to_string())];
            self.clusters.get_or_create(&labels).set(n as i64);
        }
        let (mut clusters_up, mut shards) = (HashSet::new(), HashSet::new());
        for c in s.clusters.iter().filter(counted) {
            let cluster = c.id.to_string();
            let labels = vec![("cluster", cluster.clone()), ("name", c.name.clone())];
            self.cluster_up
                .get_or_create(&labels)
                .set(i64::from(c.pid.is_some()));
            clusters_up.insert(labels);
            let Some(h) = &c.health else { continue };
            if self.last_diag.insert(c.id, h.at) != Some(h.at) {
                self.diag_round_trip
                    .observe(h.round_trip_ms as f64 / 1000.0);
            }
            // The engine keeps a cluster's health within its own shards.
            for sh in &h.shards {
                let labels = vec![
                    ("cluster", cluster.clone()),
                    ("shard", sh.shard_id.to_string()),
                ];
                self.shard_up.get_or_create(&labels).set(i64::from(sh.up));
                if let Some(ms) = sh.latency {
                    self.shard_latency.get_or_create(&labels).set(ms / 1000.0);
                }
                if let Some(g) = sh.guilds {
                    self.shard_guilds
                        .get_or_create(&labels)
                        .set(i64::try_from(g).unwrap_or(i64::MAX));
                }
                shards.insert(labels);
            }
        }
        // Clusters and shards come and go on a reshard: drop the series
        // gone from the snapshot one by one, so a scrape never sees none.
        for gone in self.clusters_up.difference(&clusters_up) {
            self.cluster_up.remove(gone);
        }
        for gone in self.shards.difference(&shards) {
            self.shard_up.remove(gone);
            self.shard_latency.remove(gone);
            self.shard_guilds.remove(gone);
        }
        (self.clusters_up, self.shards) = (clusters_up, shards);
        self.redis_connected.set(i64::from(s.transport_connected));
        // The queue's count is live; the snapshot's is the start-up's.
        let remaining = s
            .identify
            .as_ref()
            .and_then(|q| q.budget_remaining)
            .or(s.sessions_remaining);
        if let Some(q) = &s.identify {
            self.on_identify(q);
        }
        if let Some(f) = &s.fleet {
            self.on_fleet(f);
        }
        // Unknown (not asked, or before the engine's first snapshot): no sample.
        if let Some(n) = remaining {
            self.sessions_remaining
                .get_or_create(&Vec::new())
                .set(i64::from(n));
        }
    }

    fn on_fleet(&mut self, f: &crate::engine::state::FleetSummary) {
        let none = Vec::new();
        let hosts = i64::try_from(f.hosts.len()).unwrap_or(i64::MAX);
        self.fleet_hosts.get_or_create(&none).set(hosts);
        self.fleet_leader
            .get_or_create(&none)
            .set(i64::from(f.leading));
    }

    fn on_identify(&mut self, q: &crate::identify::rules::Status) {
        let none = Vec::new();
        let waiting = i64::try_from(q.waiting).unwrap_or(i64::MAX);
        self.identify_waiting.get_or_create(&none).set(waiting);
        self.identify_held
            .get_or_create(&none)
            .set(i64::from(q.held));
        let new = q.granted_total.saturating_sub(self.identify_granted);
        self.identify_grants.get_or_create(&none).inc_by(new);
        self.identify_granted = q.granted_total;
    }

    /// Counters from the manager's action-log entries, each counted once.
    pub(super) fn on_entry(&mut self, entry: &Map<String, Value>) {
        let event = event_of(entry);
        let label = self.events.label(event);
        self.log_entries
            .get_or_create(&vec![("event", label)])
            .inc();
        for (cluster, reason) in restarts(event, entry) {
            let labels = vec![
                ("cluster", cluster.to_string()),
                ("reason", reason.to_string()),
            ];
            self.restarts.get_or_create(&labels).inc();
        }
        if event == "ping_failure" {
            if let Some(id) = entry.get("id").and_then(Value::as_u64) {
                self.ping_failures
                    .get_or_create(&vec![("cluster", id.to_string())])
                    .inc();
            }
        }
    }

    /// A cluster's entry (`action_logs`): its own counter, whatever it
    /// says (a bot may write `cluster_restarted` with any id).
    pub(super) fn on_cluster_entry(&mut self, entry: &Map<String, Value>) {
        let label = self.cluster_events.label(event_of(entry));
        self.cluster_log_entries
            .get_or_create(&vec![("event", label)])
            .inc();
    }
}

fn event_of(entry: &Map<String, Value>) -> &str {
    entry
        .get("event")
        .and_then(Value::as_str)
        .unwrap_or("(none)")
}

impl EventNames {
    fn new(counter: &'static str) -> EventNames {
        EventNames {
            counter,
            names: HashSet::new(),
        }
    }

    /// `event` itself while there is room for another series, else `other`.
    fn label(&mut self, event: &str) -> String {
        if self.names.contains(event) {
            return event.to_string();
        }
        if event.len() > EVENT_NAME_LEN || self.names.len() >= EVENT_NAMES {
            if self.names.insert("other".to_string()) {
                tracing::warn!(
                    event,
                    counter = self.counter,
                    "too many or too long action-log event names; counting the rest as `other`"
                );
            }
            return "other".to_string();
        }
        self.names.insert(event.to_string());
        event.to_string()
    }
}

/// The clusters an action-log entry restarts, and why: `crash` (a crash
/// restart's process started), `ping_failure` (a cluster that left a
/// diagnostic unanswered is stopped to be restarted), `operator` (a
/// `restart` that was not refused), `rolling_restart` (each cluster in the
/// roll's order), `reshard` (each cluster whose shards changed).
fn restarts(event: &str, entry: &Map<String, Value>) -> Vec<(u64, &'static str)> {
    let id = entry.get("id").and_then(Value::as_u64);
    let ids = |key: &str| -> Vec<u64> {
        entry
            .get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    };
    let with = |ids: Vec<u64>, reason| ids.into_iter().map(|i| (i, reason)).collect();
    match event {
        "cluster_restarted" => with(id.into_iter().collect(), "crash"),
        "ping_failure" => with(id.into_iter().collect(), "ping_failure"),
        "operator_action"
            if entry.get("action").and_then(Value::as_str) == Some("restart")
                && entry.get("refused").is_none() =>
        {
            with(id.into_iter().collect(), "operator")
        }
        "rolling_restart" => with(ids("clusters"), "rolling_restart"),
        "reshard_success" => with(ids("restarting"), "reshard"),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::actlog::{ExitFields, LogEvent};
    use prometheus_client::encoding::text::encode;

    fn operator(action: &'static str, refused: Option<&str>) -> LogEvent {
        LogEvent::OperatorAction {
            host: None,
            action,
            via: "redis",
            id: Some(3),
            peer_pid: None,
            peer_uid: None,
            refused: refused.map(str::to_string),
        }
    }

    /// The mapping reads the entries the engine writes, built from its own
    /// typed events; every other event restarts nothing.
    #[test]
    fn restarts_are_counted_once_with_their_reason() {
        let cases = [
            (
                LogEvent::ClusterRestarted { id: 2, restarts: 1 },
                vec![(2, "crash")],
            ),
            (LogEvent::PingFailure { id: 1 }, vec![(1, "ping_failure")]),
            (operator("restart", None), vec![(3, "operator")]),
            (
                operator("restart", Some("cluster 3 (c) is not running")),
                vec![],
            ),
            (operator("stop", None), vec![]),
            (
                LogEvent::RollingRestart {
                    clusters: vec![0, 1],
                },
                vec![(0, "rolling_restart"), (1, "rolling_restart")],
            ),
            (
                LogEvent::ReshardSuccess {
                    subsystem: "cluster_map",
                    old_shards: 2,
                    new_shards: 4,
                    clusters: 2,
                    restarting: vec![4],
                },
                vec![(4, "reshard")],
            ),
            (LogEvent::ClusterStarted { id: 0, pid: 9 }, vec![]),
            (
                LogEvent::ClusterExited {
                    id: 0,
                    exit: ExitFields {
                        code: Some(1),
                        signal: None,
                    },
                    restart_in_ms: Some(1000),
                    quick_failures: None,
                },
                vec![],
            ),
        ];
        for (e, want) in cases {
            let m = e.entry(std::time::SystemTime::now());
            let event = m["event"].as_str().unwrap_or_default().to_string();
            assert_eq!(restarts(&event, &m), want, "{m:?}");
        }
    }

    fn text(registry: &Registry) -> String {
        let mut text = String::new();
        encode(&mut text, registry).expect("encode");
        text
    }

    #[test]
    fn event_names_are_bounded() {
        let (mut series, registry) = Series::registered();
        for i in 0..EVENT_NAMES + 10 {
            let mut e = Map::new();
            e.insert("event".into(), Value::from(format!("bot_event_{i}")));
            series.on_entry(&e);
        }
        let mut long = Map::new();
        long.insert("event".into(), Value::from("x".repeat(EVENT_NAME_LEN + 1)));
        series.on_entry(&long);
        let text = text(&registry);
        let lines = text
            .lines()
            .filter(|l| l.starts_with("mewld_action_log_entries_total{"))
            .count();
        assert_eq!(lines, EVENT_NAMES + 1, "{text}");
        assert!(
            text.contains("mewld_action_log_entries_total{event=\"other\"} 11"),
            "{text}"
        );
    }

    /// In a fleet, a host counts its own clusters, and the leader the lost
    /// ones: summed over the hosts, each cluster once.
    #[test]
    fn a_fleet_host_counts_its_own_clusters() {
        use crate::engine::state::{ClusterView, FleetSummary};
        let view = |id, state, host: Option<&str>| ClusterView {
            state,
            host: host.map(String::from),
            ..ClusterView::lost(&crate::cluster_map::build(3, 1, &[])[id as usize])
        };
        let mut snapshot = Snapshot {
            clusters: vec![
                view(0, ClusterState::Running, Some("a")),
                view(1, ClusterState::Running, Some("b")),
                view(2, ClusterState::Lost, None),
            ],
            fleet: Some(FleetSummary {
                me: "a".into(),
                leader: Some(("b".into(), 2)),
                leading: false,
                hosts: Vec::new(),
                exit_order: None,
            }),
            ..Snapshot::default()
        };
        let (mut series, registry) = Series::registered();
        series.on_snapshot(&snapshot);
        let text = text(&registry);
        assert!(
            text.contains("mewld_clusters{state=\"running\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("mewld_clusters{state=\"lost\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("mewld_fleet_leader 0\n"), "{text}");
        if let Some(f) = snapshot.fleet.as_mut() {
            f.leading = true;
        }
        series.on_snapshot(&snapshot);
        let text = self::text(&registry);
        assert!(
            text.contains("mewld_clusters{state=\"lost\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("mewld_fleet_leader 1\n"), "{text}");
    }

    #[test]
    fn the_session_budget_is_served_only_when_known() {
        let (mut series, registry) = Series::registered();
        series.on_snapshot(&Snapshot::default());
        assert!(!text(&registry).contains("mewld_session_starts_remaining "));
        series.on_snapshot(&Snapshot {
            sessions_remaining: Some(900),
            ..Snapshot::default()
        });
        let text = text(&registry);
        assert!(
            text.contains("\nmewld_session_starts_remaining 900\n"),
            "{text}"
        );
    }

    /// The queue's figures are served only while it runs; its budget is
    /// the live one, and its grants count up by what is new.
    #[test]
    fn the_identify_queue_is_served_while_it_runs() {
        let (mut series, registry) = Series::registered();
        series.on_snapshot(&Snapshot::default());
        assert!(!text(&registry).contains("mewld_identify"));
        let mut status = crate::identify::rules::Status {
            waiting: 3,
            granted_total: 4,
            max_concurrency: 4,
            budget_remaining: Some(996),
            ..Default::default()
        };
        let with = |status: &crate::identify::rules::Status| Snapshot {
            sessions_remaining: Some(1000),
            identify: Some(status.clone()),
            ..Snapshot::default()
        };
        series.on_snapshot(&with(&status));
        status.granted_total = 6;
        status.held = true;
        series.on_snapshot(&with(&status));
        series.on_snapshot(&with(&status));
        let text = text(&registry);
        for sample in [
            "\nmewld_identify_waiting 3\n",
            "\nmewld_identify_grants_total 6\n",
            "\nmewld_identify_held 1\n",
            "\nmewld_session_starts_remaining 996\n",
        ] {
            assert!(text.contains(sample), "{sample} missing from:\n{text}");
        }
    }

    /// A snapshot of one running cluster with health from `shards`.
    fn healthy(shards: &[u32]) -> Snapshot {
        let spec = crate::cluster_map::build(4, 4, &["Zeus".to_string()]).remove(0);
        let shards = shards
            .iter()
            .map(|&shard_id| crate::protocol::ShardHealth {
                shard_id,
                up: true,
                latency: Some(42.0),
                guilds: Some(7),
                users: None,
            })
            .collect();
        Snapshot {
            clusters: vec![crate::engine::state::ClusterView {
                id: spec.id,
                name: spec.name,
                shards: spec.shards,
                state: ClusterState::Running,
                pid: Some(1),
                started_at: None,
                restarts: 0,
                quick_failures: 0,
                next_restart_at: None,
                last_exit: None,
                host: None,
                health: Some(crate::engine::health::Health {
                    at: SystemTime::UNIX_EPOCH,
                    round_trip_ms: 3,
                    shards,
                }),
            }],
            sessions_remaining: Some(900),
            ..Snapshot::default()
        }
    }

    #[test]
    fn shards_no_answer_has_are_dropped_and_round_trips_observed_once() {
        let (mut series, registry) = Series::registered();
        series.on_snapshot(&healthy(&[0, 1]));
        series.on_snapshot(&healthy(&[1]));
        let text = text(&registry);
        assert!(!text.contains("shard=\"0\""), "{text}");
        assert!(
            text.contains("mewld_shard_latency_seconds{cluster=\"0\",shard=\"1\"} 0.042"),
            "{text}"
        );
        // Both snapshots carry the same answer.
        assert!(
            text.contains("mewld_diag_round_trip_seconds_count 1"),
            "{text}"
        );
    }

    /// A bot's entries, whatever they claim, count only as the clusters':
    /// no restart, no ping failure, no manager event.
    #[test]
    fn a_clusters_entries_never_count_as_the_managers() {
        let (mut series, registry) = Series::registered();
        let forged = [
            LogEvent::ClusterRestarted { id: 0, restarts: 1 }.entry(std::time::SystemTime::now()),
            LogEvent::ClusterRestarted {
                id: 7_777,
                restarts: 1,
            }
            .entry(std::time::SystemTime::now()),
            LogEvent::PingFailure { id: 1 }.entry(std::time::SystemTime::now()),
            LogEvent::RollingRestart {
                clusters: (100..200).collect(),
            }
            .entry(std::time::SystemTime::now()),
            operator("restart", None).entry(std::time::SystemTime::now()),
            LogEvent::ClusterStarted { id: 0, pid: 9 }.entry(std::time::SystemTime::now()),
        ];
        for entry in &forged {
            series.on_cluster_entry(entry);
        }
        let text = text(&registry);
        for absent in [
            "mewld_cluster_restarts_total{",
            "mewld_ping_failures_total{",
            "mewld_action_log_entries_total{",
        ] {
            assert!(!text.contains(absent), "{absent} in:\n{text}");
        }
        for present in [
            "mewld_cluster_log_entries_total{event=\"cluster_restarted\"} 2",
            "mewld_cluster_log_entries_total{event=\"cluster_started\"} 1",
        ] {
            assert!(text.contains(present), "{present} missing from:\n{text}");
        }
    }

    #[test]
    fn a_cluster_gone_after_a_reshard_leaves_no_series() {
        let (mut series, registry) = Series::registered();
        series.on_snapshot(&healthy(&[0]));
        series.on_snapshot(&Snapshot::default());
        let text = text(&registry);
        assert!(!text.contains("mewld_cluster_up{"), "{text}");
        assert!(!text.contains("mewld_shard_up{"), "{text}");
    }

    #[test]
    fn the_text_format_has_every_series_the_dashboard_queries() {
        let (mut series, registry) = Series::registered();
        series.on_entry(&LogEvent::PingFailure { id: 1 }.entry(std::time::SystemTime::now()));
        series.on_snapshot(&healthy(&[0]));
        let text = text(&registry);
        for name in [
            "mewld_clusters{state=\"running\"} 1",
            "mewld_clusters{state=\"failed\"} 0",
            "mewld_cluster_up{cluster=\"0\",name=\"Zeus\"} 1",
            "mewld_ping_failures_total{cluster=\"1\"} 1",
            "mewld_cluster_restarts_total{cluster=\"1\",reason=\"ping_failure\"} 1",
            "mewld_action_log_entries_total{event=\"ping_failure\"} 1",
            "mewld_redis_connected 0",
            "mewld_shard_up{cluster=\"0\",shard=\"0\"} 1",
            "mewld_shard_guilds{cluster=\"0\",shard=\"0\"} 7",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        let dashboard = include_str!("../../contrib/grafana-dashboard.json");
        for name in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if name.starts_with("mewld_") {
                assert!(
                    text.lines().any(|l| l.starts_with(name)),
                    "contrib/grafana-dashboard.json queries {name}, which is not served"
                );
            }
        }
    }
}
