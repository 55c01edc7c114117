//! Why a manager may not claim its clusters: decided from the record that
//! stands in its way (pure, so each reason is tested here).

use std::collections::BTreeSet;

use super::slice::Ranges;
use crate::cluster_map::{ClusterId, MapPrint};
use crate::model::fleet::{HostRecord, Membership};

/// Why this host may not join the fleet, from what Redis holds.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "clusters {overlap} are already run by host {host} (pid {pid}), which is alive and \
         heartbeating in Redis; two managers must not run the same cluster. Give each host \
         its own --host-index or --clusters, or stop the other manager first"
    )]
    Claimed {
        overlap: String,
        host: String,
        pid: u32,
    },
    #[error(
        "host {host} (pid {pid}) runs a different cluster map on this channel: {how}. \
         Every manager on one channel must load the same config (shard count, per_cluster, \
         names); stop the other one first to change the map"
    )]
    DifferentMap { host: String, pid: u32, how: String },
    #[error(
        "host {host} (pid {pid}) was started as one of {theirs} hosts, this one as one of \
         {ours}: every host must be given the same --host-count"
    )]
    HostCount {
        host: String,
        pid: u32,
        theirs: u32,
        ours: u32,
    },
    #[error(
        "the host name {name} is taken by host {host} (pid {pid}), which is alive in the \
         fleet: each host needs its own name, or the console and the action log cannot tell \
         them apart. Give this one --host-name (or MEWLD_HOST_NAME), or leave both to the \
         default (the machine's name and the host's index)"
    )]
    SameName {
        name: String,
        host: String,
        pid: u32,
    },
    #[error("a live host's record in Redis cannot be read ({0}); is another program using the fleet's keys?")]
    BadRecord(String),
}

/// Why a live record that conflicts with ours (`me`, of `map`) stops this
/// host: another map, another host count, clusters it runs, or our name.
pub fn refusal(me: &Membership, map: &MapPrint, other: HostRecord) -> Refusal {
    // Older builds wrote only the map's size: the rest is taken as ours.
    let theirs = if other.map.digest.is_empty() {
        let same = (other.shard_count, other.cluster_count) == (map.shards, map.clusters);
        MapPrint {
            shards: other.shard_count,
            clusters: other.cluster_count,
            digest: if same {
                map.digest.clone()
            } else {
                String::new()
            },
            ..map.clone()
        }
    } else {
        other.map.clone()
    };
    if let Some(how) = map.difference(&theirs) {
        return Refusal::DifferentMap {
            host: other.id,
            pid: other.pid,
            how,
        };
    }
    if let (Some(theirs), Some(ours)) = (other.host_count, me.host_count) {
        if theirs != ours {
            return Refusal::HostCount {
                host: other.id,
                pid: other.pid,
                theirs,
                ours,
            };
        }
    }
    let overlap: BTreeSet<ClusterId> = other.owned.intersection(&me.owned).copied().collect();
    if overlap.is_empty() && other.name == me.name {
        return Refusal::SameName {
            name: other.name,
            host: other.id,
            pid: other.pid,
        };
    }
    Refusal::Claimed {
        overlap: Ranges(&overlap).to_string(),
        host: other.id,
        pid: other.pid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_map::build;

    fn me(owned: &[ClusterId], host_count: Option<u32>) -> Membership {
        Membership {
            id: "b:2:x".into(),
            name: "b".into(),
            pid: 2,
            owned: owned.iter().copied().collect(),
            host_count,
            solo: false,
        }
    }

    fn other(owned: &[ClusterId], map: MapPrint, host_count: Option<u32>) -> HostRecord {
        HostRecord {
            id: "a:1:y".into(),
            name: "a".into(),
            pid: 1,
            version: "test".into(),
            owned: owned.iter().copied().collect(),
            shard_count: map.shards,
            cluster_count: map.clusters,
            map,
            host_count,
            solo: false,
            epoch_seen: 0,
            started_at: 0,
            boot_id: String::new(),
            clusters: Vec::new(),
        }
    }

    #[test]
    fn each_reason_is_told_apart() {
        let ours = MapPrint::of(6, &build(6, 3, &[]));
        let theirs = MapPrint::of(6, &build(6, 4, &[]));
        let e = refusal(&me(&[1], Some(2)), &ours, other(&[0], theirs, Some(2)));
        assert!(
            matches!(&e, Refusal::DifferentMap { how, .. } if how.contains("4 shards per cluster")),
            "{e}"
        );
        let e = refusal(
            &me(&[2], Some(3)),
            &ours,
            other(&[0], ours.clone(), Some(2)),
        );
        assert!(
            matches!(
                e,
                Refusal::HostCount {
                    theirs: 2,
                    ours: 3,
                    ..
                }
            ),
            "{e}"
        );
        let mut namesake = other(&[0], ours.clone(), Some(2));
        namesake.name = "b".into();
        let e = refusal(&me(&[1], Some(2)), &ours, namesake.clone());
        assert!(
            matches!(&e, Refusal::SameName { name, host, .. } if name == "b" && host == "a:1:y"),
            "{e}"
        );
        assert!(e.to_string().contains("--host-name"), "{e}");
        // Sharing clusters is the graver conflict, and told first.
        let e = refusal(&me(&[0], Some(2)), &ours, namesake);
        assert!(matches!(e, Refusal::Claimed { .. }), "{e}");
        let e = refusal(&me(&[0, 1], None), &ours, other(&[1], ours.clone(), None));
        assert!(
            matches!(&e, Refusal::Claimed { overlap, .. } if overlap == "1"),
            "{e}"
        );
    }

    /// A record from a build that wrote only the map's size: the same
    /// size is the same map, as far as can be told.
    #[test]
    fn an_older_record_is_compared_by_size() {
        let ours = MapPrint::of(6, &build(6, 3, &[]));
        let mut old = other(&[0], MapPrint::default(), None);
        (old.shard_count, old.cluster_count) = (6, 2);
        let e = refusal(&me(&[0], None), &ours, old.clone());
        assert!(matches!(e, Refusal::Claimed { .. }), "{e}");
        old.shard_count = 8;
        let e = refusal(&me(&[0], None), &ours, old);
        assert!(
            matches!(&e, Refusal::DifferentMap { how, .. } if how.starts_with("8 shards")),
            "{e}"
        );
    }
}
