//! The fleet as faces see it, from the hosts' records: shared by the core
//! (a fleet member's own view) and `mewld attach --redis` (an observer's).

use std::collections::BTreeMap;

use crate::cluster_map::ClusterId;
use crate::model::fleet::{HostRecord, Leader};
use crate::model::state::{ClusterState, ClusterView, HostSummary};

/// How many of `views` are running.
pub fn running(views: &[ClusterView]) -> usize {
    views
        .iter()
        .filter(|v| v.state == ClusterState::Running)
        .count()
}

/// The hosts of `records` for the console's header, by name.
pub fn host_summaries<'a>(records: impl IntoIterator<Item = &'a HostRecord>) -> Vec<HostSummary> {
    let mut hosts: Vec<HostSummary> = records
        .into_iter()
        .map(|h| HostSummary {
            name: h.name.clone(),
            pid: h.pid,
            clusters: h.owned.len(),
            running: running(&h.clusters),
        })
        .collect();
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    hosts
}

/// Every cluster the records hold, as its host sees it and named by it.
pub fn cluster_views<'a>(
    records: impl IntoIterator<Item = &'a HostRecord>,
) -> BTreeMap<ClusterId, ClusterView> {
    let mut views = BTreeMap::new();
    for host in records {
        for view in &host.clusters {
            let mut view = view.clone();
            view.host = Some(host.name.clone());
            views.insert(view.id, view);
        }
    }
    views
}

/// The leader as people name it (its host's name; its id when no record
/// names it), with its epoch.
pub fn leader_named<'a>(
    leader: &Leader,
    records: impl IntoIterator<Item = &'a HostRecord>,
) -> (String, u64) {
    let name = records
        .into_iter()
        .find(|h| h.id == leader.host)
        .map_or_else(|| leader.host.clone(), |h| h.name.clone());
    (name, leader.epoch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_map::{build, MapPrint};
    use crate::fleet::heartbeat::RecordBase;
    use crate::fleet::Membership;

    fn record(id: &str, name: &str, owned: &[ClusterId], running: &[ClusterId]) -> HostRecord {
        let specs = build(8, 2, &[]);
        let map = MapPrint::of(8, &specs);
        let views: Vec<ClusterView> = specs
            .iter()
            .map(|s| ClusterView {
                state: if running.contains(&s.id) {
                    ClusterState::Running
                } else {
                    ClusterState::Pending
                },
                ..ClusterView::lost(s)
            })
            .collect();
        let me = Membership {
            id: id.into(),
            name: name.into(),
            pid: 7,
            owned: owned.iter().copied().collect(),
            host_count: None,
            solo: false,
        };
        RecordBase {
            me: &me,
            map: &map,
            version: "t",
            started_at: 0,
            boot_id: "",
        }
        .record(0, &views)
    }

    #[test]
    fn hosts_are_summed_up_by_name_and_clusters_named_by_their_host() {
        let records = [
            record("zed:2", "zed", &[2, 3], &[2]),
            record("amy:1", "amy", &[0, 1], &[0, 1]),
        ];
        let hosts = host_summaries(&records);
        let names: Vec<(&str, usize, usize)> = hosts
            .iter()
            .map(|h| (h.name.as_str(), h.clusters, h.running))
            .collect();
        assert_eq!(names, [("amy", 2, 2), ("zed", 2, 1)]);
        let views = cluster_views(&records);
        assert_eq!(views.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(views[&3].host.as_deref(), Some("zed"));
    }

    #[test]
    fn a_leader_without_a_record_is_named_by_its_id() {
        let records = [record("amy:1", "amy", &[0], &[])];
        let amy = Leader {
            host: "amy:1".into(),
            epoch: 4,
        };
        assert_eq!(leader_named(&amy, &records), ("amy".into(), 4));
        let gone = Leader {
            host: "bob:9".into(),
            epoch: 5,
        };
        assert_eq!(leader_named(&gone, &records), ("bob:9".into(), 5));
    }
}
