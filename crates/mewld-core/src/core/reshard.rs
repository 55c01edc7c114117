//! Resharding (docs/protocol.md §6): ask Discord again and rebuild the map.
//!
//! Stop-first (the original's), the live clusters whose shards changed are
//! restarted in a rolling walk on the new map, then the new clusters are
//! launched. Start-first (§6.1), the new map is started beside the old
//! one: each changed cluster's replacement (on its new shards) and each new
//! cluster start in a walk, and a replacement that says `launch_next` is
//! held ([`Role::Ready`]) while the old process keeps its shards. Once every
//! one of them is up, the new map is committed: the old processes are
//! stopped, the shard count and the shard lists change. If any fails, every
//! new process is stopped, the new clusters leave the map once they have
//! exited, and the old map runs on (`reshard_aborted`).
//!
//! Until the commit, a cluster's own process runs the old map and only its
//! second process (or a new cluster's) runs the new one, so an abort that
//! stops the second processes and the new clusters leaves no process of
//! the new map: whatever would break that (the old process exiting during
//! its overlap, an operator's stop or restart of a cluster the reshard
//! changes, a changed cluster not running at its turn) aborts the reshard
//! first, and an operator's start of such a cluster is refused.

use std::collections::BTreeMap;

use super::cluster::{Cluster, RestartCause, Role};
use super::{Command, Core, Timer};
use crate::actlog::LogEvent;
use crate::cluster_map::{self, ClusterId, ClusterSpec};
use crate::config::RollingMode;
use crate::model::state::ClusterState;
use crate::model::{GatewayBot, Operation, Refused};

/// A start-first reshard's new map, until it is committed or given up.
#[derive(Debug)]
pub(crate) struct Plan {
    pub new_count: u32,
    /// The changed clusters' new specs: their replacements run these, and
    /// a changed cluster left stopped or failed takes its new spec at the
    /// commit (its turn is skipped).
    pub specs: BTreeMap<ClusterId, ClusterSpec>,
    /// The clusters only the new map has (already in `Core::clusters`).
    pub added: Vec<ClusterId>,
}

impl Core {
    /// `reshard`: ask Discord again; the map is rebuilt when it answers.
    pub(super) fn reshard(&mut self) -> Result<(), Refused> {
        if !self.config.feature_enabled("reshard") {
            return Err(Refused::ReshardDisabled);
        }
        if self.fleet.is_some() {
            return Err(Refused::NotInFleet("resharding".into()));
        }
        self.may_restart_all()?;
        self.resharding = true;
        self.log(LogEvent::ReshardBegin {
            subsystem: "reshard",
            shards: self.shard_count,
        });
        self.emit(Command::FetchGateway);
        Ok(())
    }

    pub(super) fn on_gateway_fetched(&mut self, result: Result<GatewayBot, String>) {
        if self.exiting.is_some() || !self.resharding {
            return;
        }
        let gateway = match result {
            Ok(g) => g,
            Err(error) => return self.reshard_failed("discord", error),
        };
        let new_count = self.config.fixed_shard_count.unwrap_or(gateway.shards);
        let map = cluster_map::build(new_count, self.config.per_cluster, &self.config.names);
        if map.len() < self.clusters.len() {
            let error = format!(
                "refusing to shrink from {} to {} clusters",
                self.clusters.len(),
                map.len()
            );
            return self.reshard_failed("cluster_map", error);
        }
        if self.config.rolling_restart_mode == RollingMode::StartFirst {
            return self.plan_reshard(new_count, map);
        }
        let old_count = self.shard_count;
        let all = self.config.reshard_all;
        let mut restart = Vec::new();
        for spec in map {
            match self.clusters.iter_mut().find(|c| c.spec.id == spec.id) {
                Some(c) => {
                    if Self::changes(all, c, &spec) && c.is_alive() {
                        restart.push(spec.id);
                    }
                    c.spec = spec;
                }
                None => self.clusters.push(Cluster::new(spec)),
            }
        }
        self.shard_count = new_count;
        if self.launcher.any_left(self.turns()) {
            // all_clusters_launched is announced again once the new ones are up.
            self.launcher.set_fully_up(false);
        }
        self.log(LogEvent::ReshardSuccess {
            subsystem: "cluster_map",
            old_shards: old_count,
            new_shards: new_count,
            clusters: self.clusters.len(),
            restarting: restart.clone(),
        });
        self.begin_rolling(restart, LogEvent::ReshardRestartsDone {});
    }

    fn reshard_failed(&mut self, subsystem: &'static str, error: String) {
        self.resharding = false;
        self.log(LogEvent::ReshardFailed { subsystem, error });
    }

    /// Whether cluster `c` is restarted for the new map's `spec`.
    fn changes(reshard_all: bool, c: &Cluster, spec: &ClusterSpec) -> bool {
        c.spec.shards != spec.shards || reshard_all
    }

    /// Start-first: the new map's processes start beside the old map's,
    /// in a walk (`rolling_restart_parallel` at a time); nothing of the
    /// old map changes until every one of them is up.
    fn plan_reshard(&mut self, new_count: u32, map: Vec<ClusterSpec>) {
        let mut plan = Plan {
            new_count,
            specs: BTreeMap::new(),
            added: Vec::new(),
        };
        for spec in map {
            let Ok(idx) = self.index(spec.id) else {
                plan.added.push(spec.id);
                self.clusters.push(Cluster::new(spec));
                continue;
            };
            let c = &self.clusters[idx];
            if !Self::changes(self.config.reshard_all, c, &spec) {
                continue;
            }
            if !self.may_replace(idx) && !at_rest(c) {
                let error = not_replaceable(c);
                self.clusters.retain(|c| !plan.added.contains(&c.spec.id));
                return self.reshard_failed("cluster_map", error);
            }
            plan.specs.insert(spec.id, spec);
        }
        let order: Vec<ClusterId> = plan.specs.keys().chain(&plan.added).copied().collect();
        self.plan = Some(plan);
        self.begin_rolling(order, LogEvent::ReshardRestartsDone {});
    }

    /// The spec and shard count a new process of cluster `idx` runs: the
    /// map's, except while a start-first reshard is planned, when a second
    /// process of a changed cluster (`second`) and a new cluster's process
    /// run the new map's.
    pub(super) fn spec_for(&self, idx: usize, second: bool) -> (&ClusterSpec, u32) {
        let c = &self.clusters[idx];
        let Some(plan) = &self.plan else {
            return (&c.spec, self.shard_count);
        };
        match plan.specs.get(&c.spec.id) {
            Some(spec) if second => (spec, plan.new_count),
            None if plan.added.contains(&c.spec.id) => (&c.spec, plan.new_count),
            _ => (&c.spec, self.shard_count),
        }
    }

    /// A start-first reshard's turn of cluster `idx` (step `step`): a new
    /// cluster is started as at launch, a changed one that runs gets its
    /// replacement, one left stopped or failed is skipped (false), and
    /// any other state aborts the reshard. `None` without a planned reshard.
    pub(super) fn reshard_turn(&mut self, idx: usize, step: u64) -> Option<bool> {
        let plan = self.plan.as_ref()?;
        let id = self.clusters[idx].spec.id;
        if plan.added.contains(&id) {
            self.spawn(idx, super::Purpose::Launch);
            let timeout = self.config.rolling_restart_timeout;
            self.set_timer(Timer::RollingTimeout(step), timeout);
            return Some(true);
        }
        if self.may_replace(idx) {
            self.replace(idx, RestartCause::Reshard);
            return Some(true);
        }
        let c = &self.clusters[idx];
        if at_rest(c) {
            return Some(false);
        }
        let reason = not_replaceable(c);
        self.abort_reshard(id, reason, None);
        Some(true)
    }

    /// An operator's `op` during a start-first reshard, on a cluster the
    /// reshard starts or changes. A start of a new cluster, or of a changed
    /// one left stopped or failed, is refused: it would run a map that is
    /// not (yet) the map. A stop or a restart of a new cluster, or of a
    /// changed one whose new process is under way, aborts the reshard
    /// first, then is done on the old map. `Some` if that is all.
    pub(super) fn reshard_claims(&mut self, op: Operation) -> Option<Result<(), Refused>> {
        let (plan, id) = (self.plan.as_ref()?, op.cluster()?);
        let added = plan.added.contains(&id);
        if !added && !plan.specs.contains_key(&id) {
            return None;
        }
        let idx = self.index(id).ok()?;
        let (c, label) = (&self.clusters[idx], self.label(idx));
        match op {
            Operation::Start(_) if added || at_rest(c) => Some(Err(Refused::InReshard(label))),
            Operation::Stop(_) | Operation::Restart(_) if added || c.replacement().is_some() => {
                let reason = format!("an operator's {} of cluster {id}", op.name());
                self.abort_reshard(id, reason, None);
                // The abort stops a new cluster, which leaves the map.
                match (added, op) {
                    (false, _) => None,
                    (true, Operation::Stop(_)) => Some(Ok(())),
                    (true, _) => Some(Err(Refused::LeftTheMap(label))),
                }
            }
            _ => None,
        }
    }

    /// Every process of the new map is up: the old processes are stopped
    /// and the new map is the map.
    pub(super) fn commit_reshard(&mut self) {
        let Some(plan) = self.plan.take() else { return };
        let old_count = self.shard_count;
        self.shard_count = plan.new_count;
        let mut restarting = Vec::new();
        for (id, spec) in plan.specs {
            let Ok(idx) = self.index(id) else { continue };
            self.clusters[idx].spec = spec;
            // A cluster left stopped or failed has no new process: it
            // starts on its new shards when it is next started.
            if self.clusters[idx].replacement().is_some() {
                restarting.push(id);
                self.replaced(idx);
            }
        }
        self.log(LogEvent::ReshardSuccess {
            subsystem: "cluster_map",
            old_shards: old_count,
            new_shards: plan.new_count,
            clusters: self.clusters.len(),
            restarting,
        });
    }

    /// A process of the new map failed: every one of them is stopped, the
    /// new clusters leave the map once they have exited, and the old map
    /// runs on as it was.
    pub(super) fn abort_reshard(&mut self, id: ClusterId, reason: String, pid: Option<u32>) {
        let Some(plan) = self.plan.take() else { return };
        self.log(LogEvent::ReshardAborted {
            id,
            reason,
            pid,
            output: Vec::new(),
        });
        self.end_rolling();
        self.resharding = false;
        for idx in 0..self.clusters.len() {
            self.abandon_replacement(idx);
        }
        for added in plan.added {
            let Ok(idx) = self.index(added) else { continue };
            if self.clusters[idx].is_alive() {
                self.stop(idx, None);
                self.leaving.insert(added);
            } else {
                self.clusters.remove(idx);
            }
        }
    }

    /// Cluster `idx`, stopped, left the map (an aborted reshard's): its
    /// record goes. True if it did.
    pub(super) fn left_the_map(&mut self, idx: usize) -> bool {
        let id = self.clusters[idx].spec.id;
        if self.clusters[idx].is_alive() || !self.leaving.remove(&id) {
            return false;
        }
        self.clusters.remove(idx);
        true
    }

    /// A start-first reshard holds a replacement that said `launch_next`
    /// until the whole new map is up.
    pub(super) fn hold_ready(&mut self, idx: usize) {
        let c = &mut self.clusters[idx];
        let id = c.spec.id;
        let Some(second) = c.second.as_mut() else {
            return;
        };
        let Role::Replacement(cause) = second.role else {
            return;
        };
        second.role = Role::Ready(cause);
        let generation = second.generation;
        self.emit(Command::CancelTimer(Timer::Replacement { id, generation }));
        self.log(LogEvent::ClusterLaunched { id });
        self.rolling_came_back(id);
    }
}

/// Stopped or failed: no process, and none started until an operator
/// starts it.
fn at_rest(c: &Cluster) -> bool {
    matches!(c.state, ClusterState::Stopped | ClusterState::Failed) && !c.is_alive()
}

fn not_replaceable(c: &Cluster) -> String {
    format!(
        "cluster {} is {}: a start_first reshard starts the new map beside running \
         clusters only; try again once it runs",
        c.spec.id,
        c.state.as_str()
    )
}
