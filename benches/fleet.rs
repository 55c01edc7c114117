//! A fleet on one machine (not a test: it prints figures). N managers
//! (`--host-index i --host-count N`) on one redis-server share a bot of
//! `MEWLD_BENCH_CLUSTERS` (default 300) one-shard clusters of the fake bot,
//! launched in one order with no delay between clusters. Printed per fleet
//! size:
//! - launch: from starting the managers to `all_clusters_launched`;
//! - `statuses` round trip (the leader's reply covering every cluster),
//!   median and worst of 50;
//! - over a steady 30 s window (`ping_interval: 10`): each manager's CPU
//!   and resident memory, Redis commands per second, and messages per
//!   second on the channel.
//!
//! Run: `cargo bench --bench fleet` (needs redis-server on PATH; about 3
//! minutes). `MEWLD_BENCH_HOSTS=1,3` picks the fleet sizes.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const WINDOW: Duration = Duration::from_secs(30);

fn run(hosts: u32, clusters: u32) {
    let f = Fixture::new("bench_fleet", vec![Answer::gateway(clusters, 1000, 0)]);
    let config = f.config("ping_interval: 10\n");
    let env = [("PER_CLUSTER", "1"), ("FAKEBOT_LAUNCH_DELAY_MS", "0")];
    let started = Instant::now();
    let mut managers: Vec<Manager> = (0..hosts)
        .map(|i| f.fleet_host(&config, &format!("h{i}"), i, hosts, &env))
        .collect();
    managers[0].wait_launched_within(&f.listener, Duration::from_secs(900));
    let launch = started.elapsed();

    thread_sleep(Duration::from_secs(3));
    let mut trips = statuses_round_trips(&f.redis, &f.ch, None, clusters, 50);
    assert_eq!(trips.len(), 50, "every statuses answered within 10 s");
    trips.sort();

    let cpu_before: Vec<Duration> = managers.iter().map(|m| cpu_time(m.pid())).collect();
    let commands_before = f.redis.info_figure("stats", "total_commands_processed");
    let messages_before = f.listener.all().len();
    thread_sleep(WINDOW);
    let secs = WINDOW.as_secs_f64();
    let commands =
        (f.redis.info_figure("stats", "total_commands_processed") - commands_before) as f64 / secs;
    let messages = (f.listener.all().len() - messages_before) as f64 / secs;

    println!(
        "{hosts} host(s), {clusters} clusters: launch {:.1} s; statuses round trip median {:.1} ms, worst {:.1} ms",
        launch.as_secs_f64(),
        trips[trips.len() / 2].as_secs_f64() * 1e3,
        trips[trips.len() - 1].as_secs_f64() * 1e3,
    );
    for (m, before) in managers.iter().zip(cpu_before) {
        let used = cpu_time(m.pid()).saturating_sub(before);
        println!(
            "  manager pid {}: CPU {:.1}% of a core, RSS {} MiB",
            m.pid(),
            used.as_secs_f64() / secs * 100.0,
            rss_kib(m.pid()) / 1024
        );
    }
    println!(
        "  Redis: {commands:.0} commands/s; channel: {messages:.0} messages/s ({:.2} per cluster per second)",
        messages / f64::from(clusters)
    );
    f.redis
        .publish(&f.ch, &json!({"scope": "launcher", "action": "shutdown"}));
    for m in &mut managers {
        m.wait_exit();
    }
}

fn thread_sleep(d: Duration) {
    std::thread::sleep(d);
}

fn main() {
    let clusters: u32 = std::env::var("MEWLD_BENCH_CLUSTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let hosts = std::env::var("MEWLD_BENCH_HOSTS").unwrap_or_else(|_| "1,3".into());
    for n in hosts.split(',').filter_map(|n| n.trim().parse().ok()) {
        run(n, clusters);
    }
}
