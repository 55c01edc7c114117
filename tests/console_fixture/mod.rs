//! The console tests' fixtures: a fixed clock, a bot of named clusters
//! with health, an app with some history and output, and drawing it.

#![allow(dead_code)] // Each console test file uses its own part.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use mewld::tui::app::{App, Effect, Msg};
use mewld::tui::view;
use mewld_core::model::health::Health;
use mewld_core::model::state::{ClusterState, ClusterView, Snapshot};
use mewld_core::model::Event;
use mewld_core::model::Stream;
use mewld_core::protocol::ShardHealth;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use serde_json::{json, Value};

/// 2026-11-28 12:00:00 UTC, so every clock on screen is fixed.
pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_867_200)
}

pub fn at(secs_before: u64) -> SystemTime {
    t0() - Duration::from_secs(secs_before)
}

pub fn health(shards: &[u32], age: u64) -> Health {
    Health {
        at: at(age),
        round_trip_ms: 3,
        shards: shards
            .iter()
            .map(|s| ShardHealth {
                shard_id: *s,
                up: *s != 5,
                latency: Some(40.0 + f64::from(*s)),
                guilds: Some(1000 + u64::from(*s)),
                users: Some(80_000),
            })
            .collect(),
    }
}

pub fn cluster(id: u32, name: &str, state: ClusterState) -> ClusterView {
    let shards: Vec<u32> = (id * 4..id * 4 + 4).collect();
    let alive = matches!(
        state,
        ClusterState::Starting | ClusterState::Running | ClusterState::Stopping
    );
    ClusterView {
        id,
        name: name.into(),
        health: (state == ClusterState::Running).then(|| health(&shards, 7)),
        shards,
        state,
        pid: alive.then_some(4000 + id),
        started_at: alive.then(|| at(125 + u64::from(id))),
        restarts: 0,
        restarts_by: Default::default(),
        quick_failures: 0,
        next_restart_at: None,
        last_exit: None,
        start_error: None,
        host: None,
        replacing: None,
        retiring: None,
    }
}

pub fn snapshot(states: &[ClusterState]) -> Snapshot {
    let names = ["Pika", "Eevee", "Bulbasaur", "Squirtle", "Lugia", "Psyduck"];
    Snapshot {
        shard_count: states.len() as u32 * 4,
        clusters: states
            .iter()
            .enumerate()
            .map(|(i, s)| cluster(i as u32, names[i % names.len()], *s))
            .collect(),
        fully_up: states.iter().all(|s| *s == ClusterState::Running),
        transport_connected: true,
        transport_retry_at: None,
        started_at: Some(at(3725)),
        sessions_remaining: Some(993),
        exiting: None,
        rolling: None,
        resharding: false,
        identify: None,
        fleet: None,
    }
}

pub fn app_with(snapshot: Snapshot) -> App {
    let mut app = App::new(true, t0());
    app.update(Msg::Snapshot(Arc::new(snapshot)));
    let log = [
        json!({"event": "cluster_started", "id": 0, "pid": 4000, "ts": 1_795_867_070_000_000i64}),
        json!({"event": "cluster_launched", "id": 0, "ts": 1_795_867_073_000_000i64}),
        json!({"event": "cluster_started", "id": 1, "pid": 4001, "ts": 1_795_867_074_000_000i64}),
        json!({"event": "shards_launched", "cluster": 1, "from": 4, "to": 7, "ts": 1_795_867_077_000_000i64}),
        json!({"event": "cluster_exited", "id": 2, "code": 101, "restart_in_ms": 3000, "ts": 1_795_867_190_000_000i64}),
    ];
    let entries = log
        .iter()
        .filter_map(|v| match v {
            Value::Object(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    app.update(Msg::History(entries));
    for line in ["identifying shard 4 of 24", "fake bot: cluster 1 launched"] {
        app.update(Msg::Engine(Event::Output {
            id: 1,
            name: "Eevee".into(),
            stream: Stream::Stdout,
            line: line.into(),
        }));
    }
    app.update(Msg::Engine(Event::Output {
        id: 1,
        name: "Eevee".into(),
        stream: Stream::Stderr,
        line: "warning: slow identify".into(),
    }));
    app
}

pub fn render(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    terminal.draw(|f| view::draw(f, app)).expect("draw");
    terminal
}

pub fn key(app: &mut App, code: KeyCode) -> Option<Effect> {
    app.update(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

/// Ten rounds of answers, latency rising and guilds growing each round.
pub fn with_rounds(app: &mut App, states: &[ClusterState]) {
    for round in 1..=10u32 {
        let mut s = snapshot(states);
        for c in &mut s.clusters {
            if let Some(h) = &mut c.health {
                h.at = at(100 - u64::from(round) * 5);
                for sh in &mut h.shards {
                    sh.latency = Some(40.0 + f64::from(round * 5 + sh.shard_id));
                    sh.guilds = Some(1000 + u64::from(round * 10));
                }
            }
        }
        app.update(Msg::Snapshot(Arc::new(s)));
    }
}
