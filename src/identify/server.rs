//! The queue's HTTP side: `GET /?shard=<id>` is held open until the grant
//! (200), or answered at once when it cannot be queued (400, 503). Each
//! request has its own connection, closed after the answer.
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
use super::Message;
use crate::http::{self, Slot, HEADER_DEADLINE, READ_BUFFER};

/// Connections that have not sent a request for a shard yet. Large: a
/// whole bot's shards may connect at once (a restart of all), and only
/// past this is the oldest closed. No per-peer cap below it: the clusters
/// all connect from this machine. A connection with a request settles
/// (leaves the pool; the queue's `CAPACITY` bounds those, 503 past it).
const LIMITS: http::Limits = http::Limits {
    pool: 4096,
    per_peer: 4096,
};
/// Time to take an answer: it is small, a client that does not read it is gone.
const WRITE_DEADLINE: Duration = Duration::from_secs(5);

pub(super) async fn accept(listener: TcpListener, inbox: mpsc::Sender<Message>) {
    let tickets = Arc::new(AtomicU64::new(0));
    http::accept(listener, "identify-queue", LIMITS, move |stream, slot| {
        let ticket = tickets.fetch_add(1, Ordering::Relaxed);
        serve(stream, slot, ticket, inbox.clone())
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
    inbox: mpsc::Sender<Message>,
) {
    // Boxed: its buffers are freed once the head is read, not kept in
    // this future for the whole wait.
    let read = Box::pin(read_request(&mut stream));
    let target = match tokio::time::timeout(HEADER_DEADLINE, read).await {
        Ok(Ok(target)) => target,
        Ok(Err((status, reason))) => {
            return send(&mut stream, status, json!({"error": reason})).await
        }
        // Too slow to ask, or gone: nothing to answer.
        Err(_) => return,
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    if path != "/" {
        let error = "the identify queue is GET /?shard=<id>";
        return send(&mut stream, StatusCode::NOT_FOUND, json!({"error": error})).await;
    }
    let shard = match shard_of(Some(query)) {
        Ok(shard) => shard,
        Err(reason) => {
            return send(
                &mut stream,
                StatusCode::BAD_REQUEST,
                json!({"error": reason}),
            )
            .await
        }
    };
    // It waits as long as its turn takes.
    slot.settle();
    if let Some((status, body)) = wait_turn(&mut stream, ticket, shard, inbox).await {
        send(&mut stream, status, body).await;
    }
}

/// Reads a request's head and returns its target (path and query); a
/// refusal's status and reason for anything but a `GET` that fits.
async fn read_request(stream: &mut TcpStream) -> Result<String, (StatusCode, &'static str)> {
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
                if request.method != Some("GET") {
                    return Err((StatusCode::METHOD_NOT_ALLOWED, "only GET"));
                }
                return Ok(request.path.unwrap_or("/").to_string());
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

/// The `shard` of a query string: absent is `None` (bucket 0); anything
/// but a whole number is refused with the reason.
fn shard_of(query: Option<&str>) -> Result<Option<u64>, String> {
    let Some(value) = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("shard="))
    else {
        return Ok(None);
    };
    value.parse().map(Some).map_err(|_| {
        format!(
            "shard must be a shard id, a whole number from 0, not {:?}",
            crate::protocol::truncate(value, 40)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_comes_from_the_query() {
        assert_eq!(shard_of(None), Ok(None));
        assert_eq!(shard_of(Some("")), Ok(None));
        assert_eq!(shard_of(Some("shard=12")), Ok(Some(12)));
        assert_eq!(shard_of(Some("x=1&shard=3")), Ok(Some(3)));
        for bad in ["shard=-1", "shard=abc", "shard=", "shard=1.5"] {
            let err = shard_of(Some(bad)).expect_err(bad);
            assert!(err.contains("whole number"), "{err}");
        }
    }
}
