//! Loopback ports for a test's listeners, and a plain HTTP `GET`.

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
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    // A server that never answers fails the test instead of hanging it.
    stream.set_read_timeout(Some(DEADLINE)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}
