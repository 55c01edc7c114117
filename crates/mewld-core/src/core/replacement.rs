//! `rolling_restart_mode: start_first` (docs/protocol.md §6): a cluster's
//! replacement is started beside its process; once it says `launch_next`
//! it is the cluster's process and the old one is stopped, and if it fails
//! (exits, cannot start, stays silent for `rolling_restart_timeout`) it is
//! stopped and the old process runs on untouched.
//!
//! This overlap is the one deliberate exception to "one process per
//! cluster", and it is kept to one second process per cluster
//! ([`Second`], `Cluster::second`): a replacement starts only beside a
//! running process with no second one; a crash restart, a restart after a
//! stop or an operator's start waits until the second one has exited;
//! every stop (an operator's, a shutdown, a displaced host) stops both, and
//! the engine is finished only once both have exited.

use super::cluster::{RestartCause, Role, Second};
use super::{Command, Core, Now, Timer};
use crate::actlog::{ExitFields, LogEvent};
use crate::cluster_map::ClusterId;
use crate::model::state::ClusterState;
use crate::model::{ExitInfo, SpawnError};
use crate::protocol;

impl Core {
    /// Whether cluster `idx` is replaced start-first: its process said
    /// `launch_next` and has no second one. (A `starting` process has
    /// nothing ready to keep: it is restarted stop-first.)
    pub(super) fn may_replace(&self, idx: usize) -> bool {
        let c = &self.clusters[idx];
        c.state == ClusterState::Running && c.pid.is_some() && c.second.is_none()
    }

    /// Starts cluster `idx`'s replacement beside its process, with the
    /// same command line and `MEWLD_REPLACES` set to the old pid.
    pub(super) fn replace(&mut self, idx: usize, cause: RestartCause) {
        let (spec, shard_count) = self.spec_for(idx, true);
        let line = crate::argv::command_line(&self.config, spec, shard_count);
        let c = &mut self.clusters[idx];
        let generation = c.next_generation();
        c.second = Some(Second {
            generation,
            pid: None,
            started_at: None,
            role: Role::Replacement(cause),
        });
        let (id, name, replaces) = (c.spec.id, c.spec.name.clone(), c.pid);
        self.emit(Command::Spawn {
            id,
            name,
            generation,
            line,
            replaces,
        });
        let timeout = self.config.rolling_restart_timeout;
        self.set_timer(Timer::Replacement { id, generation }, timeout);
    }

    /// The outcome of the spawn of cluster `idx`'s second process.
    pub(super) fn on_second_spawned(
        &mut self,
        now: Now,
        idx: usize,
        result: Result<u32, SpawnError>,
    ) {
        let c = &mut self.clusters[idx];
        let (id, replaces) = (c.spec.id, c.pid.unwrap_or(0));
        let Some(second) = c.second.as_mut() else {
            return;
        };
        match result {
            Ok(pid) => {
                second.pid = Some(pid);
                second.started_at = Some(now.wall);
                self.log(LogEvent::ReplacementStarted { id, pid, replaces });
            }
            Err(failure) => {
                let generation = second.generation;
                c.second = None;
                self.emit(Command::CancelTimer(Timer::Replacement { id, generation }));
                let reason = format!("the replacement could not be started: {}", failure.error);
                self.replacement_failed(idx, reason, None);
            }
        }
    }

    /// Cluster `idx`'s replacement said `launch_next`: it is the cluster's
    /// process now, and the old one is stopped (SIGTERM, the grace period,
    /// SIGKILL). The rolling restart goes on once the old one has exited.
    pub(super) fn replaced(&mut self, idx: usize) {
        let c = &mut self.clusters[idx];
        let Some(new) = c.second.take() else { return };
        let (cause, held) = match new.role {
            Role::Replacement(cause) => (cause, false),
            Role::Ready(cause) => (cause, true),
            Role::Retiring | Role::Abandoned => {
                c.second = Some(new);
                return;
            }
        };
        let id = c.spec.id;
        let (old_generation, old_pid) = (c.generation, c.pid);
        c.generation = new.generation;
        c.pid = new.pid;
        c.started_at = new.started_at;
        c.state = ClusterState::Running;
        c.health = None;
        c.restarts.count(cause.reason());
        if let Some(old) = old_pid {
            c.second = Some(Second {
                generation: old_generation,
                pid: Some(old),
                started_at: None,
                role: Role::Retiring,
            });
            self.emit(Command::Stop {
                id,
                generation: old_generation,
            });
        }
        let generation = new.generation;
        self.emit(Command::CancelTimer(Timer::Replacement { id, generation }));
        // Pings in flight went to the old process's generation.
        self.forget_pings(id);
        if !held {
            // A held one said so when it said launch_next.
            self.log(LogEvent::ClusterLaunched { id });
        }
        self.log(LogEvent::ClusterReplaced {
            id,
            pid: new.pid.unwrap_or(0),
            old_pid: old_pid.unwrap_or(0),
        });
        if old_pid.is_none() {
            self.rolling_came_back(id);
        }
    }

    /// Cluster `idx`'s own process exited unasked while its replacement
    /// starts: the replacement is its process from now on (`starting`, its
    /// timer still running), and nothing is restarted on top of it. False
    /// if no replacement was starting.
    pub(super) fn promote_early(&mut self, idx: usize) -> bool {
        let c = &mut self.clusters[idx];
        let Some(Second {
            generation,
            pid: Some(pid),
            started_at,
            role,
        }) = c.second
        else {
            return false;
        };
        // (A reshard's held one is never promoted: its old process's exit
        // aborts the reshard first, which gives it up.)
        let Role::Replacement(cause) = role else {
            return false;
        };
        c.second = None;
        c.generation = generation;
        c.pid = Some(pid);
        c.started_at = started_at;
        c.state = ClusterState::Starting;
        c.restarts.count(cause.reason());
        true
    }

    /// Cluster `idx`'s second process exited.
    pub(super) fn on_second_exit(&mut self, now: Now, idx: usize, exit: ExitInfo) {
        let c = &mut self.clusters[idx];
        let Some(second) = c.second.take() else {
            return;
        };
        let id = c.spec.id;
        let pid = second.pid.unwrap_or(0);
        match second.role {
            Role::Replacement(_) | Role::Ready(_) => {
                let generation = second.generation;
                self.emit(Command::CancelTimer(Timer::Replacement { id, generation }));
                let reason = match second.role {
                    Role::Ready(_) => {
                        format!("the new process exited ({exit}) before the new map was up")
                    }
                    _ => format!("the replacement exited ({exit}) before its launch_next"),
                };
                self.replacement_failed(idx, reason, second.pid);
            }
            Role::Retiring => {
                let exit = ExitFields::from(exit);
                self.log(LogEvent::ReplacedProcessStopped { id, pid, exit });
                self.rolling_came_back(id);
            }
            Role::Abandoned => {
                let exit = ExitFields::from(exit);
                self.log(LogEvent::ReplacementStopped { id, pid, exit });
            }
        }
        // What waited for this process to be gone: a stop, a crash restart.
        // (By id: an aborted reshard may have taken clusters off the map.)
        let Ok(idx) = self.index(id) else { return };
        self.settle_stop(idx);
        let Ok(idx) = self.index(id) else { return };
        let c = &self.clusters[idx];
        if c.state == ClusterState::Crashed && c.next_restart_at.is_some_and(|at| at <= now.wall) {
            self.crash_restart(id, c.generation);
        }
    }

    /// Stops cluster `idx`'s replacement, if one is starting: it is given
    /// up. Returns its pid.
    pub(super) fn abandon_replacement(&mut self, idx: usize) -> Option<u32> {
        let c = &mut self.clusters[idx];
        let id = c.spec.id;
        let second = c
            .second
            .as_mut()
            .filter(|s| matches!(s.role, Role::Replacement(_) | Role::Ready(_)))?;
        second.role = Role::Abandoned;
        let (generation, pid) = (second.generation, second.pid);
        self.emit(Command::Stop { id, generation });
        self.emit(Command::CancelTimer(Timer::Replacement { id, generation }));
        pid
    }

    pub(super) fn on_replacement_timeout(&mut self, id: ClusterId, generation: u64) {
        let Ok(idx) = self.index(id) else { return };
        if self.exiting.is_some() {
            return;
        }
        let waited = self.config.rolling_restart_timeout.as_secs();
        let reason = format!("the replacement did not say launch_next within {waited}s");
        let c = &self.clusters[idx];
        if c.replacement().is_some_and(|s| s.generation == generation) {
            let pid = self.abandon_replacement(idx);
            self.replacement_failed(idx, reason, pid);
        } else if c.generation == generation && c.state == ClusterState::Starting {
            // It took over when the old process exited: it stays, as the
            // cluster's only process, and the roll ends.
            let pid = c.pid;
            self.replacement_failed(idx, reason, pid);
        }
    }

    /// Cluster `idx`'s replacement failed: the roll ends here (logged with
    /// `reason`; the engine adds the replacement's last output lines).
    /// On a host that restarts it for the fleet's leader, the leader is
    /// told, and stops walking.
    fn replacement_failed(&mut self, idx: usize, reason: String, pid: Option<u32>) {
        let id = self.clusters[idx].spec.id;
        let current = self.rolling.as_ref().is_some_and(|r| r.is_current(id));
        if current || self.plan.is_some() {
            return self.abort_rolling(id, reason, pid);
        }
        self.log(LogEvent::RollingRestartAborted {
            id,
            reason,
            pid,
            output: Vec::new(),
        });
        if let Some(fleet) = &self.fleet {
            let notice = protocol::roll_aborted(id, &fleet.me.name);
            self.publish_on(self.own_channel(), notice);
        }
    }

    /// Ends the rolling restart at cluster `id`, whose replacement failed:
    /// every other replacement under way is given up too (its old process
    /// runs on), and no later cluster is touched.
    pub(super) fn abort_rolling(&mut self, id: ClusterId, reason: String, pid: Option<u32>) {
        if self.plan.is_some() {
            return self.abort_reshard(id, reason, pid);
        }
        let Some(rolling) = self.end_rolling() else {
            return;
        };
        self.log(LogEvent::RollingRestartAborted {
            id,
            reason,
            pid,
            output: Vec::new(),
        });
        for other in rolling.under_way() {
            if let Ok(idx) = self.index(other) {
                self.abandon_replacement(idx);
            }
        }
        self.resharding = false;
        self.after_rolling(rolling.done() > 0);
    }

    /// An operator stopped or restarted cluster `id`: during its turn of a
    /// `start_first` roll, both its processes go, and the roll goes on
    /// with the next cluster.
    pub(super) fn operator_took_over(&mut self, id: ClusterId) {
        if self.rolling_is_start_first() {
            self.rolling_moved_on(id);
        }
    }

    /// A step of the fleet leader's rolling restart on cluster `idx`, one
    /// of this host's: replaced start-first if that is the mode and it
    /// can be, else stopped and started again.
    pub(super) fn rolling_step(&mut self, idx: usize) {
        if self.clusters[idx].replacement().is_some() {
            // A replacement from a roll the last leader began is under
            // way: its launch_next (or its failure) ends this turn too.
            // Stopping the cluster would take both processes down.
            return;
        }
        let start_first =
            self.config.rolling_restart_mode == crate::config::RollingMode::StartFirst;
        if start_first && self.may_replace(idx) {
            self.replace(idx, RestartCause::RollingRestart);
        } else {
            self.stop(idx, Some(RestartCause::RollingRestart));
        }
    }
}
