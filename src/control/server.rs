//! The engine's end of the control socket: every client gets the snapshot,
//! the stored action log, each cluster's latest output lines, then live
//! snapshots and events, and may ask for operations (logged `via: attach`
//! with its pid and uid).
//!
//! What a client can make the server hold is bounded: connections still in
//! their hello ([`MAX_GREETING`], each for [`HELLO_TIMEOUT`]; one more
//! closes the oldest, so silent connections cannot keep a console out),
//! consoles past it ([`MAX_CLIENTS`]), the process's descriptor budget, a
//! request line ([`super::MAX_CLIENT_LINE`]), requests in flight (one per
//! client: the next is read once the verdict is out), the history (read
//! and sent to one client at a time, in pages of about [`PAGE_BYTES`]),
//! the output backlog ([`Backlog`]), and what waits for a slow reader
//! (snapshots are coalesced, events wait in the engine's bounded broadcast
//! and are skipped past with a `lagged` notice; a client that takes no line
//! for [`WRITE_TIMEOUT`], or not the whole history in [`HISTORY_TIMEOUT`],
//! is dropped).

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use tokio_util::codec::{FramedRead, LinesCodec};

use super::{
    line, mismatch, ClientMsg, Hello, ServerMsg, MAX_CLIENT_LINE, MAX_SERVER_LINE, PROTOCOL,
};
use crate::cluster_map::ClusterId;
use crate::engine::{next_snapshot, EngineHandle, Event, Via};
use crate::transport::Peer;
use crate::{fd_budget, socket_file};

/// Consoles attached at once (past their hello); more are told so and
/// closed.
const MAX_CLIENTS: usize = 64;
/// Connections still in their hello at once; one more closes the oldest.
const MAX_GREETING: usize = 64;
/// How long a connection has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that takes no line for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that has not taken the whole history in this long is dropped:
/// the others wait for their turn meanwhile.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(60);
/// A history page holds entries up to about this many bytes (one longer
/// entry goes alone).
const PAGE_BYTES: usize = 1024 * 1024;
/// An entry longer than this would not fit in a line the client takes:
/// a notice goes in its place.
const MAX_ENTRY: usize = MAX_SERVER_LINE - 1024;
/// History entries remembered to drop their live copies (an entry written
/// while the history was read arrives both ways).
const DEDUP_TAIL: usize = 1000;
/// Output lines kept per cluster for consoles that attach later (an
/// embedded console has every line from the start), and the bytes they
/// may take, per cluster and in all; the oldest go first.
const BACKLOG_LINES: usize = 200;
const BACKLOG_CLUSTER_BYTES: usize = 128 * 1024;
const BACKLOG_BYTES: usize = 8 * 1024 * 1024;
/// What a kept line costs beyond its text (its slot and pointer).
const LINE_OVERHEAD: usize = 64;

/// The control socket, claimed before anything starts, so a second
/// manager on the same config refuses to start instead of fighting the
/// first over the clusters.
pub struct Control {
    listener: UnixListener,
}

impl Control {
    /// Claims `path`, refusing a world-writable directory or a live socket
    /// of another manager.
    pub fn bind(path: &Path) -> Result<Control, String> {
        socket_file::check_private_dir(path).map_err(|e| format!("control socket: {e}"))?;
        let listener = socket_file::claim(path).map_err(|e| {
            let who = match e.kind() {
                std::io::ErrorKind::AddrInUse => {
                    " (another mewld runs with this config; `mewld attach` reaches it)"
                }
                std::io::ErrorKind::InvalidInput => {
                    " (set by `control_socket` in the config, or --control-socket)"
                }
                _ => "",
            };
            format!("control socket {}: {e}{who}", path.display())
        })?;
        Ok(Control { listener })
    }

    /// Serves `handle` to every client until the process ends.
    pub fn serve(self, handle: EngineHandle, hello: Hello) {
        let shared = Arc::new(Shared {
            backlog: Backlog::default(),
            slots: Arc::new(Semaphore::new(MAX_CLIENTS)),
            history_turn: Semaphore::new(1),
            handle,
            hello,
        });
        tokio::spawn(keep_backlog(shared.handle.events(), shared.clone()));
        tokio::spawn(accept(self.listener, shared));
    }
}

/// What every client's task shares.
struct Shared {
    handle: EngineHandle,
    hello: Hello,
    backlog: Backlog,
    /// One per console past its hello.
    slots: Arc<Semaphore>,
    /// One history read and sent at a time, however many attach at once:
    /// an attach costs the daemon at most one history.
    history_turn: Semaphore,
}

/// Keeps each cluster's latest output lines.
async fn keep_backlog(mut events: broadcast::Receiver<Event>, shared: Arc<Shared>) {
    loop {
        match events.recv().await {
            Ok(event @ Event::Output { id, .. }) => {
                let msg: ServerMsg = ServerMsg::Event { event };
                let text = line(&msg);
                shared.backlog.lock().push(id, text.into());
            }
            Ok(Event::ActionLog(_) | Event::ClusterLog(_)) => {}
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                tracing::warn!(
                    skipped,
                    "output came faster than the attach backlog kept it"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn accept(listener: UnixListener, shared: Arc<Shared>) {
    let greeting = Greeting::default();
    let mut fds = fd_budget::Gate::new("control socket");
    loop {
        let Some(fd) = fds.permit().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors: the listener stays readable.
                tracing::warn!(error = %e, "cannot accept a control client; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let peer = match crate::transport::peer_of(&stream) {
            Ok(peer) => peer,
            Err(e) => {
                tracing::warn!(error = %e, "closed a control client whose credentials are unknown");
                continue;
            }
        };
        let ticket = greeting.enter();
        let shared = shared.clone();
        tokio::spawn(async move {
            match serve_client(stream, peer, &shared, ticket).await {
                Ok(()) => tracing::info!(%peer, "a console detached"),
                Err(why) => tracing::info!(%peer, %why, "a console was disconnected"),
            }
            drop(fd);
        });
    }
}

/// One client, from hello to hang-up.
async fn serve_client(
    stream: UnixStream,
    peer: Peer,
    shared: &Shared,
    ticket: Ticket,
) -> Result<(), String> {
    let (read, mut write) = stream.into_split();
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(MAX_CLIENT_LINE));
    let theirs = ticket
        .greet(async {
            send(&mut write, &ServerMsg::Hello(shared.hello.clone())).await?;
            match lines.next().await {
                Some(Ok(text)) => match serde_json::from_str::<ClientMsg>(&text) {
                    Ok(ClientMsg::Hello { protocol }) => Ok(protocol),
                    _ => Err("the first line was not a hello".to_string()),
                },
                _ => Err("no hello".to_string()),
            }
        })
        .await?;
    if theirs != PROTOCOL {
        let message = mismatch(PROTOCOL, theirs);
        send(&mut write, &ServerMsg::Error { message }).await?;
        return Err(format!("protocol {theirs}"));
    }
    let Ok(_slot) = shared.slots.clone().try_acquire_owned() else {
        tracing::warn!(%peer, max = MAX_CLIENTS, "too many attached consoles; closed one");
        let message = format!("too many consoles attached (at most {MAX_CLIENTS})");
        send(&mut write, &ServerMsg::Error { message }).await?;
        return Err("too many consoles".into());
    };
    tracing::info!(%peer, "a console attached");
    let handle = &shared.handle;
    // Subscribed before the history is read, and with the output backlog
    // held still, so nothing falls in between.
    let (mut events, output) = {
        let backlog = shared.backlog.lock();
        (handle.events(), backlog.lines())
    };
    let mut snapshots = handle.snapshot();
    let snapshot = Box::new(snapshots.borrow_and_update().as_ref().clone());
    send(&mut write, &ServerMsg::Snapshot { snapshot }).await?;
    let mut seen = {
        let _turn = shared
            .history_turn
            .acquire()
            .await
            .map_err(|_| "the server is closing".to_string())?;
        send_history(&mut write, handle).await?
    };
    for text in output {
        send_line(&mut write, &text).await?;
    }

    // Requests are read and carried out one at a time, in a task of their
    // own, so a slow verdict never holds up the stream to this client.
    let (verdicts_tx, mut verdicts) = mpsc::channel::<ServerMsg>(1);
    let requests = tokio::spawn(read_requests(lines, peer, handle.clone(), verdicts_tx));
    let outcome = loop {
        let msg = tokio::select! {
            s = next_snapshot(&mut snapshots) => match s {
                Some(s) => ServerMsg::Snapshot { snapshot: Box::new(s.as_ref().clone()) },
                None => break Ok(()),
            },
            event = events.recv() => match event {
                Ok(Event::ActionLog(entry) | Event::ClusterLog(entry)) if seen.take(&entry) => continue,
                Ok(event) => ServerMsg::Event { event },
                Err(broadcast::error::RecvError::Lagged(skipped)) => ServerMsg::Lagged { skipped },
                Err(broadcast::error::RecvError::Closed) => break Ok(()),
            },
            verdict = verdicts.recv() => match verdict {
                Some(msg) => msg,
                // The client hung up (or sent something unreadable).
                None => break Ok(()),
            },
        };
        if let Err(e) = send(&mut write, &msg).await {
            break Err(e);
        }
    };
    requests.abort();
    outcome
}

/// Reads the action log and sends it in pages; what is left to drop of its
/// live copies.
async fn send_history(write: &mut OwnedWriteHalf, handle: &EngineHandle) -> Result<Seen, String> {
    let entries = handle.history().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not read the action log for an attached console");
        Vec::new()
    });
    let seen = Seen::of(entries.iter().rev().take(DEDUP_TAIL));
    let mut pages = Pages::new(entries);
    let sent = tokio::time::timeout(HISTORY_TIMEOUT, async {
        for page in pages.by_ref() {
            send_line(write, &page).await?;
        }
        Ok::<_, String>(())
    })
    .await;
    if pages.skipped + pages.replaced > 0 {
        tracing::warn!(
            skipped = pages.skipped,
            replaced = pages.replaced,
            "the action log holds entries that are not JSON objects (skipped) or too long for a line (a notice sent in their place)"
        );
    }
    sent.map_err(|_| format!("did not take the whole history in {HISTORY_TIMEOUT:?}"))??;
    Ok(seen)
}

/// The history as lines of pages, oldest first; the last says `done`.
/// Entries go as stored, never parsed into maps.
struct Pages {
    entries: std::vec::IntoIter<String>,
    /// The entry that did not fit in the last page.
    carried: Option<Box<RawValue>>,
    finished: bool,
    /// Entries that are not JSON objects, left out.
    skipped: usize,
    /// Entries too long for a line, a notice sent in their place.
    replaced: usize,
}

impl Pages {
    fn new(entries: Vec<String>) -> Pages {
        Pages {
            entries: entries.into_iter(),
            carried: None,
            finished: false,
            skipped: 0,
            replaced: 0,
        }
    }

    /// The next entry as it goes in a page.
    fn next_entry(&mut self) -> Option<Box<RawValue>> {
        if let Some(entry) = self.carried.take() {
            return Some(entry);
        }
        for mut text in self.entries.by_ref() {
            if !text.trim_start().starts_with('{') {
                self.skipped += 1;
                continue;
            }
            if text.len() > MAX_ENTRY {
                let Some(notice) = too_long(&text) else {
                    self.skipped += 1;
                    continue;
                };
                self.replaced += 1;
                return Some(notice);
            }
            // A newline can only be whitespace between JSON's tokens, and
            // would end the line: a space reads the same.
            if text.contains('\n') {
                text = text.replace('\n', " ");
            }
            match RawValue::from_string(text) {
                Ok(entry) => return Some(entry),
                Err(_) => self.skipped += 1,
            }
        }
        None
    }
}

impl Iterator for Pages {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if self.finished {
            return None;
        }
        let mut entries = Vec::new();
        let mut bytes = 0;
        while let Some(entry) = self.next_entry() {
            let len = entry.get().len() + 1;
            if !entries.is_empty() && bytes + len > PAGE_BYTES {
                self.carried = Some(entry);
                return Some(line(&ServerMsg::History {
                    entries,
                    done: false,
                }));
            }
            bytes += len;
            entries.push(entry);
        }
        self.finished = true;
        Some(line(&ServerMsg::History {
            entries,
            done: true,
        }))
    }
}

/// The notice sent in place of an entry too long for a line, with its `ts`
/// (so it shows where the entry was); `None` if it is not a JSON object.
fn too_long(text: &str) -> Option<Box<RawValue>> {
    #[derive(Deserialize)]
    struct Stamp {
        ts: Option<Value>,
    }
    let stamp: Stamp = serde_json::from_str(text).ok()?;
    let mut notice = Map::new();
    notice.insert("event".into(), "entry_too_long".into());
    notice.insert("bytes".into(), text.len().into());
    if let Some(ts) = stamp.ts {
        notice.insert("ts".into(), ts);
    }
    serde_json::value::to_raw_value(&notice).ok()
}

/// The newest history entries, as hashes of their stored text (8 bytes
/// each, whatever their length), each to drop its live copy once.
struct Seen {
    hasher: RandomState,
    hashes: HashSet<u64>,
}

impl Seen {
    fn of<'a>(entries: impl Iterator<Item = &'a String>) -> Seen {
        let hasher = RandomState::new();
        let hashes = entries.map(|e| hasher.hash_one(e.as_str())).collect();
        Seen { hasher, hashes }
    }

    /// Whether `entry` was in the history (then forgotten). The engine
    /// stores an entry as this same text.
    fn take(&mut self, entry: &Map<String, Value>) -> bool {
        if self.hashes.is_empty() {
            return false;
        }
        let Ok(text) = serde_json::to_string(entry) else {
            return false;
        };
        self.hashes.remove(&self.hasher.hash_one(text.as_str()))
    }
}

/// Connections still in their hello, oldest first. One more than
/// [`MAX_GREETING`] closes the oldest: a flood of silent connections turns
/// over, and a console (which says hello at once) gets through.
#[derive(Default)]
struct Greeting(Arc<Mutex<Greeters>>);

#[derive(Default)]
struct Greeters {
    next: u64,
    /// Dropping a sender tells its connection to give up.
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
}

impl Greeting {
    fn lock(&self) -> MutexGuard<'_, Greeters> {
        // Nothing under the lock can leave it half-changed.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more connection in its hello.
    fn enter(&self) -> Ticket {
        let (tx, evicted) = oneshot::channel();
        let mut greeters = self.lock();
        if greeters.waiting.len() >= MAX_GREETING {
            greeters.waiting.pop_front();
        }
        let id = greeters.next;
        greeters.next += 1;
        greeters.waiting.push_back((id, tx));
        Ticket {
            id,
            pool: Greeting(self.0.clone()),
            evicted,
        }
    }
}

/// A connection's place among those in their hello; left when dropped.
struct Ticket {
    id: u64,
    pool: Greeting,
    evicted: oneshot::Receiver<()>,
}

impl Ticket {
    /// Runs the hello within [`HELLO_TIMEOUT`], unless newer connections
    /// need the place first.
    async fn greet<T>(
        mut self,
        hello: impl std::future::Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        tokio::select! {
            done = tokio::time::timeout(HELLO_TIMEOUT, hello) => {
                done.unwrap_or_else(|_| Err("no hello".into()))
            }
            _ = &mut self.evicted => Err("no hello yet, and newer connections needed the place".into()),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.pool.lock().waiting.retain(|(id, _)| *id != self.id);
    }
}

/// Each cluster's latest output lines, as they go on the wire, within
/// [`BACKLOG_LINES`] and [`BACKLOG_CLUSTER_BYTES`] per cluster and
/// [`BACKLOG_BYTES`] in all; the oldest go first.
#[derive(Default)]
struct Backlog(Mutex<Lines>);

impl Backlog {
    fn lock(&self) -> MutexGuard<'_, Lines> {
        // Nothing under the lock can panic halfway.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct Lines {
    clusters: HashMap<ClusterId, Kept>,
    /// Each cluster's oldest line by its number: the next to go when the
    /// total is over.
    oldest: BTreeMap<u64, ClusterId>,
    bytes: usize,
    next: u64,
}

#[derive(Default)]
struct Kept {
    lines: VecDeque<(u64, Arc<str>)>,
    bytes: usize,
}

fn cost(text: &str) -> usize {
    text.len() + LINE_OVERHEAD
}

impl Lines {
    fn push(&mut self, id: ClusterId, text: Arc<str>) {
        let n = self.next;
        self.next += 1;
        self.bytes += cost(&text);
        let kept = self.clusters.entry(id).or_default();
        if kept.lines.is_empty() {
            self.oldest.insert(n, id);
        }
        kept.bytes += cost(&text);
        kept.lines.push_back((n, text));
        while self
            .clusters
            .get(&id)
            .is_some_and(|k| k.lines.len() > BACKLOG_LINES || k.bytes > BACKLOG_CLUSTER_BYTES)
        {
            self.pop(id);
        }
        while self.bytes > BACKLOG_BYTES {
            let Some((_, &id)) = self.oldest.first_key_value() else {
                return;
            };
            self.pop(id);
        }
    }

    /// Drops cluster `id`'s oldest line.
    fn pop(&mut self, id: ClusterId) {
        let Some(kept) = self.clusters.get_mut(&id) else {
            return;
        };
        let Some((n, text)) = kept.lines.pop_front() else {
            return;
        };
        self.oldest.remove(&n);
        kept.bytes -= cost(&text);
        self.bytes -= cost(&text);
        match kept.lines.front() {
            Some((next, _)) => {
                self.oldest.insert(*next, id);
            }
            None => {
                self.clusters.remove(&id);
            }
        }
    }

    /// Every line kept, each cluster's in order.
    fn lines(&self) -> Vec<Arc<str>> {
        let kept = self.clusters.values().flat_map(|k| k.lines.iter());
        kept.map(|(_, text)| text.clone()).collect()
    }
}

/// Reads requests until the client hangs up; each verdict goes out through
/// `verdicts` before the next request is read.
async fn read_requests(
    mut lines: FramedRead<tokio::net::unix::OwnedReadHalf, LinesCodec>,
    peer: Peer,
    handle: EngineHandle,
    verdicts: mpsc::Sender<ServerMsg>,
) {
    while let Some(text) = lines.next().await {
        let text = match text {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "an unreadable line from an attached console; disconnecting it");
                return;
            }
        };
        match serde_json::from_str::<ClientMsg>(&text) {
            Ok(ClientMsg::Request { id, op }) => {
                let result = handle.request(op, Via::Attach(peer)).await;
                if verdicts
                    .send(ServerMsg::Verdict { id, result })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(ClientMsg::Hello { .. }) => {}
            Err(e) => {
                tracing::warn!(%peer, error = %e, "ignored an unknown message from an attached console");
            }
        }
    }
}

async fn send(write: &mut OwnedWriteHalf, msg: &ServerMsg) -> Result<(), String> {
    send_line(write, &line(msg)).await
}

async fn send_line(write: &mut OwnedWriteHalf, text: &str) -> Result<(), String> {
    match tokio::time::timeout(WRITE_TIMEOUT, write.write_all(text.as_bytes())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("took no line for {WRITE_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A page as the client reads it.
    struct Read {
        entries: Vec<Map<String, Value>>,
        done: bool,
        bytes: usize,
    }

    fn read(pages: &mut Pages) -> Vec<Read> {
        pages
            .map(|text| {
                assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
                match serde_json::from_str::<ServerMsg>(&text) {
                    Ok(ServerMsg::History { entries, done }) => Read {
                        entries,
                        done,
                        bytes: text.len(),
                    },
                    other => panic!("not a history page: {other:?}"),
                }
            })
            .collect()
    }

    fn entries(read: Vec<Read>) -> Vec<Map<String, Value>> {
        read.into_iter().flat_map(|r| r.entries).collect()
    }

    #[test]
    fn the_history_goes_in_pages_of_a_mebibyte_each_entry_as_stored() {
        let pad = "x".repeat(1000);
        let mut stored: Vec<String> = (0..3000)
            .map(|n| json!({"event": "e", "n": n, "pad": pad}).to_string())
            .collect();
        // One entry over a page goes alone.
        stored.insert(
            1500,
            json!({"event": "big", "pad": "y".repeat(3 << 20)}).to_string(),
        );
        // Not objects: left out, and the pages still read.
        stored.insert(10, "not json".into());
        stored.insert(20, "[1, 2]".into());
        stored.insert(30, "{\"broken\": ".into());
        // A newline between tokens would end the line.
        stored.insert(40, "{\"event\":\n \"newline\"}".into());
        let mut pages = Pages::new(stored);
        let read = read(&mut pages);
        assert_eq!((pages.skipped, pages.replaced), (3, 0));
        let done: Vec<bool> = read.iter().map(|r| r.done).collect();
        assert_eq!(done.iter().filter(|d| **d).count(), 1, "{done:?}");
        assert_eq!(done.last(), Some(&true));
        for r in &read {
            assert!(
                r.bytes <= PAGE_BYTES + 100 || r.entries.len() == 1,
                "a page of {} entries in {} bytes",
                r.entries.len(),
                r.bytes
            );
        }
        assert!(read.len() > 3, "{} pages", read.len());
        let entries = entries(read);
        assert_eq!(entries.len(), 3002);
        assert_eq!(entries[37]["event"], "newline");
        assert_eq!(entries[1501]["event"], "big");
        let numbers: Vec<u64> = entries
            .iter()
            .filter_map(|e| e.get("n").and_then(Value::as_u64))
            .collect();
        assert_eq!(numbers, (0..3000).collect::<Vec<_>>());
    }

    #[test]
    fn an_empty_history_is_one_last_page() {
        let read = read(&mut Pages::new(Vec::new()));
        assert_eq!(read.len(), 1);
        assert!(read[0].entries.is_empty() && read[0].done);
    }

    #[test]
    fn an_entry_too_long_for_a_line_is_replaced_by_a_notice() {
        let long = json!({"event": "huge", "ts": 7, "pad": "z".repeat(MAX_ENTRY)}).to_string();
        let mut pages = Pages::new(vec![
            json!({"event": "before"}).to_string(),
            long.clone(),
            json!({"event": "after"}).to_string(),
        ]);
        let read = read(&mut pages);
        assert_eq!((pages.skipped, pages.replaced), (0, 1));
        let entries = entries(read);
        assert_eq!(entries.len(), 3);
        assert_eq!(
            Value::Object(entries[1].clone()),
            json!({"event": "entry_too_long", "bytes": long.len(), "ts": 7})
        );
        assert_eq!(entries[2]["event"], "after");
    }

    #[test]
    fn a_live_entry_is_dropped_once_when_the_history_had_it() {
        let entry = json!({"event": "cluster_started", "id": 1, "ts": 5});
        let Value::Object(entry) = entry else {
            unreachable!()
        };
        // As the engine stores it.
        let stored = Value::Object(entry.clone()).to_string();
        let mut seen = Seen::of([stored].iter());
        let mut other = entry.clone();
        other.insert("ts".into(), 6.into());
        assert!(!seen.take(&other));
        assert!(seen.take(&entry));
        assert!(!seen.take(&entry), "once");
    }

    fn line_of(bytes: usize) -> Arc<str> {
        "o".repeat(bytes - LINE_OVERHEAD).into()
    }

    #[test]
    fn the_backlog_keeps_the_newest_lines_within_its_bounds() {
        let mut lines = Lines::default();
        // Lines per cluster.
        for _ in 0..BACKLOG_LINES + 50 {
            lines.push(0, line_of(100));
        }
        assert_eq!(lines.clusters[&0].lines.len(), BACKLOG_LINES);
        // Bytes per cluster: long lines.
        for _ in 0..100 {
            lines.push(1, line_of(16 * 1024));
        }
        assert_eq!(lines.clusters[&1].bytes, BACKLOG_CLUSTER_BYTES);
        assert_eq!(lines.clusters[&1].lines.len(), 8);
        // Bytes in all: the oldest lines go, whichever cluster has them.
        let clusters = 2 * BACKLOG_BYTES / BACKLOG_CLUSTER_BYTES;
        for id in 2..2 + clusters as ClusterId {
            for _ in 0..8 {
                lines.push(id, line_of(16 * 1024));
            }
        }
        assert!(lines.bytes <= BACKLOG_BYTES, "{} bytes", lines.bytes);
        assert!(!lines.clusters.contains_key(&0) && !lines.clusters.contains_key(&1));
        let newest = 1 + clusters as ClusterId;
        assert_eq!(lines.clusters[&newest].lines.len(), 8);
        let counted: usize = lines.clusters.values().map(|k| k.bytes).sum();
        assert_eq!(counted, lines.bytes);
        assert_eq!(lines.oldest.len(), lines.clusters.len());
        assert_eq!(lines.lines().len(), BACKLOG_BYTES / (16 * 1024));
    }

    #[tokio::test]
    async fn a_connection_in_its_hello_makes_way_for_a_newer_one() {
        let greeting = Greeting::default();
        let first = greeting.enter();
        let rest: Vec<Ticket> = (1..MAX_GREETING).map(|_| greeting.enter()).collect();
        // Full: one more makes the oldest give up its hello, at once.
        let _newest = greeting.enter();
        let gave_up = first.greet(std::future::pending::<Result<(), String>>());
        let gave_up = tokio::time::timeout(Duration::from_secs(1), gave_up).await;
        assert!(matches!(gave_up, Ok(Err(_))), "{gave_up:?}");
        // Those done with their hello leave their places: nobody goes.
        drop(rest);
        let mut second = greeting.enter();
        let _third = greeting.enter();
        assert_eq!(greeting.lock().waiting.len(), 3);
        assert_eq!(
            second.evicted.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        );
    }
}
