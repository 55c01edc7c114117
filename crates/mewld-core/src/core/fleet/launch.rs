//! The launch across hosts: every cluster of the fleet takes its turn in
//! id order, another host's as its `launch_next` goes by on the channel
//! (or `launch_timeout` runs out).

use super::{Fleet, Remote, Said};
use crate::actlog::LogEvent;
use crate::cluster_map::ClusterId;
use crate::core::{Command, Core, Timer};
use crate::launch::Turn;
use crate::model::state::ClusterState;

impl Core {
    /// Starts the launch once the channel is up and this manager's claim is
    /// in Redis (in a fleet: the other hosts are known).
    pub(in crate::core) fn maybe_begin(&mut self) {
        let ready = self.transport_connected
            && !self.claim_pending
            && self.fleet.as_ref().is_none_or(Fleet::seen);
        if ready && self.launcher.begin() {
            self.start_next();
        }
    }

    /// Every cluster of the fleet in id order, with its place in the launch.
    pub(in crate::core) fn turns(&self) -> Vec<Turn> {
        let local = self.clusters.iter().enumerate().map(|(idx, c)| {
            let turn = if self.launcher.is_waiting_on(c.spec.id) {
                Turn::Starting
            } else if c.state == ClusterState::Pending {
                Turn::Startable(idx)
            } else {
                Turn::Launched
            };
            (c.spec.id, turn)
        });
        let Some(fleet) = &self.fleet else {
            return local.map(|(_, t)| t).collect();
        };
        let remote = fleet
            .remote
            .iter()
            .map(|(&id, r)| (id, self.remote_turn(id, r)));
        let mut all: Vec<(ClusterId, Turn)> = local.chain(remote).collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        all.into_iter().map(|(_, t)| t).collect()
    }

    fn remote_turn(&self, id: ClusterId, remote: &Remote) -> Turn {
        if remote.launched || self.launcher.is_skipped(id) {
            return Turn::Launched;
        }
        match &remote.view {
            Some(v) if !matches!(v.state, ClusterState::Pending | ClusterState::Starting) => {
                Turn::Launched
            }
            // Not launched yet, or its host is not up (yet).
            _ => Turn::Remote(id),
        }
    }

    /// Another host's cluster said `launch_next`.
    pub(in crate::core) fn on_remote_launch_next(&mut self, id: ClusterId) {
        if let Some(remote) = self.fleet.as_mut().and_then(|f| f.remote.get_mut(&id)) {
            remote.launched = true;
            remote.said_launch_next = Said::Unresolved;
            let view = remote.view.take();
            remote.set_view(view);
        }
        if self.rolling_released(id) {
            return;
        }
        if self.launcher.release_remote(id) {
            self.emit(Command::CancelTimer(Timer::RemoteLaunch(id)));
            self.launch_goes_on();
        } else if self.launcher.fully_up() {
            // As for a cluster of this host coming back: the bot is whole again.
            self.announce_all_launched();
        }
    }

    /// Releases the remote clusters the launch waited for that launched
    /// (or left the launch) since.
    pub(super) fn release_launched_remotes(&mut self) {
        let Some(fleet) = &self.fleet else { return };
        let done: Vec<ClusterId> = self
            .launcher
            .awaited_remote()
            .filter(|id| {
                fleet
                    .remote
                    .get(id)
                    .is_none_or(|r| self.remote_turn(*id, r) == Turn::Launched)
            })
            .collect();
        for id in &done {
            self.launcher.release_remote(*id);
            self.emit(Command::CancelTimer(Timer::RemoteLaunch(*id)));
        }
        if !done.is_empty() {
            self.launch_goes_on();
        }
    }

    /// The launch waited `launch_timeout` for another host's cluster: go
    /// on without it and, if its host is not up at all, without any of the
    /// clusters no host runs.
    pub(in crate::core) fn on_remote_launch_timeout(&mut self, id: ClusterId) {
        if !self.launcher.release_remote(id) {
            return;
        }
        let Some(fleet) = &self.fleet else { return };
        let ownerless: Vec<ClusterId> = match fleet.remote.get(&id) {
            Some(r) if r.owner.is_none() => fleet
                .remote
                .iter()
                .filter(|(_, r)| r.owner.is_none())
                .map(|(&id, _)| id)
                .collect(),
            _ => vec![id],
        };
        if self.leads() {
            self.log(LogEvent::LaunchTimeout {
                id,
                waited_secs: self.config.launch_timeout.as_secs(),
            });
        }
        for other in ownerless {
            if other != id && self.launcher.release_remote(other) {
                self.emit(Command::CancelTimer(Timer::RemoteLaunch(other)));
            }
            self.launcher.skip(other);
        }
        self.set_timer(
            Timer::StartNext,
            self.launcher.gap(self.config.cluster_start_next_delay),
        );
    }
}
