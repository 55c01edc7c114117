//! Prometheus metrics (opt-in: `metrics_addr`): `/metrics` in the text
//! format, built with `prometheus-client`, and `/healthz`. The figures come
//! from the engine's snapshots and events, like any face's, in a task of
//! their own; a scraper never holds up the engine. What is served is
//! bounded: a pool of connections where slow clients cannot keep a quick
//! one out, each with a deadline and a small buffer. It is served from
//! start-up on, before the engine exists (`/healthz`: 503 `starting`).

mod series;

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

use crate::engine::{next_snapshot, EngineHandle};
use crate::http;
use crate::phase::{Phase, PhaseCell};
use mewld_core::model::state::Snapshot;
use mewld_core::model::Event;
use series::Series;

/// Connections kept open at once, and from one peer; past these the
/// oldest is closed (`http::Pool`). A scrape or a probe takes
/// milliseconds: only slow clients grow old here.
const LIMITS: http::Limits = http::Limits {
    pool: 128,
    per_peer: 32,
};
/// A connection is closed after this long, whatever it is doing.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);
/// How often `/healthz` asks the engine whether its loop answers, and how
/// long an answer may take.
const PROBE_EVERY: Duration = Duration::from_secs(2);
const PROBE_DEADLINE: Duration = Duration::from_secs(5);

/// The metrics being served, waiting for the engine to follow.
pub struct Metrics {
    series: Series,
    phase: PhaseCell,
}

/// Serves on `listener` at once, until the process ends: before the engine
/// exists ([`Metrics::follow`]), `/healthz` is 503 with the step start-up
/// is at (`phase`, which start-up sets) and `/metrics` the series with
/// nothing learnt yet. A request only reads the cell: it never waits for
/// start-up, nor for the engine.
pub fn serve(listener: TcpListener, phase: PhaseCell) -> Metrics {
    let (series, registry) = Series::registered();
    let registry = Arc::new(registry);
    let cell = phase.clone();
    // The body of a request is never read.
    let handle = move |req: Request<Incoming>| {
        std::future::ready(answer(req.uri().path(), &registry, cell.get()))
    };
    http::spawn_hyper(listener, "metrics", LIMITS, CONNECTION_DEADLINE, handle);
    Metrics { series, phase }
}

impl Metrics {
    /// Follows the engine of `handle` from now on.
    pub fn follow(self, handle: EngineHandle) {
        // Subscribed here, not in the task: the engine may step before the
        // task first runs, and an entry written then would never be counted.
        tokio::spawn(follow(handle.snapshot(), handle.events(), self.series));
        tokio::spawn(probe(handle, self.phase, PROBE_EVERY));
    }
}

async fn follow(
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    mut events: broadcast::Receiver<Event>,
    mut series: Series,
) {
    let first = snapshots.borrow_and_update().clone();
    series.on_snapshot(&first);
    loop {
        tokio::select! {
            s = next_snapshot(&mut snapshots) => match s {
                Some(s) => series.on_snapshot(&s),
                None => return,
            },
            event = events.recv() => match event {
                Ok(Event::ActionLog(entry)) => series.on_entry(&entry),
                Ok(Event::ClusterLog(entry)) => series.on_cluster_entry(&entry),
                Ok(Event::Output { .. }) => {}
                // The receiver skips to the oldest entry still buffered:
                // nothing is counted twice, the skipped are not counted.
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "metrics fell behind the engine's events; counters miss some");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Keeps `phase` saying whether the engine's loop answers, for
/// `/healthz`: asked at a fixed pace, not per request, so however often
/// health checks come the engine hears of them once per `every`. Until the
/// engine first answers, the start-up step stays shown.
async fn probe(handle: EngineHandle, phase: PhaseCell, every: Duration) {
    loop {
        let alive = tokio::time::timeout(PROBE_DEADLINE, handle.alive()).await;
        phase.probed(matches!(alive, Ok(true)));
        tokio::time::sleep(every).await;
    }
}

fn answer(path: &str, registry: &Registry, phase: Phase) -> Response<Full<Bytes>> {
    let (status, kind, body) = route(path, registry, phase);
    http::response(status, kind, body)
}

/// What a request for `path` gets: status, content type and body.
fn route(path: &str, registry: &Registry, phase: Phase) -> (StatusCode, &'static str, String) {
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
        "/healthz" => {
            let status = match phase {
                Phase::Answers => StatusCode::OK,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, "text/plain", format!("{}\n", phase.describe()))
        }
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
    use crate::engine::FaceRequest;

    /// Waits until `cell` says `want`, failing after a generous deadline.
    async fn until(cell: &PhaseCell, want: Phase) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while cell.get() != want {
            let now = cell.get();
            assert!(
                tokio::time::Instant::now() < deadline,
                "never {want:?}: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The probe follows a fake engine that answers once, then is gone.
    #[tokio::test]
    async fn the_probe_says_whether_the_engine_answers() {
        let (requests, mut inbox) = tokio::sync::mpsc::channel(4);
        let (events, _) = broadcast::channel(4);
        let (_snapshot, snapshots) = tokio::sync::watch::channel(Arc::new(Snapshot::default()));
        let handle = EngineHandle::remote(requests, events, snapshots);
        let (go, gone) = tokio::sync::oneshot::channel::<()>();
        let engine = tokio::spawn(async move {
            if let Some(FaceRequest::Alive(reply)) = inbox.recv().await {
                let _ = reply.send(());
            }
            let _ = gone.await;
        });
        let phase = PhaseCell::default();
        phase.starting(Phase::Launching);
        tokio::spawn(probe(handle, phase.clone(), Duration::from_millis(10)));
        until(&phase, Phase::Answers).await;
        let _ = go.send(());
        engine.await.expect("the fake engine");
        until(&phase, Phase::DoesNotAnswer).await;
    }

    /// An entry the engine writes right after `serve` returns, before any
    /// task of the server ran, is counted (the engine steps at once).
    #[tokio::test(flavor = "current_thread")]
    async fn entries_written_before_the_server_runs_are_counted() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (requests, _inbox) = tokio::sync::mpsc::channel(4);
        let (events, _) = broadcast::channel(4);
        let (_snapshot, snapshots) = watch::channel(Arc::new(Snapshot::default()));
        let handle = EngineHandle::remote(requests, events.clone(), snapshots);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("its address");
        serve(listener, PhaseCell::default()).follow(handle);
        let mut entry = serde_json::Map::new();
        entry.insert("event".into(), "cluster_started".into());
        events
            .send(Event::ActionLog(entry))
            .expect("the server subscribed");
        let want = "mewld_action_log_entries_total{event=\"cluster_started\"} 1";
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream
                .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
                .await
                .expect("ask");
            let mut text = String::new();
            stream.read_to_string(&mut text).await.expect("an answer");
            if text.contains(want) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{text}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn healthz_is_200_only_while_the_engine_answers() {
        let (_, registry) = Series::registered();
        let healthz = |health| {
            let (status, _, body) = route("/healthz", &registry, health);
            (status, body)
        };
        assert_eq!(healthz(Phase::Answers).0, StatusCode::OK);
        let unavailable = StatusCode::SERVICE_UNAVAILABLE;
        assert_eq!(
            healthz(Phase::AskingDiscord),
            (unavailable, "starting: asking Discord\n".into())
        );
        assert_eq!(healthz(Phase::DoesNotAnswer).0, unavailable);
        for phase in [Phase::WaitingForReset, Phase::DoesNotAnswer] {
            assert_eq!(route("/metrics", &registry, phase).0, StatusCode::OK);
        }
        assert_eq!(
            route("/x", &registry, Phase::Answers).0,
            StatusCode::NOT_FOUND
        );
    }
}
