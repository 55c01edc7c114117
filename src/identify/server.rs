//! The queue's HTTP side: `GET /?shard=<id>` is held open until the grant
//! (200), or answered at once when it cannot be queued (400, 503). A client
//! that hangs up while it waits leaves the queue: hyper drops the request's
//! future, and with it a guard that cancels the ticket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::rules::{Refusal, Ticket};
use super::{Message, CAPACITY};
use crate::http;

/// Connections served at once: every waiting request, and some room to
/// refuse the ones past the queue's capacity.
const CONNECTIONS: usize = CAPACITY + 256;

pub(super) async fn accept(listener: TcpListener, inbox: mpsc::Sender<Message>) {
    let tickets = Arc::new(AtomicU64::new(0));
    let handle = move |req: Request<Incoming>| {
        let ticket = tickets.fetch_add(1, Ordering::Relaxed);
        answer(req, ticket, inbox.clone())
    };
    // No deadline: a request waits as long as its turn takes.
    http::serve(listener, "identify-queue", CONNECTIONS, None, handle).await;
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

async fn answer(
    req: Request<Incoming>,
    ticket: Ticket,
    inbox: mpsc::Sender<Message>,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/" {
        return reply(
            StatusCode::NOT_FOUND,
            json!({"error": "the identify queue is GET /?shard=<id>"}),
        );
    }
    if req.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "only GET"}));
    }
    let shard = match shard_of(req.uri().query()) {
        Ok(shard) => shard,
        Err(reason) => return reply(StatusCode::BAD_REQUEST, json!({"error": reason})),
    };
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
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "mewld is shutting down"}),
        );
    }
    let outcome = rx.await;
    waiting.granted = true;
    match outcome {
        Ok(Ok(grant)) => reply(
            StatusCode::OK,
            json!({"shard": grant.shard, "bucket": grant.bucket}),
        ),
        Ok(Err(refusal @ Refusal::NoSuchShard { .. })) => reply(
            StatusCode::BAD_REQUEST,
            json!({"error": refusal.to_string()}),
        ),
        Ok(Err(refusal @ Refusal::Full { .. })) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": refusal.to_string()}),
        ),
        Err(_) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "mewld is shutting down"}),
        ),
    }
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

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    http::response(status, "application/json", body.to_string())
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
