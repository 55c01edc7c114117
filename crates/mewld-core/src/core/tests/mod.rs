//! Every rule a cluster's life follows, as the protocol and the README
//! state it, checked on the pure core in simulated time: no Redis, no
//! processes, no waiting. The `Sim` plays the runner: it spawns "processes"
//! (answering each spawn at once, as the runner does), keeps the timers the
//! core sets and fires them as simulated time passes, and records every
//! command.
//!
//! The tests are grouped as the core groups the rules: `launch.rs` (the
//! launch), `ops.rs` (operations and shutting down), `lifecycle.rs`
//! (crashes and restarts), `diag.rs` (health pings), `rolling.rs` (rolling
//! restarts and resharding), `fleet.rs` (hosts of a fleet, and a manager
//! alone on Redis).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::{drive, Command, Core, Driver, Input, Now, Timer};
use crate::actlog::LogEvent;
use crate::cluster_map::{self, ClusterId};
use crate::model::state::ClusterState;
use crate::model::SessionStartLimit;
use crate::model::{ExitInfo, SpawnError};
use crate::model::{Operation, Refused, Via};
use crate::protocol::{self, Action, Request};

mod channels;
mod diag;
mod fleet;
mod launch;
mod lifecycle;
mod ops;
mod reshard_start_first;
mod restarts;
mod rolling;
mod start_first;

struct Sim {
    core: Core,
    now: Now,
    timers: HashMap<Timer, Instant>,
    /// Every command so far, in order.
    done: Vec<Command>,
    /// Where the log of this step starts (see `since_mark`).
    mark: usize,
    next_pid: u32,
    /// Clusters whose spawns fail: the program is missing.
    broken: HashSet<ClusterId>,
    /// Clusters whose spawns fail for want of file descriptors.
    short: HashSet<ClusterId>,
    /// The verdict of the input under way.
    verdict: Option<Result<(), Refused>>,
}

/// Answers spawns from `broken` and `short`, keeps the timers, and
/// remembers every command, as the runner would carry them out.
impl Driver for Sim {
    fn core(&mut self) -> &mut Core {
        &mut self.core
    }

    fn now(&mut self) -> Now {
        self.now
    }

    fn execute(&mut self, command: Command) -> Option<Input> {
        let mut next = None;
        match &command {
            Command::Spawn { id, generation, .. } => {
                let failure = |error: &str, transient| SpawnError {
                    error: error.into(),
                    transient,
                };
                let result = if self.broken.contains(id) {
                    Err(failure("No such file or directory (os error 2)", false))
                } else if self.short.contains(id) {
                    Err(failure("Too many open files (os error 24)", true))
                } else {
                    self.next_pid += 1;
                    Ok(self.next_pid)
                };
                next = Some(Input::Spawned {
                    id: *id,
                    generation: *generation,
                    result,
                });
            }
            Command::SetTimer { timer, after } => {
                self.timers.insert(timer.clone(), self.now.at + *after);
            }
            Command::CancelTimer(timer) => {
                self.timers.remove(timer);
            }
            Command::Verdict(v) => self.verdict = Some(v.clone()),
            _ => {}
        }
        self.done.push(command);
        next
    }
}

const SECS: fn(u64) -> Duration = Duration::from_secs;

impl Sim {
    /// A bot of `shards` shards, two per cluster, with `extra` config lines.
    fn new(shards: u32, extra: &str) -> Sim {
        Sim::with_fleet(shards, extra, None)
    }

    /// Host "b" of a fleet, running the clusters `owned`.
    fn host(shards: u32, owned: &[ClusterId]) -> Sim {
        Sim::host_with(shards, owned, "")
    }

    /// [`Sim::host`] with `extra` config lines.
    fn host_with(shards: u32, owned: &[ClusterId], extra: &str) -> Sim {
        let me = crate::fleet::Membership {
            id: "b:2".into(),
            name: "b".into(),
            pid: 2,
            owned: owned.iter().copied().collect(),
            host_count: None,
            solo: false,
        };
        Sim::with_fleet(shards, extra, Some(me))
    }

    /// Host "b" (cluster 1 of 3), its channel up, told that host "a" runs
    /// clusters 0 and 2 as `a` says, and whether "b" leads.
    fn beside_a(a: &[(ClusterId, ClusterState)], lead: bool) -> Sim {
        let mut sim = Sim::host(6, &[1]);
        sim.input(Input::TransportUp);
        sim.view(vec![host_a(a)], lead);
        sim
    }

    /// Each of `ids` says `launch_next` in turn, the start delay after each.
    fn launch_in_order(&mut self, ids: std::ops::Range<ClusterId>) {
        for id in ids {
            self.launch_next(id);
            self.advance(self.core.config.cluster_start_next_delay);
        }
    }

    /// The fleet task reports `hosts` (the others) and whether we lead.
    fn view(&mut self, hosts: Vec<crate::fleet::HostRecord>, lead: bool) {
        let view = crate::fleet::FleetView {
            hosts,
            leader: Some(crate::fleet::Leader {
                host: if lead { "b:2".into() } else { "a:1".into() },
                epoch: 3,
            }),
            // The fleet task renews it every heartbeat.
            lease_until: lead.then(|| self.now.at + SECS(3600)),
            displaced: None,
            me: "b".into(),
            exit_order: None,
        };
        self.input(Input::Fleet(view));
    }

    fn with_fleet(shards: u32, extra: &str, fleet: Option<crate::fleet::Membership>) -> Sim {
        let text = format!(
            "token: t\nmodule: bot.py\nredis: h:1\nredis_channel: c\nper_cluster: 2\noverride_dir: /srv/bot\n{extra}"
        );
        let config = crate::config::for_tests(&text);
        let map = cluster_map::build(shards, config.per_cluster, &config.names);
        let now = Now {
            at: Instant::now(),
            wall: SystemTime::UNIX_EPOCH + SECS(1_800_000_000),
        };
        let limit = SessionStartLimit {
            total: 1000,
            remaining: 1000,
            reset_after: 3_600_000,
            max_concurrency: 4,
        };
        let core = Core::new(Arc::new(config), shards, map, Some(&limit), fleet, now, 7);
        let mut sim = Sim {
            core,
            now,
            timers: HashMap::new(),
            done: Vec::new(),
            mark: 0,
            next_pid: 100,
            broken: HashSet::new(),
            short: HashSet::new(),
            verdict: None,
        };
        sim.input(Input::Begin);
        sim
    }

    /// A bot whose clusters have all launched.
    fn up(shards: u32, extra: &str) -> Sim {
        let mut sim = Sim::new(shards, extra);
        sim.input(Input::TransportUp);
        let clusters = sim.core.clusters.len() as ClusterId;
        sim.launch_in_order(0..clusters);
        assert!(sim.core.launcher.fully_up());
        // Healthy: whatever diagnostics went out meanwhile were answered.
        sim.mark = 0;
        sim.echoes_return();
        for (_, nonce) in sim.pings() {
            sim.answer(&nonce);
        }
        sim.mark();
        sim
    }

    /// Steps the core as the runner does (see [`drive`]).
    fn input(&mut self, input: Input) -> Option<Result<(), Refused>> {
        drive(self, input);
        self.verdict.take()
    }

    /// Lets `d` of simulated time pass, firing timers as they come due.
    fn advance(&mut self, d: Duration) {
        let until = self.now.at + d;
        loop {
            let next = self
                .timers
                .iter()
                .filter(|(_, due)| **due <= until)
                .min_by_key(|(_, due)| **due)
                .map(|(t, due)| (t.clone(), *due));
            let Some((timer, due)) = next else { break };
            self.timers.remove(&timer);
            self.set_time(due);
            self.input(Input::Timer(timer));
        }
        self.set_time(until);
    }

    fn set_time(&mut self, at: Instant) {
        let d = at.saturating_duration_since(self.now.at);
        self.now = Now {
            at,
            wall: self.now.wall + d,
        };
    }

    fn op(&mut self, op: Operation) -> Result<(), Refused> {
        match self.input(Input::Op {
            op,
            via: Via::Console,
        }) {
            Some(v) => v,
            None => panic!("no verdict for {op:?}"),
        }
    }

    fn request(&mut self, action: Action, command_id: &str) {
        self.input(Input::Request {
            request: Request {
                action,
                command_id: Some(command_id.into()),
                reply_to: None,
            },
            via: Via::Redis,
        });
    }

    fn launch_next(&mut self, id: ClusterId) {
        self.input(Input::Request {
            request: Request {
                action: Action::LaunchNext(id),
                command_id: None,
                reply_to: None,
            },
            via: Via::Redis,
        });
    }

    /// The live process of `id` ends.
    fn exit(&mut self, id: ClusterId, code: i32) {
        let generation = self.cluster(id).generation;
        self.exit_of(id, generation, code);
    }

    /// The second process of `id` (a replacement, or the process one
    /// replaced) ends with `code`.
    fn exit_second(&mut self, id: ClusterId, code: i32) {
        let second = self.cluster(id).second.as_ref();
        let generation = second.map(|s| s.generation).expect("a second process");
        self.exit_of(id, generation, code);
    }

    fn exit_of(&mut self, id: ClusterId, generation: u64, code: i32) {
        self.input(Input::Exited {
            id,
            generation,
            exit: ExitInfo {
                code: Some(code),
                signal: None,
            },
        });
    }

    /// The spawns since the mark: cluster and the pid it replaces.
    fn spawns(&self) -> Vec<(ClusterId, Option<u32>)> {
        self.since_mark()
            .iter()
            .filter_map(|c| match c {
                Command::Spawn { id, replaces, .. } => Some((*id, *replaces)),
                _ => None,
            })
            .collect()
    }

    fn cluster(&self, id: ClusterId) -> &super::cluster::Cluster {
        let found = self.core.clusters.iter().find(|c| c.spec.id == id);
        found.unwrap_or_else(|| panic!("no cluster {id} on this host"))
    }

    fn state(&self, id: ClusterId) -> ClusterState {
        self.cluster(id).state
    }

    fn mark(&mut self) {
        self.mark = self.done.len();
    }

    fn since_mark(&self) -> &[Command] {
        &self.done[self.mark..]
    }

    fn spawned(&self) -> Vec<ClusterId> {
        self.since_mark()
            .iter()
            .filter_map(|c| match c {
                Command::Spawn { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }

    fn stopped(&self) -> Vec<ClusterId> {
        self.since_mark()
            .iter()
            .filter_map(|c| match c {
                Command::Stop { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }

    fn logged(&self) -> Vec<&LogEvent> {
        self.since_mark()
            .iter()
            .filter_map(|c| match c {
                Command::Log(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn published(&self) -> Vec<Value> {
        self.since_mark()
            .iter()
            .filter_map(|c| match c {
                Command::Publish { payload, .. } => serde_json::from_str(payload).ok(),
                _ => None,
            })
            .collect()
    }

    /// What was published on `channel` since the mark.
    fn published_on(&self, channel: &protocol::Channel) -> Vec<Value> {
        self.since_mark()
            .iter()
            .filter_map(|c| match c {
                Command::Publish {
                    channel: on,
                    payload,
                } if on == channel => serde_json::from_str(payload).ok(),
                _ => None,
            })
            .collect()
    }

    /// `message` arrives on the channel, read as the runner reads it.
    fn hear(&mut self, message: Value) {
        match protocol::parse(message.to_string().as_bytes()) {
            Ok(Some(request)) => {
                self.input(Input::Request {
                    request,
                    via: Via::Redis,
                });
            }
            other => panic!("not a request: {other:?}"),
        }
    }

    fn announcements(&self) -> usize {
        self.published()
            .iter()
            .filter(|m| m["action"] == "all_clusters_launched")
            .count()
    }

    fn reply(&self, command_id: &str) -> Value {
        self.published()
            .into_iter()
            .find(|m| m["command_id"] == command_id)
            .map(|m| m["output"].clone())
            .unwrap_or_else(|| panic!("no reply to {command_id}: {:?}", self.since_mark()))
    }

    /// Nonces of the diagnostics published since the mark, per cluster.
    fn pings(&self) -> Vec<(ClusterId, String)> {
        self.published()
            .iter()
            .filter(|m| m.get("diag").is_some())
            .map(|m| {
                (
                    m["id"].as_u64().unwrap_or(u64::MAX) as ClusterId,
                    m["nonce"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// The manager's own echoes since the mark come back.
    fn echoes_return(&mut self) {
        let nonces: Vec<String> = self
            .published()
            .iter()
            .filter(|m| m["action"] == "mewld_echo")
            .filter_map(|m| m["nonce"].as_str().map(String::from))
            .collect();
        for nonce in nonces {
            self.request(Action::Echo(nonce), "");
        }
    }

    fn answer(&mut self, nonce: &str) {
        let output = json!({"nonce": nonce, "data": [{"id": 0, "up": true}]}).to_string();
        let msg = json!({"scope": "launcher", "action": "diag", "output": output}).to_string();
        match protocol::parse(msg.as_bytes()) {
            Ok(Some(request)) => {
                self.input(Input::Request {
                    request,
                    via: Via::Redis,
                });
            }
            other => panic!("not a diag answer: {other:?}"),
        }
    }
}

fn is_refusal(e: &LogEvent) -> bool {
    matches!(
        e,
        LogEvent::OperatorAction {
            host: None,
            refused: Some(_),
            ..
        }
    )
}

/// Host "a"'s record: it runs `states` (id, state).
fn host_a(states: &[(ClusterId, ClusterState)]) -> crate::fleet::HostRecord {
    crate::fleet::HostRecord {
        id: "a:1".into(),
        name: "a".into(),
        pid: 1,
        version: "test".into(),
        owned: states.iter().map(|(id, _)| *id).collect(),
        shard_count: 6,
        cluster_count: 3,
        map: crate::cluster_map::MapPrint::default(),
        host_count: None,
        solo: false,
        epoch_seen: 0,
        started_at: 0,
        boot_id: String::new(),
        clusters: states
            .iter()
            .map(|&(id, state)| {
                let spec = crate::cluster_map::ClusterSpec {
                    id,
                    name: format!("cluster-{id}"),
                    shards: vec![2 * id, 2 * id + 1],
                };
                crate::model::state::ClusterView {
                    state,
                    pid: matches!(state, ClusterState::Starting | ClusterState::Running)
                        .then_some(500 + id),
                    ..crate::model::state::ClusterView::lost(&spec)
                }
            })
            .collect(),
    }
}
