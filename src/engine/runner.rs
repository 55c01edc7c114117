//! The actor around the core: it turns what happens (operator requests,
//! messages on the channel, child exits, timers) into [`Input`]s, feeds
//! them to [`Core::step`] one at a time, and carries out the [`Command`]s
//! that come back. All timers live here, in one [`DelayQueue`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::time::{delay_queue, DelayQueue};

use super::children::Children;
use super::{EngineHandle, FaceRequest, Message, Setup};
use crate::config::Config;
use crate::discord;
use crate::fd_budget;
use crate::identify;
use crate::transport::{Transport, TransportEvent};
use mewld_core::actlog::{self, LogEvent};
use mewld_core::core::{drive, Command, Core, Driver, Input, Now, Timer};
use mewld_core::identify::Notice;
use mewld_core::model::state::Snapshot;
use mewld_core::model::{Event, Exit, Refused};
use mewld_core::protocol;

/// How long the last acks and log entries get to reach Redis at exit.
const EXIT_FLUSH_TIMEOUT: Duration = Duration::from_secs(3);
/// Snapshots are published at most this often. Each is a view of every
/// cluster, and at 1,000 clusters messages come thousands a second: one per
/// message took 46 % of a core (`cargo bench --bench scale`, perf), one per
/// 100 ms 4 %. After a quiet spell the first change goes out at once, and
/// a face's request is followed by one at once: whoever asks next (`mewld
/// status` after `mewld stop 3`) sees what it did.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(100);
const EVENT_BUFFER: usize = 8192;
/// Operations and history reads from faces waiting for the engine.
const REQUEST_QUEUE: usize = 256;

pub struct Engine {
    core: Core,
    /// The live processes, by cluster and generation.
    children: Children,
    transport: Transport,
    /// From faces: bounded, faces wait.
    requests: mpsc::Receiver<FaceRequest>,
    /// From processes and the engine's own tasks. Unbounded by type, bounded
    /// in fact: each process reports one exit, one gateway fetch runs at a
    /// time, and none of them may wait.
    internal_tx: mpsc::UnboundedSender<Message>,
    internal: mpsc::UnboundedReceiver<Message>,
    events: broadcast::Sender<Event>,
    snapshot_tx: watch::Sender<Arc<Snapshot>>,
    timers: DelayQueue<Timer>,
    timer_keys: HashMap<Timer, delay_queue::Key>,
    /// The identify queue's reports, when it runs.
    identify: Option<identify::Link>,
    /// The fleet task's views, in a fleet.
    fleet: Option<watch::Receiver<Option<mewld_core::fleet::FleetView>>>,
    /// The clusters the descriptor budget keeps a reserve for.
    budgeted: usize,
}

impl Engine {
    /// Builds the engine and a handle to it. Subscribe to the handle's
    /// events before calling [`Engine::run`] to miss nothing.
    pub fn new(setup: Setup, transport: Transport) -> (Engine, EngineHandle) {
        let (requests_tx, requests) = mpsc::channel(REQUEST_QUEUE);
        let (internal_tx, internal) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
        let children = Children::new(&setup.config, setup.env_vars);
        let core = Core::new(
            setup.config,
            setup.shard_count,
            setup.clusters,
            setup.gateway.as_ref().map(|g| &g.session_start_limit),
            setup.fleet,
            now(),
            rand::random(),
        );
        let budgeted = core.process_slots();
        fd_budget::reserve_for(budgeted);
        let engine = Engine {
            core,
            children,
            transport,
            requests,
            internal_tx,
            internal,
            events: events.clone(),
            snapshot_tx,
            timers: DelayQueue::new(),
            timer_keys: HashMap::new(),
            identify: None,
            fleet: None,
            budgeted,
        };
        let handle = EngineHandle {
            requests: requests_tx,
            events,
            snapshot: snapshot_rx,
        };
        (engine, handle)
    }

    /// Shows the identify queue's status in the snapshot and writes its
    /// notices to the action log.
    pub fn follow_identify(&mut self, link: identify::Link) {
        self.identify = Some(link);
    }

    pub fn config(&self) -> Arc<Config> {
        self.core.config_arc()
    }

    /// This host's place in the fleet, if it runs in one.
    pub fn membership(&self) -> Option<mewld_core::fleet::Membership> {
        self.core.membership()
    }

    /// The shard count and the number of clusters of the whole map.
    pub fn map_size(&self) -> (u32, u32) {
        self.core.map_size()
    }

    /// Learns the other hosts of the fleet from the fleet task's views.
    pub fn follow_fleet(&mut self, view: watch::Receiver<Option<mewld_core::fleet::FleetView>>) {
        self.fleet = Some(view);
    }

    /// Runs until a shutdown or process restart has stopped every cluster.
    pub async fn run(mut self, mut transport_rx: mpsc::Receiver<TransportEvent>) -> Exit {
        self.feed(Input::Begin, None);
        self.publish_snapshot();
        let mut snapshot_due = tokio::time::interval(SNAPSHOT_EVERY);
        snapshot_due.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut changed = false;
        loop {
            let mut asked = false;
            tokio::select! {
                _ = snapshot_due.tick(), if changed => {
                    self.publish_snapshot();
                    changed = false;
                    continue;
                }
                Some(request) = self.requests.recv() => {
                    self.on_request(request);
                    asked = true;
                }
                Some(message) = self.internal.recv() => self.on_message(message),
                Some(event) = transport_rx.recv() => self.on_transport(event),
                Some(expired) = self.timers.next() => {
                    let timer = expired.into_inner();
                    self.timer_keys.remove(&timer);
                    self.feed(Input::Timer(timer), None);
                }
                // A new status needs nothing more: the next snapshot takes it.
                Some(notice) = identify_report(&mut self.identify) => {
                    if let Some(notice) = notice {
                        self.write_log(LogEvent::from(notice).entry(SystemTime::now()), Event::ActionLog);
                    }
                }
                Some(view) = fleet_view(&mut self.fleet) => self.feed(Input::Fleet(view), None),
            }
            changed = !asked;
            if asked {
                self.publish_snapshot();
            }
            if let Some(exit) = self.core.finished() {
                // The last one says how it ended (attached consoles read it).
                self.publish_snapshot();
                let _ = tokio::time::timeout(EXIT_FLUSH_TIMEOUT, self.transport.flush()).await;
                return exit;
            }
        }
    }

    fn on_request(&mut self, request: FaceRequest) {
        match request {
            FaceRequest::Op { op, via, reply } => self.feed(Input::Op { op, via }, Some(reply)),
            // Published before the answer, so whoever waited on it reads
            // a current snapshot next (`mewld status` right after a launch).
            FaceRequest::Alive(reply) => {
                self.publish_snapshot();
                let _ = reply.send(());
            }
            FaceRequest::History(reply) => {
                let transport = self.transport.clone();
                tokio::spawn(async move {
                    let _ = reply.send(transport.read_log().await);
                });
            }
        }
    }

    fn on_message(&mut self, message: Message) {
        match message {
            Message::Exited {
                id,
                generation,
                exit,
            } => {
                self.children.exited(id, generation);
                self.feed(
                    Input::Exited {
                        id,
                        generation,
                        exit,
                    },
                    None,
                );
            }
            Message::GatewayFetched(result) => self.feed(Input::GatewayFetched(result), None),
        }
    }

    fn on_transport(&mut self, event: TransportEvent) {
        let input = match event {
            TransportEvent::Up => Input::TransportUp,
            TransportEvent::Down { retry_at } => Input::TransportDown { retry_at },
            TransportEvent::Message { payload, from } => match protocol::parse(&payload) {
                Ok(Some(request)) => Input::Request {
                    request,
                    via: from.into(),
                },
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        payload = %protocol::truncate(&String::from_utf8_lossy(&payload), 200),
                        "ignored a malformed message"
                    );
                    return;
                }
            },
        };
        self.feed(input, None);
    }

    /// Steps the core with `input` and carries out what it decides,
    /// including the inputs those commands produce at once (a spawn's
    /// outcome). A verdict goes to `reply`.
    fn feed(&mut self, input: Input, reply: Option<oneshot::Sender<Result<(), Refused>>>) {
        drive(
            &mut Feeding {
                engine: self,
                reply,
            },
            input,
        );
        // A reshard may have added clusters: each needs its descriptors.
        if self.core.process_slots() != self.budgeted {
            self.budgeted = self.core.process_slots();
            fd_budget::reserve_for(self.budgeted);
        }
    }

    fn execute(
        &mut self,
        command: Command,
        reply: &mut Option<oneshot::Sender<Result<(), Refused>>>,
    ) -> Option<Input> {
        match command {
            Command::Spawn {
                id,
                name,
                generation,
                line,
                replaces,
            } => {
                let config = self.core.config_arc();
                let (events, inbox) = (&self.events, &self.internal_tx);
                let result = self.children.spawn(
                    &config, events, inbox, id, name, generation, &line, replaces,
                );
                return Some(Input::Spawned {
                    id,
                    generation,
                    result,
                });
            }
            Command::Stop { id, generation } => {
                let grace = self.core.config().stop_grace_period;
                self.children.stop(id, generation, grace);
            }
            Command::Publish { channel, payload } => {
                let channel = self.core.config().channels().name(&channel);
                self.transport.publish(channel, payload);
            }
            Command::Log(mut event) => {
                self.children.fill(&mut event);
                self.write_log(event.entry(SystemTime::now()), Event::ActionLog);
            }
            Command::ClusterLog { data, store } => {
                let entry = actlog::from_cluster(data, SystemTime::now());
                match store {
                    true => self.write_log(entry, Event::ClusterLog),
                    false => {
                        let _ = self.events.send(Event::ClusterLog(entry));
                    }
                }
            }
            Command::SetTimer { timer, after } => match self.timer_keys.get(&timer) {
                Some(key) => self.timers.reset(key, after),
                None => {
                    let key = self.timers.insert(timer.clone(), after);
                    self.timer_keys.insert(timer, key);
                }
            },
            Command::CancelTimer(timer) => {
                if let Some(key) = self.timer_keys.remove(&timer) {
                    self.timers.remove(&key);
                }
            }
            Command::FetchGateway => {
                let inbox = self.internal_tx.clone();
                let token = self.core.config().token.clone();
                let proxy = self.core.config().proxy.clone();
                tokio::spawn(async move {
                    let result = match &token {
                        Some(token) => discord::get_gateway_bot(proxy.as_deref(), token)
                            .await
                            .map_err(|e| e.to_string()),
                        None => Err("no bot token".to_string()),
                    };
                    let _ = inbox.send(Message::GatewayFetched(result));
                });
            }
            Command::Verdict(result) => {
                if let Some(reply) = reply.take() {
                    let _ = reply.send(result);
                }
            }
        }
        None
    }

    /// Writes `entry`, and tells the faces as the event `told` makes it.
    fn write_log(&self, entry: Map<String, Value>, told: fn(Map<String, Value>) -> Event) {
        let text = Value::Object(entry.clone()).to_string();
        tracing::info!(target: "mewld::actlog", "{}", protocol::truncate(&text, 500));
        self.transport.push_log(text);
        let _ = self.events.send(told(entry));
    }

    fn publish_snapshot(&self) {
        let mut snapshot = self.core.snapshot();
        snapshot.identify = self.identify.as_ref().map(|l| l.status.borrow().clone());
        self.snapshot_tx.send_if_modified(|current| {
            if **current == snapshot {
                false
            } else {
                *current = Arc::new(snapshot);
                true
            }
        });
    }
}

/// The engine carrying out one input's commands; a verdict goes to `reply`.
struct Feeding<'e> {
    engine: &'e mut Engine,
    reply: Option<oneshot::Sender<Result<(), Refused>>>,
}

impl Driver for Feeding<'_> {
    fn core(&mut self) -> &mut Core {
        &mut self.engine.core
    }

    fn now(&mut self) -> Now {
        now()
    }

    fn execute(&mut self, command: Command) -> Option<Input> {
        self.engine.execute(command, &mut self.reply)
    }
}

/// The identify queue's next report: `Some(Some(notice))`, or
/// `Some(None)` when its status changed; never, without the queue.
async fn identify_report(link: &mut Option<identify::Link>) -> Option<Option<Notice>> {
    let Some(link) = link else {
        return std::future::pending().await;
    };
    tokio::select! {
        Some(notice) = link.notices.recv() => Some(Some(notice)),
        Ok(()) = link.status.changed() => {
            link.status.mark_unchanged();
            Some(None)
        }
        else => std::future::pending().await,
    }
}

/// The fleet task's next view; never, outside a fleet (or once the task
/// has ended).
async fn fleet_view(
    rx: &mut Option<watch::Receiver<Option<mewld_core::fleet::FleetView>>>,
) -> Option<mewld_core::fleet::FleetView> {
    let Some(watch) = rx else {
        return std::future::pending().await;
    };
    if watch.changed().await.is_err() {
        *rx = None;
        return std::future::pending().await;
    }
    watch.borrow_and_update().clone()
}

/// The time, for the core: monotonic for its timers, wall for people.
fn now() -> Now {
    Now {
        at: std::time::Instant::now(),
        wall: std::time::SystemTime::now(),
    }
}
