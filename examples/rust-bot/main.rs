//! A minimal mewld cluster in Rust: docs/writing-a-bot.md as a program.
//!
//! mewld starts one per cluster, with no `interp` and `module` naming the
//! built program:
//!
//! ```text
//! rust-bot <shards> <shard_count> <cluster_id> <cluster_name> 0 <dir>
//! ```
//!
//! It subscribes, says `launch_next`, answers diagnostics, and exits 0 on
//! SIGTERM. It does not connect to Discord: the comments say where that
//! code goes.
//!
//! Built here as an example of mewld's own package (`cargo build --example
//! rust-bot`, then `target/debug/examples/rust-bot`). A bot of its own
//! needs, in its `Cargo.toml`:
//!
//! ```toml
//! redis = { version = "1", features = ["tokio-comp"] }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread", "signal", "time"] }
//! serde_json = "1"
//! futures-util = "0.3"
//! ```

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::AsyncCommands;
use serde_json::{json, Value};
use tokio::signal::unix::{signal, SignalKind};

type Error = Box<dyn std::error::Error>;

/// What mewld says on the command line (docs/protocol.md §4).
struct Cluster {
    shards: Vec<u64>,
    shard_count: u64,
    id: u64,
    name: String,
}

impl Cluster {
    fn from_args(args: &[String]) -> Result<Cluster, Error> {
        let [shards, shard_count, id, name, ..] = args else {
            return Err("expected: <shards> <shard_count> <cluster_id> <cluster_name> ...".into());
        };
        Ok(Cluster {
            // "[0, 1]": a Python list, and JSON too.
            shards: serde_json::from_str(shards)?,
            shard_count: shard_count.parse()?,
            id: id.parse()?,
            name: name.clone(),
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let me = Cluster::from_args(&args)?;
    let channel = std::env::var("MEWLD_CHANNEL")?;
    // At scale (docs/writing-a-bot.md, "At scale: your own channels"): a
    // mewld with cluster channels sends this cluster's pings on a channel of
    // its own and hears answers on the launcher's, so no cluster hears every
    // other's traffic. Under a mewld that sets neither, the main channel is
    // all there is.
    let listen_on: Vec<String> = std::iter::once(channel.clone())
        .chain(std::env::var("MEWLD_CLUSTER_CHANNEL").ok())
        .collect();
    let say_on = std::env::var("MEWLD_LAUNCHER_CHANNEL").unwrap_or(channel);
    // The Redis mewld itself uses. The original mewld does not set
    // MEWLD_REDIS_URL: a bot that also runs under it needs its own setting.
    let client = redis::Client::open(std::env::var("MEWLD_REDIS_URL")?)?;
    let mut sigterm = signal(SignalKind::terminate())?;

    // Subscribe before anything else: pub/sub keeps no history, and from
    // its launch_next on, mewld pings this cluster on the channel.
    let (mut messages, mut conn) = connect(&client, &listen_on).await?;

    // A real bot starts its shards here: for each one, if MEWLD_IDENTIFY_URL
    // is set, `GET $MEWLD_IDENTIFY_URL?shard=<id>` first, then identify.
    // Once every shard is up:
    println!(
        "cluster {} ({}): shards {:?} of {} up",
        me.id, me.name, me.shards, me.shard_count
    );
    let launched = json!({"scope": "launcher", "action": "launch_next", "args": {"id": me.id}});
    say(&mut conn, &say_on, &launched).await;

    loop {
        let message = tokio::select! {
            _ = sigterm.recv() => break,
            message = messages.next() => message,
        };
        let Some(message) = message else {
            // Redis went away: subscribe again once it is back (an outage
            // restarts nobody).
            eprintln!("cluster {}: lost Redis, subscribing again", me.id);
            tokio::select! {
                _ = sigterm.recv() => break,
                again = reconnect(&client, &listen_on) => (messages, conn) = again,
            }
            continue;
        };
        let Ok(message) = serde_json::from_slice::<Value>(message.get_payload_bytes()) else {
            continue;
        };
        if let Some(answer) = on_message(&me, &message) {
            say(&mut conn, &say_on, &answer).await;
        }
    }
    // A real bot closes its shards' gateway connections here, within
    // stop_grace_period (10 s by default) of the SIGTERM.
    println!("cluster {}: SIGTERM, exiting", me.id);
    Ok(())
}

/// What the cluster says back to `message`, if anything.
fn on_message(me: &Cluster, message: &Value) -> Option<Value> {
    // A diagnostic: {"id": 1, "nonce": "Zr81bQ0c2LxWm4Pe", "diag": true}, no
    // scope; `id` is a number. Answer those for this cluster's id, from
    // either channel.
    if message["diag"] == true && message["id"].as_u64() == Some(me.id) {
        let nonce = message["nonce"].as_str()?;
        // One entry per shard, with its real health in a real bot:
        // latency in milliseconds, guilds (and users) as counts.
        let data: Vec<Value> = me
            .shards
            .iter()
            .map(|shard| json!({"shard_id": shard, "up": true, "latency": 0.0, "guilds": 0}))
            .collect();
        // `output` is a string that holds JSON, as in the original.
        let output = json!({"Nonce": nonce, "Data": data}).to_string();
        return Some(json!({"scope": "launcher", "action": "diag", "output": output}));
    }
    if message["scope"] == "bot" && message["action"] == "all_clusters_launched" {
        // Work that needs every shard of the bot may begin.
        println!("cluster {}: every cluster is up", me.id);
    }
    // The rest is not for this cluster: scope "launcher" is for mewld (other
    // clusters' launch_next and diag, mewld's own probes), and replies go to
    // whoever sent their command_id.
    None
}

/// The channels' messages, and a connection to publish on.
async fn connect(
    client: &redis::Client,
    channels: &[String],
) -> redis::RedisResult<(PubSubStream, MultiplexedConnection)> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channels).await?;
    let conn = client.get_multiplexed_async_connection().await?;
    Ok((pubsub.into_on_message(), conn))
}

async fn reconnect(
    client: &redis::Client,
    channels: &[String],
) -> (PubSubStream, MultiplexedConnection) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(link) = connect(client, channels).await {
            return link;
        }
    }
}

async fn say(conn: &mut MultiplexedConnection, channel: &str, message: &Value) {
    let sent: redis::RedisResult<()> = conn.publish(channel, message.to_string()).await;
    if let Err(e) = sent {
        eprintln!("could not publish: {e}");
    }
}
