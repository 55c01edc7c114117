//! The fleet task: this host's claim and heartbeat, the others' records,
//! the election, and the order to stop, turned into a [`FleetView`] for
//! the engine after every round. What each round decides is the core's
//! heartbeat rules ([`Heartbeat`]); where it reads and writes is the
//! store's ([`FleetStore`]).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{oneshot, watch};

use mewld_core::cluster_map::MapPrint;
use mewld_core::fleet::heartbeat::{
    is_previous_run, lease_until, Heartbeat, RecordBase, ThisRun, READ_INTERVAL,
};
use mewld_core::fleet::slice::Ranges;
use mewld_core::fleet::{refusal, FleetView, HostRecord, Membership, Refusal};
use mewld_core::model::state::{ExitOrder, Snapshot};

use super::store::{Claim, FleetStore};
use super::JoinError;

/// Everything the task needs to write this host's record.
pub(super) struct Member {
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
        store: &mut impl FleetStore,
        epoch_seen: u64,
    ) -> Result<(), JoinError> {
        let (others, records) = store.everyone_else(&self.me.id).await?;
        let this = ThisRun {
            boot_id: &self.boot_id,
            pid: std::process::id(),
        };
        for other in records {
            if other.name == self.me.name && is_previous_run(&other, &this, pid_gone) {
                tracing::info!(host = %other.id, "dropping the record of this host's previous run");
                store.drop_host(&other.id).await?;
            }
        }
        let claim = Claim {
            me: &self.me,
            map: &self.map,
            record: serde_json::to_string(&self.record(epoch_seen)).unwrap_or_default(),
            others,
        };
        let Some(conflict) = store.claim(&claim).await? else {
            tracing::info!(host = %self.me.id, clusters = %Ranges(&self.me.owned), "claimed the clusters in Redis");
            return Ok(());
        };
        let other: HostRecord =
            serde_json::from_str(&conflict).map_err(|e| Refusal::BadRecord(e.to_string()))?;
        Err(refusal(&self.me, &self.map, other).into())
    }

    pub(super) async fn run(
        self,
        mut store: impl FleetStore,
        mut rules: Heartbeat,
        view: watch::Sender<Option<FleetView>>,
        mut leave: oneshot::Receiver<oneshot::Sender<()>>,
    ) {
        let mut tick = tokio::time::interval(READ_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                done = &mut leave => {
                    if let (true, Ok(done)) = (store.reachable(), done) {
                        // A leader that stopped before its next round
                        // still leaves its order for hosts (and consoles)
                        // that missed the message.
                        if let Err(e) = self.keep_order(&mut store, &mut rules).await {
                            tracing::warn!(error = %e, "could not write the order to stop");
                        }
                        self.resign(&mut store).await;
                        let _ = done.send(());
                    }
                    return;
                }
                _ = tick.tick() => {}
            }
            if store.reach().await.is_err() {
                rules.stalled();
                continue;
            }
            match self.heartbeat(&mut store, &mut rules, Instant::now()).await {
                Ok(fresh) => {
                    view.send_replace(Some(fresh));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fleet heartbeat failed; retrying");
                    rules.stalled();
                    store.reset();
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

    /// One round at `now`: renews the record when the rules say so
    /// (claiming again if it lapsed), reads the others', and takes part in
    /// the election; or says why this host may not run its clusters any
    /// more.
    pub(super) async fn heartbeat(
        &self,
        store: &mut impl FleetStore,
        rules: &mut Heartbeat,
        now: Instant,
    ) -> redis::RedisResult<FleetView> {
        let record = serde_json::to_string(&self.record(rules.epoch_seen())).unwrap_or_default();
        if let Some(renewal) = rules.renewal(&record, now) {
            let renewed = store.renew(&self.me.id, &renewal).await?;
            rules.renewed(record, now);
            // Our record lapsed (Redis was away, or this host was paused):
            // claim the clusters again.
            if !renewed {
                if let Some(displaced) = self.claim_again(store, rules, now).await? {
                    return Ok(displaced);
                }
            }
        }
        if self.me.solo {
            return Ok(self.view());
        }
        self.read_and_elect(store, rules, now).await
    }

    /// Claims the clusters again after the record lapsed: `Some` view if
    /// another manager has claimed them since.
    async fn claim_again(
        &self,
        store: &mut impl FleetStore,
        rules: &mut Heartbeat,
        now: Instant,
    ) -> redis::RedisResult<Option<FleetView>> {
        match self.claim(store, rules.epoch_seen()).await {
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
        store.set_version(&self.me.id, rules.reclaimed(now)).await?;
        Ok(None)
    }

    /// A view with nothing known yet but who this host is.
    fn view(&self) -> FleetView {
        FleetView {
            me: self.me.name.clone(),
            ..FleetView::default()
        }
    }

    /// Reads the other hosts' records and renews or takes the lease (or,
    /// for a while after this host's record lapsed, only reads who leads).
    async fn read_and_elect(
        &self,
        store: &mut impl FleetStore,
        rules: &mut Heartbeat,
        asked_at: Instant,
    ) -> redis::RedisResult<FleetView> {
        let hosts = store.others(&self.me.id).await?;
        let hosts = rules.through_stall(hosts, asked_at);
        let seen = rules.epoch_to_beat(&hosts);
        let leader = if rules.may_elect(asked_at) {
            store.elect(&self.me.id, seen).await?
        } else {
            store.leader().await?
        };
        rules.elected(leader.as_ref(), seen);
        let exit_order = self.exit_order(store, rules).await?;
        Ok(FleetView {
            hosts,
            lease_until: lease_until(leader.as_ref(), &self.me.id, asked_at),
            leader,
            exit_order,
            ..self.view()
        })
    }

    /// Keeps this host's order to stop in the store, once it gave one;
    /// reads an order this host may have missed (one given since it
    /// joined).
    async fn exit_order(
        &self,
        store: &mut impl FleetStore,
        rules: &mut Heartbeat,
    ) -> redis::RedisResult<Option<ExitOrder>> {
        if self.keep_order(store, rules).await? {
            return Ok(None);
        }
        let text = store.read_exit_order().await?;
        Ok(rules.order_read(text).unwrap_or_else(|error| {
            tracing::warn!(%error, "ignored an order to stop that cannot be read");
            None
        }))
    }

    /// Writes this host's order to stop, if it gave one that is not in
    /// Redis yet; true if it did.
    async fn keep_order(
        &self,
        store: &mut impl FleetStore,
        rules: &mut Heartbeat,
    ) -> redis::RedisResult<bool> {
        let own = self
            .snapshot
            .borrow()
            .fleet
            .as_ref()
            .and_then(|f| f.exit_order);
        let Some(order) = rules.order_to_write(own) else {
            return Ok(false);
        };
        let text = serde_json::to_string(&order).unwrap_or_default();
        store.write_exit_order(&text).await?;
        rules.order_written();
        Ok(true)
    }

    async fn resign(&self, store: &mut impl FleetStore) {
        match store.resign(&self.me.id).await {
            Ok(()) => tracing::info!(host = %self.me.id, "left the fleet"),
            Err(e) => {
                tracing::warn!(error = %e, "could not leave the fleet cleanly; the record lapses in {:?}", mewld_core::fleet::heartbeat::HOST_TTL)
            }
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

#[cfg(test)]
mod tests;
