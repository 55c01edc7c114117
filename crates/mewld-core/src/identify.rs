//! The identify queue's rules as plain data, with time passed in: which
//! waiting shard may identify now, and when to look again. Discord lets
//! `max_concurrency` shards identify per 5 seconds, one per bucket
//! (`shard_id % max_concurrency`); every identify spends one session start
//! of a daily budget (docs/protocol.md §9).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::actlog::LogEvent;
use crate::model::state::IdentifyStatus as Status;

/// Discord's identify window for one bucket.
pub const WINDOW: Duration = Duration::from_secs(5);
/// How long a session-start budget lasts once reset (Discord's day).
pub const BUDGET_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// A waiting request, named by whoever holds its answer.
pub type Ticket = u64;

/// Why a request was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("shard {shard} is not a shard of this bot (it has {shard_count})")]
    NoSuchShard { shard: u64, shard_count: u32 },
    #[error("{waiting} requests are already waiting; try again later")]
    Full { waiting: usize },
}

/// The session-start budget, as Discord last told it and as spent since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub remaining: u32,
    pub total: u32,
    /// When Discord gives the full `total` back; `None` while nothing is
    /// spent: Discord's day starts with the first session start.
    pub resets_at: Option<Instant>,
}

impl Budget {
    /// The budget Get Gateway Bot describes, as of `now` (`reset_after` 0:
    /// nothing spent yet, no reset running).
    pub fn from_discord(limit: &crate::model::SessionStartLimit, now: Instant) -> Budget {
        Budget {
            remaining: limit.remaining,
            total: limit.total,
            resets_at: (limit.reset_after > 0)
                .then(|| now + Duration::from_millis(limit.reset_after)),
        }
    }
}

/// Fixed for the life of the queue.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub max_concurrency: u32,
    /// Added to [`WINDOW`] between two grants of a bucket: the identify
    /// reaches Discord a little after its grant, not always equally late.
    pub margin: Duration,
    /// Session starts never spent: at this many left the queue holds every
    /// request until the budget resets (`minimum_safe_sessions_remaining`).
    pub reserve: u32,
    /// Most requests waiting at once; more are refused.
    pub capacity: usize,
}

/// One shard's leave to identify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub ticket: Ticket,
    pub shard: u32,
    pub bucket: u32,
}

/// What the queue has to say besides grants, for the action log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Grants stop until the budget resets.
    BudgetLow {
        remaining: u32,
        reserve: u32,
        resets_in: Duration,
    },
    /// The budget is whole again (by the queue's count: Discord is to be
    /// asked); `ended_hold` when requests were held for it.
    BudgetReset { remaining: u32, ended_hold: bool },
}

/// The outcome of [`Queue::poll`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Poll {
    pub grants: Vec<Grant>,
    pub notices: Vec<Notice>,
    /// When to poll again if nothing else happens.
    pub wake_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct Bucket {
    last_grant: Option<Instant>,
    waiting: VecDeque<(Ticket, u32)>,
}

#[derive(Debug)]
pub struct Queue {
    rules: Rules,
    shard_count: u32,
    buckets: Vec<Bucket>,
    budget: Option<Budget>,
    held: bool,
    /// Times of the grants of the last [`WINDOW`] (at most one per bucket).
    recent: VecDeque<Instant>,
    granted_total: u64,
}

impl Queue {
    pub fn new(rules: Rules, shard_count: u32, budget: Option<Budget>) -> Queue {
        let rules = Rules {
            max_concurrency: rules.max_concurrency.max(1),
            ..rules
        };
        Queue {
            buckets: (0..rules.max_concurrency)
                .map(|_| Bucket::default())
                .collect(),
            rules,
            shard_count,
            budget,
            held: false,
            recent: VecDeque::new(),
            granted_total: 0,
        }
    }

    /// A reshard changed the number of shards requests may name.
    pub fn set_shard_count(&mut self, shard_count: u32) {
        self.shard_count = shard_count;
    }

    /// Discord's latest word on the budget (a fresh Get Gateway Bot).
    pub fn set_budget(&mut self, budget: Budget) {
        self.budget = Some(budget);
    }

    /// The budget's count as the fleet shares it (other hosts spend it too).
    pub fn set_remaining(&mut self, remaining: u32) {
        if let Some(budget) = self.budget.as_mut() {
            budget.remaining = remaining;
        }
    }

    pub fn rules(&self) -> Rules {
        self.rules
    }

    pub fn budget(&self) -> Option<Budget> {
        self.budget
    }

    /// Buckets that have a request waiting and are free here at `now`:
    /// what a fleet asks Redis for before granting.
    pub fn ready_buckets(&self, now: Instant) -> Vec<u32> {
        let spacing = WINDOW + self.rules.margin;
        (0..self.buckets.len() as u32)
            .filter(|&i| {
                let b = &self.buckets[i as usize];
                !b.waiting.is_empty() && b.last_grant.is_none_or(|t| t + spacing <= now)
            })
            .collect()
    }

    pub fn bucket_of(&self, shard: u32) -> u32 {
        shard % self.rules.max_concurrency
    }

    /// Queues a request for `shard` (`None`: a bot that names no shard,
    /// bucket 0) behind those already waiting in its bucket.
    pub fn enqueue(&mut self, ticket: Ticket, shard: Option<u64>) -> Result<(), Refusal> {
        let shard = match shard {
            None => 0,
            Some(s) => u32::try_from(s)
                .ok()
                .filter(|s| *s < self.shard_count)
                .ok_or(Refusal::NoSuchShard {
                    shard: s,
                    shard_count: self.shard_count,
                })?,
        };
        let waiting = self.waiting();
        if waiting >= self.rules.capacity {
            return Err(Refusal::Full { waiting });
        }
        let bucket = self.bucket_of(shard) as usize;
        self.buckets[bucket].waiting.push_back((ticket, shard));
        Ok(())
    }

    /// The request gave up (its client hung up): it leaves the queue
    /// without spending anything. False if it was not waiting.
    pub fn cancel(&mut self, ticket: Ticket) -> bool {
        for b in &mut self.buckets {
            if let Some(i) = b.waiting.iter().position(|(t, _)| *t == ticket) {
                b.waiting.remove(i);
                return true;
            }
        }
        false
    }

    /// The requests next in line in buckets free at `now`: before a poll,
    /// the caller cancels those whose client is gone, so no grant is spent
    /// on a client that can no longer identify.
    pub fn due_heads(&self, now: Instant) -> Vec<Ticket> {
        let spacing = WINDOW + self.rules.margin;
        self.buckets
            .iter()
            .filter(|b| b.last_grant.is_none_or(|t| t + spacing <= now))
            .filter_map(|b| b.waiting.front().map(|(t, _)| *t))
            .collect()
    }

    pub fn waiting(&self) -> usize {
        self.buckets.iter().map(|b| b.waiting.len()).sum()
    }

    /// Grants what may identify at `now`: the head of each bucket whose
    /// last grant is a window (plus margin) old, while the budget allows.
    pub fn poll(&mut self, now: Instant) -> Poll {
        self.poll_where(now, |_| true)
    }

    /// As [`Queue::poll`], granting only in the buckets `allowed` lets
    /// (in a fleet, those this host holds in Redis for this window).
    pub fn poll_where(&mut self, now: Instant, allowed: impl Fn(u32) -> bool) -> Poll {
        let mut poll = Poll::default();
        self.reset_budget_if_due(now, &mut poll);
        // Discord may have said there is more left than counted here.
        if self
            .budget
            .is_some_and(|b| b.remaining > self.rules.reserve)
        {
            self.held = false;
        }
        let spacing = WINDOW + self.rules.margin;
        for (bucket, b) in self.buckets.iter_mut().enumerate() {
            if b.waiting.is_empty() {
                continue;
            }
            if let Some(free_at) = b.last_grant.map(|t| t + spacing).filter(|t| *t > now) {
                poll.wake_at = earliest(poll.wake_at, free_at);
                continue;
            }
            if let Some(budget) = self.budget.as_mut() {
                if budget.remaining <= self.rules.reserve {
                    // No reset running (Discord said so): look again in a
                    // day, or when Discord's word changes the budget.
                    let resets_at = budget.resets_at.unwrap_or(now + BUDGET_PERIOD);
                    if !self.held {
                        self.held = true;
                        poll.notices.push(Notice::BudgetLow {
                            remaining: budget.remaining,
                            reserve: self.rules.reserve,
                            resets_in: resets_at.saturating_duration_since(now),
                        });
                    }
                    poll.wake_at = earliest(poll.wake_at, resets_at);
                    break;
                }
            }
            if !allowed(bucket as u32) {
                continue;
            }
            if let Some(budget) = self.budget.as_mut() {
                budget.remaining -= 1;
                // The first session start after a reset starts Discord's day.
                budget.resets_at.get_or_insert(now + BUDGET_PERIOD);
            }
            let Some((ticket, shard)) = b.waiting.pop_front() else {
                continue;
            };
            b.last_grant = Some(now);
            self.recent.push_back(now);
            self.granted_total += 1;
            poll.grants.push(Grant {
                ticket,
                shard,
                bucket: bucket as u32,
            });
            if !b.waiting.is_empty() {
                poll.wake_at = earliest(poll.wake_at, now + spacing);
            }
        }
        poll
    }

    fn reset_budget_if_due(&mut self, now: Instant, poll: &mut Poll) {
        let Some(budget) = self.budget.as_mut() else {
            return;
        };
        if budget.resets_at.is_none_or(|at| now < at) {
            return;
        }
        budget.remaining = budget.total;
        // The next day starts with the next session start.
        budget.resets_at = None;
        poll.notices.push(Notice::BudgetReset {
            remaining: budget.remaining,
            ended_hold: std::mem::replace(&mut self.held, false),
        });
    }

    pub fn status(&self, now: Instant) -> Status {
        let since = now.checked_sub(WINDOW);
        Status {
            waiting: self.waiting(),
            granted_in_window: self
                .recent
                .iter()
                .filter(|t| since.is_none_or(|s| **t > s))
                .count() as u32,
            granted_total: self.granted_total,
            max_concurrency: self.rules.max_concurrency,
            budget_remaining: self.budget.map(|b| b.remaining),
            held: self.held,
        }
    }

    /// Forgets grants older than a window (they only feed [`Status`]).
    pub fn prune(&mut self, now: Instant) {
        while self.recent.front().is_some_and(|t| *t + WINDOW <= now) {
            self.recent.pop_front();
        }
    }
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// A notice as the action log writes it.
impl From<Notice> for LogEvent {
    fn from(notice: Notice) -> LogEvent {
        match notice {
            Notice::BudgetLow {
                remaining,
                reserve,
                resets_in,
            } => LogEvent::IdentifyBudgetLow {
                remaining,
                reserve,
                resets_in_secs: resets_in.as_secs(),
            },
            Notice::BudgetReset { remaining, .. } => LogEvent::IdentifyBudgetReset { remaining },
        }
    }
}

#[cfg(test)]
mod tests;
