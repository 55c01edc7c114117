//! `mewld status`: the clusters as a table under the header's summary, or
//! as JSON for scripts (`--json`, the shape below, documented in
//! docs/operations.md). Exit 0 when every cluster runs, 1 otherwise, 2 when
//! the engine cannot be reached.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{Target, NOT_OK, OK};
use crate::control::{Client, Hello};
use crate::tui::lines::age;
use mewld_core::model::state::{ClusterState, ClusterView, Snapshot};
use mewld_core::model::Exit;

pub async fn run(target: &Target, json: bool) -> u8 {
    let reached = match target.reach(Client::Command).await {
        Ok(reached) => reached,
        Err(why) => return super::unreachable(&why),
    };
    let snapshot = &reached.snapshot;
    let engine = match target {
        Target::Socket(_) => Some(&reached.attached.hello),
        // The hello is this process's own: the fleet has no one engine.
        Target::Fleet(_) => None,
    };
    if let (Some(phase), Some(hello)) = (&reached.starting, engine) {
        return starting(phase, hello, json);
    }
    let now = SystemTime::now();
    if json {
        print_json(&Status::of(snapshot, engine, now));
    } else {
        super::say(table(snapshot, engine, now).trim_end());
    }
    if all_running(snapshot) {
        OK
    } else {
        NOT_OK
    }
}

/// An engine that does not run yet: one line, or `{"starting": step,
/// "engine": {…}}`; 1, as when not every cluster runs.
fn starting(phase: &str, hello: &Hello, json: bool) -> u8 {
    let engine = Engine::of(hello);
    if !json {
        let (pid, config) = (engine.pid, engine.config);
        super::say(format_args!(
            "mewld: the engine is starting: {phase} (pid {pid} · {config})"
        ));
        return NOT_OK;
    }
    print_json(&Starting {
        starting: phase,
        engine,
    });
    NOT_OK
}

fn print_json(shape: &impl Serialize) {
    match serde_json::to_string_pretty(shape) {
        Ok(text) => super::say(text),
        Err(e) => eprintln!("mewld: cannot write the status as JSON: {e}"),
    }
}

/// `mewld status --json` before the engine runs.
#[derive(Debug, Serialize)]
struct Starting<'a> {
    /// The step of the start, as `/healthz` says it past `starting: `.
    starting: &'a str,
    engine: Engine<'a>,
}

fn all_running(s: &Snapshot) -> bool {
    !s.clusters.is_empty() && s.clusters.iter().all(|c| c.state == ClusterState::Running)
}

/// `mewld status --json`. Times are Unix seconds; fields that may be
/// unknown are `null`.
#[derive(Debug, Serialize)]
pub struct Status<'a> {
    /// The header's summary, as `systemctl status` shows it.
    pub summary: String,
    /// Every cluster runs (the exit status is 0).
    pub all_running: bool,
    pub shard_count: u32,
    pub fully_up: bool,
    /// `shutdown` or `restart_process` once one is under way.
    pub exiting: Option<Exit>,
    pub rolling_restart: Option<Rolling>,
    /// The manager answering (`null` for a fleet read through Redis).
    pub engine: Option<Engine<'a>>,
    /// In a fleet: the leader's name and every host's.
    pub fleet: Option<Fleet>,
    pub clusters: Vec<Cluster<'a>>,
}

#[derive(Debug, Serialize)]
pub struct Rolling {
    pub done: usize,
    pub total: usize,
    pub current: Option<u32>,
    /// Every cluster being restarted now (`rolling_restart_parallel`).
    pub under_way: Vec<u32>,
    /// New processes start beside the old ones.
    pub start_first: bool,
}

#[derive(Debug, Serialize)]
pub struct Engine<'a> {
    pub pid: u32,
    pub version: &'a str,
    pub config: String,
}

impl<'a> Engine<'a> {
    fn of(h: &'a Hello) -> Engine<'a> {
        Engine {
            pid: h.pid,
            version: &h.version,
            config: h.config.display().to_string(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Fleet {
    pub leader: Option<String>,
    pub hosts: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Cluster<'a> {
    pub id: u32,
    pub name: &'a str,
    /// In a fleet: the host that runs it.
    pub host: Option<&'a str>,
    /// pending, starting, running, stopping, stopped, crashed, failed, lost.
    pub state: &'static str,
    pub pid: Option<u32>,
    /// A replacement starting beside `pid` (`start_first`): its pid.
    pub replacing: Option<u32>,
    /// A second process being stopped beside `pid`: its pid.
    pub retiring: Option<u32>,
    pub started_at: Option<u64>,
    pub uptime_secs: Option<u64>,
    pub restarts: u32,
    pub shards: &'a [u32],
    /// From the latest diagnostic answer (`null` before one).
    pub shards_up: Option<usize>,
    pub latency_ms: Option<f64>,
    /// How its previous process ended, in words.
    pub last_exit: Option<String>,
}

impl<'a> Status<'a> {
    pub fn of(s: &'a Snapshot, engine: Option<&'a Hello>, now: SystemTime) -> Status<'a> {
        Status {
            summary: s.summary(),
            all_running: all_running(s),
            shard_count: s.shard_count,
            fully_up: s.fully_up,
            exiting: s.exiting,
            rolling_restart: s.rolling.as_ref().map(|r| Rolling {
                done: r.done,
                total: r.total,
                current: r.current,
                under_way: r.under_way.clone(),
                start_first: r.start_first,
            }),
            engine: engine.map(Engine::of),
            fleet: s.fleet.as_ref().map(|f| Fleet {
                leader: f.leader.as_ref().map(|(name, _)| name.clone()),
                hosts: f.hosts.iter().map(|h| h.name.clone()).collect(),
            }),
            clusters: s.clusters.iter().map(|c| Cluster::of(c, now)).collect(),
        }
    }
}

impl<'a> Cluster<'a> {
    fn of(c: &'a ClusterView, now: SystemTime) -> Cluster<'a> {
        let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs());
        let health = c.health.as_ref();
        Cluster {
            id: c.id,
            name: &c.name,
            host: c.host.as_deref(),
            state: c.state.as_str(),
            pid: c.pid,
            replacing: c.replacing,
            retiring: c.retiring,
            started_at: c.started_at.and_then(unix),
            uptime_secs: up_since(c)
                .and_then(|t| now.duration_since(t).ok())
                .map(|d| d.as_secs()),
            restarts: c.restarts,
            shards: &c.shards,
            shards_up: health.map(|h| h.shards_up()),
            latency_ms: health.and_then(|h| h.mean_latency()),
            last_exit: c.last_exit.map(|e| e.to_string()),
        }
    }
}

/// The human table: who answered, the summary, then a row per cluster.
pub fn table(s: &Snapshot, engine: Option<&Hello>, now: SystemTime) -> String {
    let mut out = String::new();
    match (engine, &s.fleet) {
        (Some(h), _) => out.push_str(&format!(
            "mewld {} · pid {} · {}\n",
            h.version,
            h.pid,
            h.config.display()
        )),
        (None, Some(f)) => {
            let leader = f.leader.as_ref().map_or("none", |(name, _)| name.as_str());
            let hosts = match f.hosts.len() {
                1 => "1 host".to_string(),
                n => format!("{n} hosts"),
            };
            out.push_str(&format!("fleet of {hosts} · leader {leader}\n"));
        }
        (None, None) => {}
    }
    out.push_str(&format!("{} shards · {}\n", s.shard_count, s.summary()));
    let fleet = s.fleet.is_some();
    let mut rows = vec![header(fleet)];
    rows.extend(s.clusters.iter().map(|c| row(c, fleet, now)));
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn header(fleet: bool) -> Vec<String> {
    let mut cols = vec!["ID", "NAME"];
    if fleet {
        cols.push("HOST");
    }
    cols.extend(["STATE", "PID", "UPTIME", "RESTARTS", "SHARDS UP", "LATENCY"]);
    cols.into_iter().map(String::from).collect()
}

fn row(c: &ClusterView, fleet: bool, now: SystemTime) -> Vec<String> {
    let dash = || "-".to_string();
    let mut cells = vec![c.id.to_string(), c.name.clone()];
    if fleet {
        cells.push(c.host.clone().unwrap_or_else(dash));
    }
    let health = c.health.as_ref();
    cells.extend([
        c.state.as_str().to_string(),
        pid_text(c),
        up_since(c).map_or_else(dash, |t| age(now, t)),
        c.restarts.to_string(),
        health.map_or_else(dash, |h| format!("{}/{}", h.shards_up(), c.shards.len())),
        health
            .and_then(|h| h.mean_latency())
            .map_or_else(dash, |ms| format!("{ms:.0} ms")),
    ]);
    cells
}

/// When its running process started: a stopped cluster keeps when it
/// last started, but has no uptime.
fn up_since(c: &ClusterView) -> Option<SystemTime> {
    c.started_at.filter(|_| c.pid.is_some())
}

/// The pid, and a second process beside it: `4100 (new 4242)` while a
/// replacement starts, `4242 (old 4100 stopping)` while the replaced one
/// stops.
fn pid_text(c: &ClusterView) -> String {
    let Some(pid) = c.pid else {
        return "-".into();
    };
    match (c.replacing, c.retiring) {
        (Some(new), _) => format!("{pid} (new {new})"),
        (None, Some(old)) => format!("{pid} ({old} stopping)"),
        (None, None) => pid.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use mewld_core::cluster_map;
    use mewld_core::model::health::Health;
    use mewld_core::protocol::ShardHealth;

    fn snapshot() -> (Snapshot, SystemTime) {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let specs = cluster_map::build(4, 2, &["Bulbasaur".into(), "Charmander".into()]);
        let mut running = ClusterView {
            state: ClusterState::Running,
            pid: Some(4242),
            started_at: Some(now - Duration::from_secs(3725)),
            restarts: 2,
            health: Some(Health {
                at: now,
                round_trip_ms: 3,
                shards: vec![
                    ShardHealth {
                        shard_id: 0,
                        up: true,
                        latency: Some(40.0),
                        guilds: None,
                        users: None,
                    },
                    ShardHealth {
                        shard_id: 1,
                        up: false,
                        latency: Some(60.0),
                        guilds: None,
                        users: None,
                    },
                ],
            }),
            ..ClusterView::lost(&specs[0])
        };
        running.last_exit = Some(mewld_core::model::ExitInfo {
            code: Some(0),
            signal: None,
        });
        let stopped = ClusterView {
            state: ClusterState::Stopped,
            ..ClusterView::lost(&specs[1])
        };
        let s = Snapshot {
            shard_count: 4,
            clusters: vec![running, stopped],
            fully_up: true,
            transport_connected: true,
            ..Snapshot::default()
        };
        (s, now)
    }

    #[test]
    fn the_table_lines_up_and_says_what_is_unknown() {
        let (s, now) = snapshot();
        let text = table(&s, None, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "4 shards · 1/2 clusters running, fully up, 1 stopped"
        );
        assert_eq!(
            lines[1],
            "ID  NAME        STATE    PID   UPTIME  RESTARTS  SHARDS UP  LATENCY"
        );
        assert_eq!(
            lines[2],
            "0   Bulbasaur   running  4242  1h02m   2         1/2        50 ms"
        );
        assert_eq!(
            lines[3],
            "1   Charmander  stopped  -     -       0         -          -"
        );
    }

    #[test]
    fn the_json_shape_names_every_field() {
        let (s, now) = snapshot();
        let value = serde_json::to_value(Status::of(&s, None, now)).expect("serializes");
        assert_eq!(value["all_running"], false);
        assert_eq!(value["exiting"], serde_json::Value::Null);
        let c = &value["clusters"][0];
        assert_eq!(c["state"], "running");
        assert_eq!(c["uptime_secs"], 3725);
        assert_eq!(c["shards_up"], 1);
        assert_eq!(c["latency_ms"], 50.0);
        assert_eq!(c["last_exit"], "code 0");
        assert_eq!(value["clusters"][1]["pid"], serde_json::Value::Null);
        assert_eq!(c["replacing"], serde_json::Value::Null);
    }

    /// A start_first overlap: the cluster runs (the old pid), with the
    /// replacement's pid beside it, in the table and the JSON alike.
    #[test]
    fn a_replacement_shows_beside_the_running_pid() {
        let (mut s, now) = snapshot();
        s.clusters[0].replacing = Some(4300);
        let text = table(&s, None, now);
        assert!(text.contains("running  4242 (new 4300)"), "{text}");
        let value = serde_json::to_value(Status::of(&s, None, now)).expect("serializes");
        let c = &value["clusters"][0];
        assert_eq!(
            (c["state"].as_str(), c["pid"].as_u64()),
            (Some("running"), Some(4242))
        );
        assert_eq!(c["replacing"], 4300);
        s.clusters[0].replacing = None;
        s.clusters[0].retiring = Some(4100);
        assert!(table(&s, None, now).contains("4242 (4100 stopping)"));
    }
}
