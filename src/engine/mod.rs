//! The engine: the one owner of every cluster's state.
//!
//! It is an actor (the handle + task pattern): operator requests, child
//! exits and timers arrive as [`Input`] on its inbox, messages from clusters
//! on the transport's channel, and one task handles them one at a time, so
//! no lock guards cluster state. Faces
//! hold an [`EngineHandle`]: they send [`Operation`]s, receive [`Event`]s,
//! and read the latest [`Snapshot`].

pub mod actlog;
pub mod argv;
pub mod health;
pub mod launch;
pub mod process;
pub mod restart;
pub mod rolling;
pub mod state;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::cluster_map::{self, ClusterId, ClusterSpec};
use crate::config::{Config, Ipc};
use crate::discord::{self, GatewayBot};
use crate::protocol::{self, Action, DiagAnswer, Request};
use crate::transport::{Transport, TransportEvent};
use health::{Health, Ping, Pings};
use process::{ExitInfo, Stream};
use rolling::Rolling;
use state::{Cluster, ClusterState, RestartCause, Snapshot};
/// How long the last acks and log entries get to reach Redis at exit.
const EXIT_FLUSH_TIMEOUT: Duration = Duration::from_secs(3);
const EVENT_BUFFER: usize = 8192;

/// Something an operator (over Redis, from the console, or a signal) asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Start(ClusterId),
    Stop(ClusterId),
    Restart(ClusterId),
    /// Send this cluster a diagnostic now.
    Diagnose(ClusterId),
    /// Restart every running cluster, one at a time.
    RollingRestart,
    /// Ask Discord again and grow the cluster map (experimental feature).
    Reshard,
    /// Stop every cluster, then exit 0.
    Shutdown,
    /// Stop every cluster, then exit 1 so a service manager restarts us.
    RestartProcess,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Start(_) => "start",
            Operation::Stop(_) => "stop",
            Operation::Restart(_) => "restart",
            Operation::Diagnose(_) => "diagnose",
            Operation::RollingRestart => "rollingrestart",
            Operation::Reshard => "reshard",
            Operation::Shutdown => "shutdown",
            Operation::RestartProcess => "restartproc",
        }
    }

    fn cluster(self) -> Option<ClusterId> {
        match self {
            Operation::Start(id)
            | Operation::Stop(id)
            | Operation::Restart(id)
            | Operation::Diagnose(id) => Some(id),
            Operation::RollingRestart
            | Operation::Reshard
            | Operation::Shutdown
            | Operation::RestartProcess => None,
        }
    }
}

/// Who asked, recorded in the action log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Redis,
    Console,
    Daemon,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Redis => "redis",
            Via::Console => "console",
            Via::Daemon => "daemon",
        }
    }
}

/// How the engine ended, and so how the process should exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Shutdown,
    RestartProcess,
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Shutdown => 0,
            Exit::RestartProcess => 1,
        }
    }
}

/// News for faces. Plain data, so it can travel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Event {
    /// One line a cluster printed.
    Output {
        id: ClusterId,
        name: String,
        stream: Stream,
        line: String,
    },
    /// An entry written to the action log.
    ActionLog(Map<String, Value>),
}

/// Why an operation was refused, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

enum Input {
    Op {
        op: Operation,
        via: Via,
        reply: Option<oneshot::Sender<Result<(), Refused>>>,
    },
    Exited {
        id: ClusterId,
        generation: u64,
        exit: ExitInfo,
    },
    StartNextDue,
    LaunchTimeout {
        id: ClusterId,
        generation: u64,
    },
    CrashRestartDue {
        id: ClusterId,
        generation: u64,
    },
    PingDue,
    PingTimeout(String),
    RollingTimeout(u64),
    RollingNextDue(u64),
    ReshardFetched(Result<GatewayBot, String>),
    History(oneshot::Sender<Result<Vec<Map<String, Value>>, String>>),
}

/// What the engine needs to run: the resolved config and the cluster map.
pub struct Setup {
    pub config: Arc<Config>,
    /// Variables from the config's env files, handed to every cluster.
    pub env_vars: Vec<(String, String)>,
    pub shard_count: u32,
    pub clusters: Vec<ClusterSpec>,
    pub sessions_remaining: Option<u32>,
}

/// A face's end of the engine. Cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    inbox: mpsc::UnboundedSender<Input>,
    events: broadcast::Sender<Event>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
}

impl EngineHandle {
    /// Asks for `op` and waits for the engine's verdict.
    pub async fn request(&self, op: Operation, via: Via) -> Result<(), Refused> {
        let (tx, rx) = oneshot::channel();
        let input = Input::Op {
            op,
            via,
            reply: Some(tx),
        };
        if self.inbox.send(input).is_err() {
            return Err(Refused("the engine has stopped".into()));
        }
        rx.await
            .unwrap_or_else(|_| Err(Refused("the engine has stopped".into())))
    }

    /// The action log as stored (oldest first), for a face that starts late.
    pub async fn history(&self) -> Result<Vec<Map<String, Value>>, String> {
        let (tx, rx) = oneshot::channel();
        if self.inbox.send(Input::History(tx)).is_err() {
            return Err("the engine has stopped".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("the engine has stopped".into()))
    }

    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn snapshot(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.clone()
    }
}

pub struct Engine {
    config: Arc<Config>,
    child_env: Vec<(String, String)>,
    shard_count: u32,
    clusters: Vec<Cluster>,
    transport: Transport,
    inbox_tx: mpsc::UnboundedSender<Input>,
    inbox: mpsc::UnboundedReceiver<Input>,
    events: broadcast::Sender<Event>,
    snapshot_tx: watch::Sender<Arc<Snapshot>>,
    /// The cluster the launch sequence is waiting on for `launch_next`.
    launching: Option<ClusterId>,
    launch_begun: bool,
    fully_up: bool,
    transport_connected: bool,
    transport_retry_at: Option<SystemTime>,
    /// Counts transport (re)connections; pings remember theirs.
    connection: u64,
    pings: Pings,
    rolling: Option<Rolling>,
    resharding: bool,
    exiting: Option<Exit>,
    started_at: SystemTime,
    sessions_remaining: Option<u32>,
}

impl Engine {
    /// Builds the engine and a handle to it. Subscribe to the handle's
    /// events before calling [`Engine::run`] to miss nothing.
    pub fn new(setup: Setup, transport: Transport) -> (Engine, EngineHandle) {
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
        let mut child_env = setup.env_vars;
        child_env.push(("MEWLD_CHANNEL".into(), setup.config.channel.clone()));
        if let Ipc::Unix { path } = &setup.config.ipc {
            child_env.push(("MEWLD_SOCKET".into(), path.display().to_string()));
        }
        if let Some(token) = &setup.config.token {
            child_env.push(("MTOKEN".into(), token.expose().to_string()));
        }
        let engine = Engine {
            child_env,
            shard_count: setup.shard_count,
            clusters: setup.clusters.into_iter().map(Cluster::new).collect(),
            config: setup.config,
            transport,
            inbox_tx: inbox_tx.clone(),
            inbox,
            events: events.clone(),
            snapshot_tx,
            launching: None,
            launch_begun: false,
            fully_up: false,
            transport_connected: false,
            transport_retry_at: None,
            connection: 0,
            pings: Pings::default(),
            rolling: None,
            resharding: false,
            exiting: None,
            started_at: SystemTime::now(),
            sessions_remaining: setup.sessions_remaining,
        };
        let handle = EngineHandle {
            inbox: inbox_tx,
            events,
            snapshot: snapshot_rx,
        };
        (engine, handle)
    }

    /// Runs until a shutdown or process restart has stopped every cluster.
    pub async fn run(mut self, mut transport_rx: mpsc::Receiver<TransportEvent>) -> Exit {
        self.publish_snapshot();
        let pinger = self.start_pinger();
        loop {
            tokio::select! {
                Some(input) = self.inbox.recv() => self.handle(input),
                Some(event) = transport_rx.recv() => self.on_transport(event),
            }
            self.publish_snapshot();
            if let Some(exit) = self.exiting {
                if self.clusters.iter().all(|c| !c.is_alive()) {
                    pinger.abort();
                    let _ = tokio::time::timeout(EXIT_FLUSH_TIMEOUT, self.transport.flush()).await;
                    return exit;
                }
            }
        }
    }

    fn start_pinger(&self) -> tokio::task::JoinHandle<()> {
        let inbox = self.inbox_tx.clone();
        let every = self.config.ping_interval;
        tokio::spawn(async move {
            let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                if inbox.send(Input::PingDue).is_err() {
                    return;
                }
            }
        })
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Op { op, via, reply } => {
                let result = self.operate(op, via);
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Input::Exited {
                id,
                generation,
                exit,
            } => self.on_exit(id, generation, exit),
            Input::StartNextDue => self.start_next(),
            Input::LaunchTimeout { id, generation } => {
                let current = self.index(id).ok().map(|i| self.clusters[i].generation);
                if self.launching == Some(id) && current == Some(generation) {
                    self.log(
                        "launch_timeout",
                        json!({"id": id, "waited_secs": self.config.launch_timeout.as_secs()}),
                    );
                    self.launch_moved_on(id);
                }
            }
            Input::CrashRestartDue { id, generation } => self.crash_restart(id, generation),
            Input::PingDue => self.ping_all(),
            Input::PingTimeout(nonce) => self.on_ping_timeout(&nonce),
            Input::RollingTimeout(step) => self.on_rolling_timeout(step),
            Input::RollingNextDue(step) => {
                if self.rolling.as_ref().is_some_and(|r| r.step == step) {
                    self.rolling_advance();
                }
            }
            Input::ReshardFetched(result) => self.on_reshard_fetched(result),
            Input::History(reply) => {
                let transport = self.transport.clone();
                tokio::spawn(async move {
                    let entries = transport.read_log().await.map(|raw| {
                        raw.iter()
                            .filter_map(|s| serde_json::from_str::<Map<String, Value>>(s).ok())
                            .collect()
                    });
                    let _ = reply.send(entries);
                });
            }
        }
    }

    fn on_transport(&mut self, event: TransportEvent) {
        match event {
            TransportEvent::Down { retry_at } => {
                self.transport_connected = false;
                self.transport_retry_at = Some(retry_at);
            }
            TransportEvent::Up => {
                self.transport_connected = true;
                self.transport_retry_at = None;
                self.connection += 1;
                // The launch waits for the subscription: a `launch_next`
                // said before it exists would be lost and stall the launch.
                if !self.launch_begun {
                    self.launch_begun = true;
                    self.start_next();
                }
            }
            TransportEvent::Message(payload) => match protocol::parse(&payload) {
                Ok(Some(request)) => self.on_request(request),
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    error = %e,
                    message = %protocol::truncate(&String::from_utf8_lossy(&payload), 200),
                    "ignored a malformed message"
                ),
            },
        }
    }

    fn on_request(&mut self, request: Request) {
        let command_id = request.command_id.as_deref();
        let op = match request.action {
            Action::LaunchNext(id) => return self.on_launch_next(id),
            Action::ActionLogs(data) => return self.write_log(actlog::from_cluster(data)),
            Action::Diag(answer) => return self.on_diag(answer),
            Action::Statuses => {
                let output = self.statuses();
                return self.reply(command_id, output);
            }
            Action::NumProcesses => {
                let output = json!({"clusters": self.clusters.len(), "shards": self.shard_count});
                return self.reply(command_id, output);
            }
            Action::Start(id) => Operation::Start(id),
            Action::Stop(id) => Operation::Stop(id),
            Action::Restart(id) => Operation::Restart(id),
            Action::RollingRestart => Operation::RollingRestart,
            Action::Reshard => Operation::Reshard,
            Action::Shutdown => Operation::Shutdown,
            Action::RestartProc => Operation::RestartProcess,
        };
        // Ack before acting, so the asker hears back even when the manager exits.
        let result = match op {
            Operation::Shutdown | Operation::RestartProcess => {
                self.reply(command_id, json!("ok"));
                self.operate(op, Via::Redis)
            }
            _ => {
                let result = self.operate(op, Via::Redis);
                // The original acks whatever happens (a refusal is in the
                // action log); only a failed start says so.
                let output = match (&result, op) {
                    (Err(_), Operation::Start(_)) => json!("could not start instance"),
                    _ => json!("ok"),
                };
                self.reply(command_id, output);
                result
            }
        };
        if let Err(refused) = result {
            tracing::warn!(action = op.name(), reason = %refused, "refused a request from Redis");
        }
    }

    fn reply(&self, command_id: Option<&str>, output: Value) {
        self.transport.publish(protocol::reply(command_id, &output));
    }

    /// `statuses`: keyed by cluster id as a string, in the original's shape.
    fn statuses(&self) -> Value {
        let map: Map<String, Value> = self
            .clusters
            .iter()
            .map(|c| {
                let started_at = c.started_at.map(actlog::unix_secs).unwrap_or(0);
                (
                    c.spec.id.to_string(),
                    json!({
                        "active": c.is_alive(),
                        "status": c.state.as_str(),
                        "name": c.spec.name,
                        "started_at": started_at,
                        "shard_list": c.spec.shards,
                    }),
                )
            })
            .collect();
        Value::Object(map)
    }

    fn operate(&mut self, op: Operation, via: Via) -> Result<(), Refused> {
        if self.exiting.is_some() {
            return Err(Refused("the manager is shutting down".into()));
        }
        let mut fields = json!({"action": op.name(), "via": via.as_str()});
        if let Some(id) = op.cluster() {
            fields["id"] = json!(id);
            self.index(id)?;
        }
        let result = self.apply(op);
        match &result {
            Ok(()) => self.log("operator_action", fields),
            Err(refused) => {
                fields["refused"] = json!(refused.0);
                self.log("operator_action", fields);
            }
        }
        result
    }

    fn apply(&mut self, op: Operation) -> Result<(), Refused> {
        match op {
            Operation::Start(id) => {
                let idx = self.index(id)?;
                if self.clusters[idx].is_alive() {
                    return Err(Refused(format!("{} is already running", self.label(idx))));
                }
                // An operator's start gives a crash-looping cluster a fresh count.
                self.clusters[idx].quick_failures = 0;
                self.spawn(idx).map_err(|e| {
                    self.log(
                        "cluster_restart_failed",
                        json!({"id": id, "via": "start", "error": e}),
                    );
                    Refused(format!("could not start {}: {e}", self.label(idx)))
                })
            }
            Operation::Stop(id) => {
                let idx = self.index(id)?;
                match self.clusters[idx].state {
                    ClusterState::Starting | ClusterState::Running => {
                        self.stop(idx, None);
                        self.launch_moved_on(id);
                        Ok(())
                    }
                    ClusterState::Stopping => {
                        self.clusters[idx].restart_when_stopped = None;
                        Ok(())
                    }
                    // Cancel a scheduled crash restart or a pending launch.
                    ClusterState::Crashed | ClusterState::Pending => {
                        let c = &mut self.clusters[idx];
                        c.state = ClusterState::Stopped;
                        c.next_restart_at = None;
                        Ok(())
                    }
                    ClusterState::Stopped | ClusterState::Failed => {
                        Err(Refused(format!("{} is not running", self.label(idx))))
                    }
                }
            }
            Operation::Restart(id) => {
                let idx = self.index(id)?;
                if !self.clusters[idx].is_alive() {
                    return Err(Refused(format!(
                        "{} is not running (use start)",
                        self.label(idx)
                    )));
                }
                self.stop(idx, Some(RestartCause::Operator));
                Ok(())
            }
            Operation::Diagnose(id) => {
                let idx = self.index(id)?;
                if !self.clusters[idx].is_alive() {
                    return Err(Refused(format!("{} is not running", self.label(idx))));
                }
                if !self.transport_connected {
                    return Err(Refused("the transport is not connected".into()));
                }
                self.ping(idx);
                Ok(())
            }
            Operation::RollingRestart => {
                self.may_restart_all()?;
                let order: Vec<ClusterId> = self
                    .clusters
                    .iter()
                    .filter(|c| c.is_up())
                    .map(|c| c.spec.id)
                    .collect();
                self.log("rolling_restart", json!({"clusters": order}));
                self.begin_rolling(order, "rolling_restart_done");
                Ok(())
            }
            Operation::Reshard => {
                if !self.config.feature_enabled("reshard") {
                    return Err(Refused(
                        "resharding is experimental: add `reshard` to experimental_features".into(),
                    ));
                }
                self.may_restart_all()?;
                self.resharding = true;
                self.log(
                    "reshard_begin",
                    json!({"subsystem": "reshard", "shards": self.shard_count}),
                );
                let inbox = self.inbox_tx.clone();
                let config = self.config.clone();
                tokio::spawn(async move {
                    let result = match &config.token {
                        Some(token) => discord::get_gateway_bot(config.proxy.as_deref(), token)
                            .await
                            .map_err(|e| e.to_string()),
                        None => Err("no bot token".to_string()),
                    };
                    let _ = inbox.send(Input::ReshardFetched(result));
                });
                Ok(())
            }
            Operation::Shutdown | Operation::RestartProcess => {
                self.exiting = Some(if op == Operation::Shutdown {
                    Exit::Shutdown
                } else {
                    Exit::RestartProcess
                });
                self.rolling = None;
                for idx in 0..self.clusters.len() {
                    let c = &mut self.clusters[idx];
                    c.next_restart_at = None;
                    if c.is_alive() {
                        self.stop(idx, None);
                    } else if c.state != ClusterState::Failed {
                        c.state = ClusterState::Stopped;
                    }
                }
                Ok(())
            }
        }
    }

    /// Rolling restarts and reshards need a settled bot.
    fn may_restart_all(&self) -> Result<(), Refused> {
        if self.rolling.is_some() {
            return Err(Refused("a rolling restart is already under way".into()));
        }
        if self.resharding {
            return Err(Refused("a reshard is already under way".into()));
        }
        if !self.fully_up {
            return Err(Refused(
                "not every cluster has launched yet; wait until the bot is fully up".into(),
            ));
        }
        Ok(())
    }

    fn index(&self, id: ClusterId) -> Result<usize, Refused> {
        self.clusters
            .iter()
            .position(|c| c.spec.id == id)
            .ok_or_else(|| Refused(format!("there is no cluster {id}")))
    }

    fn label(&self, idx: usize) -> String {
        let spec = &self.clusters[idx].spec;
        format!("cluster {} ({})", spec.id, spec.name)
    }

    /// Starts the next never-started cluster, or announces that all are up.
    fn start_next(&mut self) {
        if self.exiting.is_some() || self.rolling.is_some() {
            return;
        }
        match launch::next_to_start(self.clusters.iter().map(|c| c.state)) {
            Some(idx) => {
                let id = self.clusters[idx].spec.id;
                self.launching = Some(id);
                match self.spawn(idx) {
                    Ok(()) => {
                        let generation = self.clusters[idx].generation;
                        self.schedule(
                            self.config.launch_timeout,
                            Input::LaunchTimeout { id, generation },
                        );
                    }
                    Err(e) => {
                        self.log(
                            "cluster_start_failed",
                            json!({"id": id, "via": "start_next", "error": e}),
                        );
                        // Do not let one broken cluster hold up the rest.
                        self.launch_moved_on(id);
                    }
                }
            }
            None => {
                self.launching = None;
                if !self.fully_up {
                    self.announce_all_launched();
                }
            }
        }
    }

    fn on_launch_next(&mut self, id: ClusterId) {
        let Ok(idx) = self.index(id) else {
            tracing::warn!(id, "launch_next from an unknown cluster; ignored");
            return;
        };
        let c = &mut self.clusters[idx];
        if c.state == ClusterState::Starting {
            c.state = ClusterState::Running;
            self.log("cluster_launched", json!({"id": id}));
        }
        if let Some(rolling) = self.rolling.as_mut() {
            if rolling.current() == Some(id) {
                // Released: its timeout no longer applies.
                let step = rolling.release();
                self.schedule(
                    self.config.cluster_start_next_delay,
                    Input::RollingNextDue(step),
                );
            }
            return;
        }
        if self.launching == Some(id) {
            self.launching = None;
            let any_left = launch::next_to_start(self.clusters.iter().map(|c| c.state)).is_some();
            if any_left {
                self.schedule(self.config.cluster_start_next_delay, Input::StartNextDue);
            } else {
                self.start_next();
            }
        } else if self.fully_up && self.launching.is_none() {
            // A cluster came back (after a crash, a restart, a ping failure):
            // the original announced the whole bot up again, and a restarted
            // cluster may wait for that to finish its own start.
            self.announce_all_launched();
        }
    }

    fn announce_all_launched(&mut self) {
        self.fully_up = true;
        self.transport
            .publish(protocol::all_clusters_launched(&protocol::random_id()));
        self.log(
            "all_clusters_launched",
            json!({"clusters": self.clusters.len()}),
        );
    }

    /// The cluster the launch waits on will not say `launch_next` (it failed,
    /// was stopped, or took too long): go on with the next one.
    fn launch_moved_on(&mut self, id: ClusterId) {
        if self.launching == Some(id) {
            self.launching = None;
            self.schedule(self.config.cluster_start_next_delay, Input::StartNextDue);
        }
    }

    /// Spawns cluster `idx`'s process; on failure the cluster is Failed.
    fn spawn(&mut self, idx: usize) -> Result<(), String> {
        let cmd = process::command_line(&self.config, &self.clusters[idx].spec, self.shard_count);
        let c = &mut self.clusters[idx];
        c.generation += 1;
        let generation = c.generation;
        let id = c.spec.id;
        let name = c.spec.name.clone();
        let events = self.events.clone();
        let inbox = self.inbox_tx.clone();
        let spawned = process::spawn(
            &cmd,
            &self.child_env,
            move |stream, line| {
                let _ = events.send(Event::Output {
                    id,
                    name: name.clone(),
                    stream,
                    line,
                });
            },
            move |exit| {
                let _ = inbox.send(Input::Exited {
                    id,
                    generation,
                    exit,
                });
            },
        );
        c.health = None;
        c.next_restart_at = None;
        c.restart_when_stopped = None;
        match spawned {
            Ok(handle) => {
                let pid = handle.pid;
                c.proc = Some(handle);
                c.state = ClusterState::Starting;
                c.started_at = Some(SystemTime::now());
                self.log("cluster_started", json!({"id": id, "pid": pid}));
                Ok(())
            }
            Err(e) => {
                c.state = ClusterState::Failed;
                tracing::error!(id, error = %e, "could not start cluster");
                Err(e.to_string())
            }
        }
    }

    fn stop(&mut self, idx: usize, then: Option<RestartCause>) {
        let grace = self.config.stop_grace_period;
        let c = &mut self.clusters[idx];
        if let Some(proc) = &c.proc {
            proc.stop(grace);
            c.state = ClusterState::Stopping;
            c.restart_when_stopped = then;
        }
    }

    fn on_exit(&mut self, id: ClusterId, generation: u64, exit: ExitInfo) {
        let Ok(idx) = self.index(id) else { return };
        let c = &mut self.clusters[idx];
        if c.generation != generation {
            return;
        }
        c.proc = None;
        c.last_exit = Some(exit);
        // Health describes a live process; this one is gone.
        c.health = None;
        let ran_for = c
            .started_at
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default();
        self.pings.forget(id);
        let status = exit_fields(exit);
        if self.clusters[idx].state == ClusterState::Stopping {
            let restart = self.clusters[idx]
                .restart_when_stopped
                .filter(|_| self.exiting.is_none());
            self.clusters[idx].state = ClusterState::Stopped;
            self.log("cluster_stopped", merge(json!({"id": id}), status));
            if let Some(cause) = restart {
                if let Err(e) = self.spawn(idx) {
                    let (event, via) = cause.failure_event();
                    self.log(event, json!({"id": id, "via": via, "error": e}));
                    self.rolling_target_failed(id);
                }
            }
            return;
        }
        if self.exiting.is_some() {
            self.clusters[idx].state = ClusterState::Stopped;
            self.log("cluster_exited", merge(json!({"id": id}), status));
            return;
        }
        let c = &mut self.clusters[idx];
        let (verdict, failures) =
            restart::after_exit(&self.config.restart, ran_for, c.quick_failures);
        c.quick_failures = failures;
        match verdict {
            restart::Verdict::RestartIn(delay) => {
                c.state = ClusterState::Crashed;
                c.next_restart_at = Some(SystemTime::now() + delay);
                self.log(
                    "cluster_exited",
                    merge(
                        json!({"id": id, "restart_in_ms": delay.as_millis() as u64, "quick_failures": failures}),
                        status,
                    ),
                );
                self.schedule(delay, Input::CrashRestartDue { id, generation });
            }
            restart::Verdict::GiveUp => {
                c.state = ClusterState::Failed;
                self.log("cluster_exited", merge(json!({"id": id}), status));
                self.log(
                    "cluster_failed",
                    json!({"id": id, "quick_failures": failures, "error": "kept exiting soon after starting; left stopped until an operator starts it"}),
                );
                self.rolling_target_failed(id);
                self.launch_moved_on(id);
            }
        }
    }

    fn crash_restart(&mut self, id: ClusterId, generation: u64) {
        let Ok(idx) = self.index(id) else { return };
        let c = &mut self.clusters[idx];
        if c.state != ClusterState::Crashed || c.generation != generation || self.exiting.is_some()
        {
            return;
        }
        c.crash_restarts += 1;
        let restarts = c.crash_restarts;
        match self.spawn(idx) {
            Ok(()) => self.log("cluster_restarted", json!({"id": id, "restarts": restarts})),
            Err(e) => {
                self.log(
                    "cluster_start_failed",
                    json!({"id": id, "via": "observe", "error": e}),
                );
                self.rolling_target_failed(id);
                self.launch_moved_on(id);
            }
        }
    }

    /// Sends a diagnostic to every launched cluster.
    fn ping_all(&mut self) {
        if !self.transport_connected || self.exiting.is_some() {
            return;
        }
        for idx in 0..self.clusters.len() {
            if self.clusters[idx].state == ClusterState::Running {
                self.ping(idx);
            }
        }
    }

    fn ping(&mut self, idx: usize) {
        let c = &self.clusters[idx];
        let nonce = protocol::random_id();
        self.pings.sent(
            nonce.clone(),
            Ping {
                cluster: c.spec.id,
                generation: c.generation,
                sent_at: Instant::now(),
                connection: self.connection,
            },
        );
        self.transport
            .publish(protocol::diag_request(c.spec.id, &nonce));
        self.schedule(self.config.ping_timeout, Input::PingTimeout(nonce));
    }

    fn on_diag(&mut self, answer: DiagAnswer) {
        let Some(ping) = self.pings.take(&answer.nonce) else {
            tracing::debug!(nonce = %answer.nonce, "a diagnostic answer nobody is waiting for");
            return;
        };
        let Ok(idx) = self.index(ping.cluster) else {
            return;
        };
        let c = &mut self.clusters[idx];
        if c.generation == ping.generation && c.is_alive() {
            c.health = Some(Health {
                at: SystemTime::now(),
                round_trip_ms: ping.sent_at.elapsed().as_millis() as u64,
                shards: answer.shards,
            });
        }
    }

    fn on_ping_timeout(&mut self, nonce: &str) {
        let Some(ping) = self.pings.take(nonce) else {
            return;
        };
        // A reconnect since the ping, or an outage now, explains the silence.
        if ping.connection != self.connection || !self.transport_connected || self.exiting.is_some()
        {
            return;
        }
        let Ok(idx) = self.index(ping.cluster) else {
            return;
        };
        let c = &self.clusters[idx];
        if c.generation != ping.generation || !c.is_alive() || c.state == ClusterState::Stopping {
            return;
        }
        self.log("ping_failure", json!({"id": ping.cluster}));
        self.stop(idx, Some(RestartCause::PingCheck));
    }

    fn begin_rolling(&mut self, order: Vec<ClusterId>, done_event: &'static str) {
        self.rolling = Some(Rolling::new(order, done_event));
        self.rolling_advance();
    }

    /// Restarts the rolling restart's next cluster, or ends it.
    fn rolling_advance(&mut self) {
        loop {
            let Some(rolling) = self.rolling.as_mut() else {
                return;
            };
            let Some(id) = rolling.advance() else {
                let done = rolling.done_event;
                self.rolling = None;
                self.log(done, json!({}));
                // A reshard may have added clusters: launch them now.
                self.resharding = false;
                self.start_next();
                return;
            };
            let step = rolling.step;
            let Ok(idx) = self.index(id) else { continue };
            if !self.clusters[idx].is_up() {
                // Stopped (or being stopped) or failed since the restart
                // began: an operator's stop wins; leave it be.
                continue;
            }
            self.stop(idx, Some(RestartCause::RollingRestart));
            self.schedule(
                self.config.rolling_restart_timeout,
                Input::RollingTimeout(step),
            );
            return;
        }
    }

    fn on_rolling_timeout(&mut self, step: u64) {
        let Some(rolling) = &self.rolling else { return };
        if rolling.step != step {
            return;
        }
        if let Some(id) = rolling.current() {
            self.log(
                "rolling_restart_timeout",
                json!({"id": id, "waited_secs": self.config.rolling_restart_timeout.as_secs()}),
            );
        }
        self.rolling_advance();
    }

    /// The rolling restart's current cluster cannot come back: move on.
    fn rolling_target_failed(&mut self, id: ClusterId) {
        if self.rolling.as_ref().and_then(Rolling::current) == Some(id) {
            self.rolling_advance();
        }
    }

    fn on_reshard_fetched(&mut self, result: Result<GatewayBot, String>) {
        if self.exiting.is_some() {
            return;
        }
        let gateway = match result {
            Ok(g) => g,
            Err(e) => {
                self.resharding = false;
                self.log(
                    "reshard_failed",
                    json!({"subsystem": "discord", "error": e}),
                );
                return;
            }
        };
        let new_count = self.config.fixed_shard_count.unwrap_or(gateway.shards);
        let map = cluster_map::build(new_count, self.config.per_cluster, &self.config.names);
        if map.len() < self.clusters.len() {
            self.resharding = false;
            self.log(
                "reshard_failed",
                json!({"subsystem": "cluster_map", "error": format!(
                    "refusing to shrink from {} to {} clusters", self.clusters.len(), map.len()
                )}),
            );
            return;
        }
        let old_count = self.shard_count;
        let mut restart = Vec::new();
        for spec in map {
            match self.clusters.iter_mut().find(|c| c.spec.id == spec.id) {
                Some(c) => {
                    if (c.spec.shards != spec.shards || self.config.reshard_all) && c.is_alive() {
                        restart.push(spec.id);
                    }
                    c.spec = spec;
                }
                None => self.clusters.push(Cluster::new(spec)),
            }
        }
        self.shard_count = new_count;
        let added = launch::next_to_start(self.clusters.iter().map(|c| c.state)).is_some();
        if added {
            // all_clusters_launched is announced again once the new ones are up.
            self.fully_up = false;
        }
        self.log(
            "reshard_success",
            json!({"subsystem": "cluster_map", "old_shards": old_count, "new_shards": new_count,
                   "clusters": self.clusters.len(), "restarting": restart}),
        );
        self.begin_rolling(restart, "reshard_restarts_done");
    }

    fn schedule(&self, after: Duration, input: Input) {
        let inbox = self.inbox_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = inbox.send(input);
        });
    }

    /// Writes an action-log entry of the manager's own.
    fn log(&self, event: &str, fields: Value) {
        self.write_log(actlog::entry(event, fields));
    }

    fn write_log(&self, entry: Map<String, Value>) {
        let text = Value::Object(entry.clone()).to_string();
        tracing::info!(target: "mewld::actlog", "{}", protocol::truncate(&text, 500));
        self.transport.push_log(text);
        let _ = self.events.send(Event::ActionLog(entry));
    }

    fn publish_snapshot(&self) {
        let snapshot = Snapshot {
            shard_count: self.shard_count,
            clusters: self.clusters.iter().map(Cluster::view).collect(),
            fully_up: self.fully_up,
            transport_connected: self.transport_connected,
            transport_retry_at: self.transport_retry_at,
            started_at: Some(self.started_at),
            sessions_remaining: self.sessions_remaining,
            exiting: self.exiting.is_some(),
            rolling: self.rolling.as_ref().map(Rolling::view),
            resharding: self.resharding,
        };
        self.snapshot_tx.send_if_modified(|current| {
            if **current == snapshot {
                false
            } else {
                *current = Arc::new(snapshot);
                true
            }
        });
    }
}

fn exit_fields(exit: ExitInfo) -> Value {
    let mut fields = BTreeMap::new();
    if let Some(code) = exit.code {
        fields.insert("code", json!(code));
    }
    if let Some(signal) = exit.signal {
        fields.insert("signal", json!(signal));
    }
    json!(fields)
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}
