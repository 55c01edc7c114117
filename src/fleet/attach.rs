//! `mewld attach --redis`: the console on a whole fleet, from anywhere that
//! reaches its Redis. The hosts' records give the clusters (a host column,
//! lost hosts' clusters as `lost`), the action log gives the history and
//! the live entries, and operations are handed to the host that runs the
//! cluster, as another host's console would, and refused here for the
//! reasons a host would refuse them before handing them over (no such
//! cluster, its host lost). The one-shot commands' `--redis` is this too.
//! Cluster output stays on each host (attach to its control socket for
//! that). The link ends when every host is gone after the fleet's order
//! to shut down.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc, watch};

use super::reads::{self, members, parse_leader, HostCache};
use crate::config::{Config, Ipc};
use crate::control::client::{Attached, LinkStatus};
use crate::control::Hello;
use crate::engine::{EngineHandle, FaceRequest};
use crate::redis_link::{within, Keys, Link};
use crate::transport::redis::read_whole_log;
use mewld_core::cluster_map;
use mewld_core::fleet::heartbeat::Heartbeat;
use mewld_core::fleet::{summary, HostRecord};
use mewld_core::model::state::{ClusterState, ClusterView, ExitOrder, FleetSummary, Snapshot};
use mewld_core::model::{Event, Label, Operation, Peer, Refused, Via};
use mewld_core::protocol::{self, Channel, FleetOp};

/// How often the fleet is read.
const POLL: Duration = Duration::from_millis(500);
/// The newest action-log entries read at each poll.
const LOG_TAIL: isize = 200;
const REQUESTS: usize = 64;
const EVENTS: usize = 4096;

/// Reads the fleet `config` names (its Redis and channel) and serves it to
/// a console. Fails at once if Redis cannot be reached; later outages are
/// shown and retried.
pub async fn attach(config: &Config) -> Result<Attached, String> {
    let Ipc::Redis { url } = &config.ipc else {
        return Err(format!(
            "{}: --redis needs `ipc: redis` (a fleet shares one Redis)",
            config.path.display()
        ));
    };
    let client = redis::Client::open(url.as_str()).map_err(|e| format!("Redis URL: {e}"))?;
    let mut link = Link::new(client.clone());
    link.conn()
        .await
        .map_err(|e| format!("cannot reach the fleet's Redis: {e}"))?;
    let (requests_tx, requests) = mpsc::channel(REQUESTS);
    let (events, events_rx) = broadcast::channel(EVENTS);
    let (status, status_rx) = mpsc::channel(REQUESTS);
    let hello = Hello::of_this_process(false, config.path.clone());
    let mut reader = Reader {
        client,
        link,
        keys: Keys::new(&config.channel),
        log_key: config.action_log_key(),
        ops_channel: ops_channel(config),
        cluster_channels: config.cluster_channels,
        per_cluster: config.per_cluster,
        names: config.names.clone(),
        me: super::host_name(None),
        last_entry: None,
        connected: true,
        hosts: HostCache::default(),
        orders: Heartbeat::new(None),
    };
    // Read once before anything is shown: a fleet that is down, or a lone
    // manager, is said at once rather than shown as an empty fleet.
    let cannot = |e: redis::RedisError| format!("cannot read the fleet: {e}");
    let stored_order = reads::exit_order(reader.link.conn().await.map_err(cannot)?, &reader.keys)
        .await
        .map_err(cannot)?;
    let first = reader.read(&events).await.map_err(cannot)?;
    if nobody_runs(&first) {
        return Err(format!(
            "{NO_HOST} (no host record under `{}` in Redis)",
            config.channel
        ));
    }
    reader.orders = Heartbeat::new(stored_order.filter(|o| !given_by_the_leader(o, &first)));
    let (snapshot, snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
    // Sent, not the initial value: a face waiting for news sees it.
    snapshot.send_replace(Arc::new(first));
    tokio::spawn(reader.run(requests, events.clone(), snapshot, status, hello.clone()));
    Ok(Attached {
        handle: EngineHandle::remote(requests_tx, events, snapshot_rx),
        hello,
        status: status_rx,
        events: events_rx,
    })
}

/// Said when the fleet's Redis holds no live host.
const NO_HOST: &str = "no host of this fleet is running";

fn nobody_runs(s: &Snapshot) -> bool {
    s.fleet.as_ref().is_some_and(|f| f.hosts.is_empty())
}

/// Whether the order to stop `text` is the leader's of `s` (the fleet is
/// stopping now); any other one found on attaching is a past run's.
fn given_by_the_leader(text: &str, s: &Snapshot) -> bool {
    let leading = s.fleet.as_ref().and_then(|f| f.leader.as_ref());
    serde_json::from_str::<ExitOrder>(text)
        .is_ok_and(|order| leading.is_some_and(|(_, epoch)| *epoch == order.epoch))
}

/// What a read says of the link.
enum Health {
    Up,
    /// Out of reach, or no host runs: shown, and read again.
    Down(String),
    /// Every host is gone after the fleet's order to shut down.
    Over(String),
}

/// Why a host would refuse `op` before handing it over (`forward` in
/// the core), as the fleet's records `fleet` say.
fn refusal(fleet: &Snapshot, op: Operation) -> Option<Refused> {
    if nobody_runs(fleet) {
        return Some(Refused::NotConnected);
    }
    let id = op.cluster()?;
    match fleet.clusters.iter().find(|c| c.id == id) {
        None => Some(Refused::NoSuchCluster(id)),
        Some(c) if c.state == ClusterState::Lost => Some(Refused::HostLost(Label {
            id,
            name: c.name.clone(),
        })),
        Some(_) => None,
    }
}

/// This process, which asks whatever is asked here (and what a one-shot
/// command asks).
pub fn this_process() -> Peer {
    Peer {
        pid: i32::try_from(std::process::id()).ok(),
        uid: nix::unistd::getuid().as_raw(),
    }
}

struct Reader {
    /// For reads of the whole log, each on a connection of its own.
    client: redis::Client,
    link: Link,
    keys: Keys,
    log_key: String,
    /// Where operations are published (see [`ops_channel`]).
    ops_channel: String,
    /// `cluster_channels`: operations go on the launcher channel.
    cluster_channels: bool,
    per_cluster: u32,
    names: Vec<String>,
    /// This machine's name, logged with the operations asked here.
    me: String,
    /// The newest action-log entry shown, as stored (`Some(None)`: the
    /// log was empty; `None`: not read yet).
    last_entry: Option<Option<String>>,
    connected: bool,
    hosts: HostCache,
    /// Which order to stop is news: the hosts' rule (one already there
    /// on attaching is a past run's).
    orders: Heartbeat,
}

impl Reader {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<FaceRequest>,
        events: broadcast::Sender<Event>,
        snapshot: watch::Sender<Arc<Snapshot>>,
        status: mpsc::Sender<LinkStatus>,
        hello: Hello,
    ) {
        let mut poll = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                request = requests.recv() => match request {
                    Some(request) => self.on_request(request).await,
                    None => return,
                },
                _ = poll.tick() => {}
            }
            let result = self.read(&events).await;
            let health = match &result {
                Ok(fresh) if nobody_runs(fresh) => self.why_nobody_runs().await,
                Ok(_) => Health::Up,
                Err(e) => Health::Down(format!("Redis: {e}")),
            };
            let news = match (health, self.connected) {
                (Health::Over(why), _) => {
                    let _ = status.try_send(LinkStatus::Ended(why));
                    return;
                }
                (Health::Up, false) => Some(LinkStatus::Connected(hello.clone())),
                (Health::Down(why), true) => Some(LinkStatus::Lost(why)),
                _ => None,
            };
            self.connected = news
                .as_ref()
                .map_or(self.connected, |n| matches!(n, LinkStatus::Connected(_)));
            if let Some(news) = news {
                let _ = status.try_send(news);
            }
            match result {
                Ok(fresh) => {
                    snapshot.send_if_modified(|s| {
                        let changed = **s != fresh;
                        if changed {
                            *s = Arc::new(fresh);
                        }
                        changed
                    });
                }
                Err(_) => self.link.reset(),
            }
        }
    }

    /// No host runs: the fleet shut down on purpose (its leader's order is
    /// in Redis), is restarting, or its hosts died.
    async fn why_nobody_runs(&mut self) -> Health {
        let order = match self.link.conn().await {
            Ok(conn) => reads::exit_order(conn, &self.keys).await.ok().flatten(),
            Err(_) => None,
        };
        match self.orders.order_read(order) {
            Ok(Some(ExitOrder { restart: false, .. })) => {
                Health::Over("the fleet shut down (shutdown)".into())
            }
            Ok(Some(ExitOrder { restart: true, .. })) => {
                Health::Down(format!("{NO_HOST}: the fleet is restarting (restartproc)"))
            }
            _ => Health::Down(NO_HOST.to_string()),
        }
    }

    /// The fleet as its records say, and the action log's new entries as
    /// events.
    async fn read(&mut self, events: &broadcast::Sender<Event>) -> redis::RedisResult<Snapshot> {
        let fleet = self.read_fleet().await?;
        self.read_log(events).await?;
        Ok(fleet)
    }

    /// The fleet as its records say.
    async fn read_fleet(&mut self) -> redis::RedisResult<Snapshot> {
        let keys = self.keys.clone();
        // A multiplexed connection's clone is the same connection.
        let conn = &mut self.link.conn().await?.clone();
        let ids = members(conn, &keys).await?;
        let hosts = self.hosts.refresh(conn, &keys, ids).await?;
        // A lone manager's record is a claim: its clusters' states are on
        // its control socket, not in Redis.
        if let Some(solo) = hosts.iter().find(|h| h.solo) {
            return Err(redis::RedisError::from(std::io::Error::other(format!(
                "{} (pid {}) runs every cluster alone, not as a fleet: attach to its \
                 control socket with `mewld attach` on that machine",
                solo.id, solo.pid
            ))));
        }
        let holder: Option<String> =
            within(redis::cmd("GET").arg(&keys.leader).query_async(conn)).await?;
        Ok(self.snapshot(&hosts, holder.as_deref().and_then(parse_leader)))
    }

    /// The action log's entries since the last read, as events.
    async fn read_log(&mut self, events: &broadcast::Sender<Event>) -> redis::RedisResult<()> {
        let log_key = self.log_key.clone();
        let conn = &mut self.link.conn().await?.clone();
        let tail: Vec<String> = within(
            redis::cmd("LRANGE")
                .arg(&log_key)
                .arg(-LOG_TAIL)
                .arg(-1)
                .query_async(conn),
        )
        .await?;
        // New entries are those after the last one shown. By position,
        // not by `ts`: each host stamps its own clock. The first read only
        // sets the mark: the history has the rest.
        if let Some(last) = &self.last_entry {
            let after = last
                .as_ref()
                .and_then(|l| tail.iter().rposition(|t| t == l));
            // Not found: more than the tail's worth came, or the list was
            // empty or cut.
            let new = after.map_or(&tail[..], |i| &tail[i + 1..]);
            for entry in new
                .iter()
                .filter_map(|t| serde_json::from_str::<Map<String, Value>>(t).ok())
            {
                let _ = events.send(Event::ActionLog(entry));
            }
        }
        self.last_entry = Some(tail.last().cloned());
        Ok(())
    }

    fn snapshot(
        &self,
        hosts: &[HostRecord],
        leader: Option<mewld_core::fleet::Leader>,
    ) -> Snapshot {
        // A record's map size is outside data: within the map's caps only.
        let shard_count = hosts
            .iter()
            .map(|h| h.shard_count)
            .filter(|&n| cluster_map::check_size(n, self.per_cluster).is_ok())
            .max()
            .unwrap_or(0);
        let mut views = summary::cluster_views(hosts);
        let clusters: Vec<ClusterView> =
            cluster_map::build(shard_count, self.per_cluster, &self.names)
                .iter()
                .map(|spec| {
                    views
                        .remove(&spec.id)
                        .unwrap_or_else(|| ClusterView::lost(spec))
                })
                .collect();
        let summaries = summary::host_summaries(hosts);
        let leader = leader.map(|l| summary::leader_named(&l, hosts));
        let settled =
            |c: &ClusterView| !matches!(c.state, ClusterState::Pending | ClusterState::Starting);
        Snapshot {
            shard_count,
            fully_up: !clusters.is_empty() && clusters.iter().all(settled),
            clusters,
            transport_connected: true,
            transport_retry_at: None,
            started_at: hosts
                .iter()
                .map(|h| SystemTime::UNIX_EPOCH + Duration::from_secs(h.started_at))
                .min(),
            sessions_remaining: None,
            exiting: None,
            rolling: None,
            resharding: false,
            identify: None,
            fleet: Some(FleetSummary {
                me: self.me.clone(),
                leader,
                leading: false,
                hosts: summaries,
                exit_order: None,
            }),
        }
    }

    async fn on_request(&mut self, request: FaceRequest) {
        match request {
            FaceRequest::Op { op, via, reply } => {
                let result = self.hand_over(op, via).await;
                let _ = reply.send(result);
            }
            // Aside: a large log takes a while, and the view goes on.
            FaceRequest::History(reply) => {
                let (client, key) = (self.client.clone(), self.log_key.clone());
                tokio::spawn(async move {
                    let _ = reply.send(read_whole_log(&client, &key).await);
                });
            }
            FaceRequest::Alive(reply) => {
                let _ = reply.send(());
            }
        }
    }

    /// Publishes `op` for the fleet: a cluster's to its host, a rolling
    /// restart to the leader, shutdown and restartproc to every host.
    /// Refused first as a host would refuse it, from a fresh read.
    async fn hand_over(&mut self, op: Operation, via: Via) -> Result<(), Refused> {
        let fleet = self.read_fleet().await.map_err(|_| Refused::NotConnected)?;
        if let Some(refused) = refusal(&fleet, op) {
            return Err(refused);
        }
        let payload = match op {
            Operation::Shutdown | Operation::RestartProcess => {
                let mut request = serde_json::json!({
                    "scope": "launcher",
                    "action": op.name(),
                    "command_id": super::random_id(),
                });
                // Nobody waits for the leader's ack: with cluster channels
                // it goes where no cluster hears it (§5.5).
                if self.cluster_channels {
                    request["reply_to"] = Value::String(self.ops_channel.clone());
                }
                request.to_string()
            }
            Operation::Diagnose(_) | Operation::Reshard => {
                return Err(Refused::NotInFleet(format!(
                    "{} from a fleet console",
                    op.name()
                )))
            }
            _ => protocol::fleet_op(&FleetOp {
                op: op.name().to_string(),
                id: op.cluster(),
                // The console asks as `console`: from here, it is attached.
                via: match via {
                    Via::Cli(_) => "cli",
                    _ => "attach",
                }
                .into(),
                host: self.me.clone(),
                rolling: false,
                epoch: None,
                peer: Some(this_process()),
            }),
        };
        let channel = self.ops_channel.clone();
        let conn = self.link.conn().await.map_err(|_| Refused::NotConnected)?;
        within(
            redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(payload)
                .query_async::<i64>(conn),
        )
        .await
        .map(|_| ())
        .map_err(|_| Refused::NotConnected)
    }
}

/// Where operations for the fleet are published: with `cluster_channels`,
/// the launcher channel, which every host hears and no cluster does; else
/// the main channel, as every mewld hears it.
fn ops_channel(config: &Config) -> String {
    let channel = match config.cluster_channels {
        true => Channel::Launcher,
        false => Channel::Main,
    };
    config.channels().name(&channel)
}
