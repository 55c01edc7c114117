//! The small HTTP/1 servers mewld runs beside the engine (metrics, the
//! identify queue): a bounded pool of connections per server and per peer
//! (the oldest closed to make room, see [`Pool`]), each in a task of its
//! own, a deadline for each request's head and a small buffer, so no
//! client can hold up the engine or fill the memory, nor slow clients
//! keep a quick one out.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::fd_budget;

/// Time to send a request's head.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(5);
/// A request's head must fit (hyper's smallest allowed buffer).
pub const READ_BUFFER: usize = 8192;

/// What one server keeps open before a connection has shown it is wanted
/// (see [`Pool`]).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections not yet settled, from everyone.
    pub pool: usize,
    /// Of those, from one peer (an IPv4 address, an IPv6 /64).
    pub per_peer: usize,
}

/// Accepts connections on `listener`, each handled by `handle` in a task
/// of its own, with a [`Slot`] in the server's [`Pool`]. Accepting never
/// waits for room in the pool (a connection past the limits closes an
/// older one), only for the process's descriptor budget (more wait in the
/// kernel's backlog). Runs until the process ends.
pub async fn accept<F, Fut>(listener: TcpListener, what: &'static str, limits: Limits, handle: F)
where
    F: Fn(TcpStream, Slot) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let pool = Pool::new(what, limits);
    let mut fds = fd_budget::Gate::new(what);
    loop {
        let Some(fd) = fds.permit().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors or memory: the open ones go on, and
            // accepting waits a moment. Other errors concern one client.
            Err(e) if out_of_resources(&e) => {
                tracing::warn!(error = %e, "cannot accept a {what} connection; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "a {what} connection failed as it was accepted");
                continue;
            }
        };
        spawn_in_pool(&pool, stream, peer, fd, &handle);
        // The new connection's task runs next (tokio's LIFO slot): a client
        // that sent its request at once is answered before more are
        // accepted, so a burst of slow ones cannot close it unread.
        tokio::task::yield_now().await;
    }
}

/// Runs `handle` on `stream` until it is done or the pool closes it.
/// Serves one connection, which holds its descriptor's `fd` permit for as
/// long as it is open.
fn spawn_in_pool<F, Fut>(
    pool: &Pool,
    stream: TcpStream,
    peer: SocketAddr,
    fd: fd_budget::Permit,
    handle: &F,
) where
    F: Fn(TcpStream, Slot) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (slot, closed) = pool.enter(peer.ip());
    let served = handle(stream, slot);
    tokio::spawn(async move {
        tokio::select! {
            biased;
            () = served => {}
            // Its sender was dropped: the pool made room with it.
            _ = closed => {}
        }
        drop(fd);
    });
}

fn out_of_resources(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    e.raw_os_error().is_some_and(|code| {
        [Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM]
            .contains(&Errno::from_raw(code))
    })
}

/// The open connections of one server that have not settled (a request
/// that shows it is wanted, such as the identify queue's with the secret,
/// settles its connection; the metrics' never do, their answers are quick).
///
/// A slow client (slowloris: a request's head sent a byte at a time) holds
/// its connection until the head deadline, and may open many. Refusing new
/// connections when full would lock out the very clients that matter,
/// which often come from the same address as the slow ones (a liveness
/// probe on 127.0.0.1 beside a local attacker). So a new connection is
/// always taken, and room is made by closing the one open the longest,
/// among its peer's when that peer is at `per_peer`, else among all when
/// the pool is at `pool`: a client that sends its request at once is
/// answered long before it is the oldest, and a slow one cannot keep more
/// than the pool, nor one peer more than `per_peer` of it.
struct Pool {
    what: &'static str,
    limits: Limits,
    state: Arc<Mutex<PoolState>>,
}

#[derive(Default)]
struct PoolState {
    next_id: u64,
    /// By id, so in the order they came: the first is the oldest.
    open: BTreeMap<u64, Entry>,
    per_peer: HashMap<IpAddr, usize>,
    /// Closed to make room since the last warning, and when that was.
    closed: u64,
    warned_at: Option<Instant>,
}

struct Entry {
    peer: IpAddr,
    /// Dropping it closes the connection (its task selects on the receiver).
    close: oneshot::Sender<()>,
}

/// Least time between two warnings that connections were closed.
const WARN_EVERY: Duration = Duration::from_secs(60);

impl Pool {
    fn new(what: &'static str, limits: Limits) -> Pool {
        Pool {
            what,
            limits,
            state: Arc::default(),
        }
    }

    /// Takes a connection from `peer`, closing another if there is no
    /// room; returns its slot and what tells its task it was closed.
    fn enter(&self, peer: IpAddr) -> (Slot, oneshot::Receiver<()>) {
        let peer = peer_key(peer);
        let (close, closed) = oneshot::channel();
        let mut state = lock(&self.state);
        let victim = if state.per_peer.get(&peer).copied().unwrap_or(0) >= self.limits.per_peer {
            state
                .open
                .iter()
                .find(|(_, e)| e.peer == peer)
                .map(|(id, _)| *id)
        } else if state.open.len() >= self.limits.pool {
            state.open.keys().next().copied()
        } else {
            None
        };
        let warning = victim.and_then(|id| {
            // Dropping its sender closes it.
            drop(state.remove(id));
            state.closed += 1;
            let due = state.warned_at.is_none_or(|t| t.elapsed() >= WARN_EVERY);
            due.then(|| {
                state.warned_at = Some(Instant::now());
                std::mem::take(&mut state.closed)
            })
        });
        let id = state.next_id;
        state.next_id += 1;
        state.open.insert(id, Entry { peer, close });
        *state.per_peer.entry(peer).or_default() += 1;
        drop(state);
        if let Some(closed) = warning {
            tracing::warn!(
                closed,
                pool = self.limits.pool,
                per_peer = self.limits.per_peer,
                "too many {} connections are slow to send their request; closing the oldest to make room",
                self.what
            );
        }
        let slot = Slot {
            state: self.state.clone(),
            id,
            kept: None,
        };
        (slot, closed)
    }
}

impl PoolState {
    /// Takes the connection `id` out of the pool; its close sender is
    /// returned (dropping it closes the connection).
    fn remove(&mut self, id: u64) -> Option<oneshot::Sender<()>> {
        let entry = self.open.remove(&id)?;
        if let Some(n) = self.per_peer.get_mut(&entry.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&entry.peer);
            }
        }
        Some(entry.close)
    }
}

/// A connection's place in its server's pool. The connection lives as
/// long as its slot: drop it only when done.
pub struct Slot {
    state: Arc<Mutex<PoolState>>,
    id: u64,
    /// Once settled: the close sender, out of the pool's reach.
    kept: Option<oneshot::Sender<()>>,
}

impl Slot {
    /// The connection has shown it is wanted: it leaves the pool, and is
    /// never closed to make room (its handler bounds such connections).
    pub fn settle(&mut self) {
        if self.kept.is_none() {
            self.kept = lock(&self.state).remove(self.id);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.kept.is_none() {
            lock(&self.state).remove(self.id);
        }
    }
}

fn lock(state: &Mutex<PoolState>) -> std::sync::MutexGuard<'_, PoolState> {
    // Nothing panics while holding it; were it poisoned all the same, the
    // pool would still work (at worst one count off by one).
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whom a per-peer limit counts: an IPv4 address (also as IPv6-mapped), or
/// an IPv6 /64, which one host usually has whole.
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !(u128::MAX >> 64);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// Serves `listener` in a task of its own, until the process ends: each
/// connection one request answered by `handle` ([`serve_hyper`], closed
/// after `deadline`), within `limits` ([`accept`]).
pub fn spawn_hyper<F, Fut>(
    listener: TcpListener,
    what: &'static str,
    limits: Limits,
    deadline: Duration,
    handle: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::spawn(accept(listener, what, limits, move |stream, slot| {
        let served = serve_hyper(stream, deadline, handle.clone());
        async move {
            served.await;
            drop(slot);
        }
    }));
}

/// Serves one HTTP/1 request on `stream` with hyper, closing it after
/// `deadline` whatever it is doing. One request a connection: a connection
/// is then as old as its request, which is what [`Pool`] goes by.
pub async fn serve_hyper<F, Fut>(stream: TcpStream, deadline: Duration, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let answer = handle(req);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_DEADLINE)
        .keep_alive(false)
        .max_buf_size(READ_BUFFER)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(deadline, conn).await;
}

/// A response with `body` of type `content_type`.
pub fn response(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpSocket;

    /// Long enough for a busy machine; only a failing test waits it out.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// A server on a free port with `limits` whose connections echo each
    /// byte, and settle on `s`.
    async fn echo_server(limits: Limits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(accept(
            listener,
            "test",
            limits,
            |mut stream, mut slot| async move {
                let mut byte = [0u8; 1];
                while let Ok(1) = stream.read(&mut byte).await {
                    if byte[0] == b's' {
                        slot.settle();
                    }
                    if stream.write_all(&byte).await.is_err() {
                        return;
                    }
                }
            },
        ));
        addr
    }

    /// A connection from `from` (a loopback address), once the server has
    /// taken it (it echoes), settled if `settle`.
    async fn connect(addr: SocketAddr, from: &str, settle: bool) -> TcpStream {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{from}:0").parse().expect("an address"))
            .expect("bind the client");
        let mut stream = socket.connect(addr).await.expect("connect");
        assert!(echoes(&mut stream, if settle { b's' } else { b'x' }).await);
        stream
    }

    /// Whether the server still serves `stream`.
    async fn echoes(stream: &mut TcpStream, byte: u8) -> bool {
        if stream.write_all(&[byte]).await.is_err() {
            return false;
        }
        let mut back = [0u8; 1];
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut back)).await;
        match read.expect("an answer or a close in time") {
            Ok(1) => true,
            Ok(_) | Err(_) => false,
        }
    }

    /// Whether each of `streams` is served, in order.
    async fn served(streams: &mut [TcpStream]) -> Vec<bool> {
        let mut out = Vec::new();
        for s in streams {
            out.push(echoes(s, b'x').await);
        }
        out
    }

    #[tokio::test]
    async fn a_full_pool_closes_its_oldest_connection_for_a_new_one() {
        let addr = echo_server(Limits {
            pool: 3,
            per_peer: 3,
        })
        .await;
        let mut streams = Vec::new();
        for _ in 0..5 {
            streams.push(connect(addr, "127.0.0.1", false).await);
        }
        let seen = served(&mut streams).await;
        assert_eq!(seen, [false, false, true, true, true], "{seen:?}");
    }

    /// A peer at its cap closes its own oldest, never another peer's.
    #[tokio::test]
    async fn a_peer_at_its_cap_makes_room_among_its_own() {
        let addr = echo_server(Limits {
            pool: 8,
            per_peer: 2,
        })
        .await;
        let other = connect(addr, "127.0.0.2", false).await;
        let mut streams = vec![other];
        for _ in 0..4 {
            streams.push(connect(addr, "127.0.0.1", false).await);
        }
        let seen = served(&mut streams).await;
        assert_eq!(seen, [true, false, false, true, true], "{seen:?}");
    }

    /// A settled connection is never closed to make room, and leaves the
    /// room it had.
    #[tokio::test]
    async fn settled_connections_are_kept_and_not_counted() {
        let addr = echo_server(Limits {
            pool: 2,
            per_peer: 2,
        })
        .await;
        let mut streams = Vec::new();
        for _ in 0..3 {
            streams.push(connect(addr, "127.0.0.1", true).await);
        }
        for _ in 0..3 {
            streams.push(connect(addr, "127.0.0.1", false).await);
        }
        let seen = served(&mut streams).await;
        assert_eq!(seen, [true, true, true, false, true, true], "{seen:?}");
    }

    #[test]
    fn a_peer_is_an_ipv4_address_or_an_ipv6_64() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("an address");
        assert_eq!(peer_key(ip("10.0.0.7")), ip("10.0.0.7"));
        assert_eq!(peer_key(ip("::ffff:10.0.0.7")), ip("10.0.0.7"));
        assert_eq!(peer_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
    }
}
