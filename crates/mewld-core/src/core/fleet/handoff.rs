//! Operations on another host's cluster, handed to the host that runs it
//! over the channel, and what this host answers for them itself.

use std::collections::BTreeSet;

use super::Remote;
use crate::actlog::LogEvent;
use crate::cluster_map::ClusterId;
use crate::core::{Asker, Core};
use crate::model::{Label, Operation, Peer, Refused, Via};
use crate::protocol::{self, FleetOp};

impl Core {
    /// An operation a face asked here on another host's cluster (or, for a
    /// rolling restart, the leader's job): handed to that host.
    pub(in crate::core) fn forward(&mut self, op: Operation, asker: &Asker) -> Result<(), Refused> {
        let Some(fleet) = &self.fleet else {
            return Err(Refused::EngineStopped);
        };
        let id = op.cluster();
        if let Some(id) = id {
            let Some(remote) = fleet.remote.get(&id) else {
                return Err(Refused::NoSuchCluster(id));
            };
            let label = Label {
                id,
                name: remote.spec.name.clone(),
            };
            let Some((_, host)) = &remote.owner else {
                return Err(Refused::HostLost(label));
            };
            if matches!(op, Operation::Diagnose(_)) {
                return Err(Refused::OnAnotherHost {
                    label,
                    host: host.clone(),
                });
            }
        }
        let message = FleetOp {
            op: op.name().to_string(),
            id,
            via: asker.via.as_str().to_string(),
            host: fleet.me.name.clone(),
            rolling: false,
            epoch: None,
            peer: peer_of(asker.via),
        };
        self.publish_on(self.own_channel(), protocol::fleet_op(&message));
        Ok(())
    }

    /// The leader's rolling restart reached another host's cluster: ask
    /// its owner to restart it. False if it is not up (skip it).
    pub(in crate::core) fn rolling_restart_remote(&mut self, id: ClusterId) -> bool {
        let Some(fleet) = &self.fleet else {
            return false;
        };
        if !fleet.remote.get(&id).is_some_and(Remote::is_up) {
            return false;
        }
        let message = FleetOp {
            op: Operation::Restart(id).name().to_string(),
            id: Some(id),
            via: "rolling".into(),
            host: fleet.me.name.clone(),
            rolling: true,
            epoch: fleet.leader.as_ref().map(|l| l.epoch),
            peer: None,
        };
        self.publish_on(self.own_channel(), protocol::fleet_op(&message));
        true
    }

    /// The remote clusters that are up, for a fleet-wide rolling restart.
    pub(in crate::core) fn remote_up(&self) -> BTreeSet<ClusterId> {
        self.fleet.as_ref().map_or_else(BTreeSet::new, |f| {
            f.remote
                .iter()
                .filter(|(_, r)| r.is_up())
                .map(|(&id, _)| id)
                .collect()
        })
    }

    /// Why a request on the channel for remote cluster `id` gets an answer
    /// from here: only the leader answers for a cluster no host runs.
    pub(in crate::core) fn remote_refusal(&self, id: ClusterId) -> Option<Refused> {
        let remote = self.fleet.as_ref()?.remote.get(&id)?;
        if remote.owner.is_some() || !self.leads() {
            return None;
        }
        Some(Refused::HostLost(Label {
            id,
            name: remote.spec.name.clone(),
        }))
    }

    /// `host` gave up its replacement of cluster `id` (and logged why): the
    /// leader's `start_first` rolling restart stops walking there.
    /// Replacements already under way on other hosts finish on their own.
    pub(in crate::core) fn on_roll_aborted(&mut self, id: ClusterId, host: &str) {
        let current = self.rolling.as_ref().is_some_and(|r| r.is_current(id));
        if !current || !self.rolling_is_start_first() || !self.is_remote(id) {
            return;
        }
        let Some(rolling) = self.end_rolling() else {
            return;
        };
        let view = rolling.view();
        self.log(LogEvent::RollingRestartStopped {
            done: view.done,
            total: view.total,
            reason: Some(format!(
                "the replacement of cluster {id} failed on host {host} (its rolling_restart_aborted says why)"
            )),
        });
        self.after_rolling(view.done > 0);
    }
}

/// The asking process, where the host knows it (a socket client, an
/// attached console, a command), for the action log here or on the owner.
pub(in crate::core) fn peer_of(via: Via) -> Option<Peer> {
    match via {
        Via::Unix(peer) | Via::Attach(peer) | Via::Cli(peer) => Some(peer),
        _ => None,
    }
}
