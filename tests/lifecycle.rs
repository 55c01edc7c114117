//! Health and lifecycle end to end: diagnostics, rolling restarts,
//! resharding, crash loops, Redis outages and the Unix-socket transport.

mod common;

use common::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

struct Bot {
    redis: Redis,
    discord: FakeDiscord,
    bot: BotDir,
    manager: Manager,
    listener: Listener,
    ch: String,
}

fn launch(test: &str, shards: u32, extra: &str, env: &[(&str, &str)]) -> Bot {
    let (f, manager) = launched(test, shards, extra, env);
    Bot {
        redis: f.redis,
        discord: f.discord,
        bot: f.bot,
        manager,
        listener: f.listener,
        ch: f.ch,
    }
}

impl Bot {
    fn log(&self) -> Vec<Value> {
        self.redis.action_log(&self.ch)
    }

    fn wait_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_for(what, DEADLINE, || self.log().into_iter().find(|e| pred(e)))
    }

    fn ask(&self, action: &str, args: Value) -> Value {
        ask(&self.redis, &self.listener, &self.ch, action, args)
    }
}

impl Bot {
    /// Diagnostics published so far.
    fn pings_sent(&self) -> usize {
        self.listener
            .all()
            .iter()
            .filter(|m| m.get("diag").is_some())
            .count()
    }

    /// Waits until `rounds` more rounds of diagnostics went out to `clusters`.
    fn wait_ping_rounds(&self, clusters: usize, rounds: usize) {
        let before = self.pings_sent();
        wait_for("rounds of diagnostics", DEADLINE, || {
            (self.pings_sent() >= before + clusters * rounds).then_some(())
        });
    }

    fn mute(&self, id: u64) {
        self.redis.publish(
            &self.ch,
            &json!({"scope": "fakebot", "action": "mute", "args": {"id": id}}),
        );
    }
}

/// The discord.py bot the original was written for answers with lowercase
/// keys and shard entries keyed `id`: those answers count, and such a
/// cluster is never restarted for them. The same set-up does catch a
/// cluster that really falls silent, and restarts only that one.
#[test]
fn discordpy_diagnostic_answers_are_accepted_and_a_silent_cluster_is_restarted() {
    let b = diag_style("discordpy");
    // Diagnostics go out in the original's shape.
    let diag = b.listener.wait("a diagnostic", |m| m.get("diag").is_some());
    assert_eq!(diag["diag"], true);
    assert!(diag["nonce"].as_str().is_some_and(|n| !n.is_empty()));
    assert!(
        diag.get("scope").is_none(),
        "diagnostics carry no scope: {diag}"
    );
    b.mute(1);
    let failure = b.wait_event("ping_failure", |e| e["event"] == "ping_failure");
    assert_eq!(failure["id"], 1);
    b.wait_event("cluster 1 restarted", |e| {
        e["event"] == "cluster_stopped" && e["id"] == 1
    });
    wait_for("a second cluster 1 process", DEADLINE, || {
        (b.bot.starts_of(1) == 2).then_some(())
    });
    // Only the muted cluster was touched.
    assert!(events(&b.log(), "ping_failure")
        .iter()
        .all(|e| e["id"] == 1));
    assert_eq!(b.bot.starts_of(0), 1);
}

/// Some bots send shard entries with no shard id at all; those count too.
#[test]
fn diagnostic_answers_without_shard_ids_are_accepted() {
    diag_style("bare");
}

/// Launches 3 clusters answering diagnostics in `style` and checks three
/// rounds of answers were all accepted.
fn diag_style(style: &str) -> Bot {
    let b = launch(
        &format!("diag_{style}"),
        6,
        "ping_interval: 1\nping_timeout: 2\n",
        &[("FAKEBOT_DIAG_STYLE", style)],
    );
    b.wait_ping_rounds(3, 3);
    let log = b.log();
    assert!(
        events(&log, "ping_failure").is_empty(),
        "{style}: answers were rejected: {:?}",
        events(&log, "ping_failure")
    );
    assert_eq!(b.bot.records().len(), 3, "{style}: a cluster was restarted");
    b
}

/// A Redis stall (not a disconnect) longer than `ping_timeout` says nothing
/// about the clusters: none is restarted, the stall is logged once, and
/// diagnostics count again once the channel works.
#[test]
fn a_redis_stall_longer_than_the_ping_timeout_restarts_nothing() {
    let b = launch("stall", 6, "ping_interval: 1\nping_timeout: 2\n", &[]);
    b.wait_ping_rounds(3, 2);
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(4000)
        .arg("ALL")
        .query(&mut b.redis.conn())
        .expect("CLIENT PAUSE");
    let recovered = b.wait_event("channel_recovered", |e| e["event"] == "channel_recovered");
    assert!(recovered["stalled_secs"].as_u64().is_some(), "{recovered}");
    b.wait_ping_rounds(3, 3);
    let log = b.log();
    assert_eq!(events(&log, "channel_stall").len(), 1, "{log:?}");
    assert!(
        events(&log, "ping_failure").is_empty(),
        "a stall was taken for dead clusters: {:?}",
        events(&log, "ping_failure")
    );
    assert_eq!(b.bot.records().len(), 3, "a cluster was restarted");
    // After the stall, a silent cluster is still found out.
    b.mute(0);
    let failure = b.wait_event("ping_failure", |e| e["event"] == "ping_failure");
    assert_eq!(failure["id"], 0);
}

#[test]
fn forty_healthy_clusters_pinged_every_second_are_never_restarted() {
    let b = launch(
        "forty",
        40,
        "ping_interval: 1\nping_timeout: 3\n",
        &[("PER_CLUSTER", "1")],
    );
    assert_eq!(b.bot.records().len(), 40);
    // Rounds of 40 diagnostics a second, timing out after 3 s, while 40
    // processes answer on one channel: each answer must reach its own
    // request. (Matching by nonce is unit-tested; this is the real load.)
    b.wait_ping_rounds(40, 5);
    let log = b.log();
    assert!(
        events(&log, "ping_failure").is_empty(),
        "healthy clusters failed pings: {:?}",
        events(&log, "ping_failure")
    );
    assert!(events(&log, "cluster_stopped").is_empty());
    assert_eq!(b.bot.records().len(), 40, "no cluster was restarted");
}

#[test]
fn rolling_restart_goes_one_cluster_at_a_time() {
    let b = launch("rolling", 6, "", &[]);
    let first_pids = b.bot.pids();
    let reply = b.ask("rollingrestart", json!({}));
    assert_eq!(reply["output"], "ok");
    b.wait_event("rolling_restart_done", |e| {
        e["event"] == "rolling_restart_done"
    });
    let log = b.log();
    assert_eq!(events(&log, "rolling_restart").len(), 1);
    let start = log
        .iter()
        .position(|e| e["event"] == "rolling_restart")
        .expect("rolling_restart entry");
    let after = &log[start..];
    let pos = |event: &str, id: u64| {
        after
            .iter()
            .position(|e| e["event"] == event && e["id"] == id)
            .unwrap_or_else(|| {
                panic!("no {event} for {id} after the rolling restart began: {after:?}")
            })
    };
    for id in 0..3 {
        assert!(pos("cluster_stopped", id) < pos("cluster_started", id));
        assert!(pos("cluster_started", id) < pos("cluster_launched", id));
        if id > 0 {
            // Cluster `id` is only stopped after `id - 1` said launch_next.
            assert!(
                pos("cluster_launched", id - 1) < pos("cluster_stopped", id),
                "order broken at {id}"
            );
        }
    }
    assert_all_dead(&first_pids);
    let st = b.ask("statuses", json!({}));
    for id in ["0", "1", "2"] {
        assert_eq!(st["output"][id]["status"], "running");
    }
    // Bots hear once more that the whole bot is up: once, not per cluster.
    let announced = |b: &Bot| {
        b.listener
            .all()
            .into_iter()
            .filter(|m| m["action"] == "all_clusters_launched")
            .count()
    };
    wait_for("all_clusters_launched again", DEADLINE, || {
        (announced(&b) >= 2).then_some(())
    });
    assert_eq!(announced(&b), 2, "the launch's and the rolling restart's");
    assert_eq!(events(&b.log(), "all_clusters_launched").len(), 2);
}

#[test]
fn rolling_restart_is_refused_before_every_cluster_is_up() {
    let f = Fixture::new("rollearly", vec![Answer::gateway(4, 900, 0)]);
    let config = f.config("");
    // Each cluster takes a long time to "identify".
    let _manager = Manager::start_with(
        &config,
        &["--daemon"],
        Some(&f.redis),
        &f.bot,
        &[("FAKEBOT_LAUNCH_DELAY_MS", "60000")],
    );
    wait_for("cluster 0 to start", DEADLINE, || {
        (!f.bot.records().is_empty()).then_some(())
    });
    // Acked as the original did; the refusal and its reason are in the log.
    let reply = ask(&f.redis, &f.listener, &f.ch, "rollingrestart", json!({}));
    assert_eq!(reply["output"], "ok");
    let refusal = wait_for("the refusal in the action log", DEADLINE, || {
        events(&f.redis.action_log(&f.ch), "operator_action")
            .into_iter()
            .find(|e| e["action"] == "rollingrestart")
    });
    assert!(
        refusal["refused"]
            .as_str()
            .is_some_and(|o| o.contains("not every cluster has launched")),
        "{refusal}"
    );
    assert!(events(&f.redis.action_log(&f.ch), "rolling_restart").is_empty());
}

#[test]
fn a_crash_loop_backs_off_then_marks_the_cluster_failed() {
    let f = Fixture::new("crashloop", vec![Answer::gateway(1, 900, 0)]);
    let config =
        f.config("restart_backoff_base: 1\nrestart_backoff_max: 30\nrestart_max_failures: 3\n");
    let _manager = Manager::start_with(
        &config,
        &["--daemon"],
        Some(&f.redis),
        &f.bot,
        &[("FAKEBOT_EXIT_AT_START", "7")],
    );
    let failed = wait_for("cluster_failed", DEADLINE, || {
        events(&f.redis.action_log(&f.ch), "cluster_failed").pop()
    });
    assert_eq!(failed["id"], 0);
    assert_eq!(failed["quick_failures"], 3);
    let log = f.redis.action_log(&f.ch);
    let starts: Vec<i64> = events(&log, "cluster_started")
        .iter()
        .map(|e| e["ts"].as_i64().expect("ts"))
        .collect();
    assert_eq!(starts.len(), 3, "started once, restarted twice: {log:?}");
    // The schedule is unit-tested; here the real timers: 1 s, then 2 s.
    let gaps: Vec<i64> = starts.windows(2).map(|w| (w[1] - w[0]) / 1000).collect();
    for (gap, backoff) in gaps.iter().zip([1000, 2000]) {
        assert!(
            *gap >= backoff,
            "gap {gap}ms shorter than {backoff}ms: {gaps:?}"
        );
    }
    assert!(events(&log, "cluster_exited")
        .iter()
        .all(|e| e["code"] == 7));
    let st = ask(&f.redis, &f.listener, &f.ch, "statuses", json!({}));
    assert_eq!(st["output"]["0"]["status"], "failed");
}

#[test]
fn a_redis_outage_loses_no_cluster_and_no_action_log_entry() {
    let mut b = launch("outage", 6, "ping_interval: 1\nping_timeout: 2\n", &[]);
    let port = b.redis.port;
    let pids = b.bot.pids();
    b.redis.kill();
    // While Redis is down, a cluster dies: its exit and restart are logged meanwhile.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pids[1] as i32), Signal::SIGKILL)
        .expect("kill cluster 1");
    wait_for(
        "cluster 1 to be restarted during the outage",
        DEADLINE,
        || (b.bot.starts_of(1) == 2).then_some(()),
    );
    // Let the outage last: the manager fails to reconnect a few times.
    // Each retry names the address it could not reach.
    let address = format!("127.0.0.1:{port}");
    wait_for("the manager to retry Redis a few times", DEADLINE, || {
        let retries = b
            .manager
            .stderr()
            .iter()
            .filter(|l| l.contains("cannot subscribe to Redis") && l.contains(&address))
            .count();
        (retries >= 3).then_some(())
    });
    // The other clusters kept running through the outage.
    assert!(alive(pids[0]) && alive(pids[2]));
    b.redis = Redis::start_on(port);
    let listener = b.redis.listen(&b.ch);
    let exited = b.wait_event("the outage's entries written once Redis is back", |e| {
        e["event"] == "cluster_restarted" && e["id"] == 1
    });
    assert_eq!(exited["id"], 1);
    let log = b.log();
    assert!(
        events(&log, "cluster_exited")
            .iter()
            .any(|e| e["id"] == 1 && e["signal"] == 9),
        "{log:?}"
    );
    // Pings missed during the outage do not count against the clusters:
    // none fails over three rounds on the new server (past ping_timeout).
    wait_for(
        "three rounds of diagnostics after the outage",
        DEADLINE,
        || {
            let n = listener
                .all()
                .iter()
                .filter(|m| m.get("diag").is_some())
                .count();
            (n >= 3 * 3).then_some(())
        },
    );
    assert!(events(&b.log(), "ping_failure").is_empty(), "{:?}", b.log());
    assert!(alive(pids[0]) && alive(pids[2]));
    // And the manager answers again on the new server.
    let st = ask(&b.redis, &listener, &b.ch, "statuses", json!({}));
    for id in ["0", "1", "2"] {
        assert_eq!(st["output"][id]["active"], true, "{st}");
    }
    assert!(
        b.manager.stderr().iter().any(|l| l.contains("Redis")),
        "the outage was logged"
    );
}

#[test]
fn reshard_grows_the_map() {
    let f = Fixture::new(
        "reshard",
        vec![Answer::gateway(3, 900, 0), Answer::gateway(5, 900, 0)],
    );
    let config = f.config("experimental_features: [reshard]\n");
    let mut manager = Manager::start(&config, &f.redis, &f.bot);
    manager.wait_launched(&f.listener);
    assert_eq!(
        ask(&f.redis, &f.listener, &f.ch, "num_processes", json!({}))["output"],
        json!({"clusters": 2, "shards": 3})
    );

    assert_eq!(
        ask(&f.redis, &f.listener, &f.ch, "reshard", json!({}))["output"],
        "ok"
    );
    let success = wait_for("reshard_success", DEADLINE, || {
        events(&f.redis.action_log(&f.ch), "reshard_success").pop()
    });
    assert_eq!(success["new_shards"], 5);
    assert_eq!(events(&f.redis.action_log(&f.ch), "reshard_begin").len(), 1);
    // The map grew: cluster 1 went from [2] to [2, 3], cluster 2 is new.
    wait_for("all_clusters_launched again", DEADLINE, || {
        (f.listener
            .all()
            .iter()
            .filter(|m| m["action"] == "all_clusters_launched")
            .count()
            == 2)
            .then_some(())
    });
    assert_eq!(
        ask(&f.redis, &f.listener, &f.ch, "num_processes", json!({}))["output"],
        json!({"clusters": 3, "shards": 5})
    );
    let st = ask(&f.redis, &f.listener, &f.ch, "statuses", json!({}));
    assert_eq!(st["output"]["1"]["shard_list"], json!([2, 3]));
    assert_eq!(st["output"]["2"]["shard_list"], json!([4]));
    assert_eq!(st["output"]["2"]["status"], "running");
    let c1: Vec<Value> = f
        .bot
        .records()
        .into_iter()
        .filter(|r| r["cluster_id"] == 1)
        .collect();
    assert_eq!(c1.len(), 2, "the changed cluster was restarted");
    assert_eq!(c1[1]["argv"][0], "[2, 3]");
    assert_eq!(c1[1]["argv"][1], "5");
    assert_eq!(f.bot.starts_of(0), 1, "unchanged cluster 0 kept running");
}

#[test]
fn reshard_is_refused_without_the_feature() {
    let b = launch("noreshard", 2, "", &[]);
    assert_eq!(b.ask("reshard", json!({}))["output"], "ok");
    let refusal = b.wait_event("the refusal in the action log", |e| {
        e["event"] == "operator_action" && e["action"] == "reshard"
    });
    assert!(
        refusal["refused"]
            .as_str()
            .is_some_and(|o| o.contains("experimental_features")),
        "{refusal}"
    );
    assert!(events(&b.log(), "reshard_begin").is_empty());
    assert_eq!(b.discord.requests().len(), 1, "Discord was not asked again");
}

#[test]
fn the_unix_socket_transport_needs_no_redis() {
    let discord = FakeDiscord::start(vec![Answer::gateway(4, 900, 0)]);
    let bot = BotDir::new();
    let sock_dir = tempfile::tempdir().expect("tempdir");
    let sock = sock_dir.path().join("mewld.sock");
    let config = unix_config(&discord, &bot, &sock, "ping_interval: 1\n");
    // No Redis anywhere: the fake bots find the socket through MEWLD_SOCKET.
    let mut manager = Manager::start_with(&config, &["--daemon"], None, &bot, &[]);
    let mut client = SocketClient::connect(&sock);
    wait_for("both clusters to start", DEADLINE, || {
        if let Ok(Some(status)) = manager.child.try_wait() {
            panic!("mewld exited ({status}): {:?}", manager.stderr());
        }
        (bot.records().len() == 2).then_some(())
    });
    client.wait(|m| m["action"] == "all_clusters_launched");
    client.wait(|m| m.get("diag").is_some());
    client.send(&json!({"scope": "launcher", "action": "statuses", "command_id": "s1"}));
    let st = client.wait(|m| m["command_id"] == "s1" && m["scope"] == "bot");
    assert_eq!(st["output"]["1"]["shard_list"], json!([2, 3]));
    assert_eq!(st["output"]["1"]["status"], "running");
    for record in bot.records() {
        assert_eq!(record["env"]["MEWLD_SOCKET"], sock.display().to_string());
        assert_eq!(
            record["env"]["MEWLD_REDIS_URL"],
            json!(null),
            "no Redis to name"
        );
    }
    let pids = bot.pids();
    client.send(&json!({"scope": "launcher", "action": "shutdown", "command_id": "bye"}));
    assert_eq!(
        client.wait(|m| m["command_id"] == "bye" && m["scope"] == "bot")["output"],
        "ok"
    );
    assert_eq!(manager.wait_exit(), Some(0));
    assert_all_dead(&pids);
}

#[test]
fn a_cluster_that_never_launches_does_not_stall_the_launch() {
    let f = Fixture::new("launchtimeout", vec![Answer::gateway(4, 900, 0)]);
    let config = f.config("launch_timeout: 2\n");
    // Every cluster takes a minute to say launch_next: far past the timeout.
    let mut manager = Manager::start_with(
        &config,
        &["--daemon"],
        Some(&f.redis),
        &f.bot,
        &[("FAKEBOT_LAUNCH_DELAY_MS", "60000")],
    );
    manager.wait_launched(&f.listener);
    let log = f.redis.action_log(&f.ch);
    let timeouts: Vec<u64> = events(&log, "launch_timeout")
        .iter()
        .filter_map(|e| e["id"].as_u64())
        .collect();
    assert_eq!(timeouts, vec![0, 1], "each slow cluster timed out in turn");
    assert_eq!(f.bot.records().len(), 2, "and the next one was started");
}

#[test]
fn an_action_log_key_of_the_wrong_type_does_not_block_replies() {
    let f = Fixture::new("wrongtype", vec![Answer::gateway(2, 900, 0)]);
    // The original wrote the action log with SET: a string where a list goes.
    let _: () = redis::cmd("SET")
        .arg(format!("{}/actlogs", f.ch))
        .arg("{}")
        .query(&mut f.redis.conn())
        .expect("set");
    let mut manager = Manager::start(&f.config(""), &f.redis, &f.bot);
    manager.wait_launched(&f.listener);
    let st = ask(&f.redis, &f.listener, &f.ch, "statuses", json!({}));
    assert_eq!(st["output"]["0"]["status"], "running");
    wait_for("a clear error about the key", DEADLINE, || {
        manager
            .stderr()
            .iter()
            .any(|l| l.contains("holds something other than a list"))
            .then_some(())
    });
}
