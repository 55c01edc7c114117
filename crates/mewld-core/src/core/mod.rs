//! The engine's decisions, as a pure state machine: [`Core::step`] takes
//! the time and one [`Input`] and returns the [`Command`]s to carry out. It
//! does no I/O and reads no clock, so every rule a cluster's life follows
//! is unit-tested in simulated time (see `tests/`). The runner
//! (`engine/runner.rs`) executes the commands and feeds their results back.
//!
//! The rules live by concern: `ops.rs` (what operators ask), `lifecycle.rs`
//! (spawn, exit, crash restart), `diag.rs` (health pings), `rolling.rs`
//! (rolling restarts and resharding), `fleet/` (the other hosts of a
//! fleet); the launch order is the [`Launcher`](crate::launch::Launcher).

mod cluster;
mod diag;
mod driver;
mod fleet;
mod lifecycle;
mod ops;
mod replacement;
mod reshard;
mod rolling;
mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};

use crate::actlog::LogEvent;
use crate::cluster_map::{ClusterId, ClusterSpec};
use crate::config::Config;
use crate::health::Pings;
use crate::launch::Launcher;
use crate::model::{CommandLine, ExitInfo, SpawnError};
use crate::model::{Exit, Label, Operation, Refused, Via};
use crate::model::{GatewayBot, SessionStartLimit};
use crate::protocol::{Channel, Request};
use crate::rolling::Rolling;
use cluster::Cluster;
pub use driver::{drive, Driver};

/// The time, as the runner read it: monotonic for timers, wall for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub at: Instant,
    pub wall: SystemTime,
}

/// The ids the core makes (diagnostic nonces, command ids), drawn from a
/// seed the runner gives: the core holds no random source, and a test's
/// ids are the same at every run.
struct Ids(u64);

impl Ids {
    /// The next id: splitmix64 of a counter, as 16 hex digits.
    fn next(&mut self) -> String {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        format!("{:016x}", z ^ (z >> 31))
    }
}

/// Everything that can happen to the engine.
#[derive(Debug)]
pub enum Input {
    /// The runner started: arm the diagnostics.
    Begin,
    /// A face asks; the verdict comes back as [`Command::Verdict`].
    Op {
        op: Operation,
        via: Via,
    },
    /// A request read from the channel.
    Request {
        request: Request,
        via: Via,
    },
    TransportUp,
    TransportDown {
        retry_at: SystemTime,
    },
    /// The outcome of a [`Command::Spawn`].
    Spawned {
        id: ClusterId,
        generation: u64,
        result: Result<u32, SpawnError>,
    },
    /// A cluster's process ended (and its output is drained).
    Exited {
        id: ClusterId,
        generation: u64,
        exit: ExitInfo,
    },
    Timer(Timer),
    /// The outcome of a [`Command::FetchGateway`].
    GatewayFetched(Result<GatewayBot, String>),
    /// What the fleet task learnt at its last heartbeat.
    Fleet(crate::fleet::FleetView),
}

/// Everything the engine does.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start this process; answer with [`Input::Spawned`].
    Spawn {
        id: ClusterId,
        name: String,
        generation: u64,
        line: CommandLine,
        /// A replacement (`start_first`): the pid of the process it
        /// replaces, which the child gets as `MEWLD_REPLACES`.
        replaces: Option<u32>,
    },
    /// SIGTERM, then SIGKILL after the grace period; the exit comes back
    /// as [`Input::Exited`].
    Stop {
        id: ClusterId,
        generation: u64,
    },
    /// Publish `payload` on `channel` (named by `Config::channels`).
    Publish {
        channel: Channel,
        payload: String,
    },
    /// An action-log entry of the manager's own.
    Log(LogEvent),
    /// An entry a cluster sent (`action_logs`), `ts` set: shown, and
    /// written to the action log when `store` (in a fleet every host hears
    /// it, and only the leader writes it, so it is stored once).
    ClusterLog {
        data: Map<String, Value>,
        store: bool,
    },
    /// Fire [`Input::Timer`] after this long, replacing the same timer.
    SetTimer {
        timer: Timer,
        after: Duration,
    },
    CancelTimer(Timer),
    /// Ask Discord for the shard count; answer with [`Input::GatewayFetched`].
    FetchGateway,
    /// The answer to the face's [`Input::Op`] being handled.
    Verdict(Result<(), Refused>),
}

/// The engine's timers; one of each at a time (setting one again resets it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The next slot of the round of diagnostics (a tenth of it).
    PingRound,
    /// A diagnostic's time to answer, by nonce.
    Ping(String),
    /// Start the launch's next cluster.
    StartNext,
    /// The launch has waited long enough for this process's `launch_next`.
    LaunchTimeout { id: ClusterId, generation: u64 },
    /// Start a crashed cluster again.
    CrashRestart { id: ClusterId, generation: u64 },
    /// The launch has waited long enough for another host's cluster.
    RemoteLaunch(ClusterId),
    /// The rolling restart has waited long enough for this step's cluster.
    RollingTimeout(u64),
    /// The gap after a rolling restart's cluster is over: the next one.
    RollingNext(u64),
    /// A replacement's time to say `launch_next` (`start_first`).
    Replacement { id: ClusterId, generation: u64 },
}

/// Who asked for an operation and where its answer goes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Asker {
    via: Via,
    answer: Answer,
    /// The host the operator asked on, when another host handed it here.
    host: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// A face waits for [`Command::Verdict`].
    Verdict,
    /// A reply on the channel.
    Reply(ReplyTo),
    /// Acked already (shutdown and restartproc are acked before acting).
    Acked,
}

/// Where a reply goes: the request's `command_id`, on its `reply_to` or
/// the main channel.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReplyTo {
    command_id: Option<String>,
    channel: Channel,
}

/// What a spawn was for, which decides what its outcome means.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Purpose {
    /// The launch's next cluster.
    Launch,
    /// An operator's `start`.
    Start { asker: Asker },
    /// Again after it crashed (the cluster counts its crash restarts).
    CrashRestart,
    /// Again after a stop that asked for it.
    AfterStop(cluster::RestartCause),
}

/// The engine's state. Only [`Core::step`] changes it.
pub struct Core {
    config: Arc<Config>,
    shard_count: u32,
    clusters: Vec<Cluster>,
    launcher: Launcher,
    transport_connected: bool,
    transport_retry_at: Option<SystemTime>,
    /// Counts transport (re)connections; pings remember theirs.
    connection: u64,
    pings: Pings,
    /// The slot of the ping round the next `PingRound` tick sends.
    ping_slot: usize,
    rolling: Option<Rolling>,
    resharding: bool,
    /// A start-first reshard's new map, until committed or given up.
    plan: Option<reshard::Plan>,
    /// Clusters an aborted reshard dropped from the map, kept until their
    /// process has exited.
    leaving: BTreeSet<ClusterId>,
    exiting: Option<Exit>,
    started_at: SystemTime,
    sessions_remaining: Option<u32>,
    out: Vec<Command>,
    /// Timers set with no delay, fired before the step returns.
    due: VecDeque<Timer>,
    /// The time of the step under way (for the leader's lease).
    clock: Instant,
    /// The other hosts and their clusters, in a fleet.
    fleet: Option<fleet::Fleet>,
    /// Alone on Redis: no cluster starts before this manager's claim on
    /// them all is in Redis (the first view from the fleet task).
    claim_pending: bool,
    ids: Ids,
}

impl Core {
    pub fn new(
        config: Arc<Config>,
        shard_count: u32,
        clusters: Vec<ClusterSpec>,
        session_limit: Option<&SessionStartLimit>,
        membership: Option<crate::fleet::Membership>,
        now: Now,
        seed: u64,
    ) -> Core {
        let max_concurrency = session_limit.map_or(1, |l| l.max_concurrency);
        // In a fleet, this host runs its slice; the rest is mirrored.
        let claim_pending = membership.as_ref().is_some_and(|me| me.solo);
        let (fleet, clusters) = match membership {
            Some(me) if !me.solo => {
                let (fleet, mine) = fleet::Fleet::new(me, clusters);
                (Some(fleet), mine)
            }
            _ => (None, clusters),
        };
        Core {
            launcher: Launcher::new(config.launch, max_concurrency, config.per_cluster),
            config,
            shard_count,
            clusters: clusters.into_iter().map(Cluster::new).collect(),
            transport_connected: false,
            transport_retry_at: None,
            connection: 0,
            pings: Pings::default(),
            ping_slot: 0,
            rolling: None,
            resharding: false,
            plan: None,
            leaving: BTreeSet::new(),
            exiting: None,
            started_at: now.wall,
            sessions_remaining: session_limit.map(|l| l.remaining),
            out: Vec::new(),
            due: VecDeque::new(),
            clock: now.at,
            fleet,
            claim_pending,
            ids: Ids(seed),
        }
    }

    /// A new id for a nonce or a command.
    fn next_id(&mut self) -> String {
        self.ids.next()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn config_arc(&self) -> Arc<Config> {
        self.config.clone()
    }

    pub fn membership(&self) -> Option<crate::fleet::Membership> {
        self.fleet.as_ref().map(|f| f.me.clone())
    }

    /// The clusters this host runs.
    pub fn local_clusters(&self) -> usize {
        self.clusters.len()
    }

    /// How many processes this host may run at once: one per cluster,
    /// plus the replacements a `start_first` roll overlaps them with.
    pub fn process_slots(&self) -> usize {
        let overlaps = match self.config.rolling_restart_mode {
            crate::config::RollingMode::StartFirst => self.config.rolling_restart_parallel,
            crate::config::RollingMode::StopFirst => 0,
        };
        // A start-first reshard holds a second process per changed cluster.
        let seconds = self.clusters.iter().filter(|c| c.second.is_some()).count();
        self.clusters.len() + usize::try_from(overlaps).unwrap_or(usize::MAX).max(seconds)
    }

    /// The shard count and the number of clusters of the whole map (every
    /// host's, in a fleet).
    pub fn map_size(&self) -> (u32, u32) {
        let remote = self.fleet.as_ref().map_or(0, fleet::Fleet::len);
        (self.shard_count, (self.clusters.len() + remote) as u32)
    }

    /// Handles one input; returns what to do, in order.
    pub fn step(&mut self, now: Now, input: Input) -> Vec<Command> {
        self.clock = now.at;
        match input {
            Input::Begin => self.set_timer(Timer::PingRound, self.ping_tick()),
            Input::Op { op, via } => self.operate(
                now,
                op,
                Asker {
                    via,
                    answer: Answer::Verdict,
                    host: None,
                },
            ),
            Input::Request { request, via } => self.on_request(now, request, via),
            Input::TransportUp => self.on_transport_up(),
            Input::TransportDown { retry_at } => {
                self.transport_connected = false;
                self.transport_retry_at = Some(retry_at);
                self.pings.connection_lost();
            }
            Input::Spawned {
                id,
                generation,
                result,
            } => self.on_spawned(now, id, generation, result),
            Input::Exited {
                id,
                generation,
                exit,
            } => self.on_exit(now, id, generation, exit),
            Input::Timer(timer) => self.on_timer(now, timer),
            Input::GatewayFetched(result) => self.on_gateway_fetched(result),
            Input::Fleet(view) => self.on_fleet(view),
        }
        while let Some(timer) = self.due.pop_front() {
            self.on_timer(now, timer);
        }
        std::mem::take(&mut self.out)
    }

    fn on_timer(&mut self, now: Now, timer: Timer) {
        match timer {
            Timer::PingRound => {
                self.ping_next_slot(now);
                self.set_timer(Timer::PingRound, self.ping_tick());
            }
            Timer::Ping(nonce) => self.on_ping_timeout(now, nonce),
            Timer::StartNext => self.start_next(),
            Timer::LaunchTimeout { id, generation } => self.on_launch_timeout(id, generation),
            Timer::CrashRestart { id, generation } => self.crash_restart(id, generation),
            Timer::RemoteLaunch(id) => self.on_remote_launch_timeout(id),
            Timer::RollingTimeout(step) => self.on_rolling_timeout(step),
            Timer::RollingNext(step) => {
                if self.rolling.as_mut().is_some_and(|r| r.gap_over(step)) {
                    self.rolling_advance();
                }
            }
            Timer::Replacement { id, generation } => self.on_replacement_timeout(id, generation),
        }
    }

    fn on_transport_up(&mut self) {
        self.transport_connected = true;
        self.transport_retry_at = None;
        self.connection += 1;
        // The launch waits for the subscription: a `launch_next` said
        // before it exists would be lost and stall the launch.
        self.maybe_begin();
    }

    /// Set once a shutdown or restartproc has stopped every cluster.
    pub fn finished(&self) -> Option<Exit> {
        self.exiting
            .filter(|_| self.clusters.iter().all(|c| !c.is_alive()))
    }

    fn emit(&mut self, command: Command) {
        self.out.push(command);
    }

    fn log(&mut self, event: LogEvent) {
        self.emit(Command::Log(event));
    }

    /// Publishes on the main channel, which every cluster hears.
    fn publish(&mut self, payload: String) {
        self.publish_on(Channel::Main, payload);
    }

    fn publish_on(&mut self, channel: Channel, payload: String) {
        self.emit(Command::Publish { channel, payload });
    }

    /// Where the manager's own traffic goes (its echoes, a fleet's
    /// hand-offs): with `cluster_channels`, the launcher channel, which
    /// no cluster hears (docs/protocol.md §5.5).
    fn own_channel(&self) -> Channel {
        if self.config.cluster_channels {
            Channel::Launcher
        } else {
            Channel::Main
        }
    }

    /// Where a message for cluster `id` alone goes.
    fn cluster_channel(&self, id: ClusterId) -> Channel {
        if self.config.cluster_channels {
            Channel::Cluster(id)
        } else {
            Channel::Main
        }
    }

    /// Arms `timer`. One of no delay fires within this step, after the
    /// input that set it: the runner's timers have a millisecond's
    /// granularity, which a `cluster_start_next_delay` of 0 must not cost.
    fn set_timer(&mut self, timer: Timer, after: Duration) {
        if after.is_zero() {
            self.emit(Command::CancelTimer(timer.clone()));
            self.due.push_back(timer);
        } else {
            self.emit(Command::SetTimer { timer, after });
        }
    }

    fn index(&self, id: ClusterId) -> Result<usize, Refused> {
        self.clusters
            .iter()
            .position(|c| c.spec.id == id)
            .ok_or(Refused::NoSuchCluster(id))
    }

    fn label(&self, idx: usize) -> Label {
        let spec = &self.clusters[idx].spec;
        Label {
            id: spec.id,
            name: spec.name.clone(),
        }
    }
}
