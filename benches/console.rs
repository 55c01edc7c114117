//! Console drawing cost (not a test: it prints figures). Builds the state
//! of a big bot, 1 000 clusters with health and 100 000 action-log entries,
//! then times building and drawing frames and reports the memory held.
//! Goal: under 5 ms a frame, memory bounded by the caps.
//!
//! Run: `cargo bench --bench console`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use mewld::tui::app::{App, Msg, LOG_CAP};
use mewld::tui::diagnostics::{ANSWERS_CAP, SAMPLES_CAP};
use mewld::tui::view;
use mewld_core::model::health::Health;
use mewld_core::model::state::{ClusterState, ClusterView, Snapshot};
use mewld_core::model::Event;
use mewld_core::model::Stream;
use mewld_core::protocol::ShardHealth;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use serde_json::json;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn big_snapshot(now: SystemTime) -> Snapshot {
    let clusters = (0..1000u32)
        .map(|id| {
            let shards: Vec<u32> = (id * 10..id * 10 + 10).collect();
            ClusterView {
                id,
                name: format!("cluster-{id}"),
                health: Some(Health {
                    at: now - Duration::from_secs(u64::from(id % 60)),
                    round_trip_ms: 2,
                    shards: shards
                        .iter()
                        .map(|s| ShardHealth {
                            shard_id: *s,
                            up: true,
                            latency: Some(40.0),
                            guilds: Some(1200),
                            users: Some(90_000),
                        })
                        .collect(),
                }),
                shards,
                state: ClusterState::Running,
                pid: Some(10_000 + id),
                started_at: Some(now - Duration::from_secs(3600)),
                restarts: id % 3,
                restarts_by: mewld_core::model::RestartCounts {
                    crash: id % 3,
                    ..Default::default()
                },
                quick_failures: 0,
                next_restart_at: None,
                last_exit: None,
                start_error: None,
                host: None,
                replacing: None,
                retiring: None,
            }
        })
        .collect();
    Snapshot {
        shard_count: 10_000,
        clusters,
        fully_up: true,
        transport_connected: true,
        started_at: Some(now - Duration::from_secs(7200)),
        ..Snapshot::default()
    }
}

fn time_frames(app: &App, frames: usize) -> (Duration, Duration) {
    let mut terminal = Terminal::new(TestBackend::new(200, 50)).expect("terminal");
    let mut times: Vec<Duration> = (0..frames)
        .map(|_| {
            let t = Instant::now();
            terminal.draw(|f| view::draw(f, app)).expect("draw");
            t.elapsed()
        })
        .collect();
    times.sort();
    let mean = times.iter().sum::<Duration>() / frames as u32;
    (mean, times[frames * 99 / 100])
}

/// A new round of answers: every cluster's `health.at` moves on, and its
/// latency wobbles so the trend lines have something to draw.
fn next_round(snapshot: &mut Snapshot, round: u64) {
    for c in &mut snapshot.clusters {
        if let Some(h) = &mut c.health {
            h.at += Duration::from_secs(5);
            for sh in &mut h.shards {
                sh.latency = Some(40.0 + ((round + u64::from(c.id)) % 17) as f64);
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(what: &str, app: &App) {
    let (mean, p99) = time_frames(app, 100);
    println!(
        "  {what}: frame mean {:.2} ms, p99 {:.2} ms",
        ms(mean),
        ms(p99)
    );
}

fn key(app: &mut App, c: char) {
    app.update(Msg::Key(KeyEvent::new(
        KeyCode::Char(c),
        KeyModifiers::NONE,
    )));
}

/// Feeds `rounds` snapshots in which every cluster answered; returns the
/// mean time the console took to take one in.
fn ingest(app: &mut App, snapshot: &mut Snapshot, rounds: u64) -> Duration {
    let mut took = Duration::ZERO;
    for round in 0..rounds {
        next_round(snapshot, round);
        let s = Arc::new(snapshot.clone());
        let t = Instant::now();
        app.update(Msg::Snapshot(s));
        took += t.elapsed();
    }
    took / rounds as u32
}

/// `/`, the text, Enter: filters the focused pane.
fn type_filter(app: &mut App, text: &str) {
    for c in std::iter::once('/').chain(text.chars()) {
        key(app, c);
    }
    app.update(Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)));
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let now = SystemTime::now();
    let before = rss_kib();
    let mut app = App::new(true, now);
    let mut snapshot = big_snapshot(now);
    app.update(Msg::Snapshot(Arc::new(snapshot.clone())));
    for i in 0..(LOG_CAP + 20_000) {
        let entry = json!({"event": "cluster_started", "id": i % 1000, "pid": 10_000 + i, "ts": 1_795_867_200_000_000i64 + i as i64});
        if let serde_json::Value::Object(m) = entry {
            app.update(Msg::Engine(Event::ActionLog(m)));
        }
    }
    for i in 0..5_000 {
        app.update(Msg::Engine(Event::Output {
            id: 500,
            name: "cluster-500".into(),
            stream: Stream::Stdout,
            line: format!("line {i} of output"),
        }));
    }
    // Enough rounds to fill every ring: the pane's answers and each
    // cluster's samples. Each round is a snapshot where all 1000 answered.
    let rounds = SAMPLES_CAP as u64 + 10;
    let took = ingest(&mut app, &mut snapshot, rounds);
    let held = rss_kib().saturating_sub(before);
    // Select a cluster in the middle, as an operator scrolling would.
    for _ in 0..500 {
        key(&mut app, 'j');
    }
    let (mean, p99) = time_frames(&app, 300);
    println!(
        "1000 clusters, {} action-log entries (cap {LOG_CAP}), {} diagnostic answers (cap {ANSWERS_CAP}), {SAMPLES_CAP} samples a cluster, 200x50: frame mean {:.2} ms, p99 {:.2} ms; state held {:.1} MiB",
        app.log.len(),
        app.diagnostics.answers.len(),
        ms(mean),
        ms(p99),
        held as f64 / 1024.0
    );
    println!(
        "  a snapshot in which all 1000 answered, taken in: mean {:.2} ms",
        ms(took)
    );
    app.filter = "cluster 999".into();
    report("with a log filter matching 1 in 1000", &app);
    app.filter.clear();
    for _ in 0..5 {
        key(&mut app, 'o');
    }
    report("clusters sorted by latency", &app);
    println!(
        "  sorted by latency, a snapshot taken in: mean {:.2} ms",
        ms(ingest(&mut app, &mut snapshot, 20))
    );
    type_filter(&mut app, "cluster-9");
    app.update(Msg::Key(KeyEvent::new(
        KeyCode::BackTab,
        KeyModifiers::NONE,
    )));
    type_filter(&mut app, "cluster-99");
    report("and filtered (111 of 1000), diagnostics filtered", &app);
}
