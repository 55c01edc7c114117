//! Every rule a cluster's life follows, as the protocol and the README
//! state it, checked on the pure core in simulated time: no Redis, no
//! processes, no waiting. The `Sim` plays the runner: it spawns "processes"
//! (answering each spawn at once, as the runner does), keeps the timers the
//! core sets and fires them as simulated time passes, and records every
//! command.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::{drive, Command, Core, Driver, Input, Now, Timer};
use crate::actlog::{LogEvent, StartVia};
use crate::cluster_map::{self, ClusterId};
use crate::model::Peer;
use crate::model::{Exit, Operation, Refused, Via};
use crate::model::{ExitInfo, SpawnError};
use crate::model::{GatewayBot, SessionStartLimit};
use crate::protocol::{self, Action, Request};
use crate::state::ClusterState;

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
        let me = crate::fleet::Membership {
            id: "b:2".into(),
            name: "b".into(),
            pid: 2,
            owned: owned.iter().copied().collect(),
            host_count: None,
            solo: false,
        };
        Sim::with_fleet(shards, "", Some(me))
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
            },
            via: Via::Redis,
        });
    }

    fn launch_next(&mut self, id: ClusterId) {
        self.input(Input::Request {
            request: Request {
                action: Action::LaunchNext(id),
                command_id: None,
            },
            via: Via::Redis,
        });
    }

    /// The live process of `id` ends.
    fn exit(&mut self, id: ClusterId, code: i32) {
        let generation = self.cluster(id).generation;
        self.input(Input::Exited {
            id,
            generation,
            exit: ExitInfo {
                code: Some(code),
                signal: None,
            },
        });
    }

    fn cluster(&self, id: ClusterId) -> &super::cluster::Cluster {
        &self.core.clusters[id as usize]
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
                Command::Publish(p) => serde_json::from_str(p).ok(),
                _ => None,
            })
            .collect()
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

// The launch (docs/protocol.md §6).

#[test]
fn the_launch_waits_for_the_transport_then_goes_one_cluster_at_a_time() {
    let mut sim = Sim::new(6, "cluster_start_next_delay: 5\n");
    assert!(
        sim.spawned().is_empty(),
        "nothing starts before the subscription"
    );
    sim.input(Input::TransportUp);
    assert_eq!(sim.spawned(), vec![0]);
    sim.advance(SECS(60));
    assert_eq!(sim.spawned(), vec![0], "the next waits for launch_next");
    sim.launch_next(0);
    assert_eq!(sim.state(0), ClusterState::Running);
    sim.advance(SECS(4));
    assert_eq!(
        sim.spawned(),
        vec![0],
        "not before cluster_start_next_delay"
    );
    sim.advance(SECS(1));
    assert_eq!(sim.spawned(), vec![0, 1]);
    sim.launch_next(1);
    sim.advance(SECS(5));
    assert_eq!(sim.announcements(), 0);
    sim.launch_next(2);
    assert_eq!(sim.spawned(), vec![0, 1, 2]);
    assert_eq!(
        sim.announcements(),
        1,
        "all_clusters_launched after the last"
    );
    assert!(sim.core.snapshot().fully_up);
    // A reconnect does not start the launch again.
    sim.input(Input::TransportDown {
        retry_at: SystemTime::UNIX_EPOCH,
    });
    sim.input(Input::TransportUp);
    assert_eq!(sim.spawned().len(), 3);
}

/// With no start delay, the next cluster starts in the step that handles
/// `launch_next`: no timer (the runner's have a millisecond's granularity).
#[test]
fn with_no_start_delay_the_next_cluster_starts_on_launch_next_itself() {
    let mut sim = Sim::new(6, "cluster_start_next_delay: 0\n");
    sim.input(Input::TransportUp);
    sim.mark();
    sim.launch_next(0);
    assert_eq!(sim.spawned(), vec![1]);
    assert!(
        !sim.since_mark().iter().any(|c| matches!(
            c,
            Command::SetTimer {
                timer: Timer::StartNext,
                ..
            }
        )),
        "{:?}",
        sim.since_mark()
    );
}

const CONCURRENT: &str = "identify_queue: 127.0.0.1:5000\nlaunch: concurrent\n";

/// `launch: concurrent`: with `max_concurrency` 4 and 2 shards a cluster,
/// 4 clusters start at once; each `launch_next` lets the next one start at
/// once, whatever `cluster_start_next_delay` says; the bot is announced
/// once, after the last.
#[test]
fn a_concurrent_launch_keeps_its_bound_of_clusters_starting() {
    let mut sim = Sim::new(20, &format!("{CONCURRENT}cluster_start_next_delay: 5\n"));
    sim.input(Input::TransportUp);
    assert_eq!(sim.spawned(), vec![0, 1, 2, 3]);
    sim.launch_next(2);
    assert_eq!(sim.spawned(), vec![0, 1, 2, 3, 4], "no delay");
    sim.advance(SECS(60));
    assert_eq!(sim.spawned().len(), 5, "still four starting");
    for id in [0, 1, 3, 4, 5, 6, 7, 8] {
        sim.launch_next(id);
    }
    assert_eq!(sim.spawned(), (0..10).collect::<Vec<_>>());
    assert_eq!(sim.announcements(), 0, "cluster 9 is still starting");
    sim.launch_next(9);
    assert_eq!(sim.announcements(), 1);
    assert!(sim.core.snapshot().fully_up);
}

/// The spawns of a concurrent launch are answered in the order they were
/// asked, as the runner answers them: the clusters are logged started in
/// id order.
#[test]
fn a_concurrent_launchs_starts_are_told_in_the_order_asked() {
    let mut sim = Sim::new(20, CONCURRENT);
    sim.input(Input::TransportUp);
    let started: Vec<ClusterId> = sim
        .logged()
        .iter()
        .filter_map(|e| match e {
            LogEvent::ClusterStarted { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(started, vec![0, 1, 2, 3]);
}

/// A cluster of a concurrent launch that crashes is restarted and still
/// counted as starting: the launch neither waits on it for ever nor starts
/// a fifth; its `launch_next` after the restart releases its place.
#[test]
fn a_crash_during_a_concurrent_launch_keeps_its_place() {
    let mut sim = Sim::new(12, &format!("{CONCURRENT}restart_backoff_base: 1\n"));
    sim.input(Input::TransportUp);
    assert_eq!(sim.spawned(), vec![0, 1, 2, 3]);
    sim.exit(1, 1);
    sim.advance(SECS(1));
    assert_eq!(sim.spawned(), vec![0, 1, 2, 3, 1], "restarted, no fifth");
    sim.launch_next(1);
    assert_eq!(sim.spawned(), vec![0, 1, 2, 3, 1, 4]);
    for id in [0, 2, 3, 4, 5] {
        sim.launch_next(id);
    }
    assert_eq!(sim.announcements(), 1);
}

#[test]
fn a_cluster_that_never_says_launch_next_is_given_up_on_after_launch_timeout() {
    let mut sim = Sim::new(4, "launch_timeout: 30\ncluster_start_next_delay: 1\n");
    sim.input(Input::TransportUp);
    sim.advance(SECS(29));
    assert_eq!(sim.spawned(), vec![0]);
    sim.advance(SECS(1));
    assert!(sim.logged().contains(&&LogEvent::LaunchTimeout {
        id: 0,
        waited_secs: 30
    }));
    sim.advance(SECS(1));
    assert_eq!(sim.spawned(), vec![0, 1]);
    // Its late launch_next still marks it running, and moves nothing.
    sim.launch_next(0);
    assert_eq!(sim.state(0), ClusterState::Running);
    assert_eq!(sim.spawned(), vec![0, 1]);
}

/// A cluster that crashes before its `launch_next` is restarted; if the
/// restarted one never says it either, the launch moves on after
/// `launch_timeout` all the same.
#[test]
fn a_cluster_restarted_before_its_launch_next_is_given_up_on_too() {
    let mut sim = Sim::new(
        4,
        "launch_timeout: 30\ncluster_start_next_delay: 1\nrestart_backoff_base: 1\n",
    );
    sim.input(Input::TransportUp);
    sim.advance(SECS(10));
    sim.exit(0, 1);
    sim.advance(SECS(1));
    assert_eq!(sim.spawned(), vec![0, 0], "restarted");
    sim.advance(SECS(29));
    assert_eq!(
        sim.spawned(),
        vec![0, 0],
        "its own timeout runs from its restart"
    );
    sim.advance(SECS(2));
    assert!(sim.logged().contains(&&LogEvent::LaunchTimeout {
        id: 0,
        waited_secs: 30
    }));
    assert_eq!(sim.spawned(), vec![0, 0, 1]);
}

#[test]
fn a_cluster_that_cannot_start_does_not_hold_up_the_rest() {
    let mut sim = Sim::new(6, "");
    sim.broken.insert(0);
    sim.input(Input::TransportUp);
    assert_eq!(sim.state(0), ClusterState::Failed);
    assert!(sim.logged().iter().any(|e| matches!(
        e,
        LogEvent::ClusterStartFailed {
            id: 0,
            via: StartVia::StartNext,
            ..
        }
    )));
    sim.advance(SECS(5));
    assert_eq!(sim.spawned(), vec![0, 1]);
}

#[test]
fn a_launch_spawn_short_of_descriptors_keeps_its_place_and_is_retried() {
    let mut sim = Sim::new(6, "restart_backoff_base: 3\n");
    sim.short.insert(0);
    sim.input(Input::TransportUp);
    assert_eq!(sim.state(0), ClusterState::Crashed);
    assert!(sim.logged().contains(&&LogEvent::ClusterStartFailed {
        id: 0,
        via: StartVia::StartNext,
        error: "Too many open files (os error 24)".into(),
        restart_in_ms: Some(3000),
    }));
    // Like a crash before its launch_next: the launch waits for it.
    sim.advance(SECS(2));
    assert_eq!(sim.spawned(), vec![0]);
    sim.short.clear();
    sim.advance(SECS(1));
    assert_eq!(sim.spawned(), vec![0, 0]);
    assert_eq!(sim.state(0), ClusterState::Starting);
    sim.launch_in_order(0..1);
    assert_eq!(sim.spawned(), vec![0, 0, 1]);
}

#[test]
fn an_operators_stop_of_a_launch_cluster_waiting_to_be_retried_lets_the_launch_go_on() {
    let mut sim = Sim::new(6, "restart_backoff_base: 3\n");
    sim.short.insert(0);
    sim.input(Input::TransportUp);
    assert_eq!(sim.state(0), ClusterState::Crashed);
    assert_eq!(sim.op(Operation::Stop(0)), Ok(()));
    sim.advance(sim.core.config.cluster_start_next_delay);
    assert_eq!(sim.spawned(), vec![0, 1]);
    assert_eq!(sim.state(0), ClusterState::Stopped);
}

// Operations (docs/protocol.md §5.1).

#[test]
fn start_stop_and_restart_are_refused_when_they_make_no_sense() {
    let mut sim = Sim::up(4, "");
    assert!(matches!(
        sim.op(Operation::Start(0)),
        Err(Refused::AlreadyRunning(_))
    ));
    assert_eq!(sim.op(Operation::Stop(9)), Err(Refused::NoSuchCluster(9)));
    assert_eq!(sim.op(Operation::Stop(1)), Ok(()));
    assert_eq!(sim.stopped(), vec![1]);
    sim.exit(1, 0);
    assert_eq!(sim.state(1), ClusterState::Stopped);
    assert!(matches!(
        sim.op(Operation::Stop(1)),
        Err(Refused::NotRunning(_))
    ));
    assert!(matches!(
        sim.op(Operation::Restart(1)),
        Err(Refused::RestartNotRunning(_))
    ));
    // Every refusal is in the action log, an unknown id included.
    assert_eq!(sim.logged().iter().filter(|e| is_refusal(e)).count(), 4);
    // An operator's stop stays stopped: no crash restart is scheduled.
    sim.advance(SECS(3600));
    assert_eq!(sim.spawned(), Vec::<ClusterId>::new());
    assert_eq!(sim.op(Operation::Start(1)), Ok(()));
    assert_eq!(sim.spawned(), vec![1]);
}

#[test]
fn over_the_channel_a_refusal_is_acked_ok_but_a_failed_start_says_so() {
    let mut sim = Sim::up(4, "");
    sim.request(Action::Stop(7), "c1");
    assert_eq!(sim.reply("c1"), json!("ok"));
    sim.request(Action::Start(0), "c2");
    assert_eq!(sim.reply("c2"), json!("could not start instance"));
    sim.op(Operation::Stop(1)).ok();
    sim.exit(1, 0);
    sim.broken.insert(1);
    sim.request(Action::Start(1), "c3");
    assert_eq!(sim.reply("c3"), json!("could not start instance"));
    assert_eq!(sim.state(1), ClusterState::Failed);
    let logged = sim.logged();
    let refusal = logged.iter().rev().find(|e| is_refusal(e));
    assert!(
        matches!(
            refusal,
            Some(LogEvent::OperatorAction {
                host: None,
                action: "start",
                via: "redis",
                id: Some(1),
                ..
            })
        ),
        "{logged:?}"
    );
}

#[test]
fn restart_stops_then_starts_again() {
    let mut sim = Sim::up(4, "");
    assert_eq!(sim.op(Operation::Restart(0)), Ok(()));
    assert_eq!(sim.stopped(), vec![0]);
    assert_eq!(sim.state(0), ClusterState::Stopping);
    sim.exit(0, 0);
    assert_eq!(sim.spawned(), vec![0]);
    assert_eq!(sim.state(0), ClusterState::Starting);
}

#[test]
fn operations_over_the_socket_name_the_peer() {
    let mut sim = Sim::up(2, "");
    let peer = Peer {
        pid: Some(42),
        uid: 1000,
    };
    sim.input(Input::Request {
        request: Request {
            action: Action::Stop(0),
            command_id: None,
        },
        via: Via::Unix(peer),
    });
    assert!(sim.logged().contains(&&LogEvent::OperatorAction {
        host: None,
        action: "stop",
        via: "unix",
        id: Some(0),
        peer_pid: Some(42),
        peer_uid: Some(1000),
        refused: None,
    }));
}

#[test]
fn statuses_and_num_processes_in_the_originals_shape() {
    let mut sim = Sim::up(5, "names: [Pika]\n");
    sim.request(Action::Statuses, "s");
    let st = sim.reply("s");
    assert_eq!(st["0"]["name"], "Pika");
    assert_eq!(st["0"]["status"], "running");
    assert_eq!(st["0"]["active"], true);
    assert_eq!(st["2"]["shard_list"], json!([4]));
    sim.request(Action::NumProcesses, "n");
    assert_eq!(sim.reply("n"), json!({"clusters": 3, "shards": 5}));
}

// Crashes (docs/protocol.md §6).

#[test]
fn a_crash_is_restarted_with_backoff_and_a_crash_loop_is_marked_failed() {
    let mut sim = Sim::up(
        2,
        "restart_backoff_base: 3\nrestart_backoff_max: 10\nrestart_max_failures: 4\n",
    );
    for (round, wait) in [3u64, 6, 10].into_iter().enumerate() {
        sim.mark();
        sim.exit(0, 1);
        assert_eq!(sim.state(0), ClusterState::Crashed, "round {round}");
        sim.advance(SECS(wait - 1));
        assert!(sim.spawned().is_empty(), "round {round}: too early");
        sim.advance(SECS(1));
        assert_eq!(sim.spawned(), vec![0], "round {round}: after {wait}s");
    }
    sim.mark();
    sim.exit(0, 1);
    assert_eq!(sim.state(0), ClusterState::Failed);
    assert!(sim.logged().iter().any(|e| matches!(
        e,
        LogEvent::ClusterFailed {
            id: 0,
            quick_failures: 4,
            ..
        }
    )));
    sim.advance(SECS(3600));
    assert!(sim.spawned().is_empty(), "a failed cluster stays stopped");
    // An operator's start gives it a fresh count.
    assert_eq!(sim.op(Operation::Start(0)), Ok(()));
    assert_eq!(sim.cluster(0).quick_failures, 0);
}

#[test]
fn a_cluster_that_ran_long_enough_starts_its_failure_count_afresh() {
    let mut sim = Sim::up(2, "restart_backoff_base: 3\nrestart_stable_after: 60\n");
    sim.exit(0, 1);
    sim.advance(SECS(3));
    sim.advance(SECS(61));
    sim.mark();
    sim.exit(0, 1);
    assert!(sim.logged().iter().any(|e| matches!(
        e,
        LogEvent::ClusterExited {
            id: 0,
            restart_in_ms: Some(3000),
            quick_failures: Some(0),
            ..
        }
    )));
}

#[test]
fn a_cluster_that_comes_back_is_announced_again() {
    let mut sim = Sim::up(4, "");
    sim.exit(1, 1);
    sim.advance(SECS(3));
    assert_eq!(sim.spawned(), vec![1]);
    assert_eq!(sim.announcements(), 0);
    sim.launch_next(1);
    assert_eq!(sim.announcements(), 1);
}

#[test]
fn a_spawn_short_of_descriptors_is_a_crash_retried_with_backoff_for_ever() {
    let mut sim = Sim::up(2, "restart_backoff_base: 3\nrestart_backoff_max: 10\n");
    sim.short.insert(0);
    sim.exit(0, 1);
    // The exit was the first quick failure, each failed spawn one more:
    // 3 s, then 6, then 10 (the most) for as long as the shortage lasts.
    let mut waits = Vec::new();
    for _ in 0..20 {
        let Some(wait) = sim.cluster(0).next_restart_at else {
            panic!("no restart scheduled: {:?}", sim.logged());
        };
        let wait = wait.duration_since(sim.now.wall).unwrap_or_default();
        waits.push(wait.as_secs());
        sim.mark();
        sim.advance(wait);
        assert_eq!(sim.spawned(), vec![0], "after {waits:?}");
        assert_eq!(sim.state(0), ClusterState::Crashed, "after {waits:?}");
    }
    assert_eq!(&waits[..4], &[3, 6, 10, 10], "{waits:?}");
    assert!(
        sim.logged().iter().any(|e| matches!(
            e,
            LogEvent::ClusterStartFailed {
                id: 0,
                via: StartVia::Observe,
                restart_in_ms: Some(10_000),
                ..
            }
        )),
        "{:?}",
        sim.logged()
    );
    // The shortage ends: the next try starts it.
    sim.short.clear();
    sim.mark();
    sim.advance(SECS(10));
    assert_eq!(sim.spawned(), vec![0]);
    assert_eq!(sim.state(0), ClusterState::Starting);
    assert!(
        sim.logged()
            .iter()
            .any(|e| matches!(e, LogEvent::ClusterRestarted { id: 0, .. })),
        "{:?}",
        sim.logged()
    );
}

#[test]
fn failed_spawns_count_toward_restart_max_failures_like_crashes() {
    let mut sim = Sim::up(2, "restart_backoff_base: 1\nrestart_max_failures: 3\n");
    sim.short.insert(0);
    sim.exit(0, 1);
    sim.advance(SECS(1));
    assert_eq!(sim.state(0), ClusterState::Crashed);
    sim.advance(SECS(2));
    assert_eq!(sim.state(0), ClusterState::Failed);
    assert!(
        sim.logged().iter().any(|e| matches!(
            e,
            LogEvent::ClusterFailed {
                id: 0,
                quick_failures: 3,
                ..
            }
        )),
        "{:?}",
        sim.logged()
    );
    sim.mark();
    sim.advance(SECS(3600));
    assert!(sim.spawned().is_empty(), "{:?}", sim.spawned());
    // An operator's start that meets the shortage is answered so, and
    // retried with a fresh count.
    let refused = sim.op(Operation::Start(0));
    assert!(
        matches!(refused, Err(Refused::CouldNotStart { .. })),
        "{refused:?}"
    );
    assert_eq!(sim.state(0), ClusterState::Crashed);
    assert_eq!(sim.cluster(0).quick_failures, 1);
    sim.short.clear();
    sim.advance(SECS(1));
    assert_eq!(sim.state(0), ClusterState::Starting);
}

// Diagnostics (docs/protocol.md §5.3).

#[test]
fn every_running_cluster_is_pinged_each_interval_and_answers_count_by_nonce() {
    let mut sim = Sim::up(6, "ping_interval: 10\nping_timeout: 20\n");
    sim.advance(SECS(10));
    let pings = sim.pings();
    assert_eq!(pings.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 1, 2]);
    sim.echoes_return();
    // Answers in any order reach their own request.
    for (_, nonce) in pings.iter().rev() {
        sim.answer(nonce);
    }
    assert!(sim.core.clusters.iter().all(|c| c.health.is_some()));
    // A duplicate answer is nothing; no timeout fires for answered pings.
    sim.answer(&pings[0].1);
    sim.advance(SECS(9));
    sim.mark();
    sim.advance(SECS(20));
    assert!(sim.stopped().is_empty());
    assert!(!sim
        .logged()
        .iter()
        .any(|e| matches!(e, LogEvent::PingFailure { .. })));
}

#[test]
fn an_unanswered_diagnostic_restarts_the_cluster_once_the_channel_is_shown_working() {
    let mut sim = Sim::up(4, "ping_interval: 10\nping_timeout: 20\n");
    sim.advance(SECS(10));
    let pings = sim.pings();
    sim.echoes_return();
    sim.answer(&pings[0].1);
    sim.mark();
    sim.advance(SECS(20));
    // Out of time: an echo goes out first, and only its return decides.
    assert!(sim.stopped().is_empty());
    sim.echoes_return();
    assert_eq!(sim.stopped(), vec![1]);
    assert!(sim.logged().contains(&&LogEvent::PingFailure { id: 1 }));
    sim.exit(1, 0);
    assert_eq!(sim.spawned(), vec![1], "restarted after the ping failure");
    // Its late answer is for a process that is gone: ignored.
    sim.answer(&pings[1].1);
    assert!(sim.cluster(1).health.is_none());
}

#[test]
fn a_stalled_channel_restarts_nobody_and_is_logged_once() {
    let mut sim = Sim::up(6, "ping_interval: 10\nping_timeout: 20\n");
    // Nothing comes back: not the pings' echoes, not the answers.
    sim.advance(SECS(60));
    assert!(sim.stopped().is_empty());
    let stalls = sim
        .logged()
        .iter()
        .filter(|e| matches!(e, LogEvent::ChannelStall { .. }))
        .count();
    assert_eq!(stalls, 1);
    sim.echoes_return();
    assert!(sim
        .logged()
        .iter()
        .any(|e| matches!(e, LogEvent::ChannelRecovered { .. })));
}

#[test]
fn pings_sent_before_a_reconnect_or_during_an_outage_count_for_nothing() {
    let mut sim = Sim::up(4, "ping_interval: 10\nping_timeout: 20\n");
    sim.advance(SECS(10));
    sim.echoes_return();
    sim.input(Input::TransportDown {
        retry_at: SystemTime::UNIX_EPOCH,
    });
    sim.mark();
    sim.advance(SECS(15));
    assert!(sim.pings().is_empty(), "no diagnostics while down");
    sim.input(Input::TransportUp);
    sim.advance(SECS(60));
    sim.echoes_return();
    assert!(sim.stopped().is_empty());
    assert!(matches!(sim.op(Operation::Diagnose(0)), Ok(())));
}

// Rolling restarts and resharding (docs/protocol.md §5.1).

#[test]
fn a_rolling_restart_goes_one_cluster_at_a_time_and_announces_the_bot_once() {
    let mut sim = Sim::up(6, "cluster_start_next_delay: 5\n");
    assert_eq!(sim.op(Operation::RollingRestart), Ok(()));
    for id in 0..3 {
        assert_eq!(sim.stopped().last(), Some(&id));
        sim.exit(id, 0);
        assert_eq!(sim.spawned().last(), Some(&id));
        assert_eq!(sim.stopped().len() as ClusterId, id + 1, "one at a time");
        sim.launch_next(id);
        assert_eq!(sim.announcements(), 0, "not per cluster");
        sim.advance(SECS(5));
    }
    assert!(sim.logged().contains(&&LogEvent::RollingRestartDone {}));
    assert_eq!(sim.announcements(), 1);
    assert!(sim.core.rolling.is_none());
}

#[test]
fn a_rolling_restart_moves_on_from_a_cluster_that_does_not_come_back() {
    let mut sim = Sim::up(4, "rolling_restart_timeout: 100\n");
    sim.op(Operation::RollingRestart).ok();
    sim.exit(0, 0);
    sim.advance(SECS(100));
    assert!(sim.logged().contains(&&LogEvent::RollingRestartTimeout {
        id: 0,
        waited_secs: 100
    }));
    assert_eq!(sim.stopped(), vec![0, 1]);
}

#[test]
fn an_operators_stop_during_a_rolling_restart_wins() {
    let mut sim = Sim::up(6, "");
    sim.op(Operation::RollingRestart).ok();
    sim.op(Operation::Stop(1)).ok();
    sim.exit(1, 0);
    sim.exit(0, 0);
    sim.launch_next(0);
    sim.advance(SECS(5));
    assert_eq!(
        sim.stopped(),
        vec![0, 1, 2],
        "1 was stopped by the operator"
    );
    assert_eq!(sim.spawned(), vec![0]);
    assert_eq!(sim.state(1), ClusterState::Stopped);
}

#[test]
fn rolling_restarts_and_reshards_wait_for_a_settled_bot() {
    let mut sim = Sim::new(4, "experimental_features: [reshard]\n");
    sim.input(Input::TransportUp);
    assert_eq!(sim.op(Operation::RollingRestart), Err(Refused::NotFullyUp));
    let mut sim = Sim::up(4, "experimental_features: [reshard]\n");
    sim.op(Operation::RollingRestart).ok();
    assert_eq!(
        sim.op(Operation::RollingRestart),
        Err(Refused::RollingUnderWay)
    );
    assert_eq!(sim.op(Operation::Reshard), Err(Refused::RollingUnderWay));
    let mut sim = Sim::up(4, "");
    assert_eq!(sim.op(Operation::Reshard), Err(Refused::ReshardDisabled));
}

fn gateway(shards: u32) -> GatewayBot {
    GatewayBot {
        url: String::new(),
        shards,
        session_start_limit: SessionStartLimit {
            total: 1000,
            remaining: 1000,
            reset_after: 0,
            max_concurrency: 1,
        },
    }
}

#[test]
fn a_reshard_restarts_changed_clusters_and_launches_new_ones() {
    let mut sim = Sim::up(3, "experimental_features: [reshard]\n");
    assert_eq!(sim.op(Operation::Reshard), Ok(()));
    assert!(sim.since_mark().contains(&Command::FetchGateway));
    sim.input(Input::GatewayFetched(Ok(gateway(6))));
    // [0,1] unchanged; [2] becomes [2,3]; [4,5] is new.
    assert_eq!(sim.stopped(), vec![1]);
    sim.exit(1, 0);
    sim.launch_next(1);
    sim.advance(SECS(5));
    assert!(sim.logged().contains(&&LogEvent::ReshardRestartsDone {}));
    assert_eq!(sim.spawned(), vec![1, 2]);
    sim.launch_next(2);
    assert_eq!(sim.announcements(), 1);
    assert_eq!(sim.core.snapshot().shard_count, 6);
}

#[test]
fn a_reshard_never_shrinks_the_cluster_map() {
    let mut sim = Sim::up(6, "experimental_features: [reshard]\n");
    sim.op(Operation::Reshard).ok();
    sim.input(Input::GatewayFetched(Ok(gateway(2))));
    assert!(sim.logged().iter().any(|e| matches!(
        e,
        LogEvent::ReshardFailed {
            subsystem: "cluster_map",
            ..
        }
    )));
    assert!(sim.stopped().is_empty());
    sim.input(Input::GatewayFetched(Err("401".into())));
    assert_eq!(sim.core.snapshot().shard_count, 6);
}

// Shutting down (docs/protocol.md §5.1, exit codes in the README).

#[test]
fn shutdown_stops_every_cluster_then_exits_0_and_restartproc_exits_1() {
    for (action, exit) in [
        (Action::Shutdown, Exit::Shutdown),
        (Action::RestartProc, Exit::RestartProcess),
    ] {
        let mut sim = Sim::up(6, "");
        sim.request(action, "bye");
        // Acked before anything stops, so the asker hears back.
        let first = sim.since_mark().first().cloned();
        assert!(matches!(first, Some(Command::Publish(_))), "{first:?}");
        assert_eq!(sim.reply("bye"), json!("ok"));
        assert_eq!(sim.stopped(), vec![0, 1, 2]);
        assert_eq!(sim.core.finished(), None);
        sim.exit(0, 0);
        sim.exit(1, 0);
        assert_eq!(sim.core.finished(), None);
        sim.exit(2, 0);
        assert_eq!(sim.core.finished(), Some(exit));
        assert_eq!(exit.code(), if exit == Exit::Shutdown { 0 } else { 1 });
        // Nothing is restarted on the way out, and nothing else is accepted.
        sim.advance(SECS(3600));
        assert!(sim.spawned().is_empty());
        assert_eq!(sim.op(Operation::Start(0)), Err(Refused::ShuttingDown));
    }
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
                crate::state::ClusterView {
                    state,
                    pid: matches!(state, ClusterState::Starting | ClusterState::Running)
                        .then_some(500 + id),
                    ..crate::state::ClusterView::lost(&spec)
                }
            })
            .collect(),
    }
}

#[test]
fn a_host_starts_its_cluster_after_the_one_before_it_on_another_host() {
    use ClusterState::*;
    let mut sim = Sim::host(6, &[1]);
    sim.input(Input::TransportUp);
    assert!(
        sim.spawned().is_empty(),
        "nothing before the fleet is known"
    );
    sim.view(vec![host_a(&[(0, Starting), (2, Pending)])], false);
    assert!(sim.spawned().is_empty(), "cluster 0 has not launched");
    sim.launch_next(0);
    sim.advance(sim.core.config.cluster_start_next_delay);
    assert_eq!(sim.spawned(), vec![1]);
    sim.mark();
    sim.launch_next(1);
    sim.advance(SECS(10));
    assert!(
        !sim.core.launcher.fully_up(),
        "cluster 2 is still to launch"
    );
    sim.launch_next(2);
    assert!(sim.core.launcher.fully_up());
    assert_eq!(sim.announcements(), 0, "only the leader announces");
}

#[test]
fn a_missing_host_holds_the_launch_for_launch_timeout_only() {
    let mut sim = Sim::host(6, &[1]);
    sim.input(Input::TransportUp);
    sim.view(vec![], true);
    sim.mark();
    sim.advance(sim.core.config.launch_timeout - SECS(1));
    assert!(sim.spawned().is_empty());
    sim.advance(SECS(2) + sim.core.config.cluster_start_next_delay);
    assert_eq!(sim.spawned(), vec![1]);
    assert!(sim
        .logged()
        .iter()
        .any(|e| matches!(e, LogEvent::LaunchTimeout { id: 0, .. })));
    sim.mark();
    sim.launch_next(1);
    // Cluster 2 has no host either: not waited for a second time.
    assert!(sim.core.launcher.fully_up());
    assert_eq!(sim.announcements(), 1);
    assert!(sim
        .logged()
        .contains(&&LogEvent::AllClustersLaunched { clusters: 3 }));
    let snapshot = sim.core.snapshot();
    assert_eq!(snapshot.clusters.len(), 3);
    assert_eq!(snapshot.clusters[0].state, ClusterState::Lost);
    assert_eq!(snapshot.clusters[1].host.as_deref(), Some("b"));
}

#[test]
fn only_the_leader_answers_and_the_next_answers_what_the_last_left() {
    use ClusterState::*;
    let mut sim = Sim::beside_a(&[(0, Running), (2, Running)], false);
    sim.mark();
    sim.request(Action::Statuses, "q1");
    sim.request(Action::NumProcesses, "q2");
    assert!(sim.published().is_empty(), "another host leads");
    // The leader answered q1, then died.
    sim.request(Action::Answered, "q1");
    sim.view(vec![host_a(&[(0, Running), (2, Running)])], true);
    let published: Vec<Value> = sim
        .published()
        .into_iter()
        .filter(|m| m["scope"] == "bot")
        .collect();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0]["command_id"], "q2");
    assert_eq!(published[0]["output"], json!({"clusters": 3, "shards": 6}));
    assert!(sim.logged().contains(&&LogEvent::LeaderElected {
        host: "b".into(),
        epoch: 3
    }));
    sim.mark();
    sim.request(Action::Statuses, "q3");
    let statuses = sim.reply("q3");
    assert_eq!(statuses["0"]["status"], "running");
    assert_eq!(statuses["1"]["status"], "starting", "its turn came: 0 runs");
}

#[test]
fn operations_are_carried_out_by_the_host_that_runs_the_cluster() {
    use ClusterState::*;
    let mut sim = Sim::beside_a(&[(0, Running), (2, Running)], true);
    sim.launch_next(1);
    sim.mark();
    // Over the channel, host a acts and answers for its own cluster.
    sim.request(Action::Stop(0), "s0");
    assert!(sim.published().is_empty() && sim.stopped().is_empty());
    // From this host's console, it is handed to host a.
    assert_eq!(sim.op(Operation::Stop(0)), Ok(()));
    let handed = sim.published();
    assert_eq!(handed[0]["action"], "mewld_op");
    assert_eq!(
        (handed[0]["op"].as_str(), handed[0]["id"].as_u64()),
        (Some("stop"), Some(0))
    );
    assert!(matches!(
        sim.op(Operation::Diagnose(2)),
        Err(Refused::OnAnotherHost { .. })
    ));
    // What host a hands here is done here, and logged with a's name.
    sim.mark();
    sim.request(
        Action::FleetOp(protocol::FleetOp {
            op: "stop".into(),
            id: Some(1),
            via: "attach".into(),
            host: "a".into(),
            rolling: false,
            epoch: None,
        }),
        "",
    );
    assert_eq!(sim.stopped(), vec![1]);
    assert!(
        sim.logged().iter().any(|e| matches!(e,
        LogEvent::OperatorAction { action: "stop", via: "attach", host: Some(h), .. } if h == "a"))
    );
}

#[test]
fn a_host_that_stops_heartbeating_is_lost_until_it_comes_back() {
    use ClusterState::*;
    let mut sim = Sim::beside_a(&[(0, Running), (2, Running)], true);
    sim.mark();
    sim.view(vec![], true);
    assert!(sim.logged().contains(&&LogEvent::HostLost {
        host: "a".into(),
        clusters: "0,2".into()
    }));
    let states: Vec<_> = sim
        .core
        .snapshot()
        .clusters
        .iter()
        .map(|c| c.state)
        .collect();
    assert_eq!(states[0], Lost);
    assert_eq!(states[2], Lost);
    sim.request(Action::Stop(2), "s2");
    assert_eq!(sim.reply("s2"), "ok", "the leader answers for a lost host");
    sim.mark();
    sim.view(vec![host_a(&[(0, Running), (2, Starting)])], true);
    assert!(sim
        .logged()
        .iter()
        .any(|e| matches!(e, LogEvent::HostJoined { host, .. } if host == "a")));
    assert_eq!(sim.core.snapshot().clusters[2].state, Starting);
}

#[test]
fn a_launch_next_outruns_its_hosts_record_but_not_a_new_process() {
    use ClusterState::*;
    let mut sim = Sim::beside_a(&[(0, Starting), (2, Running)], true);
    sim.launch_next(0);
    // Host a's record still says starting (it is written every 250 ms).
    sim.view(vec![host_a(&[(0, Starting), (2, Running)])], true);
    assert_eq!(sim.core.snapshot().clusters[0].state, Running);
    // Another process of cluster 0 (a restart): its record is the truth.
    let mut record = host_a(&[(0, Starting), (2, Running)]);
    record.clusters[0].pid = Some(900);
    sim.view(vec![record], true);
    assert_eq!(sim.core.snapshot().clusters[0].state, Starting);
}

#[test]
fn a_launch_finished_while_nobody_led_is_announced_by_the_next_leader() {
    use ClusterState::*;
    let mut sim = Sim::beside_a(&[(0, Starting), (2, Pending)], false);
    sim.launch_in_order(0..3);
    assert!(sim.core.launcher.fully_up());
    assert_eq!(sim.announcements(), 0, "another host leads");
    // That leader died before it said so; this host is elected.
    sim.view(vec![host_a(&[(0, Running), (2, Running)])], true);
    assert_eq!(sim.announcements(), 1);
    sim.view(vec![host_a(&[(0, Running), (2, Running)])], true);
    assert_eq!(sim.announcements(), 1, "once");
}

#[test]
fn a_displaced_host_stops_its_clusters_and_exits() {
    use ClusterState::*;
    let mut sim = Sim::beside_a(&[(0, Running), (2, Running)], true);
    sim.launch_next(1);
    sim.mark();
    sim.input(Input::Fleet(crate::fleet::FleetView {
        displaced: Some("clusters 1 are already run by host z".into()),
        ..crate::fleet::FleetView::default()
    }));
    assert_eq!(sim.stopped(), vec![1]);
    assert!(sim
        .logged()
        .iter()
        .any(|e| matches!(e, LogEvent::HostDisplaced { .. })));
    // Cluster 1 is this host's only one: index 0 here.
    let generation = sim.core.clusters[0].generation;
    sim.input(Input::Exited {
        id: 1,
        generation,
        exit: ExitInfo {
            code: Some(0),
            signal: None,
        },
    });
    assert_eq!(sim.core.finished(), Some(Exit::Shutdown));
}

#[test]
fn a_launch_the_leader_announced_is_not_announced_again_by_the_next() {
    use ClusterState::*;
    let mut sim = Sim::beside_a(&[(0, Starting), (2, Pending)], false);
    sim.launch_in_order(0..3);
    // Host a, the leader, said it; then it died and this host is elected.
    sim.request(Action::Announced, "");
    sim.view(vec![host_a(&[(0, Running), (2, Running)])], true);
    assert_eq!(sim.announcements(), 0);
}

/// A manager alone on Redis: `shards` shards, its claim on every cluster
/// made by the fleet task (or not yet).
fn alone(shards: u32) -> Sim {
    let me = crate::fleet::Membership {
        id: "b:2".into(),
        name: "b".into(),
        pid: 2,
        owned: (0..shards.div_ceil(2)).collect(),
        host_count: None,
        solo: true,
    };
    Sim::with_fleet(shards, "", Some(me))
}

#[test]
fn alone_on_redis_nothing_starts_before_the_claim_is_in_redis() {
    let mut sim = alone(4);
    sim.input(Input::TransportUp);
    assert!(sim.spawned().is_empty(), "started before the claim");
    sim.input(Input::Fleet(crate::fleet::FleetView {
        me: "b".into(),
        ..crate::fleet::FleetView::default()
    }));
    assert_eq!(sim.spawned(), vec![0]);
    // Alone, it answers for itself: no lease, no other host.
    assert!(sim.core.leads());
    assert_eq!(sim.core.map_size(), (4, 2));
}

#[test]
fn alone_a_manager_whose_claim_was_taken_stops_its_clusters() {
    let mut sim = alone(4);
    sim.input(Input::TransportUp);
    sim.input(Input::Fleet(crate::fleet::FleetView::default()));
    sim.launch_next(0);
    sim.mark();
    sim.input(Input::Fleet(crate::fleet::FleetView {
        displaced: Some("clusters 0-1 are already run by host z".into()),
        me: "b".into(),
        ..crate::fleet::FleetView::default()
    }));
    // Cluster 1 was not started yet, and never will be.
    assert_eq!(sim.stopped(), vec![0]);
    sim.advance(SECS(3600));
    assert!(sim.spawned().is_empty(), "{:?}", sim.spawned());
    assert!(sim
        .logged()
        .iter()
        .any(|e| matches!(e, LogEvent::HostDisplaced { host, .. } if host == "b")));
}

#[test]
fn the_leaders_order_to_stop_reaches_a_host_that_missed_it() {
    use ClusterState::*;
    // The leader acks `restartproc` and keeps the order for the others.
    let mut leader = Sim::beside_a(&[(0, Running), (2, Running)], true);
    leader.request(Action::RestartProc, "r1");
    let order = leader.core.snapshot().fleet.and_then(|f| f.exit_order);
    assert_eq!(
        order,
        Some(crate::state::ExitOrder {
            restart: true,
            epoch: 3
        })
    );
    // A host that never heard the message stops when the order is read.
    let mut missed = Sim::beside_a(&[(0, Running), (2, Running)], false);
    missed.launch_next(1);
    missed.mark();
    missed.input(Input::Fleet(crate::fleet::FleetView {
        exit_order: order,
        ..crate::fleet::FleetView::default()
    }));
    assert_eq!(missed.stopped(), vec![1]);
    let generation = missed.core.clusters[0].generation;
    missed.input(Input::Exited {
        id: 1,
        generation,
        exit: ExitInfo {
            code: Some(0),
            signal: None,
        },
    });
    assert_eq!(missed.core.finished(), Some(Exit::RestartProcess));
}
