//! What operators ask, who asked, and why the engine said no.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cluster_map::ClusterId;

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
    /// Every operation, with a placeholder cluster where it takes one.
    const ALL: [Operation; 8] = [
        Operation::Start(0),
        Operation::Stop(0),
        Operation::Restart(0),
        Operation::Diagnose(0),
        Operation::RollingRestart,
        Operation::Reshard,
        Operation::Shutdown,
        Operation::RestartProcess,
    ];

    /// The operation's name in the action log and between hosts.
    pub fn name(self) -> &'static str {
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

    /// The operation named `name` (as [`Operation::name`] spells it), of
    /// cluster `id` where it takes one and only then.
    pub fn named(name: &str, id: Option<ClusterId>) -> Option<Operation> {
        let op = Operation::ALL.into_iter().find(|op| op.name() == name)?;
        match (op.cluster(), id) {
            (Some(_), Some(id)) => Some(op.with_cluster(id)),
            (None, None) => Some(op),
            _ => None,
        }
    }

    fn with_cluster(self, id: ClusterId) -> Operation {
        match self {
            Operation::Start(_) => Operation::Start(id),
            Operation::Stop(_) => Operation::Stop(id),
            Operation::Restart(_) => Operation::Restart(id),
            Operation::Diagnose(_) => Operation::Diagnose(id),
            other => other,
        }
    }

    pub fn cluster(self) -> Option<ClusterId> {
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
    /// A client of the Unix socket (the log names its process).
    Unix(Peer),
    Console,
    /// A console attached over the control socket (the log names its process).
    Attach(Peer),
    /// A one-shot command (`mewld stop 3`) over the control socket (the log
    /// names its process).
    Cli(Peer),
    Daemon,
    /// The web API (docs/protocol.md §8.2): a logged-in user published a
    /// message; the web API logs it itself, with the user.
    Web,
    /// A request the manager published itself: transports give the manager
    /// its own messages back. It publishes none today.
    Manager,
    /// Asked on another host of the fleet, which handed it here; the
    /// action log names that host too.
    Fleet(FleetVia),
}

/// How an operation handed over by another host was asked there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetVia {
    Console,
    Attach,
    Cli,
    Redis,
    Unix,
    Daemon,
    /// A step of the leader's rolling restart.
    Rolling,
    Other,
}

impl FleetVia {
    pub fn parse(s: &str) -> FleetVia {
        match s {
            "console" => FleetVia::Console,
            "attach" => FleetVia::Attach,
            "cli" => FleetVia::Cli,
            "redis" => FleetVia::Redis,
            "unix" => FleetVia::Unix,
            "daemon" => FleetVia::Daemon,
            "rolling" => FleetVia::Rolling,
            _ => FleetVia::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FleetVia::Console => "console",
            FleetVia::Attach => "attach",
            FleetVia::Cli => "cli",
            FleetVia::Redis => "redis",
            FleetVia::Unix => "unix",
            FleetVia::Daemon => "daemon",
            FleetVia::Rolling => "rolling",
            FleetVia::Other => "fleet",
        }
    }
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Redis => "redis",
            Via::Unix(_) => "unix",
            Via::Console => "console",
            Via::Attach(_) => "attach",
            Via::Cli(_) => "cli",
            Via::Daemon => "daemon",
            Via::Web => "web",
            Via::Manager => "manager",
            Via::Fleet(via) => via.as_str(),
        }
    }
}

impl From<Origin> for Via {
    fn from(origin: Origin) -> Self {
        match origin {
            Origin::Redis => Via::Redis,
            Origin::Unix(peer) => Via::Unix(peer),
            Origin::Manager => Via::Manager,
        }
    }
}

/// Who put a message on the channel, as far as the transport can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Someone on the Redis channel; Redis does not say who (the manager's
    /// own publishes come back this way too).
    Redis,
    /// A client of the Unix socket.
    Unix(Peer),
    /// The manager itself: its own publish, echoed by the Unix transport.
    Manager,
}

/// A socket client's process, from the kernel (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// None where the kernel does not say.
    pub pid: Option<i32>,
    pub uid: u32,
}

/// How the engine ended, and so how the process should exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// Why an operation was refused. `Display` is for people (the console's
/// message line, the action log's `refused`); code matches the variants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refused {
    #[error("the manager is shutting down")]
    ShuttingDown,
    #[error("the engine has stopped")]
    EngineStopped,
    /// Asked before the engine runs (the control socket answers then):
    /// the step of its start, as `/healthz` says it.
    #[error("the engine is starting: {0}")]
    Starting(String),
    /// Said by an attached console while its engine is out of reach.
    #[error("not connected to the engine (reconnecting)")]
    NotConnected,
    #[error("there is no cluster {0}")]
    NoSuchCluster(ClusterId),
    #[error("{0} is already running")]
    AlreadyRunning(Label),
    #[error("{0} is not running")]
    NotRunning(Label),
    #[error("{0} is stopping; start it once it has stopped")]
    Stopping(Label),
    #[error("{0} is not running (use start)")]
    RestartNotRunning(Label),
    #[error("could not start {label}: {error}")]
    CouldNotStart { label: Label, error: String },
    #[error("the transport is not connected")]
    TransportDown,
    #[error("resharding is experimental: add `reshard` to experimental_features")]
    ReshardDisabled,
    #[error("a rolling restart is already under way")]
    RollingUnderWay,
    #[error("a reshard is already under way")]
    ReshardUnderWay,
    #[error("not every cluster has launched yet; wait until the bot is fully up")]
    NotFullyUp,
    #[error(
        "processes of the last rolling restart are still being stopped; try again in a moment"
    )]
    StillStopping,
    #[error("{label} runs on host {host}; its own manager answers for it")]
    OnAnotherHost { label: Label, host: String },
    #[error("{0} is on a host that stopped heartbeating; nothing can reach it")]
    HostLost(Label),
    #[error(
        "{0} changes with the reshard under way: a new cluster is started in its turn, a \
         stopped or failed one starts on its new shards once the reshard is done"
    )]
    InReshard(Label),
    #[error("{0} leaves the map: it was new in the reshard this aborted")]
    LeftTheMap(Label),
    #[error("{0} is not supported across several hosts yet")]
    NotInFleet(String),
}

/// A cluster as people name it: id and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub id: ClusterId,
    pub name: String,
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cluster {} ({})", self.id, self.name)
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "pid {pid} uid {}", self.uid),
            None => write!(f, "pid ? uid {}", self.uid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_found_by_its_name() {
        for op in Operation::ALL {
            let op = op.cluster().map_or(op, |_| op.with_cluster(7));
            assert_eq!(Operation::named(op.name(), op.cluster()), Some(op));
        }
        assert_eq!(
            Operation::named("start", None),
            None,
            "start needs a cluster"
        );
        assert_eq!(Operation::named("shutdown", Some(1)), None);
        assert_eq!(Operation::named("launch", None), None);
    }
}
