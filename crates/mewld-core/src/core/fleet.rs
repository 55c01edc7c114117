//! The rules of a fleet (docs/protocol.md §10): what this host knows of the
//! others' clusters, which questions only the leader answers, operations
//! handed to the host that owns the cluster, and hosts lost and joined.
//! The facts come from the fleet task (`src/fleet`) as [`FleetView`]s.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::{Asker, Core, Timer};
use crate::actlog::LogEvent;
use crate::cluster_map::{ClusterId, ClusterSpec};
use crate::fleet::slice::Ranges;
use crate::fleet::{FleetView, HostRecord, Leader, Membership};
use crate::launch::Turn;
use crate::model::{Label, Operation, Refused};
use crate::protocol::{self, FleetOp};
use crate::state::{ClusterState, ClusterView, ExitOrder, FleetSummary, HostSummary};

/// Most host events held for a leader that is not elected yet.
const PENDING_EVENTS: usize = 32;
/// Most questions a host that does not lead holds for a missing leader.
const HELD_QUESTIONS: usize = 256;
/// How long a held question is worth answering: a leader is elected
/// within a lease of the last one's death.
const QUESTION_TTL: Duration = Duration::from_secs(10);

/// A question only the leader answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Question {
    Statuses,
    NumProcesses,
}

/// A question this host heard while another led, kept until its answer
/// goes by: if the leader died before answering, the next one does.
struct Held {
    question: Question,
    command_id: String,
    at: Instant,
}

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

    /// A remote cluster as faces see it: the owner's view, or lost.
    fn view_of(remote: &Remote) -> ClusterView {
        remote
            .view
            .clone()
            .unwrap_or_else(|| ClusterView::lost(&remote.spec))
    }
}

impl Core {
    /// Whether this host answers for the fleet now: alone, always; in a
    /// fleet, while its lease lasts.
    pub(super) fn leads(&self) -> bool {
        self.fleet.as_ref().is_none_or(|f| f.leads(self.clock))
    }

    pub(super) fn is_remote(&self, id: ClusterId) -> bool {
        self.fleet
            .as_ref()
            .is_some_and(|f| f.remote.contains_key(&id))
    }

    /// `statuses` or `num_processes` was asked: answered here if this host
    /// leads, else held until its answer is seen.
    pub(super) fn ask(&mut self, question: Question, command_id: Option<String>) {
        if self.leads() {
            return self.answer(question, command_id.as_deref());
        }
        let (Some(fleet), Some(command_id)) = (self.fleet.as_mut(), command_id) else {
            return;
        };
        let now = self.clock;
        while fleet
            .held
            .front()
            .is_some_and(|h| now.duration_since(h.at) > QUESTION_TTL)
        {
            fleet.held.pop_front();
        }
        if fleet.held.len() == HELD_QUESTIONS {
            tracing::warn!("too many unanswered questions held for the leader; dropped the oldest");
            fleet.held.pop_front();
        }
        fleet.held.push_back(Held {
            question,
            command_id,
            at: now,
        });
    }

    /// A reply went out: its question needs no other answer.
    pub(super) fn on_answered(&mut self, command_id: Option<String>) {
        if let (Some(fleet), Some(id)) = (self.fleet.as_mut(), command_id) {
            fleet.held.retain(|h| h.command_id != id);
        }
    }

    /// `all_clusters_launched` went by: whoever said it, the bot is
    /// announced up (a new leader does not say it again).
    pub(super) fn on_announced(&mut self) {
        if let Some(fleet) = self.fleet.as_mut() {
            fleet.unannounced = false;
        }
    }

    /// Leading, this host acked `shutdown` or `restartproc`: the order is
    /// kept in Redis for hosts that missed it.
    pub(super) fn order_exit(&mut self, restart: bool) {
        let epoch = self.leader_epoch();
        if let (Some(fleet), Some(epoch)) = (self.fleet.as_mut(), epoch) {
            fleet.exit_order = Some(ExitOrder { restart, epoch });
        }
    }

    /// Just elected: answer what the last leader left unanswered.
    fn answer_held(&mut self) {
        let Some(fleet) = self.fleet.as_mut() else {
            return;
        };
        let now = self.clock;
        let held: Vec<Held> = fleet.held.drain(..).collect();
        for h in held {
            if now.duration_since(h.at) <= QUESTION_TTL {
                self.answer(h.question, Some(&h.command_id));
            }
        }
    }

    /// The fleet task's news after a heartbeat.
    pub(super) fn on_fleet(&mut self, view: FleetView) {
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

    /// The lease is lost: a rolling restart this host walked stops here
    /// (the step under way finishes; the next leader does not resume it).
    fn stop_walking(&mut self) {
        if let Some(rolling) = self.rolling.take() {
            let view = rolling.view();
            self.log(LogEvent::RollingRestartStopped {
                done: view.done,
                total: view.total,
            });
        }
    }

    /// The fencing token of the leader this host knows, if any.
    pub(super) fn leader_epoch(&self) -> Option<u64> {
        self.fleet.as_ref()?.leader.as_ref().map(|l| l.epoch)
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

    /// Copies each remote cluster's state from its owner's record.
    fn mirror(&mut self) {
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

    /// Starts the launch once the channel is up and this manager's claim is
    /// in Redis (in a fleet: the other hosts are known).
    pub(super) fn maybe_begin(&mut self) {
        let ready = self.transport_connected
            && !self.claim_pending
            && self.fleet.as_ref().is_none_or(Fleet::seen);
        if ready && self.launcher.begin() {
            self.start_next();
        }
    }

    /// Every cluster of the fleet in id order, with its place in the launch.
    pub(super) fn turns(&self) -> Vec<Turn> {
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
    pub(super) fn on_remote_launch_next(&mut self, id: ClusterId) {
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
            self.emit(super::Command::CancelTimer(Timer::RemoteLaunch(id)));
            self.launch_goes_on();
        } else if self.launcher.fully_up() {
            // As for a cluster of this host coming back: the bot is whole again.
            self.announce_all_launched();
        }
    }

    /// Releases the remote clusters the launch waited for that launched
    /// (or left the launch) since.
    fn release_launched_remotes(&mut self) {
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
            self.emit(super::Command::CancelTimer(Timer::RemoteLaunch(*id)));
        }
        if !done.is_empty() {
            self.launch_goes_on();
        }
    }

    /// The launch waited `launch_timeout` for another host's cluster: go
    /// on without it and, if its host is not up at all, without any of the
    /// clusters no host runs.
    pub(super) fn on_remote_launch_timeout(&mut self, id: ClusterId) {
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
                self.emit(super::Command::CancelTimer(Timer::RemoteLaunch(other)));
            }
            self.launcher.skip(other);
        }
        self.set_timer(
            Timer::StartNext,
            self.launcher.gap(self.config.cluster_start_next_delay),
        );
    }

    /// An operation a face asked here on another host's cluster (or, for a
    /// rolling restart, the leader's job): handed to that host.
    pub(super) fn forward(&mut self, op: Operation, asker: &Asker) -> Result<(), Refused> {
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
        };
        self.publish(protocol::fleet_op(&message));
        Ok(())
    }

    /// The leader's rolling restart reached another host's cluster: ask
    /// its owner to restart it. False if it is not up (skip it).
    pub(super) fn rolling_restart_remote(&mut self, id: ClusterId) -> bool {
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
        };
        self.publish(protocol::fleet_op(&message));
        true
    }

    /// The remote clusters that are up, for a fleet-wide rolling restart.
    pub(super) fn remote_up(&self) -> BTreeSet<ClusterId> {
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
    pub(super) fn remote_refusal(&self, id: ClusterId) -> Option<Refused> {
        let remote = self.fleet.as_ref()?.remote.get(&id)?;
        if remote.owner.is_some() || !self.leads() {
            return None;
        }
        Some(Refused::HostLost(Label {
            id,
            name: remote.spec.name.clone(),
        }))
    }

    /// Every remote cluster's view, by id.
    pub(super) fn remote_views(&self) -> Vec<ClusterView> {
        self.fleet.as_ref().map_or_else(Vec::new, |f| {
            f.remote.values().map(Fleet::view_of).collect()
        })
    }

    pub(super) fn fleet_summary(&self) -> Option<FleetSummary> {
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
