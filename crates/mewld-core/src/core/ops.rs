//! What operators ask, over the channel or from a face (docs/protocol.md
//! §5.1), and the replies in the original's shape.

use serde_json::{json, Map, Value};

use super::cluster::RestartCause;
use super::fleet::{peer_of, Question};
use super::{Answer, Asker, Command, Core, Now, Purpose, ReplyTo};
use crate::actlog::{self, LogEvent};
use crate::model::state::ClusterState;
use crate::model::{Exit, FleetVia, Operation, Refused, Via};
use crate::protocol::{self, Action, Channel, Request};

impl Core {
    pub(super) fn on_request(&mut self, now: Now, request: Request, via: Via) {
        let Some(to) = self.reply_to(&request) else {
            return;
        };
        let command_id = request.command_id;
        let op = match request.action {
            Action::LaunchNext(id) => return self.on_launch_next(id),
            Action::ActionLogs(data) => {
                let store = self.leads();
                return self.emit(Command::ClusterLog { data, store });
            }
            Action::Diag(answer) => return self.on_diag(now, answer),
            Action::Echo(nonce) => return self.on_echo(now, &nonce),
            Action::FleetOp(op) => return self.on_fleet_op(now, op),
            Action::Answered => return self.on_answered(command_id),
            Action::Announced => return self.on_announced(),
            Action::RollAborted { id, host } => return self.on_roll_aborted(id, &host),
            // In a fleet, only the leader answers for the whole fleet; the
            // others hold the question in case the leader is gone.
            Action::Statuses => return self.ask(Question::Statuses, to),
            Action::NumProcesses => return self.ask(Question::NumProcesses, to),
            Action::Start(id) => Operation::Start(id),
            Action::Stop(id) => Operation::Stop(id),
            Action::Restart(id) => Operation::Restart(id),
            Action::RollingRestart => Operation::RollingRestart,
            Action::Reshard => Operation::Reshard,
            Action::Shutdown => Operation::Shutdown,
            Action::RestartProc => Operation::RestartProcess,
        };
        let answer = match op {
            // Acked before acting, so the asker hears back even though the
            // manager exits. In a fleet every host acts; the leader acks.
            Operation::Shutdown | Operation::RestartProcess => {
                if self.leads() {
                    self.reply(&to, &json!("ok"));
                    self.order_exit(op == Operation::RestartProcess);
                }
                Answer::Acked
            }
            _ => Answer::Reply(to),
        };
        let asker = Asker {
            via,
            answer,
            host: None,
        };
        if let Some(id) = op.cluster() {
            if self.is_remote(id) {
                // Its owner acts and answers; if no host runs it, the leader
                // says so.
                if let Some(refused) = self.remote_refusal(id) {
                    self.finish_op(op, asker, Err(refused));
                }
                return;
            }
            if self.index(id).is_err() && !self.leads() {
                return;
            }
        }
        if matches!(op, Operation::RollingRestart | Operation::Reshard) && !self.leads() {
            return;
        }
        self.operate(now, op, asker);
    }

    /// Where the reply to `request` goes: its `reply_to` if that lies under
    /// the manager's channel, else the main channel. `None`: a `reply_to`
    /// elsewhere, so the request is refused. It is said in the manager's
    /// log, as a malformed message is (§5): nothing happened to any cluster,
    /// and whoever can publish could otherwise flood the action log.
    fn reply_to(&self, request: &Request) -> Option<ReplyTo> {
        let channel = match &request.reply_to {
            None => Channel::Main,
            Some(asked) => match self.config.channels().reply_to(asked) {
                Ok(channel) => channel,
                Err(why) => {
                    tracing::warn!(command_id = ?request.command_id, "refused a request: {why}");
                    return None;
                }
            },
        };
        Some(ReplyTo {
            command_id: request.command_id.clone(),
            channel,
        })
    }

    /// Publishes `output` as the reply to `to`. In a fleet, a reply on a
    /// `reply_to` is noted on the channel the hosts hear, so none that
    /// held the question answers it again.
    pub(super) fn reply(&mut self, to: &ReplyTo, output: &Value) {
        let command_id = to.command_id.as_deref();
        self.publish_on(to.channel.clone(), protocol::reply(command_id, output));
        if let (Channel::Reply(_), Some(id), Some(_)) = (&to.channel, command_id, &self.fleet) {
            self.publish_on(self.own_channel(), protocol::answered(id));
        }
    }

    /// An operation another host of the fleet handed here.
    fn on_fleet_op(&mut self, now: Now, fleet_op: protocol::FleetOp) {
        // Only these are handed between hosts (docs/protocol.md §10).
        let op = match Operation::named(&fleet_op.op, fleet_op.id) {
            Some(
                op @ (Operation::Start(_)
                | Operation::Stop(_)
                | Operation::Restart(_)
                | Operation::RollingRestart),
            ) => op,
            _ => {
                tracing::warn!(op = %fleet_op.op, id = ?fleet_op.id, "ignored a fleet operation mewld does not know");
                return;
            }
        };
        let ours = match op.cluster() {
            Some(id) => self.index(id).is_ok(),
            None => self.leads(),
        };
        if !ours || self.fleet.is_none() {
            return;
        }
        if fleet_op.rolling && fleet_op.epoch < self.leader_epoch() {
            tracing::warn!(epoch = ?fleet_op.epoch, "ignored a rolling-restart step from a leader that has been replaced");
            return;
        }
        if let (true, Some(id)) = (fleet_op.rolling, op.cluster()) {
            // A step of the leader's rolling restart: restart it if it is up.
            if let Ok(idx) = self.index(id) {
                if self.clusters[idx].is_up() && self.exiting.is_none() {
                    self.rolling_step(idx);
                }
            }
            return;
        }
        // Logged as it would be on the asking host, with its process when
        // that host knew it; `host` says where it was asked.
        let via = match (FleetVia::parse(&fleet_op.via), fleet_op.peer) {
            (FleetVia::Cli, Some(peer)) => Via::Cli(peer),
            (FleetVia::Attach, Some(peer)) => Via::Attach(peer),
            (FleetVia::Unix, Some(peer)) => Via::Unix(peer),
            (via, _) => Via::Fleet(via),
        };
        let asker = Asker {
            via,
            answer: Answer::Acked,
            host: Some(fleet_op.host),
        };
        self.operate(now, op, asker);
    }

    /// Publishes the answer to `question`.
    pub(super) fn answer(&mut self, question: Question, to: &ReplyTo) {
        let output = match question {
            Question::Statuses => self.statuses(),
            Question::NumProcesses => {
                let (shards, clusters) = self.map_size();
                json!({"clusters": clusters, "shards": shards})
            }
        };
        self.reply(to, &output);
    }

    /// `statuses`: keyed by cluster id as a string, in the original's
    /// shape; in a fleet, every host's clusters. Written straight from the
    /// clusters (a whole view each, health and all, is not needed).
    fn statuses(&self) -> Value {
        let local = self.clusters.iter().map(|c| {
            let replacing = c.replacement().and_then(|s| s.pid);
            let entry = status_entry(&c.spec.name, &c.spec.shards, c.state, c.pid, c.started_at);
            (c.spec.id.to_string(), with_replacing(entry, replacing))
        });
        let remote = self.remote_views().into_iter().map(|c| {
            let entry = status_entry(&c.name, &c.shards, c.state, c.pid, c.started_at);
            (c.id.to_string(), with_replacing(entry, c.replacing))
        });
        Value::Object(local.chain(remote).collect::<Map<String, Value>>())
    }

    pub(super) fn operate(&mut self, now: Now, op: Operation, asker: Asker) {
        let result = match self.exiting {
            Some(_) => Err(Refused::ShuttingDown),
            None => match self.apply(now, op, &asker) {
                Some(result) => result,
                // A start is answered once its spawn's outcome is known.
                None => return,
            },
        };
        self.finish_op(op, asker, result);
    }

    /// Logs the operation (every refusal included) and answers the asker.
    pub(super) fn finish_op(&mut self, op: Operation, asker: Asker, result: Result<(), Refused>) {
        let peer = peer_of(asker.via);
        let host = asker
            .host
            .clone()
            .or_else(|| self.fleet.as_ref().map(|f| f.me.name.clone()));
        self.log(LogEvent::OperatorAction {
            action: op.name(),
            via: asker.via.as_str(),
            host,
            id: op.cluster(),
            peer_pid: peer.and_then(|p| p.pid),
            peer_uid: peer.map(|p| p.uid),
            refused: result.as_ref().err().map(Refused::to_string),
        });
        if let (Err(refused), Answer::Reply(_) | Answer::Acked) = (&result, &asker.answer) {
            tracing::warn!(action = op.name(), via = asker.via.as_str(), reason = %refused, "refused a request");
        }
        match asker.answer {
            Answer::Verdict => self.emit(Command::Verdict(result)),
            Answer::Reply(to) => {
                // The original acks whatever happens (a refusal is in the
                // action log); only a failed start says so.
                let output = match (&result, op) {
                    (Err(_), Operation::Start(_)) => json!("could not start instance"),
                    _ => json!("ok"),
                };
                self.reply(&to, &output);
            }
            Answer::Acked => {}
        }
    }

    /// Carries out `op`. `None`: answered later (a start waits for its spawn).
    fn apply(&mut self, now: Now, op: Operation, asker: &Asker) -> Option<Result<(), Refused>> {
        // A face asked here for another host's cluster, or for the
        // leader's rolling restart: hand it over.
        let elsewhere = match op.cluster() {
            Some(id) => self.is_remote(id),
            None => op == Operation::RollingRestart && self.fleet.is_some() && !self.leads(),
        };
        if elsewhere {
            let result = self.forward(op, asker);
            if result.is_ok() && asker.answer == Answer::Verdict {
                // The host that carries it out logs it.
                self.emit(Command::Verdict(Ok(())));
                return None;
            }
            return Some(result);
        }
        if let Some(result) = self.reshard_claims(op) {
            return Some(result);
        }
        let result = match op {
            Operation::Start(id) => return self.start(id, asker),
            Operation::Stop(id) => self.stop_op(id),
            Operation::Restart(id) => self.index(id).and_then(|idx| {
                if !self.clusters[idx].is_alive() {
                    return Err(Refused::RestartNotRunning(self.label(idx)));
                }
                self.stop(idx, Some(RestartCause::Operator));
                self.operator_took_over(id);
                Ok(())
            }),
            Operation::Diagnose(id) => self.index(id).and_then(|idx| {
                if !self.clusters[idx].is_alive() {
                    return Err(Refused::NotRunning(self.label(idx)));
                }
                if !self.transport_connected {
                    return Err(Refused::TransportDown);
                }
                self.ping(now, idx);
                Ok(())
            }),
            Operation::RollingRestart => self.may_restart_all().map(|()| {
                // The whole fleet in id order: the leader walks it.
                let mut order: Vec<_> = self
                    .clusters
                    .iter()
                    .filter(|c| c.is_up())
                    .map(|c| c.spec.id)
                    .chain(self.remote_up())
                    .collect();
                order.sort_unstable();
                self.log(LogEvent::RollingRestart {
                    clusters: order.clone(),
                });
                self.begin_rolling(order, LogEvent::RollingRestartDone {});
            }),
            Operation::Reshard => self.reshard(),
            Operation::Shutdown => self.exit(Exit::Shutdown),
            Operation::RestartProcess => self.exit(Exit::RestartProcess),
        };
        Some(result)
    }

    fn start(&mut self, id: u32, asker: &Asker) -> Option<Result<(), Refused>> {
        let idx = match self.index(id) {
            Ok(idx) => idx,
            Err(refused) => return Some(Err(refused)),
        };
        if self.clusters[idx].state == ClusterState::Stopping {
            return Some(Err(Refused::Stopping(self.label(idx))));
        }
        if self.clusters[idx].is_alive() {
            return Some(Err(Refused::AlreadyRunning(self.label(idx))));
        }
        // An operator's start gives a crash-looping cluster a fresh count.
        self.clusters[idx].quick_failures = 0;
        self.spawn(
            idx,
            Purpose::Start {
                asker: asker.clone(),
            },
        );
        None
    }

    fn stop_op(&mut self, id: u32) -> Result<(), Refused> {
        let idx = self.index(id)?;
        match self.clusters[idx].state {
            ClusterState::Starting | ClusterState::Running => {
                self.stop(idx, None);
                self.launch_moved_on(id);
                self.operator_took_over(id);
                Ok(())
            }
            ClusterState::Stopping => {
                self.clusters[idx].restart_when_stopped = None;
                // A start_first roll's turn that was restarting it (stop
                // first: it was still starting) ends here, as above.
                self.operator_took_over(id);
                Ok(())
            }
            // Cancel a scheduled crash restart or a pending launch. A launch
            // waiting on it goes on (its start may have failed for want of
            // descriptors, and no launch timeout runs for a process never
            // started).
            ClusterState::Crashed | ClusterState::Pending => {
                let c = &mut self.clusters[idx];
                c.state = ClusterState::Stopped;
                c.next_restart_at = None;
                self.launch_moved_on(id);
                Ok(())
            }
            // (Lost is only ever another host's.)
            ClusterState::Stopped | ClusterState::Failed | ClusterState::Lost => {
                Err(Refused::NotRunning(self.label(idx)))
            }
        }
    }

    /// Rolling restarts and reshards need a settled bot.
    pub(super) fn may_restart_all(&self) -> Result<(), Refused> {
        if self.rolling.is_some() {
            return Err(Refused::RollingUnderWay);
        }
        if self.resharding {
            return Err(Refused::ReshardUnderWay);
        }
        if !self.launcher.fully_up() {
            return Err(Refused::NotFullyUp);
        }
        // A cluster has one second process at most (`start_first`).
        if self.clusters.iter().any(|c| c.second.is_some()) || !self.leaving.is_empty() {
            return Err(Refused::StillStopping);
        }
        Ok(())
    }

    /// Stops every cluster; the runner exits once they have all stopped.
    pub(super) fn exit(&mut self, exit: Exit) -> Result<(), Refused> {
        self.exiting = Some(exit);
        self.end_rolling();
        for idx in 0..self.clusters.len() {
            let c = &mut self.clusters[idx];
            c.next_restart_at = None;
            if c.is_alive() {
                self.stop(idx, None);
            } else if c.state != ClusterState::Failed {
                c.state = ClusterState::Stopped;
            }
        }
        Ok(())
    }
}

/// One cluster's entry in a `statuses` reply.
fn status_entry(
    name: &str,
    shards: &[u32],
    state: ClusterState,
    pid: Option<u32>,
    started_at: Option<std::time::SystemTime>,
) -> Value {
    json!({
        "active": pid.is_some(),
        "status": state.as_str(),
        "name": name,
        "started_at": started_at.map(actlog::unix_secs).unwrap_or(0),
        "shard_list": shards,
    })
}

/// Ext (§6.1): the pid of the replacement starting beside the cluster's
/// process, in its `statuses` entry.
fn with_replacing(mut entry: Value, replacing: Option<u32>) -> Value {
    if let Some(pid) = replacing {
        entry["replacing"] = json!(pid);
    }
    entry
}
