//! Prometheus metrics (opt-in: `metrics_addr`): `/metrics` in the text
//! format, built with `prometheus-client`, and `/healthz`. The figures come
//! from the engine's snapshots and events, like any face's, in a task of
//! their own; a scraper never holds up the engine. What is served is
//! bounded: a few connections at once, each with a deadline.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, Semaphore};

use crate::cluster_map::ClusterId;
use crate::engine::state::{ClusterState, Snapshot};
use crate::engine::{next_snapshot, EngineHandle, Event};

/// Scrapes served at once; more wait for a slot.
const CONNECTIONS: usize = 16;
/// How long `/healthz` waits for the engine's loop to answer.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection is closed after this long, whatever it is doing.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Every series mewld exports (README: Metrics).
#[derive(Default)]
struct Series {
    clusters: Family<Labels, Gauge>,
    cluster_up: Family<Labels, Gauge>,
    restarts: Family<Labels, Counter>,
    ping_failures: Family<Labels, Counter>,
    diag_round_trip: Option<Histogram>,
    shard_up: Family<Labels, Gauge>,
    shard_latency: Family<Labels, FloatGauge>,
    shard_guilds: Family<Labels, Gauge>,
    redis_connected: Gauge,
    log_entries: Family<Labels, Counter>,
    sessions_remaining: Gauge,
}

const STATES: [ClusterState; 7] = [
    ClusterState::Pending,
    ClusterState::Starting,
    ClusterState::Running,
    ClusterState::Stopping,
    ClusterState::Stopped,
    ClusterState::Crashed,
    ClusterState::Failed,
];

impl Series {
    fn registered() -> (Series, Registry) {
        let mut s = Series {
            diag_round_trip: Some(Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])),
            ..Series::default()
        };
        let mut r = Registry::with_prefix("mewld");
        r.register("clusters", "Clusters in each state", s.clusters.clone());
        r.register(
            "cluster_up",
            "1 while the cluster's process runs",
            s.cluster_up.clone(),
        );
        r.register(
            "cluster_restarts",
            "Restarts of a cluster, by reason",
            s.restarts.clone(),
        );
        r.register(
            "ping_failures",
            "Diagnostics a cluster left unanswered",
            s.ping_failures.clone(),
        );
        if let Some(h) = s.diag_round_trip.take() {
            r.register(
                "diag_round_trip_seconds",
                "Diagnostic round trips",
                h.clone(),
            );
            s.diag_round_trip = Some(h);
        }
        r.register(
            "shard_up",
            "1 while the shard reports up",
            s.shard_up.clone(),
        );
        r.register(
            "shard_latency_seconds",
            "The shard's gateway latency",
            s.shard_latency.clone(),
        );
        r.register(
            "shard_guilds",
            "Guilds on the shard",
            s.shard_guilds.clone(),
        );
        r.register(
            "redis_connected",
            "1 while the IPC transport is connected",
            s.redis_connected.clone(),
        );
        r.register(
            "action_log_entries",
            "Action-log entries written, by event",
            s.log_entries.clone(),
        );
        r.register(
            "session_starts_remaining",
            "Discord's session-start budget left when the map was built",
            s.sessions_remaining.clone(),
        );
        (s, r)
    }

    /// Gauges from the engine's state.
    fn on_snapshot(&self, s: &Snapshot, last_diag: &mut HashMap<ClusterId, SystemTime>) {
        for state in STATES {
            let n = s.clusters.iter().filter(|c| c.state == state).count();
            let labels = vec![("state", state.as_str().to_string())];
            self.clusters.get_or_create(&labels).set(n as i64);
        }
        // Clusters and shards come and go on a reshard: start afresh.
        self.cluster_up.clear();
        self.shard_up.clear();
        self.shard_latency.clear();
        self.shard_guilds.clear();
        for c in &s.clusters {
            let cluster = c.id.to_string();
            let labels = vec![("cluster", cluster.clone()), ("name", c.name.clone())];
            self.cluster_up
                .get_or_create(&labels)
                .set(i64::from(c.pid.is_some()));
            let Some(h) = &c.health else { continue };
            if last_diag.insert(c.id, h.at) != Some(h.at) {
                if let Some(hist) = &self.diag_round_trip {
                    hist.observe(h.round_trip_ms as f64 / 1000.0);
                }
            }
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
            }
        }
        self.redis_connected.set(i64::from(s.transport_connected));
        if let Some(n) = s.sessions_remaining {
            self.sessions_remaining.set(i64::from(n));
        }
    }

    /// Counters from the action log, each entry counted once.
    fn on_entry(&self, entry: &Map<String, Value>) {
        let event = entry
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or("(none)");
        self.log_entries
            .get_or_create(&vec![("event", event.to_string())])
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
}

/// The clusters an action-log entry restarts, and why: `crash` (a crash
/// restart began), `ping_failure`, `operator` (a `restart` that was not
/// refused), `rolling_restart`, `reshard`.
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

/// Binds `addr` before anything starts, so a taken port is a start-up error.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("metrics_addr {addr}: {e}"))
}

/// Serves the metrics of `handle` on `listener` until the process ends.
pub fn serve(listener: TcpListener, handle: EngineHandle) {
    let (series, registry) = Series::registered();
    tokio::spawn(follow(handle.clone(), series));
    tokio::spawn(accept(listener, Arc::new(registry), handle.clone()));
}

async fn follow(handle: EngineHandle, series: Series) {
    let mut snapshots = handle.snapshot();
    let mut events = handle.events();
    let mut last_diag = HashMap::new();
    series.on_snapshot(&snapshots.borrow_and_update(), &mut last_diag);
    loop {
        tokio::select! {
            s = next_snapshot(&mut snapshots) => match s {
                Some(s) => series.on_snapshot(&s, &mut last_diag),
                None => return,
            },
            event = events.recv() => match event {
                Ok(Event::ActionLog(entry)) => series.on_entry(&entry),
                Ok(Event::Output { .. }) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "metrics fell behind the engine's events; counters miss some");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

async fn accept(listener: TcpListener, registry: Arc<Registry>, handle: EngineHandle) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a metrics connection; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let (registry, handle) = (registry.clone(), handle.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                answer(req, registry.clone(), handle.clone())
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, conn).await;
            drop(slot);
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    registry: Arc<Registry>,
    handle: EngineHandle,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, kind, body) = route(req.uri().path(), &registry, &handle).await;
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(kind) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    Ok(response)
}

/// What a request for `path` gets: status, content type and body.
async fn route(
    path: &str,
    registry: &Registry,
    handle: &EngineHandle,
) -> (StatusCode, &'static str, String) {
    match path {
        "/metrics" => {
            let mut text = String::new();
            match encode(&mut text, registry) {
                Ok(()) => (
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                ),
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    e.to_string(),
                ),
            }
        }
        // 200 only while the engine's loop answers: a wedged or ended
        // engine is unhealthy even if this server still runs.
        "/healthz" => match tokio::time::timeout(HEALTH_TIMEOUT, handle.alive()).await {
            Ok(true) => (StatusCode::OK, "text/plain", "ok\n".to_string()),
            _ => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "the engine does not answer\n".to_string(),
            ),
        },
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics or /healthz\n".to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn restarts_are_counted_once_with_their_reason() {
        let cases = [
            (
                json!({"event": "cluster_restarted", "id": 2, "restarts": 1}),
                vec![(2, "crash")],
            ),
            (
                json!({"event": "ping_failure", "id": 1}),
                vec![(1, "ping_failure")],
            ),
            (
                json!({"event": "operator_action", "action": "restart", "id": 3, "via": "redis"}),
                vec![(3, "operator")],
            ),
            (
                json!({"event": "operator_action", "action": "restart", "id": 3, "refused": "no"}),
                vec![],
            ),
            (
                json!({"event": "operator_action", "action": "stop", "id": 3}),
                vec![],
            ),
            (
                json!({"event": "rolling_restart", "clusters": [0, 1]}),
                vec![(0, "rolling_restart"), (1, "rolling_restart")],
            ),
            (
                json!({"event": "reshard_success", "restarting": [4]}),
                vec![(4, "reshard")],
            ),
            (
                json!({"event": "cluster_started", "id": 0, "pid": 9}),
                vec![],
            ),
        ];
        for (e, want) in cases {
            let m = entry(e);
            let event = m
                .get("event")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            assert_eq!(restarts(&event, &m), want, "{m:?}");
        }
    }

    /// A snapshot of one running cluster with health from one shard.
    fn healthy() -> Snapshot {
        let spec = crate::cluster_map::build(1, 1, &[]).remove(0);
        let shard = crate::protocol::ShardHealth {
            shard_id: 0,
            up: true,
            latency: Some(42.0),
            guilds: Some(7),
            users: None,
        };
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
                health: Some(crate::engine::health::Health {
                    at: SystemTime::UNIX_EPOCH,
                    round_trip_ms: 3,
                    shards: vec![shard],
                }),
            }],
            ..Snapshot::default()
        }
    }

    /// `/healthz` asks the engine's loop; an engine that does not answer
    /// (here: gone) is a 503, while `/metrics` still serves.
    #[tokio::test]
    async fn healthz_is_200_only_while_the_engine_answers() {
        let (requests, mut inbox) = tokio::sync::mpsc::channel(4);
        let (events, _) = broadcast::channel(4);
        let (_snapshot, snapshots) = tokio::sync::watch::channel(Arc::new(Snapshot::default()));
        let handle = EngineHandle::remote(requests, events, snapshots);
        let engine = tokio::spawn(async move {
            // Answers one request, then is gone.
            if let Some(crate::engine::FaceRequest::Alive(reply)) = inbox.recv().await {
                let _ = reply.send(());
            }
        });
        let (_, registry) = Series::registered();
        assert_eq!(
            route("/healthz", &registry, &handle).await.0,
            StatusCode::OK
        );
        engine.await.expect("the fake engine");
        let gone = route("/healthz", &registry, &handle).await;
        assert_eq!(gone.0, StatusCode::SERVICE_UNAVAILABLE, "{gone:?}");
        assert_eq!(
            route("/metrics", &registry, &handle).await.0,
            StatusCode::OK
        );
        assert_eq!(
            route("/x", &registry, &handle).await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn a_cluster_gone_after_a_reshard_leaves_no_series() {
        let (series, registry) = Series::registered();
        let mut seen = HashMap::new();
        series.on_snapshot(&healthy(), &mut seen);
        series.on_snapshot(&Snapshot::default(), &mut seen);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        assert!(!text.contains("mewld_cluster_up{"), "{text}");
        assert!(!text.contains("mewld_shard_up{"), "{text}");
    }

    #[test]
    fn the_text_format_has_every_series_the_dashboard_queries() {
        let (series, registry) = Series::registered();
        series.on_entry(&entry(json!({"event": "ping_failure", "id": 1})));
        series.on_snapshot(&healthy(), &mut HashMap::new());
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        for name in [
            "mewld_clusters{state=\"running\"} 1",
            "mewld_ping_failures_total{cluster=\"1\"} 1",
            "mewld_cluster_restarts_total{cluster=\"1\",reason=\"ping_failure\"} 1",
            "mewld_action_log_entries_total{event=\"ping_failure\"} 1",
            "mewld_redis_connected 0",
            "mewld_diag_round_trip_seconds_count 1",
            "mewld_shard_latency_seconds{cluster=\"0\",shard=\"0\"} 0.042",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        let dashboard = include_str!("../contrib/grafana-dashboard.json");
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
