//! A small bot that speaks the protocol like a real one: the test fixture
//! behind `mewld fake-bot` (hidden). It parses its arguments by position as
//! real bots do, says `launch_next`, answers diagnostics, and obeys
//! instructions to crash or hang so tests can see the manager react.
//!
//! Settings come from the environment, which the manager passes on:
//! - `MEWLD_SOCKET` (set by the manager with `ipc: unix`): talk over its socket;
//!   otherwise Redis at `FAKEBOT_REDIS` (a test's choice), else at
//!   `MEWLD_REDIS_URL` (set by the manager with `ipc: redis`).
//! - `MEWLD_CLUSTER_CHANNEL` and `MEWLD_LAUNCHER_CHANNEL` (set by a mewld
//!   that has cluster channels, docs/writing-a-bot.md "At scale"): it
//!   listens on its own channel as well as the main one, and says its
//!   answers and `launch_next` on the launcher's channel. Without them, the
//!   main channel is everything, as under the original.
//!   `FAKEBOT_MAIN_CHANNEL_ONLY=1` ignores them, as a bot written for the
//!   original does (benches/scale.rs measures such bots).
//! - `FAKEBOT_RECORD`: a directory; each start writes `<cluster_id>-<pid>.json`
//!   with its arguments, working directory and environment of interest.
//!   Each `launch_next` is recorded too, as `<cluster_id>-<pid>.launched`.
//! - `FAKEBOT_LAUNCH_DELAY_MS`: time before `launch_next` (default 100).
//! - `MEWLD_IDENTIFY_URL` (set by the manager with `identify_queue`): each
//!   shard asks the queue for its turn (`?shard=<id>` appended), all at once, and takes
//!   `FAKEBOT_IDENTIFY_MS` (default 50) to identify once granted; the
//!   launch delay starts after the last. With `FAKEBOT_RECORD`, each grant
//!   is written as `<shard>-<pid>-<n>.grant` (shard, bucket, unix µs).
//! - `FAKEBOT_IGNORE_SIGTERM=1`: survive SIGTERM (to test the SIGKILL).
//! - `FAKEBOT_EXIT_AT_START=<code>`: exit at once with that code.
//! - With `MEWLD_REPLACES` set (a `start_first` replacement, docs/protocol.md
//!   §6.1), a broken build: `FAKEBOT_REPLACEMENT_EXIT_AT_START=<code>`
//!   exits at once with that code, `FAKEBOT_REPLACEMENT_SILENT=1` never
//!   says `launch_next`. The first launch is unaffected.
//! - With `FAKEBOT_RECORD`, a SIGTERM is recorded as `<cluster_id>-<pid>.sigterm`
//!   (cluster_id, pid, unix µs) as it arrives.
//! - `FAKEBOT_DIAG_STYLE`: how diagnostics are answered: the original's
//!   shape by default; `discordpy` as the discord.py bot the original was
//!   written for (lowercase `nonce`/`data`, entries keyed `id`); `bare`
//!   (entries with no shard id at all).
//!
//! - `FAKEBOT_DEMO=1`: `mewld demo`'s clusters: identify slowly, chatter,
//!   and cluster 3 crashes after a minute or so.
//!
//! Instructions on the channel, `{"scope": "fakebot", "action": A, "args": {"id": N}}`:
//! `crash` (exit with `args.code`, default 1), `hang` (ignore SIGTERM from
//! now on), `mute` (stop answering diagnostics).

mod link;

use std::path::PathBuf;
use std::time::Duration;

use color_eyre::eyre::{eyre, Result, WrapErr};
use serde_json::{json, Value};

use link::Link;

/// The positional arguments of docs/protocol.md §4 (after the module path).
#[derive(Debug, Clone, PartialEq)]
pub struct BotArgs {
    pub shards: Vec<u32>,
    pub shard_count: u32,
    pub cluster_id: u32,
    pub cluster_name: String,
    pub logging_code: String,
    pub dir: String,
}

impl BotArgs {
    pub fn parse(args: &[String]) -> Result<Self> {
        let [shards, shard_count, cluster_id, cluster_name, logging_code, dir, ..] = args else {
            return Err(eyre!(
                "expected: <shards> <shard_count> <cluster_id> <cluster_name> <logging_code> <dir>, got {args:?}"
            ));
        };
        Ok(BotArgs {
            // A Python list of ints is also a JSON array.
            shards: serde_json::from_str(shards).wrap_err("shards is not a list")?,
            shard_count: shard_count.parse().wrap_err("shard_count")?,
            cluster_id: cluster_id.parse().wrap_err("cluster_id")?,
            cluster_name: cluster_name.clone(),
            logging_code: logging_code.clone(),
            dir: dir.clone(),
        })
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

pub async fn run(raw_args: Vec<String>) -> Result<i32> {
    let args = BotArgs::parse(&raw_args)?;
    let id = args.cluster_id;
    if let Ok(dir) = std::env::var("FAKEBOT_RECORD") {
        record(&PathBuf::from(dir), &raw_args, &args)?;
    }
    println!(
        "fake bot: cluster {id} ({}) starting shards {:?} of {}",
        args.cluster_name, args.shards, args.shard_count
    );
    eprintln!("fake bot: cluster {id} says hello on stderr");
    let replacement = std::env::var_os("MEWLD_REPLACES").is_some();
    let exit_at_start = std::env::var("FAKEBOT_EXIT_AT_START").ok().or_else(|| {
        replacement
            .then(|| std::env::var("FAKEBOT_REPLACEMENT_EXIT_AT_START").ok())
            .flatten()
    });
    if let Some(code) = exit_at_start {
        let code: i32 = code.parse().unwrap_or(1);
        eprintln!("fake bot: exiting at start with code {code}");
        return Ok(code);
    }
    let bot = Bot {
        link: Link::connect().await?,
        args,
        demo: env_flag("FAKEBOT_DEMO"),
        ignore_sigterm: env_flag("FAKEBOT_IGNORE_SIGTERM"),
        silent: replacement && env_flag("FAKEBOT_REPLACEMENT_SILENT"),
        muted: false,
        // Through the queue, the grants are the demo's identify lines.
        identified: if std::env::var_os("MEWLD_IDENTIFY_URL").is_some() {
            usize::MAX
        } else {
            0
        },
    };
    bot.serve().await
}

/// A running fake bot: its link to the manager and what it was told.
struct Bot {
    args: BotArgs,
    link: Link,
    demo: bool,
    ignore_sigterm: bool,
    /// Never says `launch_next` (a replacement that hangs at start).
    silent: bool,
    muted: bool,
    /// Demo mode: shards announced as identified so far.
    identified: usize,
}

impl Bot {
    /// Runs until told to exit; returns the exit code.
    async fn serve(mut self) -> Result<i32> {
        let id = self.args.cluster_id;
        let delay: u64 = std::env::var("FAKEBOT_LAUNCH_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if self.demo {
                rand::random_range(800..2000)
            } else {
                100
            });
        let args = self.args.clone();
        let launch = async move {
            if let Ok(url) = std::env::var("MEWLD_IDENTIFY_URL") {
                identify_all(&url, &args).await?;
            }
            tokio::time::sleep(Duration::from_millis(delay)).await;
            Ok::<(), color_eyre::Report>(())
        };
        tokio::pin!(launch);
        // Demo mode: chatter now and then, and cluster 3 crashes after a while.
        let chatter_every = Duration::from_millis(if self.demo { 700 } else { 3_600_000 });
        let mut chatter = tokio::time::interval(chatter_every);
        let crash = tokio::time::sleep(Duration::from_secs(rand::random_range(40..90)));
        tokio::pin!(crash);
        let crashes = self.demo && id == 3;
        let mut launched = false;
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                identified = &mut launch, if !launched => {
                    identified?;
                    launched = true;
                    if self.silent {
                        println!("fake bot: cluster {id} is up but says nothing (FAKEBOT_REPLACEMENT_SILENT)");
                        continue;
                    }
                    let say = json!({"scope": "launcher", "action": "launch_next", "args": {"id": id}});
                    record_event(id, "launched")?;
                    self.link.send(say).await;
                    println!("fake bot: cluster {id} launched");
                }
                _ = chatter.tick(), if self.demo => self.chatter(),
                _ = &mut crash, if crashes && launched => {
                    eprintln!("panic: simulated crash in cluster {id} (the demo's crashy cluster)");
                    return Ok(101);
                }
                _ = sigterm.recv() => {
                    record_event(id, "sigterm")?;
                    if !self.ignore_sigterm {
                        println!("fake bot: cluster {id} got SIGTERM, exiting");
                        return Ok(0);
                    }
                    println!("fake bot: cluster {id} ignores SIGTERM");
                }
                payload = self.link.next() => {
                    if let Some(code) = self.on_message(&payload).await {
                        return Ok(code);
                    }
                }
            }
        }
    }

    /// Demo mode's output: shards identifying, then an occasional heartbeat.
    fn chatter(&mut self) {
        let shards = &self.args.shards;
        if let Some(shard) = shards.get(self.identified) {
            println!("identifying shard {shard} of {}", self.args.shard_count);
            self.identified += 1;
        } else if let Some(shard) = shards.get(rand::random_range(0..shards.len().max(1))) {
            if rand::random_range(0..6) == 0 {
                println!(
                    "shard {shard}: heartbeat ack {}ms",
                    rand::random_range(30..120)
                );
            }
        }
    }

    /// Answers a diagnostic request or obeys an instruction; `Some(code)`
    /// when told to exit.
    async fn on_message(&mut self, payload: &[u8]) -> Option<i32> {
        let id = self.args.cluster_id;
        let v = serde_json::from_slice::<Value>(payload).ok()?;
        if v.get("diag").is_some() && v["id"].as_u64() == Some(u64::from(id)) {
            if !self.muted {
                let answer = diag_answer(&self.args, v["nonce"].as_str().unwrap_or_default());
                let say = json!({"scope": "launcher", "action": "diag", "output": answer});
                self.link.send(say).await;
            }
            return None;
        }
        if v["scope"] != "fakebot" || v["args"]["id"].as_u64() != Some(u64::from(id)) {
            return None;
        }
        match v["action"].as_str() {
            Some("crash") => {
                let code = v["args"]["code"]
                    .as_i64()
                    .and_then(|c| i32::try_from(c).ok());
                let code = code.unwrap_or(1);
                eprintln!("fake bot: cluster {id} crashing with code {code}");
                return Some(code);
            }
            Some("hang") => {
                self.ignore_sigterm = true;
                println!("fake bot: cluster {id} will ignore SIGTERM");
            }
            Some("mute") => {
                self.muted = true;
                println!("fake bot: cluster {id} stops answering diagnostics");
            }
            _ => {}
        }
        None
    }
}

/// Asks the identify queue for every shard's turn at once, as a bot whose
/// shards connect in parallel does; returns when all have identified.
async fn identify_all(url: &str, args: &BotArgs) -> Result<()> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    let identify_ms: u64 = std::env::var("FAKEBOT_IDENTIFY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let record = std::env::var("FAKEBOT_RECORD").ok().map(PathBuf::from);
    let shards = args.shards.iter().map(|&shard| {
        let (client, record) = (client.clone(), record.clone());
        async move {
            let grant = wait_turn(&client, url, shard).await?;
            if let Some(dir) = record {
                let entry =
                    json!({"shard": shard, "bucket": grant["bucket"], "at_us": unix_micros()});
                let n = rand::random::<u32>();
                let path = dir.join(format!("{shard}-{}-{n}.grant", std::process::id()));
                std::fs::write(&path, entry.to_string())
                    .wrap_err_with(|| format!("writing {}", path.display()))?;
            }
            println!(
                "shard {shard}: identify granted (bucket {})",
                grant["bucket"]
            );
            tokio::time::sleep(Duration::from_millis(identify_ms)).await;
            Ok::<(), color_eyre::Report>(())
        }
    });
    for outcome in futures_util::future::join_all(shards).await {
        outcome?;
    }
    Ok(())
}

/// One shard's turn: retried while mewld is unreachable or full, an error
/// when the queue refuses the shard.
async fn wait_turn(client: &reqwest::Client, url: &str, shard: u32) -> Result<Value> {
    loop {
        match client.get(format!("{url}?shard={shard}")).send().await {
            Ok(r) if r.status().is_success() => return Ok(r.json().await?),
            Ok(r) if r.status().is_client_error() => {
                let status = r.status();
                return Err(eyre!(
                    "the identify queue refused shard {shard}: {status} {}",
                    r.text().await.unwrap_or_default()
                ));
            }
            Ok(r) => eprintln!("fake bot: identify queue answered {}; retrying", r.status()),
            Err(e) => eprintln!("fake bot: identify queue unreachable ({e}); retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The answer to a diagnostic: a JSON string, in the shape
/// `FAKEBOT_DIAG_STYLE` picks (see the module docs).
fn diag_answer(args: &BotArgs, nonce: &str) -> String {
    let style = std::env::var("FAKEBOT_DIAG_STYLE").unwrap_or_default();
    let data: Vec<Value> = args
        .shards
        .iter()
        .map(|s| {
            // Stable, plausible numbers per shard, with a little jitter in latency.
            let guilds = 900 + (s * 7919) % 1400;
            let latency = 35.0 + f64::from((s * 31) % 50) + rand::random_range(0.0..8.0);
            match style.as_str() {
                "discordpy" => json!({"id": s, "latency": latency / 1000.0, "up": true, "guilds": guilds}),
                "bare" => json!({"up": true, "latency": latency}),
                _ => json!({"shard_id": s, "up": true, "latency": latency, "guilds": guilds, "users": guilds * 83}),
            }
        })
        .collect();
    match style.as_str() {
        "discordpy" | "bare" => json!({"nonce": nonce, "data": data}),
        _ => json!({"Nonce": nonce, "Data": data, "cluster_id": args.cluster_id}),
    }
    .to_string()
}

fn unix_micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

/// With `FAKEBOT_RECORD`: `<cluster_id>-<pid>.<what>` (cluster_id, pid,
/// unix µs): `launched` just before `launch_next` is said, `sigterm` as
/// SIGTERM arrives.
fn record_event(id: u32, what: &str) -> Result<()> {
    let Ok(dir) = std::env::var("FAKEBOT_RECORD") else {
        return Ok(());
    };
    let pid = std::process::id();
    let path = PathBuf::from(dir).join(format!("{id}-{pid}.{what}"));
    let entry = json!({"cluster_id": id, "pid": pid, "at_us": unix_micros()});
    std::fs::write(&path, entry.to_string()).wrap_err_with(|| format!("writing {}", path.display()))
}

fn record(dir: &std::path::Path, raw: &[String], args: &BotArgs) -> Result<()> {
    let var = |k: &str| std::env::var(k).ok();
    let entry = json!({
        "started_us": unix_micros(),
        "argv": raw,
        "cwd": std::env::current_dir()?.display().to_string(),
        "pid": std::process::id(),
        "cluster_id": args.cluster_id,
        // The open-file limit the cluster was given (mewld raises its own).
        "nofile_soft": nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .ok()
            .map(|(soft, _)| soft),
        "env": {
            "MEWLD_CHANNEL": var("MEWLD_CHANNEL"),
            "MTOKEN": var("MTOKEN"),
            "FAKEBOT_FROM_ENV_FILE": var("FAKEBOT_FROM_ENV_FILE"),
            "MEWLD_IDENTIFY_URL": var("MEWLD_IDENTIFY_URL"),
            "MEWLD_REDIS_URL": var("MEWLD_REDIS_URL"),
            "MEWLD_SOCKET": var("MEWLD_SOCKET"),
            "MEWLD_CLUSTER_CHANNEL": var("MEWLD_CLUSTER_CHANNEL"),
            "MEWLD_LAUNCHER_CHANNEL": var("MEWLD_LAUNCHER_CHANNEL"),
            "MEWLD_REPLACES": var("MEWLD_REPLACES"),
        },
    });
    let path = dir.join(format!("{}-{}.json", args.cluster_id, std::process::id()));
    std::fs::write(&path, entry.to_string())
        .wrap_err_with(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_protocol_arguments() {
        let raw: Vec<String> = ["[0, 1, 2]", "6", "0", "Pika", "0", "/srv/bot"]
            .map(String::from)
            .to_vec();
        let a = BotArgs::parse(&raw).expect("parses");
        assert_eq!(a.shards, vec![0, 1, 2]);
        assert_eq!(a.shard_count, 6);
        assert_eq!(a.cluster_name, "Pika");
        assert!(BotArgs::parse(&raw[..3]).is_err());
    }
}
