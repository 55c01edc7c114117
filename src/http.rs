//! The small HTTP/1 servers mewld runs beside the engine (metrics, the
//! identify queue): a bounded number of connections, each in a task of its
//! own, a deadline for each request's head and a small buffer, so no
//! client can hold up the engine or fill the memory.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::fd_budget;

/// Time to send a request's head.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(5);
/// A request's head must fit (hyper's smallest allowed buffer).
pub const READ_BUFFER: usize = 8192;

/// Accepts connections on `listener`, at most `connections` at once and
/// within the process's descriptor budget (more wait in the kernel's
/// backlog), each handled by `handle` in a task of its own. Runs until the
/// process ends.
pub async fn accept<F, Fut>(
    listener: TcpListener,
    what: &'static str,
    connections: usize,
    handle: F,
) where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(connections));
    let mut fds = fd_budget::Gate::new(what);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(fd) = fds.permit().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
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
        let served = handle(stream);
        tokio::spawn(async move {
            served.await;
            drop((slot, fd));
        });
    }
}

fn out_of_resources(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    e.raw_os_error().is_some_and(|code| {
        [Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM]
            .contains(&Errno::from_raw(code))
    })
}

/// Serves HTTP/1 on `stream` with hyper, closing it after `deadline`
/// whatever it is doing.
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
