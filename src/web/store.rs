//! What the web API keeps in Redis and does there, on a connection of its
//! own (never the engine's): sessions under `<channel>/web/session/`, each
//! expiring 30 minutes after its login (the original's never did), and the
//! messages users publish, each with its action-log entry.

use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString};
use redis::aio::MultiplexedConnection;
use redis::RedisResult;
use serde::{Deserialize, Serialize};

use crate::redis_link::{within, Link};
use crate::transport::redis::append_log;

/// How long a session lasts from its login (the original's cookie's 30
/// minutes; its key in Redis lived for ever).
pub(super) const SESSION_TTL: Duration = Duration::from_secs(30 * 60);
/// A session token's length: 64 letters and digits, about 380 random bits.
const TOKEN_LEN: usize = 64;

/// A session's value in Redis. The original kept the user's Discord access
/// token there too; nothing here needs it, so it is not kept.
#[derive(Serialize, Deserialize)]
struct Session {
    id: String,
}

pub(super) struct Store {
    link: tokio::sync::Mutex<Link>,
    channel: String,
    session_prefix: String,
    log_key: String,
    log_max_len: isize,
}

impl Store {
    pub(super) fn new(settings: &super::Settings) -> RedisResult<Store> {
        let client = redis::Client::open(settings.redis_url.as_str())?;
        Ok(Store {
            link: tokio::sync::Mutex::new(Link::new(client)),
            channel: settings.channel.clone(),
            session_prefix: format!("{}/web/session/", settings.channel),
            log_key: settings.log_key.clone(),
            log_max_len: isize::try_from(settings.log_max_len).unwrap_or(isize::MAX),
        })
    }

    /// The connection (made if there is none); the lock is held only to
    /// take a handle of it, so requests never wait on each other's calls.
    async fn conn(&self) -> RedisResult<MultiplexedConnection> {
        self.link.lock().await.conn().await.cloned()
    }

    /// Runs one exchange within the deadline; after a failure the next
    /// call connects afresh.
    async fn run<T, F>(&self, call: impl FnOnce(MultiplexedConnection) -> F) -> RedisResult<T>
    where
        F: std::future::Future<Output = RedisResult<T>>,
    {
        let result = match self.conn().await {
            Ok(conn) => within(call(conn)).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.link.lock().await.reset();
        }
        result
    }

    /// A new session for the Discord user `user`: its token.
    pub(super) async fn open_session(&self, user: &str) -> RedisResult<String> {
        let token = Alphanumeric.sample_string(&mut rand::rng(), TOKEN_LEN);
        let value = serde_json::to_string(&Session { id: user.into() }).unwrap_or_default();
        let key = format!("{}{token}", self.session_prefix);
        self.run(|mut conn| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(value)
                .arg("EX")
                .arg(SESSION_TTL.as_secs())
                .query_async::<()>(&mut conn)
                .await
        })
        .await?;
        Ok(token)
    }

    /// The Discord user of the session `token`, if it is one and has not
    /// expired. A token that could not be one is not looked up.
    pub(super) async fn session_user(&self, token: &str) -> RedisResult<Option<String>> {
        if token.len() != TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        let key = format!("{}{token}", self.session_prefix);
        let value: Option<String> = self
            .run(|mut conn| async move { redis::cmd("GET").arg(&key).query_async(&mut conn).await })
            .await?;
        Ok(value.and_then(|v| serde_json::from_str::<Session>(&v).ok().map(|s| s.id)))
    }

    /// Publishes `payload` on the main channel and appends `entry` to the
    /// action log, both or neither (MULTI).
    pub(super) async fn publish(&self, payload: Vec<u8>, entry: &str) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("PUBLISH")
            .arg(&self.channel)
            .arg(payload)
            .ignore();
        append_log(&mut pipe, &self.log_key, entry, self.log_max_len);
        self.run(|mut conn| async move { pipe.query_async::<()>(&mut conn).await })
            .await
    }
}
