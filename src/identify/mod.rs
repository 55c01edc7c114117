//! The identify queue (opt-in: `identify_queue`): clusters ask it over
//! HTTP before each shard identifies, `GET <MEWLD_IDENTIFY_URL>?shard=<id>`
//! as twilight's gateway-queue convention has it (the URL carries this
//! run's secret), and get the answer when Discord's rate limit allows
//! (docs/protocol.md §9). The rules are [`rules::Queue`]; this module is
//! the task that owns it: it takes requests from the HTTP side, grants on
//! time, keeps the budget fresh, and reports to the engine (a status for
//! the snapshot, notices for the action log).

mod fleet_gate;
mod secret;
mod server;

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::Config;
use crate::discord;
pub use fleet_gate::FleetGate;
use mewld_core::identify as rules;
use mewld_core::model::state::IdentifyStatus as Status;
use mewld_core::model::state::Snapshot;
use mewld_core::model::SessionStartLimit;
use rules::{Budget, Grant, Notice, Queue, Refusal, Rules, Ticket};
use secret::Secret;

/// Most requests waiting at once; more get 503 (each is a connection and a
/// few hundred bytes here).
pub const CAPACITY: usize = 16_384;
/// Connections the kernel may hold before they are accepted.
const BACKLOG: u32 = 4096;
/// Messages from connections waiting for the queue's task.
const INBOX: usize = 1024;
/// Notices waiting for the engine; more are dropped (and logged here).
const NOTICES: usize = 64;
/// Least time between two questions to Discord about the budget.
const ASK_DISCORD_EVERY: Duration = Duration::from_secs(60);
/// How often the status shown to faces is brought up to date.
const STATUS_EVERY: Duration = Duration::from_millis(250);

/// What connections tell the queue's task.
enum Message {
    Wait {
        ticket: Ticket,
        shard: Option<u64>,
        answer: oneshot::Sender<Result<Grant, Refusal>>,
    },
    /// The client hung up before its grant.
    Cancel(Ticket),
}

/// The engine's end: the queue's status and its notices.
pub struct Link {
    pub status: watch::Receiver<Status>,
    pub notices: mpsc::Receiver<Notice>,
}

/// The listener, bound before anything starts so a taken port stops the
/// start, and this run's secret.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    secret: Arc<Secret>,
}

impl Server {
    /// Listens on `addr`. Any address the config names is taken, but one
    /// beyond loopback is warned about: the queue is for the clusters,
    /// which run on this machine, and plain HTTP from elsewhere would carry
    /// the secret in clear. The caller words an error: it knows where the
    /// address came from.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Server> {
        // One connection per waiting shard: a whole bot may wait at once.
        crate::fd_budget::raise_open_file_limit();
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }?;
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        // Every shard of a big bot may ask at once (a restart of all).
        let listener = socket.listen(BACKLOG)?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            tracing::warn!(
                %addr,
                "identify_queue listens beyond loopback, so other machines reach it too (the \
                 secret still keeps them out); the clusters run on this one, 127.0.0.1 is enough"
            );
        }
        let secret = Arc::new(Secret::new());
        Ok(Server {
            listener,
            addr,
            secret,
        })
    }

    /// The URL clusters get as `MEWLD_IDENTIFY_URL`, secret included:
    /// `http://<addr>/<secret>`, to which they append `?shard=<id>`.
    pub fn url(&self) -> String {
        format!("http://{}/{}", self.reachable(), self.secret.expose())
    }

    /// The URL as logs show it: the secret left out.
    fn shown_url(&self) -> String {
        format!("http://{}/<secret>", self.reachable())
    }

    /// Where the clusters reach the listener: through loopback when it
    /// listens on every address (`0.0.0.0`, `::`).
    fn reachable(&self) -> SocketAddr {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        addr
    }

    /// Serves the queue for a bot of `shard_count` shards (kept up to date
    /// from the engine's `snapshots`) with Discord's `limit`, if known; in
    /// a fleet, through its `gate`.
    pub fn serve(
        self,
        config: &Config,
        shard_count: u32,
        limit: Option<&SessionStartLimit>,
        snapshots: watch::Receiver<Arc<Snapshot>>,
        gate: Option<FleetGate>,
    ) -> Link {
        let now = Instant::now();
        let rules = Rules {
            max_concurrency: limit.map_or(1, |l| l.max_concurrency),
            margin: config.identify_margin,
            reserve: config.minimum_safe_sessions_remaining,
            capacity: CAPACITY,
        };
        let budget = limit.map(|l| Budget::from_discord(l, now));
        let queue = Queue::new(rules, shard_count, budget);
        let (inbox_tx, inbox) = mpsc::channel(INBOX);
        let (status_tx, status) = watch::channel(queue.status(now));
        let (notices_tx, notices) = mpsc::channel(NOTICES);
        tracing::info!(
            url = %self.shown_url(),
            max_concurrency = rules.max_concurrency,
            "identify queue listening"
        );
        let refresh = config
            .token
            .clone()
            .map(|token| (config.proxy.clone(), token));
        let task = Task {
            queue,
            answers: HashMap::new(),
            status: status_tx,
            notices: notices_tx,
            refresh,
            snapshots,
            asked_at: None,
            gate,
        };
        tokio::spawn(task.run(inbox));
        tokio::spawn(server::accept(self.listener, self.secret, inbox_tx));
        Link { status, notices }
    }
}

/// The task that owns the queue.
struct Task {
    queue: Queue,
    /// Where each waiting request's answer goes.
    answers: HashMap<Ticket, oneshot::Sender<Result<Grant, Refusal>>>,
    status: watch::Sender<Status>,
    notices: mpsc::Sender<Notice>,
    /// Discord's proxy and the token, to ask for the budget after a reset.
    refresh: Option<(Option<String>, crate::config::Token)>,
    /// The engine's state, for the shard count (a reshard changes it).
    snapshots: watch::Receiver<Arc<Snapshot>>,
    /// When Discord was last asked for the budget.
    asked_at: Option<Instant>,
    /// In a fleet: the buckets and the budget shared with the other hosts.
    gate: Option<FleetGate>,
}

impl Task {
    async fn run(mut self, mut inbox: mpsc::Receiver<Message>) {
        let (budget_tx, mut budgets) = mpsc::channel::<Budget>(1);
        let mut status_every = tokio::time::interval(STATUS_EVERY);
        status_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut wake_at: Option<Instant> = None;
        loop {
            // Without a wake-up time the sleep is never polled.
            let sleep = tokio::time::sleep_until(wake_at.unwrap_or_else(Instant::now).into());
            tokio::select! {
                message = inbox.recv() => match message {
                    Some(message) => self.on_message(message),
                    None => return,
                },
                () = sleep, if wake_at.is_some() => {}
                _ = status_every.tick() => self.publish_status(),
                Some(budget) = budgets.recv() => self.queue.set_budget(budget),
            }
            wake_at = self.grant(&budget_tx).await;
        }
    }

    fn on_message(&mut self, message: Message) {
        match message {
            Message::Wait {
                ticket,
                shard,
                answer,
            } => {
                // The newest count, even if published a moment ago: a
                // cluster a reshard just started asks for its new shards.
                let shard_count = self.snapshots.borrow().shard_count;
                if shard_count > 0 {
                    self.queue.set_shard_count(shard_count);
                }
                self.enqueue(ticket, shard, answer);
            }
            Message::Cancel(ticket) => {
                self.queue.cancel(ticket);
                self.answers.remove(&ticket);
            }
        }
    }

    fn enqueue(
        &mut self,
        ticket: Ticket,
        shard: Option<u64>,
        answer: oneshot::Sender<Result<Grant, Refusal>>,
    ) {
        match self.queue.enqueue(ticket, shard) {
            Ok(()) => {
                self.answers.insert(ticket, answer);
            }
            Err(refusal) => {
                let _ = answer.send(Err(refusal));
            }
        }
    }

    /// Grants what may identify now; returns when to look again.
    async fn grant(&mut self, budget_tx: &mpsc::Sender<Budget>) -> Option<Instant> {
        let now = Instant::now();
        // A client gone before its turn must not spend the turn.
        loop {
            let gone: Vec<Ticket> = self
                .queue
                .due_heads(now)
                .into_iter()
                .filter(|t| self.answers.get(t).is_none_or(|a| a.is_closed()))
                .collect();
            if gone.is_empty() {
                break;
            }
            for ticket in gone {
                self.queue.cancel(ticket);
                self.answers.remove(&ticket);
            }
        }
        let (poll, retry_at) = match self.gate.is_some() {
            true => self.poll_through_gate(now).await,
            false => (self.queue.poll(now), None),
        };
        for grant in poll.grants {
            tracing::debug!(
                shard = grant.shard,
                bucket = grant.bucket,
                ticket = grant.ticket,
                "identify granted"
            );
            if let Some(answer) = self.answers.remove(&grant.ticket) {
                let _ = answer.send(Ok(grant));
            }
        }
        for notice in poll.notices {
            if let Notice::BudgetReset { ended_hold, .. } = notice {
                // Discord's own count corrects the queue's (other programs
                // may identify with the token too).
                self.ask_discord(budget_tx.clone());
                // A reset nobody waited for is news to nobody.
                if !ended_hold {
                    continue;
                }
            }
            if let Err(e) = self.notices.try_send(notice) {
                tracing::warn!(notice = ?e.into_inner(), "the engine is behind; an identify-queue notice is dropped");
            }
        }
        self.queue.prune(now);
        match (poll.wake_at, retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// In a fleet: grants only in the buckets whose window this host took
    /// in Redis, spending the shared budget. Also returns when another
    /// host's window (or Redis, after a failure) is worth asking again.
    async fn poll_through_gate(&mut self, now: Instant) -> (rules::Poll, Option<Instant>) {
        let ready = self.queue.ready_buckets(now);
        let Some(gate) = self.gate.as_mut() else {
            return (self.queue.poll(now), None);
        };
        if ready.is_empty() {
            return (self.queue.poll_where(now, |_| false), None);
        }
        let rules = self.queue.rules();
        let budget = self.queue.budget();
        let remaining = budget.map(|b| b.remaining);
        // A counter the fleet makes now lasts until Discord's reset as
        // this host knows it (a day once the first start opens one).
        let day = budget
            .and_then(|b| b.resets_at)
            .map(|t| t.saturating_duration_since(now))
            .filter(|d| !d.is_zero())
            .unwrap_or(rules::BUDGET_PERIOD);
        let spacing = rules::WINDOW + rules.margin;
        match gate
            .acquire(&ready, spacing, remaining, rules.reserve, day)
            .await
        {
            Ok(allowed) => {
                if let Some(shared) = allowed.remaining {
                    // poll spends one per grant again, locally.
                    self.queue
                        .set_remaining(shared + allowed.buckets.len() as u32);
                }
                let poll = self.queue.poll_where(now, |b| allowed.buckets.contains(&b));
                (poll, allowed.retry_at)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach Redis to share the identify queue with the fleet; granting nothing until it is back");
                let poll = self.queue.poll_where(now, |_| false);
                (poll, Some(Instant::now() + fleet_gate::RETRY))
            }
        }
    }

    fn publish_status(&self) {
        let status = self.queue.status(Instant::now());
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }

    /// After a reset, Discord's own count replaces the local guess (other
    /// programs with the same token may have identified too).
    fn ask_discord(&mut self, budget_tx: mpsc::Sender<Budget>) {
        let Some((proxy, token)) = self.refresh.clone() else {
            return;
        };
        // However Discord's numbers fall, it is asked at most this often.
        if self
            .asked_at
            .is_some_and(|t| t.elapsed() < ASK_DISCORD_EVERY)
        {
            return;
        }
        self.asked_at = Some(Instant::now());
        tokio::spawn(async move {
            match discord::get_gateway_bot(proxy.as_deref(), &token).await {
                Ok(g) => {
                    let l = g.session_start_limit;
                    let _ = budget_tx.try_send(Budget::from_discord(&l, Instant::now()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not ask Discord for the new session budget; counting from the full budget")
                }
            }
        });
    }
}
