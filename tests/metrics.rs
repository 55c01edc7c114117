//! Prometheus metrics end to end: a daemon with real clusters on a real
//! redis-server, `metrics_addr` on a free port, scraped over HTTP.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use common::*;
use serde_json::json;

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// `GET path` over HTTP/1.0: the status code and the body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
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

/// Every sample of the text format, by its series (`name{labels}`).
fn scrape(port: u16) -> HashMap<String, f64> {
    let (status, body) = get(port, "/metrics").expect("a scrape");
    assert_eq!(status, 200, "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("a sample: {l}"));
            let value = value.parse().unwrap_or_else(|_| panic!("a number: {l}"));
            (series.to_string(), value)
        })
        .collect()
}

#[test]
fn metrics_follow_the_clusters() {
    let port = free_port();
    let extra = format!("metrics_addr: 127.0.0.1:{port}\nping_interval: 1\nping_timeout: 5\n");
    let (f, _daemon) = launched("metrics", 6, &extra, &[]);
    assert_eq!(get(port, "/healthz").map(|(s, _)| s), Some(200));
    let m = wait_for("shard health in the metrics", DEADLINE, || {
        let m = scrape(port);
        m.contains_key("mewld_shard_up{cluster=\"1\",shard=\"2\"}")
            .then_some(m)
    });
    assert_eq!(m["mewld_clusters{state=\"running\"}"], 3.0, "{m:?}");
    assert_eq!(m["mewld_clusters{state=\"stopped\"}"], 0.0);
    assert_eq!(m["mewld_cluster_up{cluster=\"1\",name=\"cluster-1\"}"], 1.0);
    assert_eq!(m["mewld_redis_connected"], 1.0);
    assert_eq!(m["mewld_session_starts_remaining"], 900.0);
    assert_eq!(m["mewld_shard_up{cluster=\"1\",shard=\"2\"}"], 1.0);
    assert!(
        m["mewld_shard_guilds{cluster=\"1\",shard=\"2\"}"] > 0.0,
        "{m:?}"
    );
    assert!(m["mewld_diag_round_trip_seconds_count"] >= 1.0);
    assert_eq!(
        m["mewld_action_log_entries_total{event=\"all_clusters_launched\"}"],
        1.0
    );

    // Scrapers that connect and never ask take every slot; the engine goes
    // on, and a real scrape gets through once their deadline passes.
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    let reply = ask(&f.redis, &f.listener, &f.ch, "stop", json!({"id": 1}));
    assert_eq!(reply["output"], "ok", "{reply}");
    wait_for("cluster 1 down in the metrics", DEADLINE, || {
        let m = scrape(port);
        (m["mewld_cluster_up{cluster=\"1\",name=\"cluster-1\"}"] == 0.0
            && m["mewld_clusters{state=\"stopped\"}"] == 1.0
            && m["mewld_clusters{state=\"running\"}"] == 2.0)
            .then_some(())
    });
    drop(idle);
    // A restart over Redis is counted once, with its reason.
    ask(&f.redis, &f.listener, &f.ch, "restart", json!({"id": 0}));
    let m = wait_for("the restart counted", DEADLINE, || {
        let m = scrape(port);
        let started = "mewld_action_log_entries_total{event=\"cluster_started\"}";
        (m.get(started) == Some(&4.0)).then_some(m)
    });
    let restarts: Vec<_> = m
        .iter()
        .filter(|(k, _)| k.starts_with("mewld_cluster_restarts_total{"))
        .collect();
    assert_eq!(
        restarts,
        [(
            &"mewld_cluster_restarts_total{cluster=\"0\",reason=\"operator\"}".to_string(),
            &1.0
        )],
        "{m:?}"
    );
    assert_eq!(get(port, "/healthz").map(|(s, _)| s), Some(200));
    assert_eq!(get(port, "/nothing").map(|(s, _)| s), Some(404));
}

#[test]
fn a_bad_or_taken_metrics_addr_stops_the_start() {
    let f = Fixture::new("badmetrics", vec![Answer::gateway(2, 900, 0)]);
    let mut bad = Manager::start(&f.config("metrics_addr: nowhere\n"), &f.redis, &f.bot);
    assert_eq!(bad.wait_exit(), Some(2));
    let said = bad.stderr().join("\n");
    // The file, the line and the key.
    assert!(
        said.contains("config.yaml:10: key `metrics_addr`"),
        "{said}"
    );

    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let mut manager = Manager::start(
        &f.config(&format!("metrics_addr: 127.0.0.1:{port}\n")),
        &f.redis,
        &f.bot,
    );
    assert_eq!(manager.wait_exit(), Some(2));
    let said = manager.stderr().join("\n");
    assert!(
        said.contains(&format!("metrics_addr 127.0.0.1:{port}")),
        "{said}"
    );
    assert!(f.bot.records().is_empty(), "no cluster started");
}

#[test]
fn check_config_says_metrics_are_off_or_the_address_is_bad() {
    let (code, said) = check_config_with("");
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("off (metrics_addr)"), "{said}");
    let (code, said) = check_config_with("metrics_addr: localhost\n");
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("config.yaml:10: key `metrics_addr`"),
        "{said}"
    );
}
