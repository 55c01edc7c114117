//! The other hosts' clusters and the fleet, as faces see them: each
//! remote cluster mirrored from its owner's record, and the fleet summary.

use std::collections::BTreeMap;

use super::{Fleet, Remote};
use crate::cluster_map::ClusterId;
use crate::core::Core;
use crate::state::{ClusterState, ClusterView, FleetSummary, HostSummary};

impl Fleet {
    /// A remote cluster as faces see it: the owner's view, or lost.
    fn view_of(remote: &Remote) -> ClusterView {
        remote
            .view
            .clone()
            .unwrap_or_else(|| ClusterView::lost(&remote.spec))
    }
}

impl Core {
    /// Copies each remote cluster's state from its owner's record.
    pub(super) fn mirror(&mut self) {
        let Some(fleet) = self.fleet.as_mut() else {
            return;
        };
        let mut owners: BTreeMap<ClusterId, (String, String)> = BTreeMap::new();
        let mut views: BTreeMap<ClusterId, ClusterView> = BTreeMap::new();
        for host in fleet.hosts.values() {
            for &id in &host.owned {
                owners.insert(id, (host.id.clone(), host.name.clone()));
            }
            for view in &host.clusters {
                let mut view = view.clone();
                view.host = Some(host.name.clone());
                views.insert(view.id, view);
            }
        }
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
            self.rolling_target_failed(id);
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
        let running = |views: &[ClusterView]| {
            views
                .iter()
                .filter(|v| v.state == ClusterState::Running)
                .count()
        };
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
        let mut others: Vec<HostSummary> = fleet
            .hosts
            .values()
            .map(|h| HostSummary {
                name: h.name.clone(),
                pid: h.pid,
                clusters: h.owned.len(),
                running: running(&h.clusters),
            })
            .collect();
        others.sort_by(|a, b| a.name.cmp(&b.name));
        hosts.extend(others);
        let leader = fleet.leader.as_ref().map(|l| {
            let name = if l.host == fleet.me.id {
                fleet.me.name.clone()
            } else {
                fleet
                    .hosts
                    .get(&l.host)
                    .map_or_else(|| l.host.clone(), |h| h.name.clone())
            };
            (name, l.epoch)
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
