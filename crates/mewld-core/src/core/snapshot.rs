//! What the faces see of the core: its [`Snapshot`].

use super::Core;
use crate::model::state::{ClusterView, Snapshot};
use crate::rolling::Rolling;

impl Core {
    /// Every cluster (in a fleet, every host's, by id) and the state
    /// around them, as consoles, metrics and commands show it.
    pub fn snapshot(&self) -> Snapshot {
        let host = self.fleet.as_ref().map(|f| f.me.name.clone());
        let mut clusters: Vec<_> = self
            .clusters
            .iter()
            .map(|c| ClusterView {
                host: host.clone(),
                ..c.view()
            })
            .collect();
        if self.fleet.is_some() {
            clusters.extend(self.remote_views());
            clusters.sort_by_key(|c| c.id);
        }
        Snapshot {
            shard_count: self.shard_count,
            clusters,
            fully_up: self.launcher.fully_up(),
            transport_connected: self.transport_connected,
            transport_retry_at: self.transport_retry_at,
            started_at: Some(self.started_at),
            sessions_remaining: self.sessions_remaining,
            exiting: self.exiting,
            rolling: self.rolling.as_ref().map(Rolling::view),
            resharding: self.resharding,
            // The runner adds the identify queue's, which runs beside the core.
            identify: None,
            fleet: self.fleet_summary(),
        }
    }
}
