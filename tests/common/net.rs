//! Loopback ports for a test's listeners, and plain HTTP requests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use super::DEADLINE;

/// A port free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive ports free on 127.0.0.1 a moment ago (a
/// fleet on one machine listens on a configured port plus each index).
pub fn free_ports(n: u16) -> u16 {
    loop {
        let first = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = first.local_addr().expect("local addr").port();
        let rest: Option<Vec<TcpListener>> = (1..n)
            .map(|i| TcpListener::bind(("127.0.0.1", port.checked_add(i)?)).ok())
            .collect();
        if rest.is_some() {
            return port;
        }
    }
}

/// `GET path` over HTTP/1.0: the status code and the body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let answer = http_request(port, "GET", path, &[], b"")?;
    Some((answer.status, answer.body))
}

/// An HTTP answer: its status, headers (names in lower case) and body.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    /// The first header `name` (lower case), if there is one.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `method path` over HTTP/1.0 with `headers` and `body` (its
/// `Content-Length` added when there is one).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<HttpAnswer> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    // A server that never answers fails the test instead of hanging it.
    stream.set_read_timeout(Some(DEADLINE)).ok()?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: localhost\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(HttpAnswer {
        status,
        headers,
        body: body.to_string(),
    })
}
