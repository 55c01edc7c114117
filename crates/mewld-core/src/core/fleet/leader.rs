//! What leading means: the lease, the questions only the leader answers
//! (held by the others until an answer goes by), the bot's announcement
//! and the order to stop every host.

use std::time::{Duration, Instant};

use crate::actlog::LogEvent;
use crate::core::{Core, ReplyTo};
use crate::model::state::ExitOrder;

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
pub(super) struct Held {
    question: Question,
    to: ReplyTo,
    at: Instant,
}

impl Core {
    /// Whether this host answers for the fleet now: alone, always; in a
    /// fleet, while its lease lasts.
    pub(in crate::core) fn leads(&self) -> bool {
        self.fleet.as_ref().is_none_or(|f| f.leads(self.clock))
    }

    /// The fencing token of the leader this host knows, if any.
    pub(in crate::core) fn leader_epoch(&self) -> Option<u64> {
        self.fleet.as_ref()?.leader.as_ref().map(|l| l.epoch)
    }

    /// `statuses` or `num_processes` was asked: answered here if this host
    /// leads, else held until its answer is seen.
    pub(in crate::core) fn ask(&mut self, question: Question, to: ReplyTo) {
        if self.leads() {
            return self.answer(question, &to);
        }
        // Without a `command_id` its answer cannot be told from another's.
        let (Some(fleet), Some(_)) = (self.fleet.as_mut(), &to.command_id) else {
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
            to,
            at: now,
        });
    }

    /// A reply went out: its question needs no other answer.
    pub(in crate::core) fn on_answered(&mut self, command_id: Option<String>) {
        if let (Some(fleet), Some(id)) = (self.fleet.as_mut(), command_id) {
            fleet.held.retain(|h| h.to.command_id.as_ref() != Some(&id));
        }
    }

    /// `all_clusters_launched` went by: whoever said it, the bot is
    /// announced up (a new leader does not say it again).
    pub(in crate::core) fn on_announced(&mut self) {
        if let Some(fleet) = self.fleet.as_mut() {
            fleet.unannounced = false;
        }
    }

    /// Leading, this host acked `shutdown` or `restartproc`: the order is
    /// kept in Redis for hosts that missed it.
    pub(in crate::core) fn order_exit(&mut self, restart: bool) {
        let epoch = self.leader_epoch();
        if let (Some(fleet), Some(epoch)) = (self.fleet.as_mut(), epoch) {
            fleet.exit_order = Some(ExitOrder { restart, epoch });
        }
    }

    /// Just elected: answer what the last leader left unanswered.
    pub(super) fn answer_held(&mut self) {
        let Some(fleet) = self.fleet.as_mut() else {
            return;
        };
        let now = self.clock;
        let held: Vec<Held> = fleet.held.drain(..).collect();
        for h in held {
            if now.duration_since(h.at) <= QUESTION_TTL {
                self.answer(h.question, &h.to);
            }
        }
    }

    /// The lease is lost: a rolling restart this host walked stops here
    /// (the step under way finishes; the next leader does not resume it).
    pub(super) fn stop_walking(&mut self) {
        if let Some(rolling) = self.end_rolling() {
            let view = rolling.view();
            self.log(LogEvent::RollingRestartStopped {
                done: view.done,
                total: view.total,
                reason: None,
            });
        }
    }
}
