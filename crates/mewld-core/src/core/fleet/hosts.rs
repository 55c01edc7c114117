//! A heartbeat's news from the fleet task: this host displaced or ordered
//! to stop, a leader elected, hosts joined and lost.

use std::collections::BTreeMap;

use crate::actlog::LogEvent;
use crate::core::Core;
use crate::fleet::slice::Ranges;
use crate::fleet::{FleetView, HostRecord};

/// Most host events held for a leader that is not elected yet.
const PENDING_EVENTS: usize = 32;

impl Core {
    /// The fleet task's news after a heartbeat.
    pub(in crate::core) fn on_fleet(&mut self, view: FleetView) {
        if let Some(error) = view.displaced {
            // Another manager runs these clusters now: ours must not run too.
            let host = view.me;
            self.log(LogEvent::HostDisplaced { host, error });
            let _ = self.exit(crate::model::Exit::Shutdown);
            return;
        }
        if let (Some(order), None) = (view.exit_order, self.exiting) {
            // The leader ordered every host to stop, and this one missed
            // the message (its channel was down as it went by).
            tracing::warn!(
                epoch = order.epoch,
                restart = order.restart,
                "the fleet's leader ordered every host to stop; stopping"
            );
            let exit = if order.restart {
                crate::model::Exit::RestartProcess
            } else {
                crate::model::Exit::Shutdown
            };
            let _ = self.exit(exit);
        }
        if std::mem::take(&mut self.claim_pending) {
            // Alone: the claim is in Redis, the launch may start.
            self.maybe_begin();
        }
        let Some(fleet) = self.fleet.as_mut() else {
            return;
        };
        let before = std::mem::take(&mut fleet.hosts);
        let old_leader = fleet.leader.as_ref().map(|l| l.host.clone());
        fleet.hosts = view.hosts.into_iter().map(|h| (h.id.clone(), h)).collect();
        fleet.leader = view.leader;
        fleet.lease_until = view.lease_until;
        let leading = fleet.leads(self.clock);
        let elected = leading && !fleet.led;
        let lost_lease = fleet.led && !leading;
        fleet.led = leading;
        if elected {
            let epoch = fleet.leader.as_ref().map_or(0, |l| l.epoch);
            let host = fleet.me.name.clone();
            self.log(LogEvent::LeaderElected { host, epoch });
        }
        self.host_events(&before, old_leader.as_deref(), leading);
        self.mirror();
        if leading {
            // Questions held while no lease was valid, this host's included.
            self.answer_held();
        }
        if elected && self.fleet.as_ref().is_some_and(|f| f.unannounced) {
            self.announce_all_launched();
        }
        if lost_lease {
            self.stop_walking();
        }
        let first = self
            .fleet
            .as_mut()
            .is_some_and(|f| !std::mem::replace(&mut f.seen, true));
        if first {
            self.maybe_begin();
        }
        self.release_launched_remotes();
    }

    /// Logs hosts that came and went since `before`. Only the leader logs
    /// them (one entry per event); the leader's own loss is kept for
    /// whoever leads next.
    fn host_events(
        &mut self,
        before: &BTreeMap<String, HostRecord>,
        old_leader: Option<&str>,
        leading: bool,
    ) {
        let Some(fleet) = self.fleet.as_mut() else {
            return;
        };
        if !fleet.seen {
            return;
        }
        let mut events = Vec::new();
        for (id, host) in before {
            if !fleet.hosts.contains_key(id) {
                let event = LogEvent::HostLost {
                    host: host.name.clone(),
                    clusters: Ranges(&host.owned).to_string(),
                };
                events.push((Some(id.as_str()) == old_leader, event));
            }
        }
        for (id, host) in &fleet.hosts {
            if !before.contains_key(id) {
                let event = LogEvent::HostJoined {
                    host: host.name.clone(),
                    pid: host.pid,
                    clusters: Ranges(&host.owned).to_string(),
                };
                events.push((false, event));
            }
        }
        let mut to_log = Vec::new();
        if leading {
            to_log.extend(fleet.pending.drain(..));
        } else if fleet
            .leader
            .as_ref()
            .is_some_and(|l| l.host != fleet.me.id && fleet.hosts.contains_key(&l.host))
        {
            // A live leader other than us has logged them.
            fleet.pending.clear();
        }
        for (about_leader, event) in events {
            if leading {
                to_log.push(event);
            } else if about_leader {
                if fleet.pending.len() == PENDING_EVENTS {
                    fleet.pending.pop_front();
                }
                fleet.pending.push_back(event);
            }
        }
        for event in to_log {
            self.log(event);
        }
    }
}
