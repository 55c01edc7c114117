//! Restarting every cluster in turn, `rolling_restart_parallel` at a
//! time, stop-first or start-first (docs/protocol.md §6, §6.1); a reshard
//! walks the same way (`reshard.rs`).

use super::cluster::RestartCause;
use super::{Command, Core, Timer};
use crate::actlog::LogEvent;
use crate::cluster_map::ClusterId;
use crate::config::RollingMode;
use crate::rolling::Rolling;

/// Beyond `rolling_restart_timeout` and the grace period, how long the
/// leader waits for word of another host's replacement: that host's own
/// timer ends its turn first.
const REMOTE_MARGIN: std::time::Duration = std::time::Duration::from_secs(10);

impl Core {
    pub(super) fn begin_rolling(&mut self, order: Vec<ClusterId>, done_event: LogEvent) {
        let (parallel, mode) = (
            self.config.rolling_restart_parallel,
            self.config.rolling_restart_mode,
        );
        self.rolling = Some(Rolling::new(order, done_event, parallel, mode));
        self.rolling_advance();
    }

    /// Fills the rolling restart's free slots with its next clusters, or
    /// ends it once every cluster has had its turn.
    pub(super) fn rolling_advance(&mut self) {
        loop {
            let Some(rolling) = self.rolling.as_mut() else {
                return;
            };
            if rolling.finished() {
                return self.rolling_done();
            }
            let Some((id, step)) = rolling.next_turn() else {
                return;
            };
            if !self.begin_turn(id, step) {
                // Skipped: its slot takes the next one at once.
                if let Some(rolling) = self.rolling.as_mut() {
                    rolling.drop_turn(id);
                }
            }
        }
    }

    /// Every cluster had its turn: log it, then launch what a reshard
    /// added or announce the bot whole again.
    fn rolling_done(&mut self) {
        let Some(rolling) = self.rolling.take() else {
            return;
        };
        let restarted_any = rolling.view().total > 0;
        self.commit_reshard();
        self.log(rolling.done_event);
        self.resharding = false;
        self.after_rolling(restarted_any);
    }

    /// The roll is over (done or aborted): launch what a reshard added, or
    /// announce the bot whole again if any cluster was restarted.
    pub(super) fn after_rolling(&mut self, restarted_any: bool) {
        if self.launcher.any_left(self.turns()) {
            // A reshard added clusters: launch them; the launch
            // announces the bot up when the last one is.
            self.start_next();
        } else if restarted_any {
            // Bots wait for this to know the whole bot is back.
            self.announce_all_launched();
        }
    }

    /// Starts cluster `id`'s turn (step `step`). False if there is nothing
    /// to restart (not up, or another host's that is not up): skip it.
    fn begin_turn(&mut self, id: ClusterId, step: u64) -> bool {
        let start_first = self.config.rolling_restart_mode == RollingMode::StartFirst;
        let timeout = self.config.rolling_restart_timeout;
        if self.is_remote(id) {
            // Another host's: its owner restarts it; wait for its
            // launch_next as for one of ours. Starting first, the owner
            // ends the turn itself when its replacement fails, after
            // `rolling_restart_timeout`: this is the backstop for an owner
            // that never says.
            if !self.rolling_restart_remote(id) {
                return false;
            }
            let margin = if start_first {
                self.config.stop_grace_period + REMOTE_MARGIN
            } else {
                std::time::Duration::ZERO
            };
            self.set_timer(Timer::RollingTimeout(step), timeout + margin);
            return true;
        }
        let Ok(idx) = self.index(id) else {
            return false;
        };
        if let Some(begun) = self.reshard_turn(idx, step) {
            return begun;
        }
        if !self.clusters[idx].is_up() {
            // Stopped (or being stopped) or failed since the restart
            // began: an operator's stop wins; leave it be.
            return false;
        }
        let cause = if self.resharding {
            RestartCause::Reshard
        } else {
            RestartCause::RollingRestart
        };
        if start_first && self.may_replace(idx) {
            // Its own timer ends the turn (`on_replacement_timeout`).
            self.replace(idx, cause);
            return true;
        }
        self.stop(idx, Some(cause));
        self.set_timer(Timer::RollingTimeout(step), timeout);
        true
    }

    pub(super) fn on_rolling_timeout(&mut self, step: u64) {
        let Some(id) = self.rolling.as_ref().and_then(|r| r.cluster_at(step)) else {
            return;
        };
        let waited_secs = self.config.rolling_restart_timeout.as_secs();
        if self.rolling_is_start_first() {
            // Another host's cluster, whose owner never said how its
            // replacement did, or one of ours restarted stop-first (it was
            // still starting at its turn) that never came back: nothing
            // more is touched.
            let reason = if self.is_remote(id) {
                format!("no launch_next from its host within {waited_secs}s")
            } else {
                format!("it did not say launch_next within {waited_secs}s of its restart")
            };
            return self.abort_rolling(id, reason, None);
        }
        self.log(LogEvent::RollingRestartTimeout { id, waited_secs });
        self.rolling_moved_on(id);
    }

    /// The rolling restart's turn of `id` ends without it coming back
    /// (it cannot, or an operator took it over): the next one starts.
    pub(super) fn rolling_moved_on(&mut self, id: ClusterId) {
        let Some(step) = self.rolling.as_mut().and_then(|r| r.drop_turn(id)) else {
            return;
        };
        self.emit(Command::CancelTimer(Timer::RollingTimeout(step)));
        self.rolling_advance();
    }

    /// `id` came back in the rolling restart's turn: its slot waits out
    /// `cluster_start_next_delay`, then takes the next cluster.
    pub(super) fn rolling_came_back(&mut self, id: ClusterId) {
        let Some((turn, gap)) = self.rolling.as_mut().and_then(|r| r.release(id)) else {
            return;
        };
        // Released: its timeout no longer applies.
        self.emit(Command::CancelTimer(Timer::RollingTimeout(turn)));
        self.set_timer(
            Timer::RollingNext(gap),
            self.config.cluster_start_next_delay,
        );
    }

    /// The rolling restart's current cluster cannot come back: a
    /// `start_first` roll ends here, a `stop_first` one moves on.
    pub(super) fn rolling_target_failed(&mut self, id: ClusterId, why: &str) {
        if !self.rolling.as_ref().is_some_and(|r| r.is_current(id)) {
            return;
        }
        if self.rolling_is_start_first() {
            self.abort_rolling(id, why.to_string(), None);
        } else {
            self.rolling_moved_on(id);
        }
    }

    /// Ends the roll under way, if any, and cancels its timers: a turn's
    /// timeout or a gap left running would act on the next roll, whose
    /// steps are numbered from 1 again.
    pub(super) fn end_rolling(&mut self) -> Option<crate::rolling::Rolling> {
        let rolling = self.rolling.take()?;
        for step in rolling.steps() {
            self.emit(Command::CancelTimer(Timer::RollingTimeout(step)));
            self.emit(Command::CancelTimer(Timer::RollingNext(step)));
        }
        Some(rolling)
    }

    pub(super) fn rolling_is_start_first(&self) -> bool {
        self.rolling
            .as_ref()
            .is_some_and(|r| r.mode == RollingMode::StartFirst)
    }
}
