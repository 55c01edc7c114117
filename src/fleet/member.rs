//! The fleet task: this host's claim and heartbeat, the others' records,
//! the election, and the order to stop, turned into a [`FleetView`] for
//! the engine after every round.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::{oneshot, watch};

use super::record::{FleetView, HostRecord, Membership};
use super::scripts::{CLAIM, ELECT, RENEW, RESIGN};
use super::store::{
    connect, members, parse_leader, scan_ids, set_version, within, HostCache, Keys,
};
use super::JoinError;
use crate::cluster_map::{ClusterId, MapPrint};
use crate::engine::state::{ExitOrder, Snapshot};
use crate::fleet::slice::Ranges;
use mewld_core::fleet::{refusal, Refusal};

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

/// Everything the task needs to write this host's record.
pub(super) struct Member {
    pub(super) keys: Keys,
    pub(super) me: Membership,
    pub(super) map: MapPrint,
    pub(super) started_at: u64,
    pub(super) boot_id: String,
    pub(super) snapshot: watch::Receiver<Arc<Snapshot>>,
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
            pid: self.me.pid,
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
    pub(super) async fn claim(
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
            serde_json::from_str(&conflict).map_err(|e| Refusal::BadRecord(e.to_string()))?;
        Err(refusal(&self.me, &self.map, other).into())
    }

    pub(super) async fn run(
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

/// What the heartbeat keeps between rounds.
#[derive(Default)]
pub(super) struct Beat {
    /// The record as last written, and when it was last renewed.
    written: Option<String>,
    renewed_at: Option<Instant>,
    /// Bumped at each write of the record.
    version: u64,
    /// The highest leader epoch seen, this host's or in others' records.
    epoch_seen: u64,
    /// The order to stop that was in Redis when this host joined (its own
    /// previous run's, say): not for this run.
    pub(super) old_order: Option<String>,
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

/// This machine's boot id (empty where the kernel does not say).
pub(super) fn boot_id() -> String {
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
