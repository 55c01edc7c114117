//! Launch makespan against Discord's bound (not a test: it prints figures).
//! For S shards at `max_concurrency` M, 4 shards a cluster, fake-bot
//! clusters whose shards ask the identify queue and take
//! `MEWLD_BENCH_IDENTIFY_MS` (default 1000) to be ready once granted:
//! - `launch: concurrent`, against the floor ⌈S/M⌉ × 5 s (goal: ratio ≤ 1.1);
//! - `launch: sequential` with the original's `cluster_start_next_delay`
//!   of 5 s, the same bot and the same queue.
//!
//! Makespan: from the first `cluster_started` to `all_clusters_launched`,
//! by the action log's timestamps. Every grant is checked against the rate
//! limit (one per bucket per 5 s) and violations are counted.
//!
//! Run: `cargo bench --bench identify` (needs redis-server on PATH; about
//! 10 minutes). `MEWLD_BENCH_LAUNCHES=64x16,256x16` picks the bots and
//! `MEWLD_BENCH_SEQUENTIAL=0` skips the (slow) sequential runs.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::Value;

const PER_CLUSTER: u32 = 4;

struct Run {
    makespan: Duration,
    grants: usize,
    violations: usize,
}

fn launch(shards: u32, max_concurrency: u32, concurrent: bool, identify_ms: u64) -> Run {
    let f = Fixture::new(
        "bench_identify",
        vec![Answer::gateway_with(
            shards,
            1000,
            3_600_000,
            max_concurrency,
        )],
    );
    let policy = if concurrent {
        "launch: concurrent\ncluster_start_next_delay: 5\n"
    } else {
        "cluster_start_next_delay: 5\n"
    };
    // The fixture's delay of 0 gives way to the original's 5 s.
    let config = f
        .config(&format!(
            "identify_queue: 127.0.0.1:0\nping_interval: 30\n{policy}"
        ))
        .replace("cluster_start_next_delay: 0\n", "");
    let per_cluster = PER_CLUSTER.to_string();
    let identify = identify_ms.to_string();
    let env = [
        ("PER_CLUSTER", per_cluster.as_str()),
        ("FAKEBOT_IDENTIFY_MS", identify.as_str()),
        ("FAKEBOT_LAUNCH_DELAY_MS", "0"),
    ];
    let mut m = Manager::start_with(&config, &["--daemon"], Some(&f.redis), &f.bot, &env);
    m.wait_launched_within(&f.listener, Duration::from_secs(3600));
    let log = f.redis.action_log(&f.ch);
    let ts = |event: &str| {
        log.iter()
            .find(|e| e["event"] == event)
            .and_then(|e| e["ts"].as_u64())
            .unwrap_or_else(|| panic!("no {event} in {log:?}"))
    };
    let makespan = Duration::from_micros(ts("all_clusters_launched") - ts("cluster_started"));
    let grants = f.bot.grants();
    Run {
        makespan,
        grants: grants.len(),
        violations: violations(&grants, max_concurrency),
    }
}

/// Pairs of grants in one bucket less than 5 s apart.
fn violations(grants: &[Value], max_concurrency: u32) -> usize {
    let mut by_bucket: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for g in grants {
        let shard = g["shard"].as_u64().unwrap_or_default();
        let at = g["at_us"].as_u64().unwrap_or_default();
        by_bucket
            .entry(shard % u64::from(max_concurrency))
            .or_default()
            .push(at);
    }
    by_bucket
        .values_mut()
        .map(|times| {
            times.sort();
            times.windows(2).filter(|p| p[1] - p[0] < 5_000_000).count()
        })
        .sum()
}

fn main() {
    let identify_ms: u64 = std::env::var("MEWLD_BENCH_IDENTIFY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let launches = std::env::var("MEWLD_BENCH_LAUNCHES").unwrap_or_else(|_| "64x16,256x16".into());
    let sequential = std::env::var("MEWLD_BENCH_SEQUENTIAL").map_or(true, |v| v != "0");
    println!("{PER_CLUSTER} shards a cluster, each shard ready {identify_ms} ms after its grant\n");
    println!(
        "{:>5} {:>4} {:>12} {:>10} {:>6} {:>8} {:>10} {:>16}",
        "S", "M", "policy", "makespan", "bound", "ratio", "grants", "violations"
    );
    for spec in launches.split(',') {
        let Some((s, m)) = spec.split_once('x') else {
            panic!("MEWLD_BENCH_LAUNCHES: {spec:?} is not SxM");
        };
        let (s, m): (u32, u32) = (s.trim().parse().expect("S"), m.trim().parse().expect("M"));
        let bound = Duration::from_secs(u64::from(s.div_ceil(m)) * 5);
        let mut policies = vec![true];
        if sequential {
            policies.push(false);
        }
        for concurrent in policies {
            let run = launch(s, m, concurrent, identify_ms);
            println!(
                "{s:>5} {m:>4} {:>12} {:>9.1}s {:>5}s {:>8.2} {:>10} {:>16}",
                if concurrent {
                    "concurrent"
                } else {
                    "sequential"
                },
                run.makespan.as_secs_f64(),
                bound.as_secs(),
                run.makespan.as_secs_f64() / bound.as_secs_f64(),
                run.grants,
                run.violations,
            );
        }
    }
}
