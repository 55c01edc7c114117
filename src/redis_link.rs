//! How mewld talks to Redis, in one place: the names of the keys it keeps
//! beside the channel, each round trip's deadline, connecting, and the
//! backoff between reconnects. The transport, the fleet, the identify
//! queue's fleet gate and `attach --redis` all use it, so Redis being slow
//! or away looks the same everywhere: a call that does not answer in time
//! is an error, the connection is dropped, and the next call connects
//! afresh.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

/// Each Redis round trip gets this long.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Connecting (TCP, TLS, the handshake) gets this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The error of a call that did not answer in time.
pub fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "Redis did not answer in time",
    ))
}

/// Runs one Redis exchange within [`COMMAND_TIMEOUT`].
pub async fn within<T>(
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    tokio::time::timeout(COMMAND_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

/// A connection made when first needed and dropped after an error, so a
/// Redis that went away is reconnected to on the next call.
pub struct Link {
    client: redis::Client,
    conn: Option<MultiplexedConnection>,
}

impl Link {
    pub fn new(client: redis::Client) -> Link {
        Link { client, conn: None }
    }

    /// A link that starts with `conn` (made while joining, say).
    pub fn with(client: redis::Client, conn: Option<MultiplexedConnection>) -> Link {
        Link { client, conn }
    }

    /// The connection, connecting within [`CONNECT_TIMEOUT`] if there is
    /// none.
    pub async fn conn(&mut self) -> redis::RedisResult<&mut MultiplexedConnection> {
        if self.conn.is_none() {
            let connect = self.client.get_multiplexed_async_connection();
            let conn = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .unwrap_or_else(|_| Err(timed_out()))?;
            self.conn = Some(conn);
        }
        self.conn.as_mut().ok_or_else(timed_out)
    }

    /// The connection if there is one, without connecting.
    pub fn connected(&mut self) -> Option<&mut MultiplexedConnection> {
        self.conn.as_mut()
    }

    /// A call failed: the next one connects afresh.
    pub fn reset(&mut self) {
        self.conn = None;
    }
}

/// The wait before the next reconnect: from a quarter second, doubled at
/// each failure up to five seconds, and back to the start once connected.
#[derive(Debug)]
pub struct Backoff(Duration);

impl Backoff {
    const MIN: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> Backoff {
        Backoff(Backoff::MIN)
    }

    /// The wait now; the next one is twice as long.
    pub fn wait(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(Backoff::MAX);
        wait
    }

    /// The wait `wait` would give, without moving on.
    pub fn peek(&self) -> Duration {
        self.0
    }

    pub fn reset(&mut self) {
        self.0 = Backoff::MIN;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// The keys mewld keeps beside the channel, `<channel>/fleet/…` (the
/// action log's is the protocol's: [`mewld_core::config::Config::action_log_key`]).
#[derive(Debug, Clone)]
pub struct Keys {
    /// The set of the fleet's host ids.
    pub hosts: String,
    /// Each host's record is this and its id (the claim script scans them).
    pub host_prefix: String,
    version_prefix: String,
    /// `<host id> <epoch>`, under the leader's lease.
    pub leader: String,
    /// The election's counter.
    pub epoch: String,
    /// The leader's order to stop.
    pub exit: String,
    /// The identify queue's buckets, one key each, and its daily budget.
    pub identify_bucket_prefix: String,
    pub identify_budget: String,
}

impl Keys {
    pub fn new(channel: &str) -> Keys {
        Keys {
            hosts: format!("{channel}/fleet/hosts"),
            host_prefix: format!("{channel}/fleet/host/"),
            version_prefix: format!("{channel}/fleet/version/"),
            leader: format!("{channel}/fleet/leader"),
            epoch: format!("{channel}/fleet/epoch"),
            exit: format!("{channel}/fleet/exit"),
            identify_bucket_prefix: format!("{channel}/fleet/identify/bucket/"),
            identify_budget: format!("{channel}/fleet/identify/budget"),
        }
    }

    /// A host's record.
    pub fn host(&self, id: &str) -> String {
        format!("{}{id}", self.host_prefix)
    }

    /// The id of the host whose record is at `key`.
    pub fn host_id<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(&self.host_prefix)
    }

    /// A Redis glob that matches every host record and nothing else.
    pub fn host_pattern(&self) -> String {
        format!("{}*", glob_escape(&self.host_prefix))
    }

    /// A counter beside each record, bumped when the record changes: the
    /// others read the small counters and fetch only the records that moved.
    pub fn version(&self, id: &str) -> String {
        format!("{}{id}", self.version_prefix)
    }
}

/// `text` as a Redis glob that matches only itself.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap_and_starts_over() {
        let mut b = Backoff::new();
        let waits: Vec<u128> = (0..7).map(|_| b.wait().as_millis()).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        b.reset();
        assert_eq!(b.peek(), Duration::from_millis(250));
    }

    #[test]
    fn host_keys_round_trip_and_the_pattern_matches_only_them() {
        let keys = Keys::new("ch*[x]");
        let key = keys.host("box:12");
        assert_eq!(keys.host_id(&key), Some("box:12"));
        assert_eq!(keys.host_id("ch*[x]/fleet/leader"), None);
        assert_eq!(keys.host_pattern(), "ch\\*\\[x\\]/fleet/host/*");
    }
}
