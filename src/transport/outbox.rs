//! The bounded queue between the engine and a transport's writer. The
//! engine never waits on it: [`Outbox::push`] takes the lock for a moment
//! and returns, whatever the writer is doing. When Redis is slow or paused
//! the queue, not the engine, absorbs it, within bounds of its own per kind
//! of work, each with a policy for when it is full:
//!
//! - publishes (replies, pings, echoes): at most [`PUBLISHES`] messages and
//!   [`PUBLISH_BYTES`]; past either the OLDEST publishes go. The oldest are
//!   the stalest: whoever waited for them has most likely given up, and a
//!   ping or echo that old is judged missed anyway, while the newest are
//!   what is still awaited. (A publish bigger than the byte bound on its
//!   own is dropped at once.)
//! - action-log entries: at most [`LOG_ENTRIES`] and [`LOG_BYTES`], oldest
//!   first, as the capped list keeps the newest. A bound of their own, so
//!   a flood of publishes never costs an action-log entry.
//! - reads of the action log and flushes: at most [`REQUESTS`] waiting;
//!   past that the new one is answered at once (a read with an error).
//!
//! Order across kinds is kept: what was pushed first is taken first. Every
//! drop is counted ([`Dropped`]) and reported in the log: the first of a
//! spell at once, then at most one summary line per [`REPORT_EVERY`].

mod lane;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::Outbound;
pub(super) use lane::Item;
use lane::Lane;

/// Publishes waiting: a few rounds of diagnostics for a thousand clusters.
const PUBLISHES: usize = 8192;
/// Bytes of publishes waiting: room for hundreds of large `statuses` replies.
const PUBLISH_BYTES: usize = 16 * 1024 * 1024;
/// Action-log entries waiting to be written (an outage's worth).
const LOG_ENTRIES: usize = 10_000;
/// Bytes of action-log entries waiting.
const LOG_BYTES: usize = 16 * 1024 * 1024;
/// Reads of the action log and flushes waiting.
const REQUESTS: usize = 64;
/// Drops are reported at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// What was dropped since the transport started, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Publishes dropped because the queue was full (the oldest first).
    pub publishes: u64,
    /// Publishes dropped because they waited past their time to live.
    pub stale_publishes: u64,
    /// Action-log entries dropped because the queue was full (oldest first).
    pub log_entries: u64,
    /// Reads and flushes answered at once because too many were waiting.
    pub requests: u64,
}

/// What is waiting in the queue now, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub publishes: usize,
    pub publish_bytes: usize,
    pub log_entries: usize,
    pub log_bytes: usize,
    pub requests: usize,
}

impl Backlog {
    /// The most the queue holds of each kind.
    pub const LIMITS: Backlog = Backlog {
        publishes: PUBLISHES,
        publish_bytes: PUBLISH_BYTES,
        log_entries: LOG_ENTRIES,
        log_bytes: LOG_BYTES,
        requests: REQUESTS,
    };

    /// Whether every count is within `limits`.
    pub fn within(&self, limits: &Backlog) -> bool {
        self.publishes <= limits.publishes
            && self.publish_bytes <= limits.publish_bytes
            && self.log_entries <= limits.log_entries
            && self.log_bytes <= limits.log_bytes
            && self.requests <= limits.requests
    }
}

struct State {
    publishes: Lane,
    logs: Lane,
    requests: Lane,
    next_seq: u64,
    dropped: Dropped,
    closed: bool,
}

impl State {
    fn lane(&mut self, out: &Outbound) -> &mut Lane {
        match out {
            Outbound::Publish { .. } => &mut self.publishes,
            Outbound::PushLog(_) => &mut self.logs,
            Outbound::ReadLog(_) | Outbound::Flush(_) => &mut self.requests,
        }
    }

    /// The lane whose front was queued first.
    fn oldest(&mut self) -> Option<&mut Lane> {
        [&mut self.publishes, &mut self.logs, &mut self.requests]
            .into_iter()
            .filter(|l| l.front_seq().is_some())
            .min_by_key(|l| l.front_seq())
    }

    /// Trims the publish and log lanes to their bounds, counting the drops.
    fn trim(&mut self) -> bool {
        let publishes = self.publishes.trim();
        let logs = self.logs.trim();
        self.dropped.publishes += publishes;
        self.dropped.log_entries += logs;
        publishes + logs > 0
    }
}

pub(super) struct Outbox {
    state: Mutex<State>,
    /// Woken when work is queued or the engine's end is gone.
    work: Notify,
    /// Woken when something is dropped or the engine's end is gone.
    drops: Notify,
}

impl Outbox {
    /// A new queue, and its reporter of drops (`what` names the transport).
    pub(super) fn start(what: &'static str) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox::new());
        tokio::spawn(report_drops(outbox.clone(), what));
        outbox
    }

    fn new() -> Outbox {
        Outbox {
            state: Mutex::new(State {
                publishes: Lane::new(PUBLISHES, PUBLISH_BYTES),
                logs: Lane::new(LOG_ENTRIES, LOG_BYTES),
                requests: Lane::new(REQUESTS, usize::MAX),
                next_seq: 0,
                dropped: Dropped::default(),
                closed: false,
            }),
            work: Notify::new(),
            drops: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under the lock can leave the state half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `out`, dropping by the policy of its kind if it is full.
    /// Never waits.
    pub(super) fn push(&self, out: Outbound) {
        let mut state = self.lock();
        if state.closed {
            // Nobody will write it; a request's sender is dropped, which
            // answers it ("the transport has stopped").
            return;
        }
        let item = Item {
            seq: state.next_seq,
            at: Instant::now(),
            out,
        };
        state.next_seq += 1;
        let requests = &state.requests;
        let refused = matches!(item.out, Outbound::ReadLog(_) | Outbound::Flush(_))
            && requests.items.len() >= requests.max_items;
        let dropped = if refused {
            state.dropped.requests += 1;
            drop(state);
            refuse(item.out);
            true
        } else {
            state.lane(&item.out).push_back(item);
            let dropped = state.trim();
            drop(state);
            self.work.notify_one();
            dropped
        };
        if dropped {
            self.drops.notify_one();
        }
    }

    /// Takes the oldest item.
    pub(super) fn pop(&self) -> Option<Item> {
        self.lock().oldest()?.pop_front()
    }

    /// Takes the oldest item if it is a publish: for taking a run of them.
    pub(super) fn pop_publish(&self) -> Option<Item> {
        let mut state = self.lock();
        let next = state.oldest()?;
        if matches!(next.items.front()?.out, Outbound::Publish { .. }) {
            next.pop_front()
        } else {
            None
        }
    }

    /// Puts back, in front and in their order, items taken but not written;
    /// the bounds then apply to them like to any other.
    pub(super) fn put_back(&self, items: Vec<Item>) {
        let mut state = self.lock();
        for item in items.into_iter().rev() {
            state.lane(&item.out).push_front(item);
        }
        let dropped = state.trim();
        drop(state);
        self.work.notify_one();
        if dropped {
            self.drops.notify_one();
        }
    }

    /// Drops the publishes queued longer than `ttl` ago.
    pub(super) fn expire_publishes(&self, ttl: Duration) {
        let mut state = self.lock();
        let mut expired = 0;
        while state
            .publishes
            .items
            .front()
            .is_some_and(|i| i.at.elapsed() > ttl)
        {
            state.publishes.pop_front();
            expired += 1;
        }
        state.dropped.stale_publishes += expired;
        drop(state);
        if expired > 0 {
            self.drops.notify_one();
        }
    }

    /// Answers every waiting read with `error` and every waiting flush.
    pub(super) fn answer_requests(&self, error: &str) {
        let requests: Vec<Item> = self.lock().requests.items.drain(..).collect();
        for item in requests {
            if let Outbound::ReadLog(reply) = item.out {
                let _ = reply.send(Err(error.to_string()));
            } else {
                refuse(item.out);
            }
        }
    }

    /// Waits until there is work. False once the engine's end is gone and
    /// nothing is left. Cancel-safe: nothing is taken.
    pub(super) async fn ready(&self) -> bool {
        loop {
            {
                let mut state = self.lock();
                if state.oldest().is_some() {
                    return true;
                }
                if state.closed {
                    return false;
                }
            }
            // A push between the check and here leaves a permit: no loss.
            self.work.notified().await;
        }
    }

    /// Waits for the next push (or the close). False once closed.
    pub(super) async fn changed(&self) -> bool {
        self.work.notified().await;
        !self.lock().closed
    }

    /// Waits for and takes the oldest item; None once closed and empty.
    pub(super) async fn recv(&self) -> Option<Item> {
        loop {
            if !self.ready().await {
                return None;
            }
            if let Some(item) = self.pop() {
                return Some(item);
            }
        }
    }

    /// The engine's end is gone: what is queued is still taken, then
    /// [`Outbox::ready`] says false.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.work.notify_one();
        self.drops.notify_one();
    }

    pub(super) fn dropped(&self) -> Dropped {
        self.lock().dropped
    }

    pub(super) fn backlog(&self) -> Backlog {
        let state = self.lock();
        Backlog {
            publishes: state.publishes.items.len(),
            publish_bytes: state.publishes.bytes,
            log_entries: state.logs.items.len(),
            log_bytes: state.logs.bytes,
            requests: state.requests.items.len(),
        }
    }
}

/// Answers a request that will not be carried out.
fn refuse(out: Outbound) {
    match out {
        Outbound::ReadLog(reply) => {
            let _ = reply.send(Err("too many requests are waiting for the transport".into()));
        }
        Outbound::Flush(done) => {
            let _ = done.send(());
        }
        Outbound::Publish { .. } | Outbound::PushLog(_) => {}
    }
}

/// Logs drops: the first of a spell at once, then one line with the counts
/// per kind at most every [`REPORT_EVERY`]. Ends with the transport.
async fn report_drops(outbox: Arc<Outbox>, what: &'static str) {
    let mut told = Dropped::default();
    loop {
        outbox.drops.notified().await;
        let now = outbox.dropped();
        if now != told {
            tracing::warn!(
                transport = what,
                publishes = now.publishes - told.publishes,
                stale_publishes = now.stale_publishes - told.stale_publishes,
                log_entries = now.log_entries - told.log_entries,
                requests = now.requests - told.requests,
                "the transport is behind: dropped outbound messages (oldest first)"
            );
            told = now;
        }
        if outbox.lock().closed {
            return;
        }
        tokio::time::sleep(REPORT_EVERY).await;
    }
}

#[cfg(test)]
mod tests;
