//! The engine under load (not a test: it prints figures). For N = 40 and
//! N = 400 clusters of the fake bot, with a diagnostic to every cluster every
//! second: the manager's CPU time and memory, and the round-trip time of
//! `statuses`.
//!
//! Then a rolling restart of C clusters in each `rolling_restart_mode`,
//! the fake bot taking about a second to say `launch_next`: each
//! cluster's downtime (from the old process's SIGTERM to its
//! replacement's `launch_next`, 0 when that came first) and the roll's
//! total time (`rolling_restart` to `rolling_restart_done`).
//!
//! Run: `cargo bench --bench engine` (needs redis-server on PATH).
//! `MEWLD_BENCH_SIZES=40,400` and `MEWLD_BENCH_SECS=20` change the run;
//! `MEWLD_BENCH_ROLL_CLUSTERS=6` the roll's (0 skips it, an empty
//! `MEWLD_BENCH_SIZES` the load's).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn run(n: u32, secs: u64) {
    let redis = Redis::start();
    let discord = FakeDiscord::start(vec![Answer::gateway(n, 900, 0)]);
    let bot = BotDir::new();
    let ch = channel("bench");
    let config = config_text(
        &redis,
        &discord,
        &bot,
        &ch,
        "ping_interval: 1\nping_timeout: 120\n",
    );
    let launch_started = Instant::now();
    let mut manager = Manager::start_with(
        &config,
        &["--daemon"],
        Some(&redis),
        &bot,
        &[
            ("PER_CLUSTER", "1"),
            ("FAKEBOT_LAUNCH_DELAY_MS", "0"),
            ("RUST_LOG", "warn"),
        ],
    );
    // Watching the channel itself would drown in N² diagnostics; the action
    // log says when the launch is done.
    wait_for("all_clusters_launched", Duration::from_secs(600), || {
        (!events(&redis.action_log(&ch), "all_clusters_launched").is_empty()).then_some(())
    });
    let launch_time = launch_started.elapsed();
    let pid = manager.pid();

    let cpu0 = cpu_time(pid).as_secs_f64();
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let (cpu1, rss) = (cpu_time(pid).as_secs_f64(), rss_kib(pid));
    let elapsed = window.elapsed().as_secs_f64();

    let mut rtts = statuses_round_trips(&redis, &ch, None, n, 50);
    rtts.sort();
    let unanswered = 50 - rtts.len();
    if rtts.is_empty() {
        rtts.push(Duration::ZERO);
    }
    let log = redis.action_log(&ch);
    let failures = events(&log, "ping_failure").len();
    let mut gaps = launch_gaps(&log);
    gaps.sort();
    if gaps.is_empty() {
        gaps.push(Duration::ZERO);
    }
    println!(
        "N={n:>4}  launch {:>6.1}s  manager CPU {:>5.1}% of a core ({:.2}s over {elapsed:.0}s)  RSS {:>6.1} MiB  \
         statuses RTT median {:>6.2}ms p99 {:>6.2}ms ({unanswered}/50 unanswered in 10s)  ping failures {failures}  \
         launch_next→next start median {:>5.2}ms p99 {:>5.2}ms",
        launch_time.as_secs_f64(),
        100.0 * (cpu1 - cpu0) / elapsed,
        cpu1 - cpu0,
        rss as f64 / 1024.0,
        percentile(&rtts, 0.5).as_secs_f64() * 1000.0,
        percentile(&rtts, 0.99).as_secs_f64() * 1000.0,
        percentile(&gaps, 0.5).as_secs_f64() * 1000.0,
        percentile(&gaps, 0.99).as_secs_f64() * 1000.0,
    );
    redis.publish(&ch, &json!({"scope": "launcher", "action": "shutdown"}));
    manager.wait_exit();
}

/// From each cluster's `launch_next` (logged as `cluster_launched`) to the
/// next cluster's process having started (`cluster_started`, logged once
/// it has exec'd): how fast the manager reacts, with no start delay.
fn launch_gaps(log: &[serde_json::Value]) -> Vec<Duration> {
    let at = |event: &str, id: u64| {
        log.iter()
            .find(|e| e["event"] == event && e["id"] == id)
            .and_then(|e| e["ts"].as_i64())
    };
    (0u64..)
        .map_while(|id| Some((at("cluster_launched", id)?, at("cluster_started", id + 1)?)))
        .filter_map(|(launched, next)| u64::try_from(next - launched).ok())
        .map(Duration::from_micros)
        .collect()
}

/// A rolling restart of `clusters` one-shard clusters in `mode`: each
/// cluster's downtime and the roll's total time.
fn roll(mode: &str, clusters: u32) {
    let redis = Redis::start();
    let discord = FakeDiscord::start(vec![Answer::gateway(clusters, 900, 0)]);
    let bot = BotDir::new();
    let ch = channel(&format!("bench_roll_{mode}"));
    let extra = format!("rolling_restart_mode: {mode}\n");
    let config = config_text(&redis, &discord, &bot, &ch, &extra);
    let listener = redis.listen(&ch);
    let env = [
        ("PER_CLUSTER", "1"),
        ("FAKEBOT_LAUNCH_DELAY_MS", "1000"),
        ("RUST_LOG", "warn"),
    ];
    let mut manager = Manager::start_with(&config, &["--daemon"], Some(&redis), &bot, &env);
    manager.wait_launched_within(&listener, Duration::from_secs(600));
    let sampler = Sampler::start(&bot, clusters);
    ask(&redis, &listener, &ch, "rollingrestart", json!({}));
    let log = wait_for("rolling_restart_done", Duration::from_secs(1200), || {
        let log = redis.action_log(&ch);
        (!events(&log, "rolling_restart_done").is_empty()).then_some(log)
    });
    let samples = sampler.finish();
    let ts = |event: &str| events(&log, event).first().and_then(|e| e["ts"].as_i64());
    let total = match (ts("rolling_restart"), ts("rolling_restart_done")) {
        (Some(from), Some(to)) => Duration::from_micros(u64::try_from(to - from).unwrap_or(0)),
        _ => Duration::ZERO,
    };
    let mut down: Vec<Duration> = downtimes(&bot).into_values().flatten().collect();
    down.sort();
    let restarted = down.len();
    if down.is_empty() {
        down.push(Duration::ZERO);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "roll {mode:<11} C={clusters}  total {:>6.2}s ({:>5.2}s a cluster)  downtime per cluster \
         median {:>6.0}ms max {:>6.0}ms ({restarted} stops)  samples without a ready process \
         {}/{}",
        total.as_secs_f64(),
        total.as_secs_f64() / f64::from(clusters.max(1)),
        ms(percentile(&down, 0.5)),
        ms(percentile(&down, 1.0)),
        samples.gaps.len(),
        samples.taken,
    );
    redis.publish(&ch, &json!({"scope": "launcher", "action": "shutdown"}));
    manager.wait_exit();
}

fn main() {
    let sizes: Vec<u32> = std::env::var("MEWLD_BENCH_SIZES")
        .unwrap_or_else(|_| "40,400".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let secs = std::env::var("MEWLD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    // `cargo test` also builds benches with --bench absent; only run for real.
    let roll_clusters: u32 = std::env::var("MEWLD_BENCH_ROLL_CLUSTERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    if std::env::args().any(|a| a == "--bench") {
        for n in sizes {
            run(n, secs);
        }
        if roll_clusters > 0 {
            for mode in ["stop_first", "start_first"] {
                roll(mode, roll_clusters);
            }
        }
    }
}
