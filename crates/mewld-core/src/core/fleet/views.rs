//! The other hosts' clusters and the fleet, as faces see them: each
//! remote cluster mirrored from its owner's record, and the fleet summary.

use std::collections::BTreeMap;

use super::{Fleet, Remote};
use crate::cluster_map::ClusterId;
use crate::core::Core;
use crate::fleet::summary;
use crate::model::state::{ClusterState, ClusterView, FleetSummary, HostSummary};

impl Fleet {
    /// A remote cluster as faces see it: the owner's view, or lost (on
    /// the host it was last seen on, with the restarts it had).
    fn view_of(remote: &Remote) -> ClusterView {
        if let Some(view) = &remote.view {
            return view.clone();
        }
        let lost = ClusterView::lost(&remote.spec);
        match &remote.last_seen {
            Some(was) => ClusterView {
                host: was.host.clone(),
                restarts: was.restarts,
                restarts_by: was.restarts_by,
                ..lost
            },
            None => lost,
        }
    }
}

impl Core {
    /// Copies each remote cluster's state from its owner's record.
    pub(super) fn mirror(&mut self) {
        let Some(fleet) = self.fleet.as_mut() else {
            return;
        };
        let mut owners: BTreeMap<ClusterId, (String, String)> = BTreeMap::new();
        for host in fleet.hosts.values() {
            for &id in &host.owned {
                owners.insert(id, (host.id.clone(), host.name.clone()));
            }
        }
        let mut views = summary::cluster_views(fleet.hosts.values());
        let mut now_lost = Vec::new();
        for (id, remote) in &mut fleet.remote {
            remote.owner = owners.remove(id);
            let was_up = remote.is_up();
            let view = remote.owner.as_ref().and_then(|_| views.remove(id));
            remote.set_view(view);
            if was_up && remote.view.is_none() {
                now_lost.push(*id);
            }
        }
        for id in now_lost {
            self.rolling_target_failed(id, "its host stopped heartbeating");
        }
    }

    /// Every remote cluster's view, by id.
    pub(in crate::core) fn remote_views(&self) -> Vec<ClusterView> {
        self.fleet.as_ref().map_or_else(Vec::new, |f| {
            f.remote.values().map(Fleet::view_of).collect()
        })
    }

    pub(in crate::core) fn fleet_summary(&self) -> Option<FleetSummary> {
        let fleet = self.fleet.as_ref()?;
        let mut hosts = vec![HostSummary {
            name: fleet.me.name.clone(),
            pid: fleet.me.pid,
            clusters: self.clusters.len(),
            running: self
                .clusters
                .iter()
                .filter(|c| c.state == ClusterState::Running)
                .count(),
        }];
        hosts.extend(summary::host_summaries(fleet.hosts.values()));
        let leader = fleet.leader.as_ref().map(|l| {
            if l.host == fleet.me.id {
                (fleet.me.name.clone(), l.epoch)
            } else {
                summary::leader_named(l, fleet.hosts.values())
            }
        });
        Some(FleetSummary {
            me: fleet.me.name.clone(),
            leader,
            leading: fleet.leads(self.clock),
            hosts,
            exit_order: fleet.exit_order,
        })
    }
}
