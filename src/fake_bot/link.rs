//! The fake bot's link to the manager: Redis, on the channels mewld
//! names, or its Unix socket.

use std::time::Duration;

use color_eyre::eyre::{Result, WrapErr};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio_util::codec::{FramedRead, FramedWrite, LinesCodec};

use super::env_flag;

/// The bot's connection to the manager: Redis (reconnecting, as a
/// well-behaved bot does) or the manager's Unix socket (`MEWLD_SOCKET`).
// One per process: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Link {
    Redis {
        client: redis::Client,
        /// The main channel, and this cluster's own when mewld gave one.
        listen: Vec<String>,
        /// Where the cluster's answers and `launch_next` go.
        say_to: String,
        conn: redis::aio::MultiplexedConnection,
        messages: redis::aio::PubSubStream,
    },
    Unix {
        lines: FramedRead<OwnedReadHalf, LinesCodec>,
        sink: FramedWrite<OwnedWriteHalf, LinesCodec>,
    },
}

impl Link {
    pub(super) async fn connect() -> Result<Link> {
        if let Ok(path) = std::env::var("MEWLD_SOCKET") {
            let stream = UnixStream::connect(&path)
                .await
                .wrap_err_with(|| format!("connecting to {path}"))?;
            let (read, write) = stream.into_split();
            return Ok(Link::Unix {
                lines: FramedRead::new(read, LinesCodec::new()),
                sink: FramedWrite::new(write, LinesCodec::new()),
            });
        }
        let url = std::env::var("FAKEBOT_REDIS")
            .or_else(|_| std::env::var("MEWLD_REDIS_URL"))
            .wrap_err("none of MEWLD_SOCKET, FAKEBOT_REDIS, MEWLD_REDIS_URL is set")?;
        let channel = std::env::var("MEWLD_CHANNEL").wrap_err("MEWLD_CHANNEL is not set")?;
        let given = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|_| !env_flag("FAKEBOT_MAIN_CHANNEL_ONLY"))
        };
        let own = given("MEWLD_CLUSTER_CHANNEL");
        let say_to = given("MEWLD_LAUNCHER_CHANNEL").unwrap_or_else(|| channel.clone());
        let listen: Vec<String> = std::iter::once(channel).chain(own).collect();
        let client = redis::Client::open(url.as_str())?;
        // Redis may be down when the bot starts: wait for it, as bots do.
        let (conn, messages) = loop {
            match redis_connect(&client, &listen).await {
                Ok(link) => break link,
                Err(e) => {
                    eprintln!("fake bot: cannot reach Redis ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        Ok(Link::Redis {
            client,
            listen,
            say_to,
            conn,
            messages,
        })
    }

    /// Sends one message; a failure is reported and the message dropped.
    pub(super) async fn send(&mut self, v: Value) {
        let result = match self {
            Link::Redis { conn, say_to, .. } => redis::cmd("PUBLISH")
                .arg(&*say_to)
                .arg(v.to_string())
                .query_async::<()>(conn)
                .await
                .map_err(|e| e.to_string()),
            Link::Unix { sink, .. } => sink.send(v.to_string()).await.map_err(|e| e.to_string()),
        };
        if let Err(e) = result {
            eprintln!("fake bot: could not send a message: {e}");
        }
    }

    /// The next message; over Redis, reconnects until it gets one.
    pub(super) async fn next(&mut self) -> Vec<u8> {
        match self {
            Link::Unix { lines, .. } => match lines.next().await {
                Some(Ok(line)) => line.into_bytes(),
                // The manager is gone; so is the reason to live.
                _ => std::process::exit(0),
            },
            Link::Redis {
                client,
                listen,
                conn,
                messages,
                ..
            } => loop {
                if let Some(msg) = messages.next().await {
                    return msg.get_payload_bytes().to_vec();
                }
                eprintln!("fake bot: lost Redis; reconnecting");
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if let Ok((c, m)) = redis_connect(client, listen).await {
                        *conn = c;
                        *messages = m;
                        eprintln!("fake bot: reconnected to Redis");
                        break;
                    }
                }
            },
        }
    }
}

async fn redis_connect(
    client: &redis::Client,
    channels: &[String],
) -> redis::RedisResult<(redis::aio::MultiplexedConnection, redis::aio::PubSubStream)> {
    let conn = client.get_multiplexed_async_connection().await?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channels).await?;
    Ok((conn, pubsub.into_on_message()))
}
