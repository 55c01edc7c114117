//! The engine: the one owner of every cluster's state.
//!
//! It is an actor (the handle + task pattern): Redis messages, operator
//! requests, child exits and timers all arrive as [`Input`] on one channel
//! and are handled one at a time, so no lock guards cluster state. Faces
//! hold an [`EngineHandle`]: they send [`Operation`]s, receive [`Event`]s,
//! and read the latest [`Snapshot`].

pub mod actlog;
pub mod launch;
pub mod process;
pub mod state;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::cluster_map::{ClusterId, ClusterSpec};
use crate::config::Config;
use crate::protocol::{self, Action, Request};
use crate::transport::{Transport, TransportEvent};
use process::{ExitInfo, Stream};
use state::{Cluster, ClusterState, Snapshot};

/// The original waited this long before restarting a cluster that exited.
const CRASH_RESTART_DELAY: Duration = Duration::from_secs(3);
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
            Operation::Shutdown => "shutdown",
            Operation::RestartProcess => "restartproc",
        }
    }

    fn cluster(self) -> Option<ClusterId> {
        match self {
            Operation::Start(id) | Operation::Stop(id) | Operation::Restart(id) => Some(id),
            Operation::Shutdown | Operation::RestartProcess => None,
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
    CrashRestartDue {
        id: ClusterId,
        generation: u64,
    },
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
        child_env.push(("MEWLD_CHANNEL".into(), setup.config.redis.channel.clone()));
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
        loop {
            tokio::select! {
                Some(input) = self.inbox.recv() => self.handle(input),
                Some(event) = transport_rx.recv() => self.on_transport(event),
            }
            self.publish_snapshot();
            if let Some(exit) = self.exiting {
                if self.clusters.iter().all(|c| !c.is_alive()) {
                    let _ = tokio::time::timeout(EXIT_FLUSH_TIMEOUT, self.transport.flush()).await;
                    return exit;
                }
            }
        }
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
            Input::CrashRestartDue { id, generation } => self.crash_restart(id, generation),
        }
    }

    fn on_transport(&mut self, event: TransportEvent) {
        match event {
            TransportEvent::Connected(up) => {
                self.transport_connected = up;
                // The launch waits for the subscription: a `launch_next`
                // said before it exists would be lost and stall the launch.
                if up && !self.launch_begun {
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
            Action::Statuses => {
                let output = self.statuses();
                return self.reply(command_id, output);
            }
            Action::NumProcesses => {
                let output = json!({"clusters": self.clusters.len(), "shards": self.shard_count});
                return self.reply(command_id, output);
            }
            Action::RollingRestart | Action::Reshard | Action::Diag(_) => {
                tracing::warn!(action = ?request.action, "this action is not supported yet; ignored");
                return;
            }
            Action::Start(id) => Operation::Start(id),
            Action::Stop(id) => Operation::Stop(id),
            Action::Restart(id) => Operation::Restart(id),
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
        self.log("operator_action", fields);
        match op {
            Operation::Start(id) => {
                let idx = self.index(id)?;
                if self.clusters[idx].is_alive() {
                    return Err(Refused(format!("{} is already running", self.label(idx))));
                }
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
                let c = &mut self.clusters[idx];
                match c.state {
                    ClusterState::Starting | ClusterState::Running => {
                        self.stop(idx, false);
                        Ok(())
                    }
                    // Cancel a scheduled crash restart or a pending launch.
                    ClusterState::Crashed | ClusterState::Pending => {
                        c.state = ClusterState::Stopped;
                        Ok(())
                    }
                    ClusterState::Stopping => {
                        c.restart_when_stopped = false;
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
                self.stop(idx, true);
                Ok(())
            }
            Operation::Shutdown | Operation::RestartProcess => {
                self.exiting = Some(if op == Operation::Shutdown {
                    Exit::Shutdown
                } else {
                    Exit::RestartProcess
                });
                for idx in 0..self.clusters.len() {
                    if self.clusters[idx].is_alive() {
                        self.stop(idx, false);
                    } else if self.clusters[idx].state != ClusterState::Failed {
                        self.clusters[idx].state = ClusterState::Stopped;
                    }
                }
                Ok(())
            }
        }
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
        if self.exiting.is_some() {
            return;
        }
        match launch::next_to_start(self.clusters.iter().map(|c| c.state)) {
            Some(idx) => {
                let id = self.clusters[idx].spec.id;
                self.launching = Some(id);
                if let Err(e) = self.spawn(idx) {
                    self.log(
                        "cluster_start_failed",
                        json!({"id": id, "via": "start_next", "error": e}),
                    );
                    // Do not let one broken cluster hold up the rest.
                    self.schedule(self.config.cluster_start_next_delay, Input::StartNextDue);
                }
            }
            None => {
                self.launching = None;
                if !self.fully_up {
                    self.fully_up = true;
                    self.transport
                        .publish(protocol::all_clusters_launched(&protocol::random_id()));
                    self.log(
                        "all_clusters_launched",
                        json!({"clusters": self.clusters.len()}),
                    );
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
        if self.launching == Some(id) {
            self.launching = None;
            let any_left = launch::next_to_start(self.clusters.iter().map(|c| c.state)).is_some();
            if any_left {
                self.schedule(self.config.cluster_start_next_delay, Input::StartNextDue);
            } else {
                self.start_next();
            }
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
        match spawned {
            Ok(handle) => {
                let pid = handle.pid;
                c.proc = Some(handle);
                c.state = ClusterState::Starting;
                c.started_at = Some(SystemTime::now());
                c.restart_when_stopped = false;
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

    fn stop(&mut self, idx: usize, then_start: bool) {
        let grace = self.config.stop_grace_period;
        let c = &mut self.clusters[idx];
        if let Some(proc) = &c.proc {
            proc.stop(grace);
            c.state = ClusterState::Stopping;
            c.restart_when_stopped = then_start;
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
        let status = exit_fields(exit);
        if c.state == ClusterState::Stopping {
            let restart = c.restart_when_stopped && self.exiting.is_none();
            c.state = ClusterState::Stopped;
            self.log("cluster_stopped", merge(json!({"id": id}), status));
            if restart {
                if let Err(e) = self.spawn(idx) {
                    self.log(
                        "cluster_restart_failed",
                        json!({"id": id, "via": "restart", "error": e}),
                    );
                }
            }
            return;
        }
        if self.exiting.is_some() {
            c.state = ClusterState::Stopped;
            self.log("cluster_exited", merge(json!({"id": id}), status));
            return;
        }
        c.state = ClusterState::Crashed;
        let delay = CRASH_RESTART_DELAY;
        self.log(
            "cluster_exited",
            merge(
                json!({"id": id, "restart_in_ms": delay.as_millis() as u64}),
                status,
            ),
        );
        self.schedule(delay, Input::CrashRestartDue { id, generation });
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
            Err(e) => self.log(
                "cluster_start_failed",
                json!({"id": id, "via": "observe", "error": e}),
            ),
        }
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
            started_at: Some(self.started_at),
            sessions_remaining: self.sessions_remaining,
            exiting: self.exiting.is_some(),
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
