//! The series mewld exports and how they follow the engine: gauges and
//! each cluster's restarts from each snapshot, the other counters from
//! each action-log entry. Labels come from the cluster map, never from
//! what a bot says: a cluster's health counts only its own shards, and its
//! `action_logs` entries only their own counter, so no bot can add series
//! or move the manager's counters.
//!
//! In a fleet each host serves its own clusters' series, and the leader
//! also the gauges of clusters no host runs (`lost`), so a sum over the
//! hosts counts each cluster once. A cluster's counters are only ever its
//! host's: it counts every restart of it (a rolling restart's steps
//! included, which the leader asks for), from 0 at its first snapshot.

mod entries;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::{Map, Value};

use entries::{event_of, EventNames};
use mewld_core::cluster_map::ClusterId;
use mewld_core::model::state::{ClusterState, ClusterView, Snapshot};
use mewld_core::model::{RestartCounts, RestartReason};

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

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

/// Every series mewld exports (docs/operations.md, "Metrics"), and what following the
/// engine needs to remember.
pub(super) struct Series {
    clusters: Family<Labels, Gauge>,
    cluster_up: Family<Labels, Gauge>,
    cluster_replacing: Family<Labels, Gauge>,
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
    /// This host's clusters' restarts as last counted: their counters are
    /// served (from 0) already.
    restarts_seen: HashMap<ClusterId, RestartCounts>,
    /// The cluster and shard series set by the last snapshot.
    clusters_up: HashSet<Labels>,
    shards: HashSet<Labels>,
    /// The `event` labels in use: the manager's, the clusters'.
    events: EventNames,
    cluster_events: EventNames,
}

impl Series {
    /// The series and the registry that serves them.
    pub(super) fn registered() -> (Series, Registry) {
        let s = Series {
            clusters: Family::default(),
            cluster_up: Family::default(),
            cluster_replacing: Family::default(),
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
            restarts_seen: HashMap::new(),
            clusters_up: HashSet::new(),
            shards: HashSet::new(),
            events: EventNames::new("action_log_entries"),
            cluster_events: EventNames::new("cluster_log_entries"),
        };
        let mut r = Registry::with_prefix("mewld");
        s.register_clusters(&mut r);
        s.register_shards(&mut r);
        s.register_manager(&mut r);
        s.register_identify(&mut r);
        (s, r)
    }

    fn register_clusters(&self, r: &mut Registry) {
        r.register("clusters", "Clusters in each state", self.clusters.clone());
        r.register(
            "cluster_up",
            "1 while the cluster's process runs",
            self.cluster_up.clone(),
        );
        r.register(
            "cluster_replacing",
            "1 while a replacement starts beside the cluster's process (start_first)",
            self.cluster_replacing.clone(),
        );
        r.register(
            "cluster_restarts",
            "Restarts of a cluster, by reason",
            self.restarts.clone(),
        );
        r.register(
            "ping_failures",
            "Diagnostics a cluster left unanswered",
            self.ping_failures.clone(),
        );
        r.register(
            "diag_round_trip_seconds",
            "Diagnostic round trips",
            self.diag_round_trip.clone(),
        );
    }

    fn register_shards(&self, r: &mut Registry) {
        r.register(
            "shard_up",
            "1 while the shard reports up",
            self.shard_up.clone(),
        );
        r.register(
            "shard_latency_seconds",
            "The shard's gateway latency",
            self.shard_latency.clone(),
        );
        r.register(
            "shard_guilds",
            "Guilds on the shard",
            self.shard_guilds.clone(),
        );
    }

    /// The manager's own: its transport, its action log, Discord's budget.
    fn register_manager(&self, r: &mut Registry) {
        r.register(
            "redis_connected",
            "1 while the IPC transport is connected",
            self.redis_connected.clone(),
        );
        r.register(
            "action_log_entries",
            "Action-log entries the manager wrote, by event",
            self.log_entries.clone(),
        );
        r.register(
            "cluster_log_entries",
            "Action-log entries the clusters sent (action_logs), by event",
            self.cluster_log_entries.clone(),
        );
        r.register(
            "session_starts_remaining",
            "Discord's session-start budget left when the map was built",
            self.sessions_remaining.clone(),
        );
    }

    /// The identify queue's and the fleet's.
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

    /// Gauges and restarts from the engine's state.
    pub(super) fn on_snapshot(&mut self, s: &Snapshot) {
        let mine = |c: &&ClusterView| {
            s.fleet
                .as_ref()
                .is_none_or(|f| c.host.as_deref() == Some(f.me.as_str()))
        };
        // The gauges of clusters no host runs: the leader's (module doc).
        let counted = |c: &&ClusterView| {
            mine(c)
                || (s.fleet.as_ref().is_some_and(|f| f.leading) && c.state == ClusterState::Lost)
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
        self.on_clusters(s.clusters.iter().filter(counted));
        // A cluster that left (a reshard) is counted afresh if it comes back.
        let mut ids = HashSet::new();
        for c in s.clusters.iter().filter(mine) {
            ids.insert(c.id);
            self.on_restarts(c);
        }
        self.restarts_seen.retain(|id, _| ids.contains(id));
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

    /// One of this host's clusters' restarts, as the engine counts them
    /// (the console shows the same). Its counters are served from its
    /// first snapshot, at 0 until something counts: a counter that
    /// appears only at its first event is invisible to `rate()`.
    fn on_restarts(&mut self, c: &ClusterView) {
        let before = self.restarts_seen.insert(c.id, c.restarts_by);
        if before == Some(c.restarts_by) {
            // Nothing new: ten snapshots a second at 1,000 clusters would
            // otherwise look up five series each.
            return;
        }
        let cluster = c.id.to_string();
        if before.is_none() {
            self.ping_failures
                .get_or_create(&vec![("cluster", cluster.clone())])
                .inc_by(0);
        }
        for reason in RestartReason::ALL {
            let (now, was) = (
                c.restarts_by.get(reason),
                before.map_or(0, |b| b.get(reason)),
            );
            // Fewer than before: a new cluster of that id between two
            // snapshots (a reshard), counted from its start.
            let new = now.checked_sub(was).unwrap_or(now);
            let labels = vec![
                ("cluster", cluster.clone()),
                ("reason", reason.as_str().to_string()),
            ];
            self.restarts.get_or_create(&labels).inc_by(u64::from(new));
        }
    }

    /// Each cluster's and shard's gauges, for the clusters this host counts.
    fn on_clusters<'a>(&mut self, counted: impl Iterator<Item = &'a ClusterView>) {
        let (mut clusters_up, mut shards) = (HashSet::new(), HashSet::new());
        for c in counted {
            let cluster = c.id.to_string();
            let labels = vec![("cluster", cluster.clone()), ("name", c.name.clone())];
            self.cluster_up
                .get_or_create(&labels)
                .set(i64::from(c.pid.is_some()));
            self.cluster_replacing
                .get_or_create(&labels)
                .set(i64::from(c.replacing.is_some()));
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
            self.cluster_replacing.remove(gone);
        }
        for gone in self.shards.difference(&shards) {
            self.shard_up.remove(gone);
            self.shard_latency.remove(gone);
            self.shard_guilds.remove(gone);
        }
        (self.clusters_up, self.shards) = (clusters_up, shards);
    }

    fn on_fleet(&mut self, f: &mewld_core::model::state::FleetSummary) {
        let none = Vec::new();
        let hosts = i64::try_from(f.hosts.len()).unwrap_or(i64::MAX);
        self.fleet_hosts.get_or_create(&none).set(hosts);
        self.fleet_leader
            .get_or_create(&none)
            .set(i64::from(f.leading));
    }

    fn on_identify(&mut self, q: &mewld_core::model::state::IdentifyStatus) {
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
    /// A `ping_failure` is written by the host that pings the cluster: its
    /// own.
    pub(super) fn on_entry(&mut self, entry: &Map<String, Value>) {
        let event = event_of(entry);
        let label = self.events.label(event);
        self.log_entries
            .get_or_create(&vec![("event", label)])
            .inc();
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

#[cfg(test)]
mod tests;
