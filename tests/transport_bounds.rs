//! The engine's outbound queue stays within its bounds when what is behind
//! it stops: a frozen redis-server (SIGSTOP), or, on the Unix socket, an
//! engine that does not take its own lines back. The engine's calls never
//! wait; the oldest publishes go, every drop is counted and reported in a
//! few summary lines, and once things move again the newest publishes and
//! every kept action-log entry arrive.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use mewld::transport::{self, Backlog, Dropped, Transport, TransportEvent};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Publishes and action-log entries sent while stuck: well past the bounds.
const PUBLISHES: usize = 30_000;
const ENTRIES: usize = 15_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The log lines of this test binary (every test's: filter by transport).
fn log_lines() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        log
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The drop reports of `transport`, each summed into counts.
fn drop_reports(log: &Mutex<Vec<u8>>, transport: &str) -> Vec<Dropped> {
    let text = String::from_utf8_lossy(&log.lock().expect("lock")).into_owned();
    let field = |line: &str, name: &str| -> u64 {
        let at = line
            .find(&format!(" {name}="))
            .expect("the field is logged")
            + name.len()
            + 2;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a count")
    };
    text.lines()
        .filter(|l| {
            l.contains("dropped outbound messages")
                && l.contains(&format!("transport=\"{transport}\""))
        })
        .map(|l| Dropped {
            publishes: field(l, "publishes"),
            stale_publishes: field(l, "stale_publishes"),
            log_entries: field(l, "log_entries"),
            requests: field(l, "requests"),
        })
        .collect()
}

fn sum(reports: &[Dropped]) -> Dropped {
    reports.iter().fold(Dropped::default(), |a, r| Dropped {
        publishes: a.publishes + r.publishes,
        stale_publishes: a.stale_publishes + r.stale_publishes,
        log_entries: a.log_entries + r.log_entries,
        requests: a.requests + r.requests,
    })
}

/// Floods `transport` with numbered publishes on `channel` (and, with
/// `entries`, a log entry every other publish); checks after every call
/// that the queue is within its bounds, and returns the most it held.
fn flood(transport: &Transport, channel: &str, entries: bool) -> Backlog {
    let mut most = Backlog::default();
    for i in 0..PUBLISHES {
        transport.publish(channel.into(), json!({"n": i}).to_string());
        if entries && i % 2 == 0 {
            transport.push_log(json!({"entry": i / 2}).to_string());
        }
        let now = transport.backlog();
        assert!(now.within(&Backlog::LIMITS), "past the bounds: {now:?}");
        most.publishes = most.publishes.max(now.publishes);
        most.log_entries = most.log_entries.max(now.log_entries);
    }
    most
}

/// Waits until every drop of `transport` is in its reports, and checks
/// that they came as a few summary lines (one per 5 s at most, the first at
/// once), not one per drop.
fn assert_drops_reported(t: &Transport, name: &str, since: Instant) {
    let log = log_lines();
    let reports = wait_for("every drop to be reported", DEADLINE, || {
        let reports = drop_reports(&log, name);
        (sum(&reports) == t.dropped()).then_some(reports)
    });
    let most = 2 + since.elapsed().as_secs() / 5;
    assert!(
        reports.len() as u64 <= most,
        "{} reports in {:?}: {reports:?}",
        reports.len(),
        since.elapsed()
    );
}

fn n_of(v: &Value) -> Option<usize> {
    v["n"].as_u64().map(|n| n as usize)
}

#[test]
fn a_frozen_redis_costs_the_oldest_publishes_not_memory_and_the_newest_arrive_after() {
    log_lines();
    let redis = Redis::start();
    let channel = channel("transport_bounds_frozen");
    let log_key = format!("{channel}/actlogs");
    let listener = redis.listen(&channel);
    let rt = runtime();
    let _in_rt = rt.enter();
    let (transport, events) = transport::redis::start(
        &redis.url(),
        &mewld_core::protocol::Channels(&channel),
        log_key.clone(),
        100_000,
    )
    .expect("a usable URL");
    rt.spawn(drain(events));
    transport.publish(channel.clone(), json!({"probe": true}).to_string());
    listener.wait("the probe: the writer is connected", |m| m["probe"] == true);

    redis.freeze();
    let frozen = Instant::now();
    let most = flood(&transport, &channel, true);
    // Filled to the bounds, not past them.
    assert_eq!(most.publishes, Backlog::LIMITS.publishes);
    assert_eq!(most.log_entries, Backlog::LIMITS.log_entries);
    let dropped = transport.dropped();
    // Besides what is queued, the writer holds one pipeline (at most 512)
    // or one entry in flight.
    assert!(
        dropped.publishes as usize >= PUBLISHES - Backlog::LIMITS.publishes - 512,
        "{dropped:?}"
    );
    assert!(
        dropped.log_entries as usize >= ENTRIES - Backlog::LIMITS.log_entries - 1,
        "{dropped:?}"
    );
    assert_drops_reported(&transport, "redis", frozen);
    redis.thaw();

    // After the thaw, what was queued is written or dropped as stale, in
    // order. A marker published now is written after every one of them
    // (if the queue is still full, it pushes the oldest out): once it is
    // in, each queued publish arrived or was counted.
    let pushed_before = transport.dropped().publishes;
    transport.publish(channel.clone(), json!({"marker": true}).to_string());
    listener.wait("the marker published after the thaw", |m| {
        m["marker"] == true
    });
    let dropped = transport.dropped();
    let (stale, pushed) = (
        dropped.stale_publishes as usize,
        (dropped.publishes - pushed_before) as usize,
    );
    let arrived: HashSet<usize> = listener.all().iter().filter_map(n_of).collect();
    let queued = PUBLISHES - Backlog::LIMITS.publishes..PUBLISHES;
    let written = queued.clone().filter(|n| arrived.contains(n)).count();
    assert!(
        written + stale + pushed >= queued.len(),
        "{written} written, {stale} stale, {pushed} pushed out of {} queued",
        queued.len()
    );
    // Those dropped for room were the oldest queued: besides the queue,
    // only the pipeline the writer held when Redis froze (the flood's
    // first, at most 512) can have arrived.
    let between: Vec<&usize> = arrived
        .iter()
        .filter(|&&n| n >= 512 && n < queued.start)
        .collect();
    assert!(
        between.is_empty(),
        "dropped for room, yet arrived: {between:?}"
    );
    assert!(arrived.len() < PUBLISHES, "some were dropped");
    // Written within their life (nothing stale), the newest arrived too.
    if stale == 0 {
        assert!(
            arrived.contains(&(PUBLISHES - 1)),
            "the newest publish is missing"
        );
    }

    // Every kept action-log entry is written (a retried write may repeat one).
    let kept = ENTRIES - Backlog::LIMITS.log_entries..ENTRIES;
    wait_for("every kept action-log entry in Redis", DEADLINE, || {
        let written: HashSet<usize> = redis
            .action_log(&channel)
            .iter()
            .filter_map(|e| e["entry"].as_u64().map(|n| n as usize))
            .collect();
        kept.clone().all(|n| written.contains(&n)).then_some(())
    });
    assert_eq!(transport.backlog(), Backlog::default());
}

#[test]
fn an_engine_not_taking_its_own_lines_back_costs_the_oldest_publishes_on_the_socket() {
    log_lines();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mewld.sock");
    let rt = runtime();
    let _in_rt = rt.enter();
    let (transport, mut events) = transport::unix::start(&path, 100).expect("listen");
    let mut client = SocketClient::connect(&path);
    // The hub learns of a client a moment after it connects, and a line
    // published before that does not reach it: probe until one does.
    let served = Arc::new(AtomicBool::new(false));
    let prober = {
        let (transport, served) = (transport.clone(), served.clone());
        std::thread::spawn(move || {
            while !served.load(Ordering::SeqCst) {
                // The socket has no channels.
                transport.publish(String::new(), json!({"probe": true}).to_string());
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    client.wait(|m| m["probe"] == true);
    served.store(true, Ordering::SeqCst);
    prober.join().expect("the prober");

    // Nobody takes the events: the hub stops once the engine's inbound
    // queue is full, and the engine's publishes wait in the bounded queue.
    let stuck = Instant::now();
    // The socket has no channels.
    let most = flood(&transport, "", false);
    assert_eq!(most.publishes, Backlog::LIMITS.publishes);
    assert!(transport.dropped().publishes > 0);
    assert_drops_reported(&transport, "unix socket", stuck);

    // The engine takes its lines again: the newest arrive, to it and to
    // the client, and nothing is left waiting.
    let kept = PUBLISHES - Backlog::LIMITS.publishes..PUBLISHES;
    let seen = rt.block_on(async {
        let mut seen = HashSet::new();
        while !seen.contains(&(PUBLISHES - 1)) {
            match tokio::time::timeout(DEADLINE, events.recv()).await {
                Ok(Some(TransportEvent::Message { payload, .. })) => {
                    if let Some(n) = serde_json::from_slice::<Value>(&payload)
                        .ok()
                        .as_ref()
                        .and_then(n_of)
                    {
                        seen.insert(n);
                    }
                }
                Ok(Some(_)) => {}
                other => panic!("no more events: {other:?}"),
            }
        }
        seen
    });
    assert!(kept.clone().all(|n| seen.contains(&n)));
    let at_client = std::cell::RefCell::new(HashSet::new());
    client.wait(|m| {
        at_client.borrow_mut().extend(n_of(m));
        n_of(m) == Some(PUBLISHES - 1)
    });
    assert!(kept.clone().all(|n| at_client.borrow().contains(&n)));
    assert_eq!(transport.backlog(), Backlog::default());
}

/// Takes the transport's events, so its subscriber never waits on them.
async fn drain(mut events: mpsc::Receiver<TransportEvent>) {
    while events.recv().await.is_some() {}
}
