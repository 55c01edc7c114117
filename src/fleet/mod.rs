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

use crate::cluster_map::ClusterId;
use crate::engine::actlog::unix_secs;
use crate::engine::state::Snapshot;
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
/// Each Redis round trip gets this long.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Atomically: unless a live record claims one of `owned`, register ours.
/// Returns the conflicting record, or nil. Records that lapsed are
/// dropped from the set on the way.
const CLAIM: &str = r"
local mine = {}
for _, id in ipairs(cjson.decode(ARGV[4])) do mine[id] = true end
for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if h ~= ARGV[1] then
    local rec = redis.call('GET', ARGV[5] .. h)
    if not rec then
      redis.call('SREM', KEYS[1], h)
    else
      -- A record that cannot be read claims nothing (the hosts skip it too).
      local ok, decoded = pcall(cjson.decode, rec)
      if ok and type(decoded) == 'table' and type(decoded.owned) == 'table' then
        for _, id in ipairs(decoded.owned) do
          if mine[id] then return rec end
        end
      end
    end
  end
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SET', ARGV[5] .. ARGV[1], ARGV[2], 'PX', ARGV[3])
return false
";

/// The election: take the lease if nobody holds it (with the next fencing
/// token), renew it if we do. Returns the holder as `<host> <epoch>`.
const ELECT: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then
  cur = ARGV[1] .. ' ' .. redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], cur, 'PX', ARGV[2])
elseif string.sub(cur, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return cur
";

/// Gives the lease up, if it is still ours.
const RESIGN: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
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
}

impl Keys {
    fn new(channel: &str) -> Keys {
        Keys {
            hosts: format!("{channel}/fleet/hosts"),
            host_prefix: format!("{channel}/fleet/host/"),
            version_prefix: format!("{channel}/fleet/version/"),
            leader: format!("{channel}/fleet/leader"),
            epoch: format!("{channel}/fleet/epoch"),
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
        "host {host} runs a different cluster map ({their_shards} shards in {their_clusters} \
         clusters; this config makes {our_shards} in {our_clusters}): every host must load \
         the same config (shard count, per_cluster)"
    )]
    DifferentMap {
        host: String,
        their_shards: u32,
        their_clusters: u32,
        our_shards: u32,
        our_clusters: u32,
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
    shard_count: u32,
    cluster_count: u32,
    started_at: u64,
    boot_id: String,
    snapshot: watch::Receiver<Arc<Snapshot>>,
}

/// Joins the fleet on `url`: refuses (with the reason) if a live host
/// claims one of our clusters or runs another map; if Redis cannot be
/// reached, goes on and keeps trying in the background (the engine holds
/// the launch until the first view).
pub async fn join(
    url: &str,
    channel: &str,
    me: Membership,
    shard_count: u32,
    cluster_count: u32,
    snapshot: watch::Receiver<Arc<Snapshot>>,
) -> Result<Fleet, JoinError> {
    let client = redis::Client::open(url)?;
    let member = Member {
        keys: Keys::new(channel),
        me,
        shard_count,
        cluster_count,
        started_at: unix_secs(std::time::SystemTime::now()),
        boot_id: boot_id(),
        snapshot,
    };
    let mut conn = None;
    match connect(&client).await {
        Ok(mut c) => {
            member.claim(&mut c).await?;
            conn = Some(c);
        }
        Err(e) => tracing::warn!(error = %e, "cannot reach Redis to join the fleet; retrying"),
    }
    let (view_tx, view) = watch::channel(None);
    let (leave, leave_rx) = oneshot::channel();
    tokio::spawn(member.run(client, conn, view_tx, leave_rx));
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
    fn record(&self) -> HostRecord {
        let snapshot = self.snapshot.borrow().clone();
        HostRecord {
            id: self.me.id.clone(),
            name: self.me.name.clone(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            owned: self.me.owned.clone(),
            shard_count: self.shard_count,
            cluster_count: self.cluster_count,
            started_at: self.started_at,
            boot_id: self.boot_id.clone(),
            clusters: snapshot
                .clusters
                .iter()
                .filter(|c| self.me.owned.contains(&c.id))
                .cloned()
                .collect(),
        }
    }

    /// Registers this host, after dropping what a previous run of it left
    /// (a manager killed on this machine leaves its record for a TTL).
    async fn claim(&self, conn: &mut MultiplexedConnection) -> Result<(), JoinError> {
        let others = HostCache::default()
            .refresh(conn, &self.keys, Some(&self.me.id))
            .await?;
        for other in others {
            if other.shard_count != self.shard_count || other.cluster_count != self.cluster_count {
                return Err(JoinError::DifferentMap {
                    host: other.id,
                    their_shards: other.shard_count,
                    their_clusters: other.cluster_count,
                    our_shards: self.shard_count,
                    our_clusters: self.cluster_count,
                });
            }
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
        let record = serde_json::to_string(&self.record()).unwrap_or_default();
        let conflict: Option<String> = within(
            redis::Script::new(CLAIM)
                .key(&self.keys.hosts)
                .arg(&self.me.id)
                .arg(record)
                .arg(HOST_TTL.as_millis() as u64)
                .arg(serde_json::to_string(&owned).unwrap_or_default())
                .arg(&self.keys.host_prefix)
                .invoke_async(conn),
        )
        .await?;
        let Some(conflict) = conflict else {
            tracing::info!(host = %self.me.id, clusters = %Ranges(&self.me.owned), "joined the fleet");
            return Ok(());
        };
        let other: HostRecord =
            serde_json::from_str(&conflict).map_err(|e| JoinError::BadRecord(e.to_string()))?;
        let overlap: BTreeSet<ClusterId> =
            other.owned.intersection(&self.me.owned).copied().collect();
        Err(JoinError::Claimed {
            overlap: Ranges(&overlap).to_string(),
            host: other.id,
            pid: other.pid,
        })
    }

    async fn run(
        self,
        client: redis::Client,
        mut conn: Option<MultiplexedConnection>,
        view: watch::Sender<Option<FleetView>>,
        mut leave: oneshot::Receiver<oneshot::Sender<()>>,
    ) {
        let mut tick = tokio::time::interval(READ_INTERVAL);
        let mut state = Beat::default();
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
            let Some(c) = conn.as_mut() else { continue };
            match self.heartbeat(c, &mut state).await {
                Ok(fresh) => {
                    view.send_replace(Some(fresh));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fleet heartbeat failed; retrying");
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
        let record = serde_json::to_string(&self.record()).unwrap_or_default();
        let changed = beat.written.as_ref() != Some(&record);
        let due = beat
            .renewed_at
            .is_none_or(|at| sent_at.duration_since(at) >= HEARTBEAT);
        if changed || due {
            let (host, version) = (self.keys.host(&self.me.id), self.keys.version(&self.me.id));
            let ttl = HOST_TTL.as_millis() as u64;
            let renewed = if changed {
                beat.version += 1;
                let (set, _): (Option<String>, ()) = within(
                    redis::pipe()
                        .cmd("SET")
                        .arg(&host)
                        .arg(&record)
                        .arg("PX")
                        .arg(ttl)
                        .arg("XX")
                        .add_command(set_version(&version, beat.version, ttl))
                        .query_async(conn),
                )
                .await?;
                set.is_some()
            } else {
                let (kept, _): (bool, bool) = within(
                    redis::pipe()
                        .pexpire(&host, ttl as i64)
                        .pexpire(&version, ttl as i64)
                        .query_async(conn),
                )
                .await?;
                kept
            };
            beat.written = Some(record);
            beat.renewed_at = Some(sent_at);
            // Our record lapsed (Redis was away, or this host was paused):
            // claim the clusters again.
            if !renewed {
                match self.claim(conn).await {
                    Ok(()) => {}
                    Err(JoinError::Redis(e)) => return Err(e),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot join the fleet again");
                        return Ok(FleetView {
                            displaced: Some(e.to_string()),
                            ..FleetView::default()
                        });
                    }
                }
                beat.version += 1;
                let _: () =
                    within(set_version(&version, beat.version, ttl).query_async(conn)).await?;
            }
        }
        self.read_and_elect(conn, sent_at, &mut beat.others).await
    }

    /// Reads the other hosts' records and renews or takes the lease.
    async fn read_and_elect(
        &self,
        conn: &mut MultiplexedConnection,
        sent_at: Instant,
        others: &mut HostCache,
    ) -> redis::RedisResult<FleetView> {
        let hosts = others.refresh(conn, &self.keys, Some(&self.me.id)).await?;
        let holder: String = within(
            redis::Script::new(ELECT)
                .key(&self.keys.leader)
                .key(&self.keys.epoch)
                .arg(&self.me.id)
                .arg(LEASE.as_millis() as u64)
                .invoke_async(conn),
        )
        .await?;
        let leader = parse_leader(&holder);
        let lease_until = leader
            .as_ref()
            .filter(|l| l.host == self.me.id)
            .map(|_| sent_at + LEASE - LEASE_MARGIN);
        Ok(FleetView {
            hosts,
            leader,
            lease_until,
            displaced: None,
        })
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
    /// The other hosts' records as last fetched.
    others: HostCache,
}

/// The hosts' records as last fetched, with their versions: a refresh
/// reads every version (a few bytes each) and fetches only the records
/// whose version moved, so a fleet of big hosts costs little to watch.
#[derive(Default)]
struct HostCache {
    records: HashMap<String, (u64, HostRecord)>,
}

impl HostCache {
    /// Every live host's record (but `except`'s). A record that cannot be
    /// read is skipped, with a warning.
    async fn refresh(
        &mut self,
        conn: &mut MultiplexedConnection,
        keys: &Keys,
        except: Option<&str>,
    ) -> redis::RedisResult<Vec<HostRecord>> {
        let ids: Vec<String> =
            within(redis::cmd("SMEMBERS").arg(&keys.hosts).query_async(conn)).await?;
        let ids: Vec<String> = ids
            .into_iter()
            .filter(|id| Some(id.as_str()) != except)
            .collect();
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
