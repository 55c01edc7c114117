//! Several managers over one Redis, acting as one (docs/protocol.md §10).
//!
//! Each host runs a slice of the cluster map ([`slice`]). This task keeps
//! the host's record in Redis under a TTL (its heartbeat), reads the other
//! hosts' records, and holds the leader election; after each heartbeat it
//! hands the engine a [`FleetView`]. The rules that use it (which host
//! answers, the launch order across hosts, host loss) are the engine
//! core's. Redis being down is a state here too: the record lapses, the
//! lease with it, and the task keeps trying.

pub mod attach;
pub mod record;
pub mod slice;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::{oneshot, watch};

use crate::cluster_map::{ClusterId, MapPrint};
use crate::engine::actlog::unix_secs;
use crate::engine::state::{ExitOrder, Snapshot};
pub use record::{FleetView, HostRecord, Leader, Membership};
use slice::Ranges;

/// How often a host renews its record (sooner when its clusters change).
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often a host reads the others' records and takes part in the
/// election: what it shows of another host lags by at most this much
/// behind that host's own record.
pub const READ_INTERVAL: Duration = Duration::from_millis(250);
/// A record not renewed for this long is gone: its host is lost.
pub const HOST_TTL: Duration = Duration::from_secs(5);
/// The leader's lease in Redis.
pub const LEASE: Duration = Duration::from_secs(5);
/// A leader stops acting as one this long before its lease ends in Redis,
/// so that a paused or cut-off leader is silent before another is elected.
const LEASE_MARGIN: Duration = Duration::from_millis(1500);
/// How long the leader's order to stop stays in Redis for hosts that
/// missed the message: longer than any stall a host lives through.
const EXIT_ORDER_TTL: Duration = Duration::from_secs(600);
/// After Redis failed or stalled, how long a host missing from it is not
/// taken for lost (a host claims again within a heartbeat of Redis coming
/// back).
const STALL_GRACE: Duration = HOST_TTL;
/// Each Redis round trip gets this long.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Atomically: unless a live record conflicts with ours, register ours.
/// A record conflicts when it claims one of `owned`, was made from
/// another map, or counts another number of hosts. Returns the conflicting
/// record, or nil. Hosts are looked for in the set and among the ids
/// found by scanning for records (so that a set deleted or evicted hides
/// nobody); records that lapsed are dropped from the set on the way; a
/// set key of the wrong type is replaced.
const CLAIM: &str = r"
local mine = {}
for _, id in ipairs(cjson.decode(ARGV[4])) do mine[id] = true end
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'set' and kind ~= 'none' then redis.call('DEL', KEYS[1]) end
local function conflicts(d)
  if type(d.map) == 'table' and type(d.map.digest) == 'string' and d.map.digest ~= '' then
    if d.map.digest ~= ARGV[6] then return true end
  elseif type(d.shard_count) == 'number'
    and (d.shard_count ~= tonumber(ARGV[7]) or d.cluster_count ~= tonumber(ARGV[8])) then
    return true
  end
  if ARGV[9] ~= '' and type(d.host_count) == 'number' and d.host_count ~= tonumber(ARGV[9]) then
    return true
  end
  if type(d.owned) == 'table' then
    for _, id in ipairs(d.owned) do
      if mine[id] then return true end
    end
  end
  return false
end
local ids = redis.call('SMEMBERS', KEYS[1])
for _, h in ipairs(cjson.decode(ARGV[10])) do table.insert(ids, h) end
for _, h in ipairs(ids) do
  if h ~= ARGV[1] then
    local rec = redis.pcall('GET', ARGV[5] .. h)
    if type(rec) ~= 'string' then
      redis.call('SREM', KEYS[1], h)
    else
      -- A record that cannot be read claims nothing (the hosts skip it too).
      local ok, decoded = pcall(cjson.decode, rec)
      if ok and type(decoded) == 'table' and conflicts(decoded) then return rec end
    end
  end
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SET', ARGV[5] .. ARGV[1], ARGV[2], 'PX', ARGV[3])
return false
";

/// A heartbeat: the record renewed (rewritten when it changed), only if it
/// is still there; its version set; and this host put back in the set, in
/// case the set was deleted or evicted (a set key of the wrong type is
/// replaced). Returns `{renewed, repaired, added}`.
const RENEW: &str = r"
local repaired = 0
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'set' and kind ~= 'none' then
  redis.call('DEL', KEYS[1])
  repaired = 1
end
local alive
if ARGV[2] ~= '' then
  alive = redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3], 'XX')
else
  alive = redis.call('PEXPIRE', KEYS[2], ARGV[3]) == 1
end
if not alive then return {0, repaired, 0} end
redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[3])
return {1, repaired, redis.call('SADD', KEYS[1], ARGV[1])}
";

/// The election: take the lease if nobody holds it (with the next fencing
/// token, above every one seen: `ARGV[3]` is the highest any host's record
/// holds, so a Redis that lost its counter cannot hand out an old one),
/// renew it if we do. A leader key without a TTL, of the wrong type or
/// that cannot be read, and an epoch that is not a number, are replaced.
/// Returns `{holder, what was repaired or ''}`, the holder as
/// `<host> <epoch>`.
const ELECT: &str = r"
local repaired = ''
local floor = tonumber(ARGV[3]) or 0
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'string' and kind ~= 'none' then
  redis.call('DEL', KEYS[1])
  repaired = 'the leader key was a ' .. kind
elseif kind == 'string' then
  local cur = redis.call('GET', KEYS[1])
  if not string.match(cur, '^.+ %d+$') then
    redis.call('DEL', KEYS[1])
    repaired = 'the leader key held ' .. string.sub(cur, 1, 40)
  elseif redis.call('PTTL', KEYS[1]) < 0 then
    redis.call('DEL', KEYS[1])
    repaired = 'the leader key had no TTL'
    -- Its token may have been handed out: the next one is above it.
    floor = math.max(floor, tonumber(string.match(cur, ' (%d+)$')) or 0)
  end
end
local cur = redis.call('GET', KEYS[1])
if not cur then
  local raw = redis.pcall('GET', KEYS[2])
  local stored = nil
  if type(raw) == 'string' and string.match(raw, '^%d+$') then
    stored = tonumber(raw)
  elseif type(raw) == 'table' then
    repaired = 'the epoch key was not a string'
  elseif raw then
    repaired = 'the epoch key held ' .. string.sub(raw, 1, 40)
  end
  local epoch = string.format('%d', math.max(stored or 0, floor) + 1)
  redis.call('SET', KEYS[2], epoch)
  cur = ARGV[1] .. ' ' .. epoch
  redis.call('SET', KEYS[1], cur, 'PX', ARGV[2])
elseif string.sub(cur, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {cur, repaired}
";

/// Gives the lease up, if it is still ours.
const RESIGN: &str = r"
local cur = redis.pcall('GET', KEYS[1])
if type(cur) == 'string' and string.sub(cur, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
  redis.call('DEL', KEYS[1])
end
return 0
";

/// Where a fleet's keys live, beside the action log: `<channel>/fleet/…`.
#[derive(Debug, Clone)]
struct Keys {
    hosts: String,
    host_prefix: String,
    version_prefix: String,
    leader: String,
    epoch: String,
    exit: String,
}

impl Keys {
    fn new(channel: &str) -> Keys {
        Keys {
            hosts: format!("{channel}/fleet/hosts"),
            host_prefix: format!("{channel}/fleet/host/"),
            version_prefix: format!("{channel}/fleet/version/"),
            leader: format!("{channel}/fleet/leader"),
            epoch: format!("{channel}/fleet/epoch"),
            exit: format!("{channel}/fleet/exit"),
        }
    }

    fn host(&self, id: &str) -> String {
        format!("{}{id}", self.host_prefix)
    }

    /// A counter beside each record, bumped when the record changes: the
    /// others read the small counters and fetch only the records that moved.
    fn version(&self, id: &str) -> String {
        format!("{}{id}", self.version_prefix)
    }
}

/// Why this host may not join the fleet.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(
        "clusters {overlap} are already run by host {host} (pid {pid}), which is alive and \
         heartbeating in Redis; two managers must not run the same cluster. Give each host \
         its own --host-index or --clusters, or stop the other manager first"
    )]
    Claimed {
        overlap: String,
        host: String,
        pid: u32,
    },
    #[error(
        "host {host} (pid {pid}) runs a different cluster map on this channel: {how}. \
         Every manager on one channel must load the same config (shard count, per_cluster, \
         names); stop the other one first to change the map"
    )]
    DifferentMap { host: String, pid: u32, how: String },
    #[error(
        "host {host} (pid {pid}) was started as one of {theirs} hosts, this one as one of \
         {ours}: every host must be given the same --host-count"
    )]
    HostCount {
        host: String,
        pid: u32,
        theirs: u32,
        ours: u32,
    },
    #[error("a live host's record in Redis cannot be read ({0}); is another program using the fleet's keys?")]
    BadRecord(String),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The running fleet task's handle: its views for the engine, and `leave`.
pub struct Fleet {
    pub view: watch::Receiver<Option<FleetView>>,
    leave: Option<oneshot::Sender<oneshot::Sender<()>>>,
}

impl Fleet {
    /// Leaves the fleet: the record and the lease (if held) are deleted,
    /// so the others see this host go at once rather than after the TTL.
    pub async fn leave(mut self) {
        if let Some(leave) = self.leave.take() {
            let (done_tx, done) = oneshot::channel();
            if leave.send(done_tx).is_ok() {
                let _ = tokio::time::timeout(COMMAND_TIMEOUT, done).await;
            }
        }
    }
}

/// Everything the task needs to write this host's record.
struct Member {
    keys: Keys,
    me: Membership,
    map: MapPrint,
    started_at: u64,
    boot_id: String,
    snapshot: watch::Receiver<Arc<Snapshot>>,
}

/// Joins the fleet on `url` (alone, `me.solo`: claims every cluster):
/// refuses (with the reason) if a live manager claims one of our clusters,
/// runs another map or counts other hosts; if Redis cannot be reached,
/// goes on and keeps trying in the background (the engine holds the
/// launch until the first view).
pub async fn join(
    url: &str,
    channel: &str,
    me: Membership,
    map: MapPrint,
    snapshot: watch::Receiver<Arc<Snapshot>>,
) -> Result<Fleet, JoinError> {
    let client = redis::Client::open(url)?;
    let member = Member {
        keys: Keys::new(channel),
        me,
        map,
        started_at: unix_secs(std::time::SystemTime::now()),
        boot_id: boot_id(),
        snapshot,
    };
    let mut conn = None;
    let mut beat = Beat::default();
    match connect(&client).await {
        Ok(mut c) => {
            member.claim(&mut c, 0).await?;
            beat.old_order =
                within(redis::cmd("GET").arg(&member.keys.exit).query_async(&mut c)).await?;
            conn = Some(c);
        }
        Err(e) => tracing::warn!(error = %e, "cannot reach Redis to join the fleet; retrying"),
    }
    let (view_tx, view) = watch::channel(None);
    let (leave, leave_rx) = oneshot::channel();
    tokio::spawn(member.run(client, conn, beat, view_tx, leave_rx));
    Ok(Fleet {
        view,
        leave: Some(leave),
    })
}

async fn connect(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    match tokio::time::timeout(COMMAND_TIMEOUT, client.get_multiplexed_async_connection()).await {
        Ok(result) => result,
        Err(_) => Err(timed_out()),
    }
}

pub(crate) fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "Redis did not answer in time",
    ))
}

/// Runs one Redis exchange within [`COMMAND_TIMEOUT`].
pub(crate) async fn within<T>(
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    tokio::time::timeout(COMMAND_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

impl Member {
    fn record(&self, epoch_seen: u64) -> HostRecord {
        // Alone, the record is a claim: the clusters' states are not shared.
        let clusters = if self.me.solo {
            Vec::new()
        } else {
            let snapshot = self.snapshot.borrow().clone();
            snapshot
                .clusters
                .iter()
                .filter(|c| self.me.owned.contains(&c.id))
                .cloned()
                .collect()
        };
        HostRecord {
            id: self.me.id.clone(),
            name: self.me.name.clone(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            owned: self.me.owned.clone(),
            shard_count: self.map.shards,
            cluster_count: self.map.clusters,
            map: self.map.clone(),
            host_count: self.me.host_count,
            solo: self.me.solo,
            epoch_seen,
            started_at: self.started_at,
            boot_id: self.boot_id.clone(),
            clusters,
        }
    }

    /// Registers this host, after dropping what a previous run of it left
    /// (a manager killed on this machine leaves its record for a TTL).
    async fn claim(
        &self,
        conn: &mut MultiplexedConnection,
        epoch_seen: u64,
    ) -> Result<(), JoinError> {
        let mut ids = members(conn, &self.keys).await?;
        for id in scan_ids(conn, &self.keys).await? {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids.retain(|id| *id != self.me.id);
        let others = HostCache::default()
            .refresh(conn, &self.keys, ids.clone())
            .await?;
        for other in others {
            if other.name == self.me.name && is_previous_run(&other) {
                tracing::info!(host = %other.id, "dropping the record of this host's previous run");
                let _: () = within(
                    redis::pipe()
                        .del(self.keys.host(&other.id))
                        .srem(&self.keys.hosts, &other.id)
                        .query_async(conn),
                )
                .await?;
            }
        }
        let owned: Vec<ClusterId> = self.me.owned.iter().copied().collect();
        let record = serde_json::to_string(&self.record(epoch_seen)).unwrap_or_default();
        let conflict: Option<String> = within(
            redis::Script::new(CLAIM)
                .key(&self.keys.hosts)
                .arg(&self.me.id)
                .arg(record)
                .arg(HOST_TTL.as_millis() as u64)
                .arg(serde_json::to_string(&owned).unwrap_or_default())
                .arg(&self.keys.host_prefix)
                .arg(&self.map.digest)
                .arg(self.map.shards)
                .arg(self.map.clusters)
                .arg(
                    self.me
                        .host_count
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                )
                .arg(serde_json::to_string(&ids).unwrap_or_default())
                .invoke_async(conn),
        )
        .await?;
        let Some(conflict) = conflict else {
            tracing::info!(host = %self.me.id, clusters = %Ranges(&self.me.owned), "claimed the clusters in Redis");
            return Ok(());
        };
        let other: HostRecord =
            serde_json::from_str(&conflict).map_err(|e| JoinError::BadRecord(e.to_string()))?;
        Err(self.refusal(other))
    }

    /// Why a live record that conflicts with ours stops this host.
    fn refusal(&self, other: HostRecord) -> JoinError {
        // Older builds wrote only the map's size: the rest is taken as ours.
        let theirs = if other.map.digest.is_empty() {
            let same =
                (other.shard_count, other.cluster_count) == (self.map.shards, self.map.clusters);
            MapPrint {
                shards: other.shard_count,
                clusters: other.cluster_count,
                digest: if same {
                    self.map.digest.clone()
                } else {
                    String::new()
                },
                ..self.map.clone()
            }
        } else {
            other.map.clone()
        };
        if let Some(how) = self.map.difference(&theirs) {
            return JoinError::DifferentMap {
                host: other.id,
                pid: other.pid,
                how,
            };
        }
        if let (Some(theirs), Some(ours)) = (other.host_count, self.me.host_count) {
            if theirs != ours {
                return JoinError::HostCount {
                    host: other.id,
                    pid: other.pid,
                    theirs,
                    ours,
                };
            }
        }
        let overlap: BTreeSet<ClusterId> =
            other.owned.intersection(&self.me.owned).copied().collect();
        JoinError::Claimed {
            overlap: Ranges(&overlap).to_string(),
            host: other.id,
            pid: other.pid,
        }
    }

    async fn run(
        self,
        client: redis::Client,
        mut conn: Option<MultiplexedConnection>,
        mut state: Beat,
        view: watch::Sender<Option<FleetView>>,
        mut leave: oneshot::Receiver<oneshot::Sender<()>>,
    ) {
        let mut tick = tokio::time::interval(READ_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                done = &mut leave => {
                    if let (Some(c), Ok(done)) = (conn.as_mut(), done) {
                        self.resign(c).await;
                        let _ = done.send(());
                    }
                    return;
                }
                _ = tick.tick() => {}
            }
            if conn.is_none() {
                conn = connect(&client).await.ok();
            }
            let Some(c) = conn.as_mut() else {
                state.stalled = true;
                continue;
            };
            match self.heartbeat(c, &mut state).await {
                Ok(fresh) => {
                    view.send_replace(Some(fresh));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fleet heartbeat failed; retrying");
                    state.stalled = true;
                    conn = None;
                    // Without Redis this host cannot know it still leads.
                    view.send_modify(|v| {
                        if let Some(v) = v {
                            v.lease_until = None;
                        }
                    });
                }
            }
        }
    }

    /// Renews the record when it changed or a heartbeat is due (claiming
    /// again if it lapsed), reads the others', and takes part in the
    /// election; or says why this host may not run its clusters any more.
    async fn heartbeat(
        &self,
        conn: &mut MultiplexedConnection,
        beat: &mut Beat,
    ) -> redis::RedisResult<FleetView> {
        let sent_at = Instant::now();
        let record = serde_json::to_string(&self.record(beat.epoch_seen)).unwrap_or_default();
        let changed = beat.written.as_ref() != Some(&record);
        let due = beat
            .renewed_at
            .is_none_or(|at| sent_at.duration_since(at) >= HEARTBEAT);
        if changed || due {
            if changed {
                beat.version += 1;
            }
            let (renewed, repaired, added): (i64, i64, i64) = within(
                redis::Script::new(RENEW)
                    .key(&self.keys.hosts)
                    .key(self.keys.host(&self.me.id))
                    .key(self.keys.version(&self.me.id))
                    .arg(&self.me.id)
                    .arg(if changed { record.as_str() } else { "" })
                    .arg(HOST_TTL.as_millis() as u64)
                    .arg(beat.version)
                    .invoke_async(conn),
            )
            .await?;
            if repaired == 1 {
                tracing::warn!(key = %self.keys.hosts, "the fleet's host set was not a set; replaced it");
            }
            if added == 1 {
                tracing::warn!(key = %self.keys.hosts, "this host was missing from the fleet's host set (deleted or evicted?); added it back");
            }
            beat.written = Some(record);
            beat.renewed_at = Some(sent_at);
            // Our record lapsed (Redis was away, or this host was paused):
            // claim the clusters again.
            if renewed == 0 {
                if let Some(displaced) = self.claim_again(conn, beat).await? {
                    return Ok(displaced);
                }
            }
        }
        if self.me.solo {
            return Ok(self.view());
        }
        self.read_and_elect(conn, sent_at, beat).await
    }

    /// Claims the clusters again after the record lapsed: `Some` view if
    /// another manager has claimed them since.
    async fn claim_again(
        &self,
        conn: &mut MultiplexedConnection,
        beat: &mut Beat,
    ) -> redis::RedisResult<Option<FleetView>> {
        match self.claim(conn, beat.epoch_seen).await {
            Ok(()) => {}
            Err(JoinError::Redis(e)) => return Err(e),
            Err(e) => {
                tracing::error!(error = %e, "cannot claim the clusters again");
                return Ok(Some(FleetView {
                    displaced: Some(e.to_string()),
                    ..self.view()
                }));
            }
        }
        beat.version += 1;
        let ttl = HOST_TTL.as_millis() as u64;
        let version = self.keys.version(&self.me.id);
        let _: () = within(set_version(&version, beat.version, ttl).query_async(conn)).await?;
        Ok(None)
    }

    /// A view with nothing known yet but who this host is.
    fn view(&self) -> FleetView {
        FleetView {
            me: self.me.name.clone(),
            ..FleetView::default()
        }
    }

    /// Reads the other hosts' records and renews or takes the lease.
    async fn read_and_elect(
        &self,
        conn: &mut MultiplexedConnection,
        sent_at: Instant,
        beat: &mut Beat,
    ) -> redis::RedisResult<FleetView> {
        let mut ids = members(conn, &self.keys).await?;
        ids.retain(|id| *id != self.me.id);
        let hosts = beat.others.refresh(conn, &self.keys, ids).await?;
        let hosts = beat.through_stall(hosts, sent_at);
        let seen = hosts
            .iter()
            .map(|h| h.epoch_seen)
            .fold(beat.epoch_seen, u64::max);
        let (holder, repaired): (String, String) = within(
            redis::Script::new(ELECT)
                .key(&self.keys.leader)
                .key(&self.keys.epoch)
                .arg(&self.me.id)
                .arg(LEASE.as_millis() as u64)
                .arg(seen)
                .invoke_async(conn),
        )
        .await?;
        if !repaired.is_empty() {
            tracing::warn!(what = %repaired, "replaced a fleet key that could not be used");
        }
        let leader = parse_leader(&holder);
        beat.epoch_seen = leader.as_ref().map_or(seen, |l| l.epoch.max(seen));
        let exit_order = self.exit_order(conn, beat).await?;
        let lease_until = leader
            .as_ref()
            .filter(|l| l.host == self.me.id)
            .map(|_| sent_at + LEASE - LEASE_MARGIN);
        Ok(FleetView {
            hosts,
            leader,
            lease_until,
            exit_order,
            ..self.view()
        })
    }

    /// Keeps this host's order to stop in Redis, once it gave one; reads
    /// an order this host may have missed (one given since it joined).
    async fn exit_order(
        &self,
        conn: &mut MultiplexedConnection,
        beat: &mut Beat,
    ) -> redis::RedisResult<Option<ExitOrder>> {
        let own = self
            .snapshot
            .borrow()
            .fleet
            .as_ref()
            .and_then(|f| f.exit_order);
        if let (Some(order), false) = (own, beat.ordered) {
            let text = serde_json::to_string(&order).unwrap_or_default();
            let _: () = within(
                redis::cmd("SET")
                    .arg(&self.keys.exit)
                    .arg(text)
                    .arg("PX")
                    .arg(EXIT_ORDER_TTL.as_millis() as u64)
                    .query_async(conn),
            )
            .await?;
            beat.ordered = true;
            return Ok(None);
        }
        let text: Option<String> =
            match within(redis::cmd("GET").arg(&self.keys.exit).query_async(conn)).await {
                Err(e) if e.code() == Some("WRONGTYPE") => None,
                other => other?,
            };
        let Some(text) = text.filter(|t| Some(t) != beat.old_order.as_ref()) else {
            return Ok(None);
        };
        match serde_json::from_str::<ExitOrder>(&text) {
            Ok(order) => Ok(Some(order)),
            Err(e) => {
                // Said once: it is ignored from now on.
                tracing::warn!(key = %self.keys.exit, error = %e, "ignored an order to stop that cannot be read");
                beat.old_order = Some(text);
                Ok(None)
            }
        }
    }

    async fn resign(&self, conn: &mut MultiplexedConnection) {
        let result: redis::RedisResult<()> = async {
            let _: i64 = within(
                redis::Script::new(RESIGN)
                    .key(&self.keys.leader)
                    .arg(&self.me.id)
                    .invoke_async(conn),
            )
            .await?;
            within(
                redis::pipe()
                    .del(self.keys.host(&self.me.id))
                    .del(self.keys.version(&self.me.id))
                    .srem(&self.keys.hosts, &self.me.id)
                    .query_async(conn),
            )
            .await
        }
        .await;
        match result {
            Ok(()) => tracing::info!(host = %self.me.id, "left the fleet"),
            Err(e) => {
                tracing::warn!(error = %e, "could not leave the fleet cleanly; the record lapses in {HOST_TTL:?}")
            }
        }
    }
}

/// Sets a record's version, with the record's TTL.
fn set_version(key: &str, version: u64, ttl_ms: u64) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(version).arg("PX").arg(ttl_ms);
    cmd
}

/// What the heartbeat keeps between rounds.
#[derive(Default)]
struct Beat {
    /// The record as last written, and when it was last renewed.
    written: Option<String>,
    renewed_at: Option<Instant>,
    /// Bumped at each write of the record.
    version: u64,
    /// The highest leader epoch seen, this host's or in others' records.
    epoch_seen: u64,
    /// The order to stop that was in Redis when this host joined (its own
    /// previous run's, say): not for this run.
    old_order: Option<String>,
    /// This host's own order, once it is in Redis.
    ordered: bool,
    /// The other hosts' records as last fetched.
    others: HostCache,
    /// Redis failed or stalled since the last good round.
    stalled: bool,
    /// Until then, hosts missing from Redis are kept as last read.
    grace_until: Option<Instant>,
    /// The other hosts as last shown.
    last_hosts: Vec<HostRecord>,
}

impl Beat {
    /// The hosts to show after a read. Right after Redis failed or stalled
    /// here (a `CLIENT PAUSE`, an outage) every host's record may have
    /// lapsed meanwhile, ours too: that says nothing about the others, who
    /// claim again within a heartbeat of Redis coming back. So for a
    /// while a host missing from Redis is shown as it was, not lost.
    fn through_stall(&mut self, mut hosts: Vec<HostRecord>, now: Instant) -> Vec<HostRecord> {
        if std::mem::take(&mut self.stalled) {
            self.grace_until = Some(now + STALL_GRACE);
        }
        if self.grace_until.is_some_and(|until| now < until) {
            for was in &self.last_hosts {
                if !hosts.iter().any(|h| h.id == was.id) {
                    hosts.push(was.clone());
                }
            }
        } else {
            self.grace_until = None;
        }
        self.last_hosts = hosts.clone();
        hosts
    }
}

/// The hosts' records as last fetched, with their versions: a refresh
/// reads every version (a few bytes each) and fetches only the records
/// whose version moved, so a fleet of big hosts costs little to watch.
#[derive(Default)]
struct HostCache {
    records: HashMap<String, (u64, HostRecord)>,
}

impl HostCache {
    /// The records of the hosts `ids` that are alive. A record that cannot
    /// be read is skipped, with a warning.
    async fn refresh(
        &mut self,
        conn: &mut MultiplexedConnection,
        keys: &Keys,
        ids: Vec<String>,
    ) -> redis::RedisResult<Vec<HostRecord>> {
        let live: Vec<(String, u64)> = if ids.is_empty() {
            Vec::new()
        } else {
            let version_keys: Vec<String> = ids.iter().map(|id| keys.version(id)).collect();
            // Read as text: a value that is not a number is skipped, not fatal.
            let versions: Vec<Option<String>> =
                within(redis::cmd("MGET").arg(&version_keys).query_async(conn)).await?;
            ids.into_iter()
                .zip(versions)
                .filter_map(|(id, v)| Some((id, v?.parse().ok()?)))
                .collect()
        };
        self.records
            .retain(|id, (v, _)| live.iter().any(|(l, lv)| l == id && lv == v));
        let stale: Vec<&(String, u64)> = live
            .iter()
            .filter(|(id, _)| !self.records.contains_key(id))
            .collect();
        if !stale.is_empty() {
            let host_keys: Vec<String> = stale.iter().map(|(id, _)| keys.host(id)).collect();
            let texts: Vec<Option<String>> =
                within(redis::cmd("MGET").arg(&host_keys).query_async(conn)).await?;
            for ((id, version), text) in stale.into_iter().zip(texts) {
                let Some(text) = text else { continue };
                match serde_json::from_str::<HostRecord>(&text) {
                    Ok(r) => {
                        self.records.insert(id.clone(), (*version, r));
                    }
                    Err(e) => {
                        tracing::warn!(host = %id, error = %e, "ignored a host record that cannot be read")
                    }
                }
            }
        }
        Ok(self.records.values().map(|(_, r)| r.clone()).collect())
    }
}

/// The host ids in the fleet's set, but this host's. A set key of the
/// wrong type reads as empty until the next heartbeat replaces it.
async fn members(conn: &mut MultiplexedConnection, keys: &Keys) -> redis::RedisResult<Vec<String>> {
    match within(redis::cmd("SMEMBERS").arg(&keys.hosts).query_async(conn)).await {
        Err(e) if e.code() == Some("WRONGTYPE") => Ok(Vec::new()),
        other => other,
    }
}

/// The ids of every host record in Redis, whether or not the set names it.
async fn scan_ids(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
) -> redis::RedisResult<Vec<String>> {
    let pattern = format!("{}*", glob_escape(&keys.host_prefix));
    let mut ids = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, found): (u64, Vec<String>) = within(
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(conn),
        )
        .await?;
        ids.extend(
            found
                .iter()
                .filter_map(|k| k.strip_prefix(&keys.host_prefix).map(str::to_string)),
        );
        if next == 0 {
            return Ok(ids);
        }
        cursor = next;
    }
}

/// `text` as a Redis glob that matches only itself.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `<host> <epoch>`, as the election stores it.
fn parse_leader(holder: &str) -> Option<Leader> {
    let (host, epoch) = holder.rsplit_once(' ')?;
    Some(Leader {
        host: host.to_string(),
        epoch: epoch.parse().ok()?,
    })
}

/// This machine's boot id (empty where the kernel does not say).
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Whether `other` (a record of this host's name) was left by a previous
/// run on this machine: same boot, and its process gone (or it is this
/// very process's pid, which a restarted container reuses). Anything else
/// is left to lapse.
fn is_previous_run(other: &HostRecord) -> bool {
    let boot = boot_id();
    if boot.is_empty() || other.boot_id != boot {
        return false;
    }
    if other.pid == std::process::id() {
        return true;
    }
    let Ok(pid) = i32::try_from(other.pid) else {
        return false;
    };
    matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// A random token that makes a host id unique to this run.
pub fn run_token() -> String {
    crate::protocol::random_id()[..8].to_string()
}

/// This host's name: the machine's, unless given; made safe for a key.
pub fn host_name(given: Option<&str>) -> String {
    let name = match given {
        Some(n) => n.to_string(),
        None => nix::unistd::gethostname()
            .ok()
            .and_then(|n| n.into_string().ok())
            .unwrap_or_else(|| "host".into()),
    };
    name.chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_values_parse() {
        assert_eq!(
            parse_leader("box-a:12 7"),
            Some(Leader {
                host: "box-a:12".into(),
                epoch: 7
            })
        );
        assert_eq!(parse_leader("nonsense"), None);
        assert_eq!(host_name(Some("a b\tc")), "a_b_c");
    }
}
