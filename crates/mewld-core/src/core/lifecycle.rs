//! A cluster's life: the launch, spawning, stopping, exits and crash
//! restarts (docs/protocol.md §6).

use std::time::Duration;

use super::cluster::{RestartCause, Role};
use super::{Command, Core, Now, Purpose, Timer};
use crate::actlog::{ExitFields, LogEvent, RestartVia, StartVia};
use crate::cluster_map::ClusterId;
use crate::model::state::ClusterState;
use crate::model::Refused;
use crate::model::{ExitInfo, RestartReason, SpawnError};
use crate::protocol;
use crate::restart::{self, Verdict};

impl Core {
    /// Starts the launch's next clusters (as many as the launch policy
    /// allows now), or announces that all are up.
    pub(super) fn start_next(&mut self) {
        if self.exiting.is_some() || self.rolling.is_some() || !self.launcher.begun() {
            return;
        }
        loop {
            let window = self.launcher.window(self.turns());
            // Another host's cluster is waited for, but not for ever.
            for id in window.remote {
                if self.launcher.await_remote(id) {
                    self.set_timer(Timer::RemoteLaunch(id), self.config.launch_timeout);
                }
            }
            let Some(idx) = window.start else {
                if window.empty && !self.launcher.fully_up() {
                    self.announce_all_launched();
                }
                return;
            };
            self.launcher.started(self.clusters[idx].spec.id);
            self.spawn(idx, Purpose::Launch);
        }
    }

    pub(super) fn on_launch_next(&mut self, id: ClusterId) {
        if self.is_remote(id) {
            return self.on_remote_launch_next(id);
        }
        let Ok(idx) = self.index(id) else {
            tracing::warn!(id, "launch_next from an unknown cluster; ignored");
            return;
        };
        if let Some(second) = self.clusters[idx].replacement() {
            // During an overlap, the replacement's (the old process said
            // its own long ago); a held one said it already.
            let (starting, spawned) = (matches!(second.role, Role::Replacement(_)), second.pid);
            match (starting, spawned, self.plan.is_some()) {
                (true, Some(_), true) => self.hold_ready(idx),
                (true, Some(_), false) => self.replaced(idx),
                _ => {}
            }
            return;
        }
        let c = &mut self.clusters[idx];
        if c.state == ClusterState::Starting {
            c.state = ClusterState::Running;
            self.log(LogEvent::ClusterLaunched { id });
        }
        if self.rolling_released(id) {
            return;
        }
        if self.launcher.release(id) {
            let generation = self.clusters[idx].generation;
            self.emit(Command::CancelTimer(Timer::LaunchTimeout {
                id,
                generation,
            }));
            self.launch_goes_on();
        } else if self.launcher.fully_up() && self.launcher.is_idle() {
            // A cluster came back (after a crash, a restart, a ping failure):
            // the original announced the whole bot up again, and a restarted
            // cluster may wait for that to finish its own start.
            self.announce_all_launched();
        }
    }

    /// A cluster the launch waited for launched: the next starts after
    /// the gap; if none is left, the bot is up now.
    pub(super) fn launch_goes_on(&mut self) {
        if self.launcher.any_left(self.turns()) {
            let gap = self.launcher.gap(self.config.cluster_start_next_delay);
            self.set_timer(Timer::StartNext, gap);
        } else {
            self.start_next();
        }
    }

    /// While a rolling restart is under way: true if it was waiting for
    /// `id`'s `launch_next`, and now goes on.
    pub(super) fn rolling_released(&mut self, id: ClusterId) -> bool {
        if self.rolling.is_none() {
            return false;
        }
        // A cluster whose replaced process still runs comes back once
        // that one has exited.
        let settled = self
            .index(id)
            .map_or(true, |idx| self.clusters[idx].second.is_none());
        if settled {
            self.rolling_came_back(id);
        }
        true
    }

    /// The bot is up. In a fleet every host knows it; only the leader says it.
    pub(super) fn announce_all_launched(&mut self) {
        self.launcher.set_fully_up(true);
        let leads = self.leads();
        if let Some(fleet) = self.fleet.as_mut() {
            // Said by whoever leads next, if nobody leads now.
            fleet.unannounced = !leads;
        }
        if !leads {
            return;
        }
        let command_id = self.next_id();
        self.publish(protocol::all_clusters_launched(&command_id));
        let clusters = self.clusters.len() + self.fleet.as_ref().map_or(0, |f| f.len());
        self.log(LogEvent::AllClustersLaunched { clusters });
    }

    pub(super) fn on_launch_timeout(&mut self, id: ClusterId, generation: u64) {
        let current = self.index(id).ok().map(|i| self.clusters[i].generation);
        if self.launcher.is_waiting_on(id) && current == Some(generation) {
            self.log(LogEvent::LaunchTimeout {
                id,
                waited_secs: self.config.launch_timeout.as_secs(),
            });
            self.launch_moved_on(id);
        }
    }

    /// The cluster the launch waits on will not say `launch_next` (it failed,
    /// was stopped, or took too long): go on with the next one.
    pub(super) fn launch_moved_on(&mut self, id: ClusterId) {
        if self.launcher.release(id) {
            let gap = self.launcher.gap(self.config.cluster_start_next_delay);
            self.set_timer(Timer::StartNext, gap);
        }
    }

    /// Asks the runner to start cluster `idx`; the outcome comes back as
    /// [`super::Input::Spawned`] and is handled for `purpose`.
    pub(super) fn spawn(&mut self, idx: usize, purpose: Purpose) {
        let (spec, shard_count) = self.spec_for(idx, false);
        let line = crate::argv::command_line(&self.config, spec, shard_count);
        let c = &mut self.clusters[idx];
        c.generation = c.next_generation();
        c.health = None;
        c.next_restart_at = None;
        c.restart_when_stopped = None;
        c.state = ClusterState::Starting;
        let (id, name, generation) = (c.spec.id, c.spec.name.clone(), c.generation);
        self.clusters[idx].spawning = Some(purpose);
        self.emit(Command::Spawn {
            id,
            name,
            generation,
            line,
            replaces: None,
        });
    }

    pub(super) fn on_spawned(
        &mut self,
        now: Now,
        id: ClusterId,
        generation: u64,
        result: Result<u32, SpawnError>,
    ) {
        let Ok(idx) = self.index(id) else { return };
        if self.clusters[idx]
            .second
            .as_ref()
            .is_some_and(|s| s.generation == generation)
        {
            return self.on_second_spawned(now, idx, result);
        }
        if self.clusters[idx].generation != generation {
            return;
        }
        let Some(purpose) = self.clusters[idx].spawning.take() else {
            return;
        };
        match result {
            Ok(pid) => self.on_started(now, idx, generation, pid, purpose),
            Err(failure) => self.on_spawn_failed(now, idx, purpose, failure),
        }
    }

    /// Cluster `idx` could not be started for `purpose`. A shortage (out of
    /// descriptors, memory or processes) passes, so it is a crash that never
    /// ran: the crash rules retry it and count it toward
    /// `restart_max_failures`. Any other error (the program or its directory
    /// missing, not executable) fails the same way until someone changes
    /// the machine, and retrying would only fill the log: the cluster is
    /// `failed` until an operator's `start`, which retries at once.
    fn on_spawn_failed(&mut self, now: Now, idx: usize, purpose: Purpose, failure: SpawnError) {
        let id = self.clusters[idx].spec.id;
        let transient = failure.transient;
        tracing::error!(id, error = %failure.error, transient, "could not start cluster");
        let retry_in = if transient {
            self.crash_verdict(now, idx, Duration::ZERO)
        } else {
            self.clusters[idx].state = ClusterState::Failed;
            None
        };
        self.clusters[idx].start_error = Some(failure.error.clone());
        let (error, restart_in_ms) = (failure.error, retry_in.map(millis));
        match purpose {
            Purpose::Launch => self.log(LogEvent::ClusterStartFailed {
                id,
                via: StartVia::StartNext,
                error,
                restart_in_ms,
            }),
            Purpose::Start { asker } => {
                self.log(LogEvent::ClusterRestartFailed {
                    id,
                    via: RestartVia::Start,
                    error: error.clone(),
                    restart_in_ms,
                });
                let refused = Refused::CouldNotStart {
                    label: self.label(idx),
                    error,
                };
                self.finish_op(crate::model::Operation::Start(id), asker, Err(refused));
            }
            Purpose::CrashRestart => self.log(LogEvent::ClusterStartFailed {
                id,
                via: StartVia::Observe,
                error,
                restart_in_ms,
            }),
            Purpose::AfterStop(cause) => self.log(cause.failure_event(id, error, restart_in_ms)),
        }
        // Retried: like a crash, it keeps its place in a launch (whose
        // timeout starts again with its next process) or a rolling restart
        // (whose timeout runs on).
        if retry_in.is_some() {
            return;
        }
        if transient {
            let quick_failures = self.clusters[idx].quick_failures;
            self.log(LogEvent::ClusterFailed {
                id,
                quick_failures,
                error: "could not be started (out of descriptors, memory or processes) too \
                        many times in a row; left stopped until an operator starts it"
                    .into(),
            });
        }
        // Do not let one broken cluster hold up the rest.
        self.given_up(id);
    }

    /// Cluster `idx`'s process `pid` started, for `purpose`.
    fn on_started(&mut self, now: Now, idx: usize, generation: u64, pid: u32, purpose: Purpose) {
        let c = &mut self.clusters[idx];
        c.pid = Some(pid);
        c.started_at = Some(now.wall);
        c.start_error = None;
        let id = c.spec.id;
        self.log(LogEvent::ClusterStarted { id, pid });
        let launch_timeout = Timer::LaunchTimeout { id, generation };
        match purpose {
            Purpose::Launch => self.set_timer(launch_timeout, self.config.launch_timeout),
            Purpose::Start { asker } => {
                self.finish_op(crate::model::Operation::Start(id), asker, Ok(()))
            }
            Purpose::CrashRestart => {
                // The action log's `restarts` is the crash restarts so far (§5.4).
                let restarts = self.clusters[idx].restarts.crash;
                self.log(LogEvent::ClusterRestarted { id, restarts });
                // Crashed before its launch_next: the launch still waits on
                // it, and must not wait for ever.
                if self.launcher.is_waiting_on(id) {
                    self.set_timer(launch_timeout, self.config.launch_timeout);
                }
            }
            Purpose::AfterStop(_) => {}
        }
    }

    /// Stops cluster `idx` if it runs, its replacement too if one is
    /// starting; `then` starts it again once every process has exited.
    pub(super) fn stop(&mut self, idx: usize, then: Option<RestartCause>) {
        let c = &mut self.clusters[idx];
        if !c.is_alive() {
            return;
        }
        c.state = ClusterState::Stopping;
        c.restart_when_stopped = then;
        if c.pid.is_some() {
            let (id, generation) = (c.spec.id, c.generation);
            self.emit(Command::Stop { id, generation });
        }
        self.abandon_replacement(idx);
    }

    /// A stopping cluster whose last process has exited is stopped, and
    /// started again if that was asked.
    pub(super) fn settle_stop(&mut self, idx: usize) {
        let c = &self.clusters[idx];
        if c.state != ClusterState::Stopping || c.is_alive() {
            return;
        }
        let restart = c.restart_when_stopped.filter(|_| self.exiting.is_none());
        self.clusters[idx].state = ClusterState::Stopped;
        if self.left_the_map(idx) {
            return;
        }
        if let Some(cause) = restart {
            self.clusters[idx].restarts.count(cause.reason());
            self.spawn(idx, Purpose::AfterStop(cause));
        }
    }

    pub(super) fn on_exit(&mut self, now: Now, id: ClusterId, generation: u64, exit: ExitInfo) {
        let Ok(idx) = self.index(id) else { return };
        let c = &mut self.clusters[idx];
        if c.second
            .as_ref()
            .is_some_and(|s| s.generation == generation)
        {
            return self.on_second_exit(now, idx, exit);
        }
        if c.generation != generation {
            return;
        }
        c.pid = None;
        c.last_exit = Some(exit);
        // Health describes a live process; this one is gone.
        c.health = None;
        let ran_for = c
            .started_at
            .and_then(|t| now.wall.duration_since(t).ok())
            .unwrap_or_default();
        self.forget_pings(id);
        let status = ExitFields::from(exit);
        if self.clusters[idx].state == ClusterState::Stopping {
            self.log(LogEvent::ClusterStopped { id, exit: status });
            // Once its second process (if any) has exited too.
            self.settle_stop(idx);
            return;
        }
        if self.plan.is_some() && self.clusters[idx].replacement().is_some() {
            // The old map lost a process: the reshard is given up (its new
            // process with it), and the crash rules restart this one.
            let why = format!("its old process exited ({exit}) before the new map was up");
            self.abort_reshard(id, why, None);
        }
        if self.promote_early(idx) {
            // Not restarted on top of its replacement, which runs on.
            self.log(LogEvent::ClusterExited {
                id,
                exit: status,
                restart_in_ms: None,
                quick_failures: None,
            });
            return;
        }
        if self.exiting.is_some() {
            self.clusters[idx].state = ClusterState::Stopped;
            self.log(LogEvent::ClusterExited {
                id,
                exit: status,
                restart_in_ms: None,
                quick_failures: None,
            });
            return;
        }
        let restart_in = self.crash_verdict(now, idx, ran_for);
        let failures = self.clusters[idx].quick_failures;
        self.log(LogEvent::ClusterExited {
            id,
            exit: status,
            restart_in_ms: restart_in.map(millis),
            quick_failures: restart_in.map(|_| failures),
        });
        if self.rolling_is_start_first() {
            // Its new process failed: the roll stops at it (the crash
            // rules restart it; there is no old process to keep).
            let why = format!("its new process exited ({exit}) after the old one was gone");
            self.rolling_target_failed(id, &why);
        }
        if restart_in.is_none() {
            self.log(LogEvent::ClusterFailed {
                id,
                quick_failures: failures,
                error: "kept exiting soon after starting; left stopped until an operator starts it"
                    .into(),
            });
            self.given_up(id);
        }
    }

    /// The crash rules for cluster `idx`, which ran for `ran_for`: `crashed`
    /// with its restart scheduled after the backoff (returned), or `failed`
    /// after `restart_max_failures` quick failures in a row (`None`).
    fn crash_verdict(&mut self, now: Now, idx: usize, ran_for: Duration) -> Option<Duration> {
        let c = &mut self.clusters[idx];
        let (verdict, failures) =
            restart::after_exit(&self.config.restart, ran_for, c.quick_failures);
        c.quick_failures = failures;
        match verdict {
            Verdict::RestartIn(delay) => {
                c.state = ClusterState::Crashed;
                c.next_restart_at = Some(now.wall + delay);
                let (id, generation) = (c.spec.id, c.generation);
                self.set_timer(Timer::CrashRestart { id, generation }, delay);
                Some(delay)
            }
            Verdict::GiveUp => {
                c.state = ClusterState::Failed;
                None
            }
        }
    }

    /// Cluster `id` is left `failed`: a rolling restart or the launch that
    /// waited on it goes on.
    fn given_up(&mut self, id: ClusterId) {
        self.rolling_target_failed(id, "it could not be started again");
        self.launch_moved_on(id);
    }

    pub(super) fn crash_restart(&mut self, id: ClusterId, generation: u64) {
        let Ok(idx) = self.index(id) else { return };
        let c = &mut self.clusters[idx];
        if c.state != ClusterState::Crashed || c.generation != generation || self.exiting.is_some()
        {
            return;
        }
        if c.second.is_some() {
            // Started once its second process has exited (`on_second_exit`).
            return;
        }
        c.restarts.count(RestartReason::Crash);
        self.spawn(idx, Purpose::CrashRestart);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
