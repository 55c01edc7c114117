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

use std::collections::BTreeMap;

use super::cluster::{Cluster, Role};
use super::{Command, Core, Timer};
use crate::actlog::LogEvent;
use crate::cluster_map::{self, ClusterId, ClusterSpec};
use crate::config::RollingMode;
use crate::model::state::ClusterState;
use crate::model::{GatewayBot, Refused};

/// A start-first reshard's new map, until it is committed or given up.
#[derive(Debug)]
pub(crate) struct Plan {
    pub new_count: u32,
    /// The changed clusters' new specs: their replacements run these.
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
            let Some(c) = self.clusters.iter().find(|c| c.spec.id == spec.id) else {
                plan.added.push(spec.id);
                self.clusters.push(Cluster::new(spec));
                continue;
            };
            if !Self::changes(self.config.reshard_all, c, &spec) || !c.is_alive() {
                continue;
            }
            if c.state != ClusterState::Running || c.second.is_some() {
                let error = format!(
                    "cluster {} is {}: a start_first reshard starts the new map beside \
                     running clusters only; try again once it runs",
                    c.spec.id,
                    c.state.as_str()
                );
                self.clusters.retain(|c| !plan.added.contains(&c.spec.id));
                return self.reshard_failed("cluster_map", error);
            }
            plan.specs.insert(spec.id, spec);
        }
        let order: Vec<ClusterId> = plan.specs.keys().chain(&plan.added).copied().collect();
        self.plan = Some(plan);
        self.begin_rolling(order, LogEvent::ReshardRestartsDone {});
    }

    /// The spec and shard count cluster `id`'s new process runs: the new
    /// map's while a start-first reshard plans one for it.
    pub(super) fn spec_for(&self, idx: usize) -> (&ClusterSpec, u32) {
        let c = &self.clusters[idx];
        let Some(plan) = &self.plan else {
            return (&c.spec, self.shard_count);
        };
        match plan.specs.get(&c.spec.id) {
            Some(spec) => (spec, plan.new_count),
            None if plan.added.contains(&c.spec.id) => (&c.spec, plan.new_count),
            None => (&c.spec, self.shard_count),
        }
    }

    /// A start-first reshard's turn for one of the new map's clusters:
    /// started as at launch. False if `id` is not one.
    pub(super) fn start_added(&mut self, idx: usize, step: u64) -> bool {
        let id = self.clusters[idx].spec.id;
        if !self.plan.as_ref().is_some_and(|p| p.added.contains(&id)) {
            return false;
        }
        self.spawn(idx, super::Purpose::Launch);
        let timeout = self.config.rolling_restart_timeout;
        self.set_timer(Timer::RollingTimeout(step), timeout);
        true
    }

    /// Every process of the new map is up: the old processes are stopped
    /// and the new map is the map.
    pub(super) fn commit_reshard(&mut self) {
        let Some(plan) = self.plan.take() else { return };
        let old_count = self.shard_count;
        self.shard_count = plan.new_count;
        let restarting: Vec<ClusterId> = plan.specs.keys().copied().collect();
        for (id, spec) in plan.specs {
            let Ok(idx) = self.index(id) else { continue };
            self.clusters[idx].spec = spec;
            self.replaced(idx);
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
        if let Some(rolling) = self.rolling.take() {
            for step in rolling.steps() {
                self.emit(Command::CancelTimer(Timer::RollingTimeout(step)));
                self.emit(Command::CancelTimer(Timer::RollingNext(step)));
            }
        }
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
