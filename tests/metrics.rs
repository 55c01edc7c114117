//! Prometheus metrics end to end: a daemon with real clusters on a real
//! redis-server, `metrics_addr` on a free port, scraped over HTTP.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn metrics_follow_the_clusters() {
    let port = free_port();
    let extra = format!("metrics_addr: 127.0.0.1:{port}\nping_interval: 1\nping_timeout: 5\n");
    let (f, _daemon) = launched("metrics", 6, &extra, &[]);
    wait_for_seen("/healthz 200", DEADLINE, || {
        match http_get(port, "/healthz") {
            Some((200, _)) => Ok(()),
            other => Err(other),
        }
    });
    // A scrape is not taken at one instant (the engine moves on while it is
    // encoded): wait for one that has every figure looked at below.
    let m = wait_for_seen("shard health in the metrics", DEADLINE, || {
        let m = scrape(port);
        let ready = m.contains_key("mewld_shard_up{cluster=\"1\",shard=\"2\"}")
            && m.get("mewld_diag_round_trip_seconds_count") >= Some(&1.0)
            && m.get("mewld_clusters{state=\"running\"}") == Some(&3.0)
            && m.contains_key("mewld_action_log_entries_total{event=\"all_clusters_launched\"}");
        if ready {
            Ok(m)
        } else {
            Err(m)
        }
    });
    assert_eq!(m["mewld_clusters{state=\"stopped\"}"], 0.0, "{m:?}");
    assert_eq!(
        m["mewld_cluster_up{cluster=\"1\",name=\"cluster-1\"}"], 1.0,
        "{m:?}"
    );
    assert_eq!(m["mewld_redis_connected"], 1.0, "{m:?}");
    assert_eq!(m["mewld_session_starts_remaining"], 900.0, "{m:?}");
    assert_eq!(m["mewld_shard_up{cluster=\"1\",shard=\"2\"}"], 1.0, "{m:?}");
    assert!(
        m["mewld_shard_guilds{cluster=\"1\",shard=\"2\"}"] > 0.0,
        "{m:?}"
    );
    assert_eq!(
        m["mewld_action_log_entries_total{event=\"all_clusters_launched\"}"], 1.0,
        "{m:?}"
    );

    // Scrapers that connect and never ask: the engine goes on, and a real
    // scrape gets through (the oldest idle one is closed to make room).
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    let reply = ask(&f.redis, &f.listener, &f.ch, "stop", json!({"id": 1}));
    assert_eq!(reply["output"], "ok", "{reply}");
    wait_for_seen("cluster 1 down in the metrics", DEADLINE, || {
        let m = scrape(port);
        let down = m.get("mewld_cluster_up{cluster=\"1\",name=\"cluster-1\"}") == Some(&0.0)
            && m.get("mewld_clusters{state=\"stopped\"}") == Some(&1.0)
            && m.get("mewld_clusters{state=\"running\"}") == Some(&2.0);
        if down {
            Ok(())
        } else {
            Err(m)
        }
    });
    drop(idle);
    // A restart over Redis is counted once, with its reason.
    ask(&f.redis, &f.listener, &f.ch, "restart", json!({"id": 0}));
    let m = wait_for_seen("the restart counted", DEADLINE, || {
        let m = scrape(port);
        let started = "mewld_action_log_entries_total{event=\"cluster_started\"}";
        let operator = "mewld_cluster_restarts_total{cluster=\"0\",reason=\"operator\"}";
        if m.get(started) == Some(&4.0) && m.get(operator) == Some(&1.0) {
            Ok(m)
        } else {
            Err(m)
        }
    });
    // Every cluster's counters are there from the start, at 0 but this one.
    let restarts: Vec<_> = m
        .iter()
        .filter(|(k, _)| k.starts_with("mewld_cluster_restarts_total{"))
        .collect();
    assert_eq!(restarts.len(), 3 * 5, "3 clusters, 5 reasons: {m:?}");
    let counted: Vec<_> = restarts.into_iter().filter(|(_, v)| **v > 0.0).collect();
    assert_eq!(
        counted,
        [(
            &"mewld_cluster_restarts_total{cluster=\"0\",reason=\"operator\"}".to_string(),
            &1.0
        )],
        "{m:?}"
    );
    for id in 0..3 {
        let series = format!("mewld_ping_failures_total{{cluster=\"{id}\"}}");
        assert_eq!(m.get(&series), Some(&0.0), "{series}: {m:?}");
    }
    let healthz = http_get(port, "/healthz");
    assert_eq!(healthz.as_ref().map(|(s, _)| *s), Some(200), "{healthz:?}");
    let nothing = http_get(port, "/nothing");
    assert_eq!(nothing.as_ref().map(|(s, _)| *s), Some(404), "{nothing:?}");
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

/// Slow clients (slowloris) on 127.0.0.1, as the probe is: each connection
/// sends a request's head a byte every 200 ms, and is opened again when
/// the server closes it, until dropped.
struct Slowloris {
    stop: Arc<AtomicBool>,
    /// Connections the server closed (and were opened again).
    reopened: Arc<AtomicU64>,
}

impl Slowloris {
    fn start(port: u16, connections: usize) -> Slowloris {
        let open = move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .ok()?;
            Some(s)
        };
        let mut streams: Vec<Option<TcpStream>> = (0..connections).map(|_| open()).collect();
        let (stop, reopened) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (stopped, count) = (stop.clone(), reopened.clone());
        thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                for slot in &mut streams {
                    let alive = slot.as_mut().is_some_and(|s| s.write_all(b"a").is_ok());
                    if !alive {
                        *slot = open();
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                thread::sleep(Duration::from_millis(200));
            }
        });
        Slowloris { stop, reopened }
    }

    fn reopened(&self) -> u64 {
        self.reopened.load(Ordering::Relaxed)
    }
}

impl Drop for Slowloris {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `GET path`, timed.
fn timed_get(port: u16, path: &str) -> (Option<(u16, String)>, Duration) {
    let started = Instant::now();
    let answer = http_get(port, path);
    (answer, started.elapsed())
}

/// 150 slow clients from the probe's own address, opening a connection
/// again each time the server closes one, cannot keep `/healthz` from
/// answering within a second (a liveness probe's usual timeout).
#[test]
fn healthz_answers_within_a_second_while_150_slow_clients_are_connected() {
    let port = free_port();
    let extra = format!("metrics_addr: 127.0.0.1:{port}\n");
    let (_f, _daemon) = launched("slowloris", 2, &extra, &[]);
    wait_for_seen("/healthz 200", DEADLINE, || {
        match http_get(port, "/healthz") {
            Some((200, _)) => Ok(()),
            other => Err(other),
        }
    });
    let slow = Slowloris::start(port, 150);
    // Probes until the server has closed slow clients 300 times (each came
    // back at once): the probes met a pool full of them, churning.
    let mut took = Vec::new();
    wait_for_seen("the slow clients closed 300 times", DEADLINE * 2, || {
        let (answer, elapsed) = timed_get(port, "/healthz");
        assert_eq!(
            answer.as_ref().map(|(s, _)| *s),
            Some(200),
            "{answer:?} after {elapsed:?}"
        );
        took.push(elapsed);
        let reopened = slow.reopened();
        if reopened >= 300 && took.len() >= 20 {
            Ok(())
        } else {
            Err((reopened, took.len()))
        }
    });
    let (scrape, scrape_took) = timed_get(port, "/metrics");
    took.sort();
    eprintln!(
        "with 150 slow clients: /healthz in {:?} (median) to {:?} (slowest) over {}; \
         /metrics in {scrape_took:?}; the server closed {} slow connections",
        took[took.len() / 2],
        took[took.len() - 1],
        took.len(),
        slow.reopened()
    );
    assert!(took[took.len() - 1] < Duration::from_secs(1), "{took:?}");
    assert_eq!(scrape.map(|(s, _)| s), Some(200), "after {scrape_took:?}");
    assert!(scrape_took < Duration::from_secs(1), "{scrape_took:?}");
}

/// A request's head sent a byte at a time is cut at the head deadline
/// (5 s), not let run to the connection's (30 s).
#[test]
fn a_head_sent_a_byte_at_a_time_is_cut_at_its_deadline() {
    let port = free_port();
    let (_f, _daemon) = launched(
        "dribble",
        2,
        &format!("metrics_addr: 127.0.0.1:{port}\n"),
        &[],
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let started = Instant::now();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        .expect("send");
    let cut_after = wait_for(
        "the server to close the dribbling connection",
        DEADLINE,
        || {
            let mut buf = [0u8; 512];
            let closed = match stream.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            };
            (closed || stream.write_all(b"a").is_err()).then(|| started.elapsed())
        },
    );
    eprintln!("a dribbling head was cut after {cut_after:?}");
    assert!(
        cut_after >= Duration::from_secs(4) && cut_after < Duration::from_secs(15),
        "{cut_after:?}"
    );
}

/// From the moment the port is bound, before Discord is even asked for the
/// shard count: `/healthz` answers at once, 503 with the step the start is
/// at, and `/metrics` answers. Here the start waits for the session
/// budget's reset (8 s).
#[test]
fn healthz_says_starting_at_once_before_the_engine_runs() {
    let port = free_port();
    let f = Fixture::new(
        "starting",
        vec![Answer::gateway(2, 2, 8_000), Answer::gateway(2, 900, 0)],
    );
    let config = f.config(&format!("metrics_addr: 127.0.0.1:{port}\n"));
    let mut manager = Manager::start(&config, &f.redis, &f.bot);
    // Connecting fails until the port is bound.
    let (answer, took) = wait_for("the metrics port bound", DEADLINE, || {
        TcpStream::connect(("127.0.0.1", port)).ok()?;
        Some(timed_get(port, "/healthz"))
    });
    assert!(
        matches!(&answer, Some((503, body)) if body.starts_with("starting: ")),
        "{answer:?} after {took:?}"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    let (scrape, took) = timed_get(port, "/metrics");
    assert_eq!(scrape.as_ref().map(|(s, _)| *s), Some(200), "{scrape:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let waiting = "starting: waiting for the session budget's reset\n";
    let (answer, took) = wait_for_seen("/healthz to say the reset", DEADLINE, || {
        match timed_get(port, "/healthz") {
            (Some((503, body)), took) if body == waiting => Ok((body, took)),
            other => Err(other),
        }
    });
    assert!(took < Duration::from_secs(1), "{answer:?} after {took:?}");
    assert!(f.bot.records().is_empty(), "no cluster started yet");
    manager.wait_launched(&f.listener);
    wait_for_seen(
        "/healthz 200 once the engine runs",
        DEADLINE,
        || match http_get(port, "/healthz") {
            Some((200, _)) => Ok(()),
            other => Err(other),
        },
    );
}

/// While Discord fails (four 500s: 7.5 s of retries), `/healthz` answers
/// each probe at once, 503 `starting: asking Discord`, without waiting for
/// the retries; once Discord answers, the engine starts and it is 200.
#[test]
fn healthz_answers_at_once_while_discord_is_retried() {
    let port = free_port();
    let mut answers = vec![Answer::status(500); 4];
    answers.push(Answer::gateway(2, 900, 0));
    let f = Fixture::new("retried", answers);
    let config = f.config(&format!("metrics_addr: 127.0.0.1:{port}\n"));
    let mut manager = Manager::start(&config, &f.redis, &f.bot);
    wait_for("the metrics port bound", DEADLINE, || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    // Probes until Discord has answered: those made wholly between its
    // first and its last answer were made during the retries.
    let mut during = Vec::new();
    wait_for("Discord asked a fifth time", DEADLINE, || {
        let before = f.discord.requests().len();
        let (answer, took) = timed_get(port, "/healthz");
        let after = f.discord.requests().len();
        if before >= 1 && after <= 4 {
            during.push((answer, took));
        }
        (after >= 5).then_some(())
    });
    assert!(during.len() >= 5, "probed during the retries: {during:?}");
    for (answer, took) in &during {
        let want = Some((503, "starting: asking Discord\n".to_string()));
        assert_eq!(answer, &want, "after {took:?}");
        assert!(*took < Duration::from_secs(1), "{during:?}");
    }
    manager.wait_launched(&f.listener);
    wait_for_seen(
        "/healthz 200 once the engine runs",
        DEADLINE,
        || match http_get(port, "/healthz") {
            Some((200, body)) => Ok(body),
            other => Err(other),
        },
    );
}

/// `action_logs` entries forged with random cluster ids (and the manager's
/// own event names), and a diagnostic answer naming 10^5 made-up shards:
/// the metrics have as many series as before.
#[test]
fn a_bot_cannot_add_series_or_move_the_managers_counters() {
    let port = free_port();
    // The test answers cluster 0's diagnostics with 10^5 shards: a 6 MB
    // message to build and parse, slow on a loaded machine. A generous
    // ping timeout keeps a late answer from being a real ping failure
    // (which would restart cluster 0 and move the manager's counters).
    let extra = format!("metrics_addr: 127.0.0.1:{port}\nping_interval: 1\nping_timeout: 60\n");
    let (f, _daemon) = launched("forged", 4, &extra, &[]);
    let forged_events = [
        "cluster_restarted",
        "ping_failure",
        "rolling_restart",
        "cluster_started",
    ];
    let log_entry = |data: serde_json::Value| json!({"scope": "launcher", "action": "action_logs", "data": data});
    // Each name once, so that the clusters' counter has its series.
    for event in forged_events {
        f.redis.publish(&f.ch, &log_entry(json!({"event": event})));
    }
    let cluster_entries = |m: &HashMap<String, f64>, event: &str| {
        m.get(&format!(
            "mewld_cluster_log_entries_total{{event=\"{event}\"}}"
        ))
        .copied()
    };
    let before = wait_for_seen("shard health and the clusters' entries", DEADLINE, || {
        let m = scrape(port);
        let ready = (0..4).all(|s| {
            m.contains_key(&format!(
                "mewld_shard_up{{cluster=\"{}\",shard=\"{s}\"}}",
                s / 2
            ))
        }) && forged_events
            .iter()
            .all(|e| cluster_entries(&m, e) == Some(1.0));
        if ready {
            Ok(m)
        } else {
            Err(m)
        }
    });

    let forgeries = 1000;
    for i in 0..forgeries {
        let id = rand::random_range(2..u32::MAX);
        let ids: Vec<u32> = (0..100).map(|_| rand::random_range(2..u32::MAX)).collect();
        let data = match i % 4 {
            0 => json!({"event": "cluster_restarted", "id": id, "restarts": 1}),
            1 => json!({"event": "ping_failure", "id": i % 2}),
            2 => json!({"event": "rolling_restart", "clusters": ids}),
            _ => json!({"event": "cluster_started", "id": 0, "pid": 1}),
        };
        f.redis.publish(&f.ch, &log_entry(data));
    }

    // Cluster 0 (shards 0 and 1) stops answering; the test answers its
    // diagnostics instead, with its two shards (at a latency of its own,
    // to see the answer taken) and 10^5 made-up ones.
    let mut read = f.listener.len();
    f.redis.publish(
        &f.ch,
        &json!({"scope": "fakebot", "action": "mute", "args": {"id": 0}}),
    );
    let data: Vec<_> = (0..2)
        .chain(1000..101_000u32)
        .map(|s| json!({"shard_id": s, "up": true, "latency": 123.0, "guilds": 1}))
        .collect();
    let latency_0 = "mewld_shard_latency_seconds{cluster=\"0\",shard=\"0\"}";
    let after = wait_for_seen(
        "the forged entries and an answer taken in",
        DEADLINE,
        || {
            let new = f.listener.since(read);
            read += new.len();
            for asked in new.iter().filter(|v| v["diag"] == true && v["id"] == 0) {
                let output = json!({"Nonce": asked["nonce"], "Data": data}).to_string();
                f.redis.publish(
                    &f.ch,
                    &json!({"scope": "launcher", "action": "diag", "output": output}),
                );
            }
            let m = scrape(port);
            let taken = cluster_entries(&m, "cluster_started")
                == Some(1.0 + forgeries as f64 / 4.0)
                && m.get(latency_0) == Some(&0.123);
            if taken {
                Ok(m)
            } else {
                Err(m)
            }
        },
    );
    eprintln!(
        "series before: {}, after 1,000 forged entries and 10^5 made-up shards: {}",
        before.len(),
        after.len()
    );
    let keys = |m: &HashMap<String, f64>| {
        let mut k: Vec<String> = m.keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&after), keys(&before), "series before, then after");
    for (series, value) in &before {
        let manager_s = series.starts_with("mewld_cluster_restarts_total")
            || series.starts_with("mewld_ping_failures_total")
            || series.starts_with("mewld_action_log_entries_total");
        if manager_s {
            assert_eq!(after.get(series), Some(value), "{series}: {after:?}");
        }
    }
}

/// The `cluster` labels of the counters a scrape serves.
fn counted_clusters(m: &HashMap<String, f64>) -> std::collections::BTreeSet<String> {
    m.keys()
        .filter(|k| k.contains("_total{cluster=\""))
        .filter_map(|k| k.split('"').nth(1).map(str::to_string))
        .collect()
}

/// In a fleet, each host serves its own clusters' counters from the start,
/// and only those: not the leader the clusters it once saw lost, nor a
/// rolling restart's other hosts' steps, which their own hosts count.
#[test]
fn each_fleet_host_counts_its_own_clusters() {
    let f = Fixture::new("metrics-fleet", vec![Answer::gateway(8, 900, 0)]);
    let port = free_ports(2);
    // Host b's port is the configured one plus its index (1).
    let config = f.config(&format!("metrics_addr: 127.0.0.1:{port}\n"));
    let (port_a, port_b) = (port, port + 1);
    // Host b leads alone first: host a's clusters (0, 1) are lost.
    let _b = f.fleet_host(&config, "b", 1, 2, &[]);
    wait_for_seen("b leading, a's clusters lost", DEADLINE, || {
        // Served once the port is bound.
        http_get(port_b, "/healthz").ok_or_else(HashMap::new)?;
        let m = scrape(port_b);
        let ready = m.get("mewld_fleet_leader") == Some(&1.0)
            && m.get("mewld_clusters{state=\"lost\"}") == Some(&2.0);
        if ready {
            Ok(())
        } else {
            Err(m)
        }
    });
    let mut a = f.fleet_host(&config, "a", 0, 2, &[]);
    a.wait_launched(&f.listener);
    let mine = |ids: [u32; 2]| ids.iter().map(u32::to_string).collect();
    assert_eq!(counted_clusters(&scrape(port_a)), mine([0, 1]));
    assert_eq!(counted_clusters(&scrape(port_b)), mine([2, 3]));

    // The leader walks the fleet; each cluster's restart is its host's.
    statuses_when(&f, "every cluster running", |s| {
        (0..4).all(|id| status_of(s, id) == "running")
    });
    let begun = ask(&f.redis, &f.listener, &f.ch, "rollingrestart", json!({}));
    assert_eq!(begun["output"], "ok", "{begun}");
    let rolled = |port: u16, ids: [u32; 2]| {
        wait_for_seen("each host's rolling restarts", DEADLINE, || {
            let m = scrape(port);
            let done = ids.iter().all(|id| {
                let series = format!(
                    "mewld_cluster_restarts_total{{cluster=\"{id}\",reason=\"rolling_restart\"}}"
                );
                m.get(&series) == Some(&1.0)
            });
            if done {
                Ok(m)
            } else {
                Err(m)
            }
        })
    };
    assert_eq!(counted_clusters(&rolled(port_a, [0, 1])), mine([0, 1]));
    assert_eq!(counted_clusters(&rolled(port_b, [2, 3])), mine([2, 3]));
}
