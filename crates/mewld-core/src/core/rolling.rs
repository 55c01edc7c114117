//! Restarting every cluster one at a time, and resharding, which is a
//! rolling restart of the clusters whose shards changed plus a launch of
//! the new ones (docs/protocol.md §5.1).

use super::cluster::Cluster;
use super::cluster::RestartCause;
use super::{Command, Core, Timer};
use crate::actlog::LogEvent;
use crate::cluster_map::{self, ClusterId};
use crate::model::GatewayBot;
use crate::model::Refused;
use crate::rolling::Rolling;

impl Core {
    pub(super) fn begin_rolling(&mut self, order: Vec<ClusterId>, done_event: LogEvent) {
        self.rolling = Some(Rolling::new(order, done_event));
        self.rolling_advance();
    }

    /// Restarts the rolling restart's next cluster, or ends it.
    pub(super) fn rolling_advance(&mut self) {
        loop {
            let Some(rolling) = self.rolling.as_mut() else {
                return;
            };
            let Some(id) = rolling.advance() else {
                let done = rolling.done_event.clone();
                let restarted_any = rolling.view().total > 0;
                self.rolling = None;
                self.log(done);
                self.resharding = false;
                if self.launcher.any_left(self.turns()) {
                    // A reshard added clusters: launch them; the launch
                    // announces the bot up when the last one is.
                    self.start_next();
                } else if restarted_any {
                    // Bots wait for this to know the whole bot is back.
                    self.announce_all_launched();
                }
                return;
            };
            let step = rolling.step;
            if self.is_remote(id) {
                // Another host's: its owner restarts it; wait for its
                // launch_next as for one of ours.
                if self.rolling_restart_remote(id) {
                    self.set_timer(
                        Timer::RollingTimeout(step),
                        self.config.rolling_restart_timeout,
                    );
                    return;
                }
                continue;
            }
            let Ok(idx) = self.index(id) else { continue };
            if !self.clusters[idx].is_up() {
                // Stopped (or being stopped) or failed since the restart
                // began: an operator's stop wins; leave it be.
                continue;
            }
            let cause = if self.resharding {
                RestartCause::Reshard
            } else {
                RestartCause::RollingRestart
            };
            self.stop(idx, Some(cause));
            self.set_timer(
                Timer::RollingTimeout(step),
                self.config.rolling_restart_timeout,
            );
            return;
        }
    }

    pub(super) fn on_rolling_timeout(&mut self, step: u64) {
        let Some(rolling) = &self.rolling else { return };
        if rolling.step != step {
            return;
        }
        if let Some(id) = rolling.current() {
            self.log(LogEvent::RollingRestartTimeout {
                id,
                waited_secs: self.config.rolling_restart_timeout.as_secs(),
            });
        }
        self.rolling_advance();
    }

    /// The rolling restart's current cluster cannot come back: move on.
    pub(super) fn rolling_target_failed(&mut self, id: ClusterId) {
        if let Some(rolling) = &self.rolling {
            if rolling.current() == Some(id) {
                self.emit(Command::CancelTimer(Timer::RollingTimeout(rolling.step)));
                self.rolling_advance();
            }
        }
    }

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
            Err(error) => {
                self.resharding = false;
                self.log(LogEvent::ReshardFailed {
                    subsystem: "discord",
                    error,
                });
                return;
            }
        };
        let new_count = self.config.fixed_shard_count.unwrap_or(gateway.shards);
        let map = cluster_map::build(new_count, self.config.per_cluster, &self.config.names);
        if map.len() < self.clusters.len() {
            self.resharding = false;
            self.log(LogEvent::ReshardFailed {
                subsystem: "cluster_map",
                error: format!(
                    "refusing to shrink from {} to {} clusters",
                    self.clusters.len(),
                    map.len()
                ),
            });
            return;
        }
        let old_count = self.shard_count;
        let mut restart = Vec::new();
        for spec in map {
            match self.clusters.iter_mut().find(|c| c.spec.id == spec.id) {
                Some(c) => {
                    if (c.spec.shards != spec.shards || self.config.reshard_all) && c.is_alive() {
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
}
