//! The fleet task: this host's claim and heartbeat, the others' records,
//! the election, and the order to stop, turned into a [`FleetView`] for
//! the engine after every round.

use std::sync::Arc;
use std::time::Instant;

use redis::aio::MultiplexedConnection;
use tokio::sync::{oneshot, watch};

use mewld_core::cluster_map::{ClusterId, MapPrint};
use mewld_core::fleet::heartbeat::{
    is_previous_run, lease_until, Heartbeat, RecordBase, ThisRun, EXIT_ORDER_TTL, HOST_TTL, LEASE,
    READ_INTERVAL,
};
use mewld_core::fleet::slice::Ranges;
use mewld_core::fleet::{refusal, FleetView, HostRecord, Membership, Refusal};
use mewld_core::model::state::{ExitOrder, Snapshot};

use super::scripts::{CLAIM, ELECT, RENEW, RESIGN};
use super::store::{members, parse_leader, scan_ids, set_version, HostCache};
use super::JoinError;
use crate::redis_link::{within, Keys, Link};

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
        let base = RecordBase {
            me: &self.me,
            map: &self.map,
            version: env!("CARGO_PKG_VERSION"),
            started_at: self.started_at,
            boot_id: &self.boot_id,
        };
        base.record(epoch_seen, &self.snapshot.borrow().clusters)
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
        let this = ThisRun {
            boot_id: &self.boot_id,
            pid: std::process::id(),
        };
        for other in others {
            if other.name == self.me.name && is_previous_run(&other, &this, pid_gone) {
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
        mut link: Link,
        mut beat: Beat,
        view: watch::Sender<Option<FleetView>>,
        mut leave: oneshot::Receiver<oneshot::Sender<()>>,
    ) {
        let mut tick = tokio::time::interval(READ_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                done = &mut leave => {
                    if let (Some(c), Ok(done)) = (link.connected(), done) {
                        self.resign(c).await;
                        let _ = done.send(());
                    }
                    return;
                }
                _ = tick.tick() => {}
            }
            let Ok(c) = link.conn().await else {
                beat.rules.stalled();
                continue;
            };
            match self.heartbeat(c, &mut beat).await {
                Ok(fresh) => {
                    view.send_replace(Some(fresh));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fleet heartbeat failed; retrying");
                    beat.rules.stalled();
                    link.reset();
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

    /// Renews the record when the rules say so (claiming again if it
    /// lapsed), reads the others', and takes part in the election; or
    /// says why this host may not run its clusters any more.
    async fn heartbeat(
        &self,
        conn: &mut MultiplexedConnection,
        beat: &mut Beat,
    ) -> redis::RedisResult<FleetView> {
        let sent_at = Instant::now();
        let record =
            serde_json::to_string(&self.record(beat.rules.epoch_seen())).unwrap_or_default();
        if let Some(renewal) = beat.rules.renewal(&record, sent_at) {
            let (renewed, repaired, added): (i64, i64, i64) = within(
                redis::Script::new(RENEW)
                    .key(&self.keys.hosts)
                    .key(self.keys.host(&self.me.id))
                    .key(self.keys.version(&self.me.id))
                    .arg(&self.me.id)
                    .arg(renewal.record.as_deref().unwrap_or(""))
                    .arg(HOST_TTL.as_millis() as u64)
                    .arg(renewal.version)
                    .invoke_async(conn),
            )
            .await?;
            if repaired == 1 {
                tracing::warn!(key = %self.keys.hosts, "the fleet's host set was not a set; replaced it");
            }
            if added == 1 {
                tracing::warn!(key = %self.keys.hosts, "this host was missing from the fleet's host set (deleted or evicted?); added it back");
            }
            beat.rules.renewed(record, sent_at);
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
        match self.claim(conn, beat.rules.epoch_seen()).await {
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
        let version = beat.rules.reclaimed();
        let key = self.keys.version(&self.me.id);
        let ttl = HOST_TTL.as_millis() as u64;
        let _: () = within(set_version(&key, version, ttl).query_async(conn)).await?;
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
        let hosts = beat.rules.through_stall(hosts, sent_at);
        let seen = beat.rules.epoch_to_beat(&hosts);
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
        beat.rules.elected(leader.as_ref(), seen);
        let exit_order = self.exit_order(conn, &mut beat.rules).await?;
        Ok(FleetView {
            hosts,
            lease_until: lease_until(leader.as_ref(), &self.me.id, sent_at),
            leader,
            exit_order,
            ..self.view()
        })
    }

    /// Keeps this host's order to stop in Redis, once it gave one; reads
    /// an order this host may have missed (one given since it joined).
    async fn exit_order(
        &self,
        conn: &mut MultiplexedConnection,
        rules: &mut Heartbeat,
    ) -> redis::RedisResult<Option<ExitOrder>> {
        let own = self
            .snapshot
            .borrow()
            .fleet
            .as_ref()
            .and_then(|f| f.exit_order);
        if let Some(order) = rules.order_to_write(own) {
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
            rules.order_written();
            return Ok(None);
        }
        let text: Option<String> =
            match within(redis::cmd("GET").arg(&self.keys.exit).query_async(conn)).await {
                Err(e) if e.code() == Some("WRONGTYPE") => None,
                other => other?,
            };
        rules.order_read(text).or_else(|error| {
            tracing::warn!(key = %self.keys.exit, %error, "ignored an order to stop that cannot be read");
            Ok(None)
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

/// What the task keeps between rounds: the heartbeat's rules and the
/// other hosts' records as last fetched.
pub(super) struct Beat {
    pub(super) rules: Heartbeat,
    others: HostCache,
}

impl Beat {
    /// For a host that joined while `old_order` stood in Redis.
    pub(super) fn new(old_order: Option<String>) -> Beat {
        Beat {
            rules: Heartbeat::new(old_order),
            others: HostCache::default(),
        }
    }
}

/// This machine's boot id (empty where the kernel does not say).
pub(super) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Whether no process has the pid `pid` (a record's, on this machine).
fn pid_gone(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}
