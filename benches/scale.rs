//! Issue 19's measure (not a test: it prints a table). N one-shard
//! clusters of the fake bot, each diagnosed every second, in three modes:
//! - `main`: `cluster_channels` off and bots that know only the main
//!   channel, as written for the original (`FAKEBOT_MAIN_CHANNEL_ONLY`):
//!   every cluster hears every other's ping and answer, O(N²) deliveries;
//! - `off`: `cluster_channels` off, bots that answer on the launcher's
//!   channel: the pings alone are O(N²);
//! - `on`: `cluster_channels` on: a cluster's ping on its own channel, its
//!   answers on the launcher's, O(N).
//!
//! Per run:
//! - launch: from starting the manager to `all_clusters_launched`
//!   (`launch: sequential`, no start delay, the fake bot saying
//!   `launch_next` at once);
//! - over a steady window after it, Redis's work: **deliveries/s**, every
//!   message seen by a pattern subscription of the bench's own (`<ch>*`)
//!   times its channel's subscribers (`PUBSUB NUMSUB`, which leaves the
//!   pattern out), **bytes out/s** (`INFO stats` `total_net_output_bytes`,
//!   less the bytes the bench's own subscription was sent) and
//!   **publishes/s** (the messages the pattern saw, on the main channel
//!   and on all of them);
//! - the manager's CPU over the window (utime + stime from /proc) and its
//!   RSS, and the fake bots' mean RSS;
//! - ping failures and restarts (`ping_failure` and `cluster_started`
//!   entries of the action log) during the window;
//! - after the window, `statuses` asked 50 times on the launcher channel
//!   with `reply_to <ch>:bench` (no cluster hears the question or the
//!   reply), each timed from its publish to its reply, p50 and p99.
//!
//! Run: `cargo bench --bench scale` (needs redis-server on PATH; at the
//! default sizes, about 25 minutes). `MEWLD_BENCH_SCALE=100,300,1000`
//! picks N, `MEWLD_BENCH_MODES=main,off,on` the modes, `MEWLD_BENCH_SECS=60`
//! the window, `MEWLD_BENCH_LAUNCH_SECS=600` how long a launch may take
//! before the run is given up (and reported so).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// How many `statuses` are timed per run.
const ASKS: usize = 50;

/// Which channels the manager and the bots use (see the head of the file).
#[derive(Clone, Copy)]
enum Mode {
    Main,
    Off,
    On,
}

impl Mode {
    fn parse(name: &str) -> Option<Mode> {
        match name {
            "main" => Some(Mode::Main),
            "off" => Some(Mode::Off),
            "on" => Some(Mode::On),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Main => "main",
            Mode::Off => "off",
            Mode::On => "on",
        }
    }
}

/// What one run measured; `None` figures when the launch did not finish.
struct Row {
    n: u32,
    mode: Mode,
    launch: Option<Duration>,
    /// Clusters the manager saw launched before the launch was given up.
    launched: usize,
    steady: Option<Steady>,
}

struct Steady {
    deliveries: f64,
    bytes_out: f64,
    publishes: f64,
    main_publishes: f64,
    cpu: f64,
    rss_mib: f64,
    bot_rss_mib: f64,
    failures: usize,
    restarts: usize,
    statuses: Vec<Duration>,
    unanswered: usize,
}

fn run(n: u32, mode: Mode, secs: u64, launch_limit: Duration) -> Row {
    let redis = Redis::start();
    let discord = FakeDiscord::start(vec![Answer::gateway(n, 1000, 0)]);
    let bot = BotDir::new();
    let ch = channel("scale");
    let channels = matches!(mode, Mode::On);
    let extra = format!(
        "fixed_shard_count: {n}\nping_interval: 1\nping_timeout: 10\ncluster_channels: {channels}\n"
    );
    let main_only = if matches!(mode, Mode::Main) { "1" } else { "0" };
    let config = config_text(&redis, &discord, &bot, &ch, &extra);
    let started = Instant::now();
    let env = [
        ("PER_CLUSTER", "1"),
        ("FAKEBOT_LAUNCH_DELAY_MS", "0"),
        ("RUST_LOG", "warn"),
        ("FAKEBOT_MAIN_CHANNEL_ONLY", main_only),
    ];
    let mut manager = Manager::start_with(&config, &["--daemon"], Some(&redis), &bot, &env);
    let launched = wait_for_opt(launch_limit, || {
        if let Ok(Some(status)) = manager.child.try_wait() {
            panic!("mewld exited ({status}):\n{}", manager.stderr().join("\n"));
        }
        // Only the log's tail: the whole of it is thousands of entries.
        let tail: Vec<String> = redis::cmd("LRANGE")
            .arg(format!("{ch}/actlogs"))
            .arg(-20)
            .arg(-1)
            .query(&mut redis.conn())
            .ok()?;
        tail.iter()
            .any(|e| e.contains("\"all_clusters_launched\""))
            .then_some(())
    });
    let launch = launched.map(|()| started.elapsed());
    let steady = launch.map(|_| steady(&redis, &ch, &manager, &bot, n, secs));
    // Clusters the manager saw launched (restarted ones count once).
    let launched = events(&redis.action_log(&ch), "cluster_launched")
        .iter()
        .filter_map(|e| e["id"].as_u64())
        .collect::<HashSet<_>>()
        .len();
    redis.publish(&ch, &json!({"scope": "launcher", "action": "shutdown"}));
    // A launch given up may leave a manager too busy to stop in time.
    if wait_for_opt(Duration::from_secs(120), || {
        manager.child.try_wait().ok()?
    })
    .is_none()
    {
        eprintln!("N={n}: mewld did not stop within 120 s; killed");
    }
    Row {
        n,
        mode,
        launch,
        launched,
        steady,
    }
}

/// The figures of a launched bot: the window, then the `statuses` asks.
fn steady(redis: &Redis, ch: &str, manager: &Manager, bot: &BotDir, n: u32, secs: u64) -> Steady {
    // Let the last clusters' first pings settle before the window.
    thread::sleep(Duration::from_secs(3));
    let pid = manager.pid();
    let counter = Counter::start(redis, ch);
    let subscribers = subscribers(redis, ch, n);
    let window_start_us = unix_micros();
    let (cpu0, out0) = (cpu_time(pid), net_out(redis));
    let window = Instant::now();
    thread::sleep(Duration::from_secs(secs));
    let (cpu1, out1) = (cpu_time(pid), net_out(redis));
    let elapsed = window.elapsed().as_secs_f64();
    let seen = counter.stop();
    let rss_mib = rss_kib(pid) as f64 / 1024.0;

    let deliveries: u64 = seen
        .messages
        .iter()
        .map(|(c, m)| m * subscribers.get(c).copied().unwrap_or(0))
        .sum();
    let publishes: u64 = seen.messages.values().sum();
    let bot_rss: Vec<u64> = bot
        .pids()
        .into_iter()
        .filter_map(rss_kib_if_alive)
        .collect();
    let log = redis.action_log(ch);
    let in_window = |event: &str| {
        events(&log, event)
            .iter()
            .filter(|e| e["ts"].as_u64() >= Some(window_start_us))
            .count()
    };
    let mut statuses = statuses_round_trips(redis, ch, Some(&format!("{ch}:bench")), n, ASKS);
    statuses.sort();
    Steady {
        deliveries: deliveries as f64 / elapsed,
        bytes_out: out1.saturating_sub(out0).saturating_sub(seen.bytes) as f64 / elapsed,
        publishes: publishes as f64 / elapsed,
        main_publishes: seen.messages.get(ch).copied().unwrap_or(0) as f64 / elapsed,
        cpu: (cpu1 - cpu0).as_secs_f64() / elapsed * 100.0,
        rss_mib,
        bot_rss_mib: bot_rss.iter().sum::<u64>() as f64 / bot_rss.len().max(1) as f64 / 1024.0,
        failures: in_window("ping_failure"),
        restarts: in_window("cluster_started"),
        unanswered: ASKS - statuses.len(),
        statuses,
    }
}

fn net_out(redis: &Redis) -> u64 {
    redis.info_figure("stats", "total_net_output_bytes")
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Each channel's subscribers: the main one, the launcher's and every
/// cluster's (`PUBSUB NUMSUB` counts no pattern, so not the bench's own).
fn subscribers(redis: &Redis, ch: &str, n: u32) -> HashMap<String, u64> {
    let mut names = vec![ch.to_string(), format!("{ch}:launcher")];
    names.extend((0..n).map(|id| format!("{ch}:{id}")));
    let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(&names)
        .query(&mut redis.conn())
        .expect("PUBSUB NUMSUB");
    counts.into_iter().collect()
}

/// What the bench's pattern subscription saw: messages per channel, and
/// the bytes Redis sent it for them.
#[derive(Default)]
struct Seen {
    messages: HashMap<String, u64>,
    bytes: u64,
}

/// A pattern subscription (`<ch>*`) counting every message on the bot's
/// channels, on a thread of its own until stopped.
struct Counter {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Seen>,
}

impl Counter {
    fn start(redis: &Redis, ch: &str) -> Counter {
        let mut conn = redis.conn();
        let pattern = format!("{ch}*");
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stopped = stop.clone();
        let thread = thread::spawn(move || {
            let mut pubsub = conn.as_pubsub();
            pubsub.psubscribe(&pattern).expect("psubscribe");
            pubsub
                .set_read_timeout(Some(Duration::from_millis(200)))
                .expect("read timeout");
            let _ = ready_tx.send(());
            let mut seen = Seen::default();
            while !stopped.load(Ordering::Relaxed) {
                let Ok(msg) = pubsub.get_message() else {
                    continue;
                };
                let channel = msg.get_channel_name().to_string();
                let payload = msg.get_payload_bytes().len();
                seen.bytes += pmessage_frame(pattern.len(), channel.len(), payload);
                *seen.messages.entry(channel).or_default() += 1;
            }
            seen
        });
        ready_rx.recv_timeout(DEADLINE).expect("psubscribed");
        Counter { stop, thread }
    }

    fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the counter thread")
    }
}

/// The size of the RESP frame Redis writes for one pattern message.
fn pmessage_frame(pattern: usize, channel: usize, payload: usize) -> u64 {
    let bulk = |len: usize| (len + len.to_string().len() + 5) as u64;
    4 + bulk("pmessage".len()) + bulk(pattern) + bulk(channel) + bulk(payload)
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

fn print_table(rows: &[Row], secs: u64, launch_limit: Duration) {
    println!("\nwindow {secs} s, ping_interval 1 s, one shard per cluster");
    println!("| N | mode | launch | deliveries/s | bytes out/s | publishes/s (main) | statuses p50 / p99 | manager CPU | manager RSS | bot RSS | ping failures | restarts |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let mode = r.mode.name();
        let Some((launch, s)) = r.launch.zip(r.steady.as_ref()) else {
            println!(
                "| {} | {mode} | {} of {} launched in {} s | | | | | | | | | |",
                r.n,
                r.launched,
                r.n,
                launch_limit.as_secs()
            );
            continue;
        };
        let unanswered = if s.unanswered > 0 {
            format!(" ({} unanswered)", s.unanswered)
        } else {
            String::new()
        };
        println!(
            "| {} | {mode} | {:.1} s | {:.0} | {:.2} MB | {:.0} ({:.0}) | {:.1} / {:.1} ms{unanswered} | {:.1} % | {:.1} MiB | {:.1} MiB | {} | {} |",
            r.n,
            launch.as_secs_f64(),
            s.deliveries,
            s.bytes_out / 1e6,
            s.publishes,
            s.main_publishes,
            percentile_ms(&s.statuses, 0.5),
            percentile_ms(&s.statuses, 0.99),
            s.cpu,
            s.rss_mib,
            s.bot_rss_mib,
            s.failures,
            s.restarts,
        );
    }
}

/// A thousand clusters hold two Redis connections and two pipes each:
/// raise this process's open-file limit (inherited by Redis and mewld).
fn raise_open_files() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo test` also builds benches with --bench absent; only run for real.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    raise_open_files();
    let sizes: Vec<u32> = env_list("MEWLD_BENCH_SCALE", "100,300,1000")
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let modes: Vec<Mode> = env_list("MEWLD_BENCH_MODES", "main,off,on")
        .iter()
        .filter_map(|m| Mode::parse(m))
        .collect();
    let secs = env_secs("MEWLD_BENCH_SECS", 60);
    let launch_limit = Duration::from_secs(env_secs("MEWLD_BENCH_LAUNCH_SECS", 600));
    let mut rows = Vec::new();
    for &n in &sizes {
        for &mode in &modes {
            let row = run(n, mode, secs, launch_limit);
            print_table(std::slice::from_ref(&row), secs, launch_limit);
            rows.push(row);
        }
    }
    print_table(&rows, secs, launch_limit);
}
