//! The identify queue end to end: a real `mewld --daemon`, real fake-bot
//! clusters identifying through it over HTTP, the fake Discord saying how
//! many may identify at once, and the grants the bots recorded checked
//! against Discord's rule (one per bucket per 5 s).

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;
use serde_json::{json, Value};

/// Sends `GET path` (HTTP/1.0) and returns the open stream.
fn ask_queue(port: u16, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the queue");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send");
    stream
}

/// The status code and body of the answer on `stream`.
fn answer(mut stream: TcpStream) -> (u16, Value) {
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("an answer");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}")),
    )
}

/// One sample of the metrics text, by its series name.
fn metric(port: u16, series: &str) -> Option<f64> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The queue's URL as the clusters got it (`MEWLD_IDENTIFY_URL`, which the
/// fake bot records): its port, and its path (`/<secret>`).
fn identify_url(bot: &BotDir) -> (u16, String) {
    let records = bot.records();
    let url = records
        .iter()
        .find_map(|r| r["env"]["MEWLD_IDENTIFY_URL"].as_str())
        .unwrap_or_else(|| panic!("no MEWLD_IDENTIFY_URL in {records:?}"));
    let (host, path) = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once('/'))
        .unwrap_or_else(|| panic!("not http://host:port/secret: {url}"));
    let port = host
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"));
    (port, format!("/{path}"))
}

/// `mewld --daemon` on `f` with the config's `extra` lines, once every
/// cluster has launched.
fn launched_daemon(f: &Fixture, extra: &str) -> Manager {
    let mut m = Manager::start_with(&f.config(extra), &["--daemon"], Some(&f.redis), &f.bot, &[]);
    m.wait_launched(&f.listener);
    m
}

/// Checks that each of `shards` shards was granted once, or twice below
/// `twice_below` (the shards of clusters that were started again).
fn assert_granted(grants: &[Value], shards: u64, twice_below: u64) {
    for shard in 0..shards {
        let n = grants.iter().filter(|g| g["shard"] == shard).count();
        let want = if shard < twice_below { 2 } else { 1 };
        assert_eq!(n, want, "shard {shard}: {grants:?}");
    }
}

/// How many messages on the channel so far match `pred`.
fn said(listener: &Listener, pred: impl Fn(&Value) -> bool) -> usize {
    listener.all().iter().filter(|v| pred(v)).count()
}

/// 32 shards, `max_concurrency` 4, 4 shards a cluster, `launch:
/// concurrent`: every identify keeps to the rate limit, no more clusters
/// start at once than the policy allows (2 × ⌈4/4⌉), the bot is announced
/// once, and a cluster that crashes mid-launch identifies again through
/// the queue, in its turn.
#[test]
fn a_concurrent_launch_keeps_to_discords_rate_limit_and_a_crash_waits_its_turn() {
    let f = Fixture::new(
        "idq_launch",
        vec![Answer::gateway_with(32, 900, 3_600_000, 4)],
    );
    let extra = "identify_queue: 127.0.0.1:0\nlaunch: concurrent\nrestart_backoff_base: 1\n";
    let env = [("PER_CLUSTER", "4"), ("FAKEBOT_IDENTIFY_MS", "20")];
    let mut m = Manager::start_with(
        &f.config(extra),
        &["--daemon"],
        Some(&f.redis),
        &f.bot,
        &env,
    );
    // Crash it once the engine has taken its launch_next: otherwise its
    // exit may overtake the message, and the engine moves the launch on
    // from a launch_next of a process already gone.
    wait_for("cluster 0 launched", DEADLINE, || {
        let log = f.redis.action_log(&f.ch);
        events(&log, "cluster_launched")
            .iter()
            .any(|e| e["id"] == 0)
            .then_some(())
    });
    f.redis.publish(
        &f.ch,
        &json!({"scope": "fakebot", "action": "crash", "args": {"id": 0}}),
    );
    // Eight rounds of 5 s: well within twice the deadline.
    m.wait_launched_within(&f.listener, DEADLINE * 2);
    wait_for("cluster 0 back and identified", DEADLINE, || {
        (f.bot.starts_of(0) == 2 && f.bot.grants().len() == 36).then_some(())
    });
    wait_for("cluster 0 launched again", DEADLINE, || {
        // The fake bot's own record: its launch_next goes on the launcher's channel.
        let launches = f.bot.launches();
        (launches.iter().filter(|l| l["cluster_id"] == 0).count() == 2).then_some(())
    });
    let grants = f.bot.grants();
    assert_within_rate_limit(&grants, 4);
    assert_granted(&grants, 32, 4);
    let log = f.redis.action_log(&f.ch);
    assert_eq!(events(&log, "all_clusters_launched").len(), 1, "{log:?}");
    // At most 2 clusters of the launch were starting at any time.
    let (mut starting, mut launched, mut most) = (HashSet::new(), HashSet::new(), 0);
    for e in &log {
        let id = e["id"].as_u64();
        match e["event"].as_str() {
            Some("cluster_started") if !launched.contains(&id) => {
                starting.insert(id);
            }
            Some("cluster_launched") => {
                starting.remove(&id);
                launched.insert(id);
            }
            _ => {}
        }
        most = most.max(starting.len());
    }
    assert_eq!(most, 2, "{log:?}");
    assert_eq!(launched.len(), 8);
}

/// The HTTP side: bad requests get 400 with the reason; a client that hangs
/// up loses its place and spends nothing; 10,000 waiting requests are held
/// with bounded memory, and the engine goes on answering meanwhile.
#[test]
fn the_queue_refuses_bad_shards_frees_hung_up_places_and_holds_ten_thousand() {
    // This test holds 10,000 connections open, and so does mewld.
    use nix::sys::resource::{getrlimit, setrlimit, Resource::RLIMIT_NOFILE};
    let (_, hard) = getrlimit(RLIMIT_NOFILE).expect("getrlimit");
    assert!(
        hard >= 10_500,
        "this test needs 10,500 open files and the hard limit is {hard}: raise it (ulimit -Hn)"
    );
    setrlimit(RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    let (queue, metrics) = (free_port(), free_port());
    // 64 at a time: the bots' 4 shards identify at once, in buckets 0-3.
    let f = Fixture::new(
        "idq_http",
        vec![Answer::gateway_with(4, 900, 3_600_000, 64)],
    );
    let extra = format!("identify_queue: 127.0.0.1:{queue}\nmetrics_addr: 127.0.0.1:{metrics}\n");
    let m = launched_daemon(&f, &extra);
    let (_, base) = identify_url(&f.bot);
    let at = |query: &str| format!("{base}{query}");

    for (query, says) in [
        ("?shard=-1", "whole number"),
        ("?shard=abc", "whole number"),
        ("?shard=4", "not a shard of this bot (it has 4)"),
    ] {
        let (status, body) = answer(ask_queue(queue, &at(query)));
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(says)),
            "{query}: {body}"
        );
    }
    let elsewhere = answer(ask_queue(queue, &at("/elsewhere")));
    assert_eq!(elsewhere.0, 404, "{elsewhere:?}");
    for (request, status) in [
        (
            format!("POST {base}?shard=0 HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            405,
        ),
        ("\x16\x03\x01 not http\r\n\r\n".to_string(), 400),
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", queue)).expect("connect");
        stream.write_all(request.as_bytes()).expect("send");
        assert_eq!(answer(stream).0, status, "{request:?}");
    }

    // Bucket 0: A is granted, then B and C wait for the window; B hangs up.
    let (status, body) = answer(ask_queue(queue, &at("?shard=0")));
    assert_eq!((status, &body["bucket"]), (200, &json!(0)), "{body}");
    let b = ask_queue(queue, &at("?shard=0"));
    let c = ask_queue(queue, &at("?shard=0"));
    let waiting =
        |n: f64| move || (metric(metrics, "mewld_identify_waiting") == Some(n)).then_some(());
    wait_for("B and C waiting", DEADLINE, waiting(2.0));
    drop(b);
    wait_for("B gone from the queue", DEADLINE, waiting(1.0));
    let (status, body) = answer(c);
    assert_eq!(status, 200, "{body}");
    // The bots' 4, A and C: B spent nothing.
    wait_for("the grants counted", DEADLINE, || {
        (metric(metrics, "mewld_identify_grants_total") == Some(6.0)).then_some(())
    });

    // Ten thousand requests wait in bucket 1.
    let started = std::time::Instant::now();
    let many: Vec<TcpStream> = (0..10_000)
        .map(|_| ask_queue(queue, &at("?shard=1")))
        .collect();
    // Bucket 1 grants one every 5 s meanwhile: those were held too.
    wait_for("10,000 held", DEADLINE * 2, || {
        let waiting = metric(metrics, "mewld_identify_waiting")?;
        let granted = metric(metrics, "mewld_identify_grants_total")? - 6.0;
        (waiting + granted == 10_000.0).then_some(())
    });
    eprintln!("10,000 requests held after {:?}", started.elapsed());
    let rss_kib = rss_kib(m.pid());
    eprintln!(
        "mewld holds 10,000 waiting identify requests in {} MiB",
        rss_kib / 1024
    );
    // About 46 MiB here (a debug build, 4 KiB a request plus the engine).
    assert!(rss_kib < 128 * 1024, "{rss_kib} KiB");
    let reply = ask(&f.redis, &f.listener, &f.ch, "statuses", json!({}));
    assert_eq!(
        reply["output"].as_object().map(|o| o.len()),
        Some(2),
        "{reply}"
    );
    drop(many);
    wait_for("every waiter gone", DEADLINE, waiting(0.0));
}

/// Without this run's secret in the path a request is refused (403, saying
/// why) and spends nothing; with it, anything but `shard=<id>` is a 400
/// (never bucket 0), and `shard=<id>` is granted. The secret is never logged.
#[test]
fn only_the_clusters_reach_the_queue_and_only_shard_is_read() {
    let metrics = free_port();
    let f = Fixture::new(
        "idq_secret",
        vec![Answer::gateway_with(4, 900, 3_600_000, 4)],
    );
    let extra = format!("identify_queue: 127.0.0.1:0\nmetrics_addr: 127.0.0.1:{metrics}\n");
    let m = launched_daemon(&f, &extra);
    let (queue, base) = identify_url(&f.bot);
    let secret = &base[1..];
    // Grants, the budget left, requests waiting.
    let figures = || {
        [
            "mewld_identify_grants_total",
            "mewld_session_starts_remaining",
            "mewld_identify_waiting",
        ]
        .map(|series| metric(metrics, series))
    };
    let spent = |grants: f64| {
        move |seen: [Option<f64>; 3]| {
            (seen == [Some(grants), Some(900.0 - grants), Some(0.0)])
                .then_some(())
                .ok_or(seen)
        }
    };
    // The bots' four.
    wait_for_seen("the bots' grants counted", DEADLINE, || {
        spent(4.0)(figures())
    });

    let mut wrong = secret.to_string();
    let last = if wrong.ends_with('0') { "1" } else { "0" };
    wrong.replace_range(wrong.len() - 1.., last);
    for path in [
        "/?shard=0".to_string(),
        "/".to_string(),
        format!("/{wrong}?shard=0"),
        format!("/{wrong}"),
        format!("/{}?shard=0", &secret[..secret.len() - 1]),
        format!("/x/{secret}?shard=0"),
    ] {
        let (status, body) = answer(ask_queue(queue, &path));
        assert_eq!(status, 403, "{path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("secret")),
            "{path}: {body}"
        );
    }
    for (query, says) in [
        ("?Shard=3", "unknown query parameter \"Shard\""),
        ("?shard=%33", "whole number"),
        ("?shard=3&x=1", "alone"),
    ] {
        let (status, body) = answer(ask_queue(queue, &format!("{base}{query}")));
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(says)),
            "{query}: {body}"
        );
    }
    // As a gateway-queue client joins it, and with a `/` between.
    for (path, shard) in [
        (format!("{base}?shard=1"), 1),
        (format!("{base}/?shard=2"), 2),
    ] {
        let (status, body) = answer(ask_queue(queue, &path));
        assert_eq!(
            (status, &body["shard"]),
            (200, &json!(shard)),
            "{path}: {body}"
        );
    }
    // Two more, and only those two, were spent.
    wait_for_seen("two grants more", DEADLINE, || spent(6.0)(figures()));

    let log = m.stderr().join("\n");
    assert!(
        log.contains("identify queue listening") && log.contains("/<secret>"),
        "{log}"
    );
    assert!(!log.contains(secret), "the secret is in the log:\n{log}");
    assert!(
        !m.stdout().join("\n").contains(secret),
        "the secret is on stdout"
    );
}

/// An address beyond loopback is the config's to choose: it is taken, with
/// a warning, and the clusters reach the queue through loopback.
#[test]
fn a_queue_beyond_loopback_is_taken_with_a_warning() {
    let f = Fixture::new(
        "idq_anywhere",
        vec![Answer::gateway_with(2, 900, 3_600_000, 2)],
    );
    let m = launched_daemon(&f, "identify_queue: 0.0.0.0:0\n");
    let log = m.stderr().join("\n");
    assert!(
        log.contains("identify_queue listens beyond loopback"),
        "{log}"
    );
    let records = f.bot.records();
    assert!(
        records.iter().all(|r| r["env"]["MEWLD_IDENTIFY_URL"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:"))),
        "{records:?}"
    );
    let grants = f.bot.grants();
    assert_eq!(grants.len(), 2, "{grants:?}");
}

/// A reshard's restarts and its new clusters identify through the queue
/// too: the new shards are known to it at once, and the restarted ones
/// wait for their buckets' windows.
#[test]
fn a_reshard_identifies_through_the_queue() {
    let f = Fixture::new(
        "idq_reshard",
        vec![
            Answer::gateway_with(4, 900, 3_600_000, 16),
            Answer::gateway_with(6, 900, 3_600_000, 16),
        ],
    );
    let extra = "identify_queue: 127.0.0.1:0\nlaunch: concurrent\nexperimental_features: [reshard]\nreshard_all: true\n";
    let _daemon = launched_daemon(&f, extra);
    assert_eq!(
        ask(&f.redis, &f.listener, &f.ch, "reshard", json!({}))["output"],
        "ok"
    );
    wait_for("the reshard done and the bot up again", DEADLINE, || {
        let up = said(&f.listener, |v| v["action"] == "all_clusters_launched");
        (up == 2).then_some(())
    });
    let grants = f.bot.grants();
    assert_within_rate_limit(&grants, 16);
    // 0-3 at the launch and again after their restart, 4 and 5 once.
    assert_granted(&grants, 6, 4);
}

#[test]
fn check_config_shows_the_queue_and_the_launch_policy_or_what_is_wrong() {
    let (code, said) = check_config_with("");
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("off (identify_queue)") && said.contains("sequential"),
        "{said}"
    );
    let (code, said) = check_config_with(
        "identify_queue: 127.0.0.1:5000\nlaunch: concurrent\nlaunch_concurrency: 6\n",
    );
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("http://127.0.0.1:5000/<secret>?shard=<id>"),
        "{said}"
    );
    assert!(said.contains("concurrent, 6 at once"), "{said}");
    let (code, said) = check_config_with("launch: concurrent\n");
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("config.yaml:10: key `launch`"), "{said}");
    assert!(said.contains("needs `identify_queue`"), "{said}");
}

/// With too few session starts at start-up, mewld waits for Discord's
/// reset, then asks again: the queue starts from the budget after the wait,
/// not the low one from before (which would hold every identify again).
#[test]
fn after_waiting_for_the_reset_the_queue_starts_from_the_new_budget() {
    let f = Fixture::new(
        "idq_startup_wait",
        vec![
            Answer::gateway_with(4, 2, 1_500, 64),
            Answer::gateway_with(4, 1000, 0, 64),
        ],
    );
    let extra = "identify_queue: 127.0.0.1:0\nminimum_safe_sessions_remaining: 5\n";
    let _daemon = launched_daemon(&f, extra);
    assert_eq!(f.discord.requests().len(), 2, "asked again after the wait");
    let log = f.redis.action_log(&f.ch);
    assert!(events(&log, "identify_budget_low").is_empty(), "{log:?}");
    assert_eq!(f.bot.grants().len(), 4);
}

/// At `minimum_safe_sessions_remaining` the queue holds every grant, says
/// so in the action log, and grants again once Discord's reset came.
#[test]
fn a_low_session_budget_holds_identifies_until_the_reset() {
    // 7 left, 5 kept: two of the four shards identify, two wait 4 s.
    let f = Fixture::new("idq_budget", vec![Answer::gateway_with(4, 7, 4_000, 64)]);
    let extra = "identify_queue: 127.0.0.1:0\nminimum_safe_sessions_remaining: 5\n";
    // Started with a low open-file limit, which the queue raises for
    // mewld alone: the clusters get the limit mewld was given.
    let cmd = mewld_under_sh("ulimit -Sn 1000");
    let mut m = Manager::start_program(
        cmd,
        &f.config(extra),
        &["--daemon"],
        Some(&f.redis),
        &f.bot,
        &[],
    );
    m.wait_launched(&f.listener);
    let records = f.bot.records();
    assert!(
        records.iter().all(|r| r["nofile_soft"] == 1000),
        "{records:?}"
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", m.pid())).expect("limits");
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a line");
    assert!(
        !open_files.contains(" 1000 "),
        "mewld kept the low limit: {open_files}"
    );
    let log = f.redis.action_log(&f.ch);
    let low = events(&log, "identify_budget_low");
    assert_eq!(low.len(), 1, "{log:?}");
    assert_eq!(
        (&low[0]["remaining"], &low[0]["reserve"]),
        (&json!(5), &json!(5))
    );
    assert!(!events(&log, "identify_budget_reset").is_empty(), "{log:?}");
    let position = |event: &str| log.iter().position(|e| e["event"] == event);
    assert!(position("identify_budget_reset") < position("all_clusters_launched"));
    assert_eq!(f.bot.grants().len(), 4);
}
