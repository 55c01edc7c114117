//! What each host of a fleet keeps in Redis about itself, renewed every
//! heartbeat under a TTL, and what the engine learns from the others'.

use std::collections::BTreeSet;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::cluster_map::{ClusterId, MapPrint};
use crate::model::state::ClusterView;

/// One host's record (`<channel>/fleet/host/<id>`), JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    /// `<name>:<pid>`, unique while the host runs.
    pub id: String,
    /// `--host-name`, else the machine's host name.
    pub name: String,
    pub pid: u32,
    pub version: String,
    /// The ids it runs.
    pub owned: BTreeSet<ClusterId>,
    /// The map it was built with, which every host must share: its size
    /// (all that older builds wrote) and its print.
    pub shard_count: u32,
    pub cluster_count: u32,
    #[serde(default)]
    pub map: MapPrint,
    /// `--host-count`, when its slice was given as an index of a count.
    #[serde(default)]
    pub host_count: Option<u32>,
    /// It runs alone, every cluster (no slice was given): its record is a
    /// claim, not a fleet member's.
    #[serde(default)]
    pub solo: bool,
    /// The highest leader epoch it has seen: a new leader's is higher
    /// still, even after Redis lost its counter.
    #[serde(default)]
    pub epoch_seen: u64,
    /// Unix seconds.
    pub started_at: u64,
    /// The machine's boot id: a record of this host name from the same
    /// boot whose pid is gone is a previous run's, safe to replace.
    #[serde(default)]
    pub boot_id: String,
    /// Its own clusters as it sees them.
    pub clusters: Vec<ClusterView>,
}

/// What the fleet task tells the engine after each heartbeat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetView {
    /// The other hosts whose records are alive, by id.
    pub hosts: Vec<HostRecord>,
    /// The leader's host id and fencing token, as Redis holds it.
    pub leader: Option<Leader>,
    /// This host leads until then (its lease, less a safety margin).
    pub lease_until: Option<Instant>,
    /// This host's record lapsed and another live manager has claimed its
    /// clusters since: why it must stop them.
    pub displaced: Option<String>,
    /// This host's name, for the log.
    pub me: String,
    /// The leader's order to stop, which this host may have missed.
    pub exit_order: Option<crate::model::state::ExitOrder>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    pub host: String,
    /// Incremented at every election: a newer leader has a larger one.
    pub epoch: u64,
}

/// This host's place in the fleet, known before the engine starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub id: String,
    pub name: String,
    /// This manager's process id.
    pub pid: u32,
    pub owned: BTreeSet<ClusterId>,
    /// `--host-count`, when the slice was given as an index of a count.
    pub host_count: Option<u32>,
    /// No slice was given: this manager runs every cluster alone, and
    /// claims them all so that no other manager can.
    pub solo: bool,
}
