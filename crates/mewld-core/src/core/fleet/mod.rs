//! The rules of a fleet (docs/protocol.md §10): what this host knows of the
//! others' clusters, which questions only the leader answers, operations
//! handed to the host that owns the cluster, and hosts lost and joined.
//! The facts come from the fleet task (`src/fleet`) as
//! [`FleetView`](crate::fleet::FleetView)s.
//!
//! This file holds what this host knows of the fleet ([`Fleet`], each
//! other host's cluster as a `Remote`); the rules are by concern:
//! `hosts.rs` (a heartbeat's news: displaced, ordered to stop, elected,
//! hosts joined and lost), `leader.rs` (the lease, the questions only the
//! leader answers, its announcement and exit order), `launch.rs` (the
//! launch across hosts), `handoff.rs` (operations handed to the host that
//! runs the cluster), `views.rs` (the other hosts' clusters and the fleet
//! summary, as faces see them).

mod handoff;
mod hosts;
mod launch;
mod leader;
mod views;

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use super::Core;
use crate::actlog::LogEvent;
use crate::cluster_map::{ClusterId, ClusterSpec};
use crate::fleet::{HostRecord, Leader, Membership};
use crate::model::state::{ClusterState, ClusterView, ExitOrder};
pub(in crate::core) use handoff::peer_of;
use leader::Held;
pub(crate) use leader::Question;

/// This host's knowledge of the fleet.
pub(crate) struct Fleet {
    pub me: Membership,
    /// The clusters other hosts run, by id.
    remote: BTreeMap<ClusterId, Remote>,
    /// The other hosts heartbeating now, by id.
    hosts: BTreeMap<String, HostRecord>,
    leader: Option<Leader>,
    lease_until: Option<Instant>,
    /// This host led at the last view (to log an election once).
    led: bool,
    /// A view has arrived: the launch knows the other hosts.
    seen: bool,
    /// Host events seen while no leader could log them: the leader's own
    /// loss, logged by whoever leads next.
    pending: VecDeque<LogEvent>,
    /// Questions not answered yet, oldest first.
    held: VecDeque<Held>,
    /// The bot came up while this host did not lead: nobody announced it.
    pub unannounced: bool,
    /// This host, leading, acked a `shutdown` or `restartproc`.
    pub exit_order: Option<ExitOrder>,
}

/// Another host's cluster, as that host last said.
struct Remote {
    spec: ClusterSpec,
    /// Its host's id and name, while that host heartbeats.
    owner: Option<(String, String)>,
    /// Its state from the owner's record; `None` while the owner is lost.
    view: Option<ClusterView>,
    /// The last state its owner recorded: a lost cluster is still shown
    /// with the host it ran on and its restarts.
    last_seen: Option<ClusterView>,
    /// Its `launch_next` was seen on the channel (in this launch).
    launched: bool,
    /// Which process said `launch_next` last: the channel is faster than
    /// the owner's record, which may still say `starting` (or `pending`)
    /// for a while after; that process is shown running meanwhile.
    said_launch_next: Said,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Said {
    Nothing,
    /// Said before its record named a process: the next one it names.
    Unresolved,
    Pid(u32),
}

impl Remote {
    /// The owner's record, corrected by a `launch_next` it has not caught
    /// up with.
    fn set_view(&mut self, view: Option<ClusterView>) {
        if view.is_none() && self.view.is_some() {
            // Its host is lost, and the process with it.
            self.said_launch_next = Said::Nothing;
            self.last_seen = self.view.take();
        }
        self.view = view;
        let Some(v) = self.view.as_mut() else { return };
        if self.said_launch_next == Said::Unresolved {
            if let Some(pid) = v.pid {
                self.said_launch_next = Said::Pid(pid);
            }
        }
        let said = match self.said_launch_next {
            Said::Nothing => false,
            Said::Unresolved => true,
            Said::Pid(pid) => v.pid == Some(pid),
        };
        if said && matches!(v.state, ClusterState::Pending | ClusterState::Starting) {
            v.state = ClusterState::Running;
        }
    }

    fn is_up(&self) -> bool {
        self.view
            .as_ref()
            .is_some_and(|v| matches!(v.state, ClusterState::Starting | ClusterState::Running))
    }
}

impl Fleet {
    /// Splits the map: `me.owned` stays with the caller, the rest is remote.
    pub fn new(me: Membership, clusters: Vec<ClusterSpec>) -> (Fleet, Vec<ClusterSpec>) {
        let (mine, others): (Vec<_>, Vec<_>) =
            clusters.into_iter().partition(|c| me.owned.contains(&c.id));
        let remote = others
            .into_iter()
            .map(|spec| {
                let remote = Remote {
                    spec,
                    owner: None,
                    view: None,
                    last_seen: None,
                    launched: false,
                    said_launch_next: Said::Nothing,
                };
                (remote.spec.id, remote)
            })
            .collect();
        let fleet = Fleet {
            me,
            remote,
            hosts: BTreeMap::new(),
            leader: None,
            lease_until: None,
            led: false,
            seen: false,
            pending: VecDeque::new(),
            held: VecDeque::new(),
            unannounced: false,
            exit_order: None,
        };
        (fleet, mine)
    }

    pub fn seen(&self) -> bool {
        self.seen
    }

    pub fn len(&self) -> usize {
        self.remote.len()
    }

    fn leads(&self, now: Instant) -> bool {
        self.lease_until.is_some_and(|until| now < until)
    }
}

impl Core {
    pub(super) fn is_remote(&self, id: ClusterId) -> bool {
        self.fleet
            .as_ref()
            .is_some_and(|f| f.remote.contains_key(&id))
    }
}
