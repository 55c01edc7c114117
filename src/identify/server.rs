//! The queue's HTTP side: `GET /<secret>?shard=<id>` (the URL clusters get
//! as `MEWLD_IDENTIFY_URL`, and the query they append) is held open until
//! the grant (200), or answered at once when it cannot be queued (400, 403,
//! 503). Each request has its own connection, closed after the answer.
//!
//! Written on `httparse` rather than hyper: a request waits for minutes
//! with its connection open, and thousands may wait at once, so what a
//! waiting connection holds matters (here: no buffer, a few hundred bytes;
//! with hyper, 16 KiB). While it waits, the connection is read for its
//! end: a client that hangs up leaves the queue and spends nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::rules::{Refusal, Ticket};
use super::secret::Secret;
use super::Message;
use crate::http::{self, Slot, HEADER_DEADLINE, READ_BUFFER};

/// Connections that have not shown the secret yet. Large: a whole bot's
/// shards may connect at once (a restart of all), and only past this is
/// the oldest closed. No per-peer cap below it: the clusters all connect
/// from this machine, as a local attacker would, so the secret is what
/// tells them apart, and a connection that shows it settles (leaves the
/// pool; the queue's `CAPACITY` bounds those, 503 past it).
const LIMITS: http::Limits = http::Limits {
    pool: 4096,
    per_peer: 4096,
};
/// Time to take an answer: it is small, a client that does not read it is gone.
const WRITE_DEADLINE: Duration = Duration::from_secs(5);

pub(super) async fn accept(
    listener: TcpListener,
    secret: Arc<Secret>,
    inbox: mpsc::Sender<Message>,
) {
    let tickets = Arc::new(AtomicU64::new(0));
    http::accept(listener, "identify-queue", LIMITS, move |stream, slot| {
        let ticket = tickets.fetch_add(1, Ordering::Relaxed);
        serve(stream, slot, ticket, secret.clone(), inbox.clone())
    })
    .await;
}

/// Cancels its ticket when dropped before [`Waiting::granted`].
struct Waiting {
    ticket: Ticket,
    inbox: mpsc::Sender<Message>,
    granted: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.granted {
            // If the inbox is full, the queue finds the answer's receiver
            // gone before it grants (`Task::grant`).
            let _ = self.inbox.try_send(Message::Cancel(self.ticket));
        }
    }
}

/// One connection: its request, the wait, the answer.
async fn serve(
    mut stream: TcpStream,
    mut slot: Slot,
    ticket: Ticket,
    secret: Arc<Secret>,
    inbox: mpsc::Sender<Message>,
) {
    // Boxed: its buffers are freed once the head is read, not kept in
    // this future for the whole wait.
    let read = Box::pin(read_request(&mut stream));
    let head = match tokio::time::timeout(HEADER_DEADLINE, read).await {
        Ok(Ok(head)) => head,
        Ok(Err((status, reason))) => {
            return send(&mut stream, status, json!({"error": reason})).await
        }
        // Too slow to ask, or gone: nothing to answer.
        Err(_) => return,
    };
    let shard = match admit(&head, &secret) {
        Ok(shard) => shard,
        Err((status, reason)) => {
            tracing::debug!(status = status.as_u16(), %reason, "an identify request refused");
            return send(&mut stream, status, json!({"error": reason})).await;
        }
    };
    // A cluster's: it waits as long as its turn takes.
    slot.settle();
    if let Some((status, body)) = wait_turn(&mut stream, ticket, shard, inbox).await {
        send(&mut stream, status, body).await;
    }
}

/// A request's head: what `admit` judges.
struct Head {
    method: String,
    /// The path and the query.
    target: String,
}

/// Reads a request's head; a refusal's status and reason for anything but
/// an HTTP request that fits.
async fn read_request(stream: &mut TcpStream) -> Result<Head, (StatusCode, &'static str)> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| (StatusCode::BAD_REQUEST, "unreadable request"))?;
        if n == 0 {
            return Err((StatusCode::BAD_REQUEST, "the request ended early"));
        }
        head.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                return Ok(Head {
                    method: request.method.unwrap_or_default().to_string(),
                    target: request.path.unwrap_or("/").to_string(),
                })
            }
            Ok(httparse::Status::Partial) if head.len() < READ_BUFFER => {}
            Ok(httparse::Status::Partial) => {
                return Err((
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "the request's head is over 8 KiB",
                ))
            }
            Err(_) => return Err((StatusCode::BAD_REQUEST, "not an HTTP request")),
        }
    }
}

/// The shard a request may wait for (`None`: bucket 0), or its refusal:
/// the secret first, so that without it nothing else is said.
fn admit(head: &Head, secret: &Secret) -> Result<Option<u64>, (StatusCode, String)> {
    let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
    let path = path.strip_prefix('/').unwrap_or(path);
    // `/<secret>` as given, or `/<secret>/` as some clients join it.
    let (given, rest) = path.split_once('/').unwrap_or((path, ""));
    if !secret.matches(given) {
        let reason = "the path must be this run's secret: use MEWLD_IDENTIFY_URL as mewld gave it to the cluster";
        return Err((StatusCode::FORBIDDEN, reason.into()));
    }
    if !rest.is_empty() {
        let reason = "the identify queue is GET <MEWLD_IDENTIFY_URL>?shard=<id>";
        return Err((StatusCode::NOT_FOUND, reason.into()));
    }
    if head.method != "GET" {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "only GET".into()));
    }
    shard_of(query).map_err(|reason| (StatusCode::BAD_REQUEST, reason))
}

/// Queues the request and waits for its turn; `None` when the client hung
/// up first (the guard takes it out of the queue).
async fn wait_turn(
    stream: &mut TcpStream,
    ticket: Ticket,
    shard: Option<u64>,
    inbox: mpsc::Sender<Message>,
) -> Option<(StatusCode, Value)> {
    let gone = json!({"error": "mewld is shutting down"});
    let (tx, rx) = oneshot::channel();
    let mut waiting = Waiting {
        ticket,
        inbox: inbox.clone(),
        granted: false,
    };
    let wait = Message::Wait {
        ticket,
        shard,
        answer: tx,
    };
    if inbox.send(wait).await.is_err() {
        return Some((StatusCode::SERVICE_UNAVAILABLE, gone));
    }
    let outcome = tokio::select! {
        // A grant that came is answered, even if the client is leaving.
        biased;
        outcome = rx => outcome,
        () = hang_up(stream) => return None,
    };
    waiting.granted = true;
    Some(match outcome {
        Ok(Ok(grant)) => (
            StatusCode::OK,
            json!({"shard": grant.shard, "bucket": grant.bucket}),
        ),
        Ok(Err(refusal @ Refusal::NoSuchShard { .. })) => (
            StatusCode::BAD_REQUEST,
            json!({"error": refusal.to_string()}),
        ),
        Ok(Err(refusal @ Refusal::Full { .. })) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": refusal.to_string()}),
        ),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, gone),
    })
}

/// Returns once the client has closed its end (what it sends meanwhile is
/// ignored).
async fn hang_up(stream: &mut TcpStream) {
    let mut scratch = [0u8; 64];
    while let Ok(n) = stream.read(&mut scratch).await {
        if n == 0 {
            return;
        }
    }
}

/// Writes the answer and closes; a client that hung up gets nothing.
async fn send(stream: &mut TcpStream, status: StatusCode, body: Value) {
    let body = body.to_string();
    let text = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
    );
    let write = async {
        stream.write_all(text.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(WRITE_DEADLINE, write).await;
}

/// The shard a query asks for: no query is `None` (bucket 0); else it is
/// exactly `shard=<id>`, the id in decimal digits. Anything else is refused
/// with what is wrong: read loosely, `?Shard=3` or `?shard=%33` would be
/// bucket 0, and spend a session start in a turn not theirs.
fn shard_of(query: &str) -> Result<Option<u64>, String> {
    let shown = |s: &str| mewld_core::protocol::truncate(s, 40);
    if query.is_empty() {
        return Ok(None);
    }
    if query.contains('&') {
        return Err(format!(
            "the query must be shard=<id> alone, not {:?}",
            shown(query)
        ));
    }
    let Some(value) = query.strip_prefix("shard=") else {
        let name = query.split('=').next().unwrap_or(query);
        return Err(format!(
            "unknown query parameter {:?}: the identify queue takes shard=<id> (lowercase) alone",
            shown(name)
        ));
    };
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u32>() {
        Ok(id) if digits => Ok(Some(u64::from(id))),
        _ => Err(format!(
            "shard must be a shard id, a whole number in decimal digits from 0 to {}, not {:?}",
            u32::MAX,
            shown(value)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_comes_from_the_query_and_nothing_else() {
        assert_eq!(shard_of(""), Ok(None));
        assert_eq!(shard_of("shard=12"), Ok(Some(12)));
        assert_eq!(shard_of("shard=4294967295"), Ok(Some(4_294_967_295)));
        for (bad, says) in [
            ("shard=-1", "whole number"),
            ("shard=+3", "whole number"),
            ("shard=abc", "whole number"),
            ("shard=", "whole number"),
            ("shard=1.5", "whole number"),
            ("shard=%33", "whole number"),
            ("shard=4294967296", "whole number"),
            ("Shard=3", "unknown query parameter \"Shard\""),
            ("x=1", "unknown query parameter \"x\""),
            ("shard", "unknown query parameter \"shard\""),
            ("shard=3&x=1", "alone"),
            ("x=1&shard=3", "alone"),
            ("shard=3&shard=4", "alone"),
        ] {
            let err = shard_of(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    fn head(method: &str, target: &str) -> Head {
        Head {
            method: method.into(),
            target: target.into(),
        }
    }

    #[test]
    fn the_secret_comes_first() {
        let secret = Secret::new();
        let s = secret.expose();
        let status = |method, target: &str| match admit(&head(method, target), &secret) {
            Ok(shard) => Ok(shard),
            Err((status, _)) => Err(status.as_u16()),
        };
        assert_eq!(status("GET", &format!("/{s}?shard=3")), Ok(Some(3)));
        assert_eq!(status("GET", &format!("/{s}/?shard=3")), Ok(Some(3)));
        assert_eq!(status("GET", &format!("/{s}")), Ok(None));
        for forbidden in [
            "/?shard=3".to_string(),
            "/".to_string(),
            format!("/{}?shard=3", &s[1..]),
            format!("/x/{s}?shard=3"),
        ] {
            assert_eq!(status("GET", &forbidden), Err(403), "{forbidden}");
            assert_eq!(status("POST", &forbidden), Err(403), "{forbidden}");
        }
        assert_eq!(status("GET", &format!("/{s}/x?shard=3")), Err(404));
        assert_eq!(status("POST", &format!("/{s}?shard=3")), Err(405));
        assert_eq!(status("GET", &format!("/{s}?Shard=3")), Err(400));
    }
}
