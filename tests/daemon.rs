//! `mewld --daemon` end to end: a real redis-server, a fake Discord, real
//! cluster processes (the repo's fake bot), as a bot written for the
//! original would be run.

mod common;

use common::*;
use nix::sys::signal::Signal;
use serde_json::json;

/// Starts a manager with 5 shards in 3 clusters and waits until all are up.
fn up(test: &str, extra: &str) -> (Redis, FakeDiscord, BotDir, Manager, Listener, String) {
    let (f, manager) = launched(test, 5, extra, &[]);
    (f.redis, f.discord, f.bot, manager, f.listener, f.ch)
}

#[test]
fn launches_clusters_in_order_with_the_exact_arguments() {
    let env_dir = tempfile::tempdir().expect("tempdir");
    let env_file = env_dir.path().join("bot.env");
    std::fs::write(&env_file, "FAKEBOT_FROM_ENV_FILE=loaded\n").expect("env file");
    let extra = format!("names: [Pika, Eevee]\nenv: [\"{}\"]\n", env_file.display());
    let (redis, discord, bot, manager, listener, ch) = up("launch", &extra);
    let dir = bot.path().display().to_string();

    let records = bot.records();
    assert_eq!(records.len(), 3, "one start per cluster: {records:?}");
    let expected = [
        ("[0, 1]", "0", "Pika"),
        ("[2, 3]", "1", "Eevee"),
        ("[4]", "2", "cluster-2"),
    ];
    for (record, (shards, id, name)) in records.iter().zip(expected) {
        let pid = record["pid"].as_u64().expect("pid");
        assert_eq!(
            bot.script_argv(pid),
            vec![
                format!("{dir}/bot.sh"),
                shards.into(),
                "5".into(),
                id.into(),
                name.into(),
                "0".into(),
                dir.clone()
            ],
            "argv of cluster {id}"
        );
        assert_eq!(record["cwd"], dir);
        assert_eq!(record["env"]["MEWLD_CHANNEL"], ch.as_str());
        assert_eq!(record["env"]["MTOKEN"], TOKEN);
        // The config's `redis: 127.0.0.1:<port>`, as a URL clients accept.
        assert_eq!(record["env"]["MEWLD_REDIS_URL"], redis.url().as_str());
        assert_eq!(record["env"]["MEWLD_SOCKET"], json!(null));
        assert_eq!(
            record["env"]["FAKEBOT_FROM_ENV_FILE"], "loaded",
            "env files reach clusters"
        );
    }

    // Each cluster starts only after the one before it said launch_next.
    let log = redis.action_log(&ch);
    let position = |event: &str, id: u64| {
        log.iter()
            .position(|e| e["event"] == event && e["id"] == id)
            .unwrap_or_else(|| panic!("no {event} for cluster {id} in {log:?}"))
    };
    for id in 0..2 {
        assert!(position("cluster_launched", id) < position("cluster_started", id + 1));
    }
    // The fake bots' own records: launch_next goes on the launcher's channel.
    let launched_order: Vec<u64> = bot
        .launches()
        .iter()
        .filter_map(|l| l["cluster_id"].as_u64())
        .collect();
    assert_eq!(launched_order, vec![0, 1, 2]);
    let all = listener.wait("all_clusters_launched", |m| {
        m["action"] == "all_clusters_launched"
    });
    assert_eq!(all["scope"], "bot");
    assert_eq!(all["output"], "");
    assert!(all["command_id"].as_str().is_some_and(|c| !c.is_empty()));

    // Discord was asked as a bot, through the proxy.
    let reqs = discord.requests();
    assert_eq!(reqs[0].path, "/api/gateway/bot");
    assert_eq!(
        reqs[0].authorization.as_deref(),
        Some(format!("Bot {TOKEN}").as_str())
    );
    assert!(reqs[0]
        .user_agent
        .as_deref()
        .is_some_and(|ua| ua.starts_with("DiscordBot (")));

    // Cluster output, both streams, with the cluster prefix.
    wait_for("prefixed cluster output", DEADLINE, || {
        let out = manager.stdout();
        (out.iter()
            .any(|l| l.starts_with("[cluster 0 Pika] fake bot: cluster 0 (Pika) starting"))
            && out.iter().any(|l| {
                l.starts_with("[cluster 1 Eevee] fake bot: cluster 1 says hello on stderr")
            }))
        .then_some(())
    });
    // The token is never printed.
    let printed = [manager.stdout(), manager.stderr()].concat().join("\n");
    assert!(!printed.contains(TOKEN), "the token leaked into the output");
}

#[test]
fn module_without_interp_is_the_program() {
    let f = Fixture::new("nointerp", vec![Answer::gateway(1, 900, 0)]);
    let config = f
        .config("")
        .replace("interp: /bin/sh\nmodule: bot.sh", "module: ./bot.sh");
    let mut manager = Manager::start(&config, &f.redis, &f.bot);
    manager.wait_launched(&f.listener);
    let dir = f.bot.path().display().to_string();
    let pid = f.bot.records()[0]["pid"].as_u64().expect("pid");
    assert_eq!(
        f.bot.script_argv(pid),
        vec![
            format!("{dir}/./bot.sh"),
            "[0]".into(),
            "1".into(),
            "0".into(),
            "cluster-0".into(),
            "0".into(),
            dir
        ]
    );
}

#[test]
fn answers_every_request_in_the_originals_shape() {
    let (redis, _discord, bot, _manager, listener, ch) = up("replies", "names: [Pika]\n");

    let statuses = ask(&redis, &listener, &ch, "statuses", json!({}));
    assert_eq!(statuses["scope"], "bot");
    assert_eq!(statuses["action"], "");
    let out = &statuses["output"];
    for (id, shards) in [
        ("0", json!([0, 1])),
        ("1", json!([2, 3])),
        ("2", json!([4])),
    ] {
        let c = &out[id];
        assert_eq!(c["active"], true, "{statuses}");
        assert_eq!(c["status"], "running");
        assert_eq!(c["shard_list"], shards);
        assert!(
            c["started_at"].as_u64().is_some_and(|t| t > 1_600_000_000),
            "unix seconds: {c}"
        );
    }
    assert_eq!(out["0"]["name"], "Pika");

    let n = ask(&redis, &listener, &ch, "num_processes", json!({}));
    assert_eq!(n["output"], json!({"clusters": 3, "shards": 5}));

    // stop → ack, the process ends and it stays stopped.
    let pid1 = bot.records()[1]["pid"].as_u64().expect("pid") as u32;
    assert_eq!(
        ask(&redis, &listener, &ch, "stop", json!({"id": 1}))["output"],
        "ok"
    );
    wait_for("cluster 1 to exit", DEADLINE, || {
        (!alive(pid1)).then_some(())
    });
    let st = ask(&redis, &listener, &ch, "statuses", json!({}));
    assert_eq!(st["output"]["1"]["active"], false);
    assert_eq!(st["output"]["1"]["status"], "stopped");

    // start → ack and a new process; starting it again cannot work.
    assert_eq!(
        ask(&redis, &listener, &ch, "start", json!({"id": 1}))["output"],
        "ok"
    );
    wait_for("cluster 1 to start again", DEADLINE, || {
        (bot.records().len() == 4).then_some(())
    });
    assert_eq!(
        ask(&redis, &listener, &ch, "start", json!({"id": 1}))["output"],
        "could not start instance"
    );

    // An unknown cluster: acked as the original did, and the refusal is
    // in the action log with its reason.
    assert_eq!(
        ask(&redis, &listener, &ch, "stop", json!({"id": 99}))["output"],
        "ok"
    );
    let refusal = wait_for("the refusal of stop 99", DEADLINE, || {
        events(&redis.action_log(&ch), "operator_action")
            .into_iter()
            .find(|e| e["id"] == 99)
    });
    assert_eq!(refusal["action"], "stop");
    assert_eq!(refusal["via"], "redis");
    assert!(
        refusal["refused"]
            .as_str()
            .is_some_and(|r| r.contains("no cluster 99")),
        "{refusal}"
    );

    // restart → ack, old process gone, a new one.
    let pid0 = bot.records()[0]["pid"].as_u64().expect("pid") as u32;
    assert_eq!(
        ask(&redis, &listener, &ch, "restart", json!({"id": 0}))["output"],
        "ok"
    );
    wait_for("cluster 0 to be restarted", DEADLINE, || {
        (!alive(pid0) && bot.starts_of(0) == 2).then_some(())
    });

    // action_logs from a cluster lands in the list with a ts.
    redis.publish(
        &ch,
        &json!({"scope": "launcher", "action": "action_logs", "data": {"event": "shards_launched", "cluster": 0, "from": 0, "to": 1}}),
    );
    let entry = wait_for("the cluster's action log entry", DEADLINE, || {
        events(&redis.action_log(&ch), "shards_launched").pop()
    });
    assert_eq!(entry["from"], 0);
    assert!(
        entry["ts"]
            .as_i64()
            .is_some_and(|ts| ts > 1_600_000_000_000_000),
        "microseconds: {entry}"
    );
}

#[test]
fn shutdown_exits_0_and_restartproc_exits_1_leaving_no_process() {
    for (action, code) in [("shutdown", 0), ("restartproc", 1)] {
        let (redis, _d, bot, mut manager, listener, ch) = up(action, "");
        let pids = bot.pids();
        assert_eq!(
            ask(&redis, &listener, &ch, action, json!({}))["output"],
            "ok"
        );
        assert_eq!(manager.wait_exit(), Some(code), "after {action}");
        assert_all_dead(&pids);
    }
}

#[test]
fn sigterm_and_sigint_stop_every_cluster_then_exit_0() {
    for (test, sig) in [("sigterm", Signal::SIGTERM), ("sigint", Signal::SIGINT)] {
        let (_redis, _d, bot, mut manager, _listener, _ch) = up(test, "");
        let pids = bot.pids();
        manager.signal(sig);
        assert_eq!(manager.wait_exit(), Some(0), "after {sig}");
        assert_all_dead(&pids);
    }
}

#[test]
fn sigkill_of_the_manager_takes_its_clusters_with_it() {
    let (_redis, _d, bot, mut manager, _listener, _ch) = up("sigkill", "");
    let pids = bot.pids();
    manager.signal(Signal::SIGKILL);
    assert_eq!(manager.wait_exit(), None, "killed by a signal");
    assert_all_dead(&pids);
}

#[test]
fn stop_sends_sigterm_then_sigkill_after_the_grace_period() {
    let (redis, _d, bot, manager, listener, ch) = up("grace", "stop_grace_period: 1\n");
    let pid = bot.records()[2]["pid"].as_u64().expect("pid") as u32;
    // From now on cluster 2 ignores SIGTERM.
    redis.publish(
        &ch,
        &json!({"scope": "fakebot", "action": "hang", "args": {"id": 2}}),
    );
    wait_for("cluster 2 to take the instruction", DEADLINE, || {
        manager
            .stdout()
            .iter()
            .any(|l| l.ends_with("cluster 2 will ignore SIGTERM"))
            .then_some(())
    });
    assert_eq!(
        ask(&redis, &listener, &ch, "stop", json!({"id": 2}))["output"],
        "ok"
    );
    let stopped = wait_for("cluster 2 to be stopped", DEADLINE, || {
        events(&redis.action_log(&ch), "cluster_stopped")
            .into_iter()
            .find(|e| e["id"] == 2)
    });
    assert_eq!(stopped["signal"], 9, "it took SIGKILL: {stopped}");
    assert!(!alive(pid));
    assert!(
        manager
            .stdout()
            .iter()
            .any(|l| l == "[cluster 2 cluster-2] fake bot: cluster 2 ignores SIGTERM"),
        "SIGTERM came first"
    );
}

#[test]
fn a_crashed_cluster_is_restarted_and_a_stopped_one_is_not() {
    let (redis, _d, bot, _manager, listener, ch) = up("crash", "");
    redis.publish(
        &ch,
        &json!({"scope": "fakebot", "action": "crash", "args": {"id": 1, "code": 3}}),
    );
    let exited = wait_for("cluster 1's exit in the action log", DEADLINE, || {
        events(&redis.action_log(&ch), "cluster_exited")
            .into_iter()
            .find(|e| e["id"] == 1)
    });
    assert_eq!(exited["code"], 3);
    wait_for("cluster 1 to be restarted", DEADLINE, || {
        events(&redis.action_log(&ch), "cluster_restarted")
            .into_iter()
            .find(|e| e["id"] == 1)
    });
    wait_for("the new cluster 1 to say launch_next", DEADLINE, || {
        let st = ask(&redis, &listener, &ch, "statuses", json!({}));
        (st["output"]["1"]["status"] == "running").then_some(())
    });
    // As the original did, the bot is announced whole again.
    wait_for("a second all_clusters_launched", DEADLINE, || {
        let n = listener
            .all()
            .iter()
            .filter(|m| m["action"] == "all_clusters_launched")
            .count();
        (n == 2).then_some(())
    });
    assert_eq!(bot.starts_of(1), 2);

    // Stopped by an operator: stays stopped, past the crash-restart delay.
    assert_eq!(
        ask(&redis, &listener, &ch, "stop", json!({"id": 0}))["output"],
        "ok"
    );
    wait_for("cluster 0 to be stopped", DEADLINE, || {
        events(&redis.action_log(&ch), "cluster_stopped")
            .into_iter()
            .find(|e| e["id"] == 0)
    });
    // The window: cluster 2 crashes now, and once its restart (same delay)
    // has happened, cluster 0 would have been restarted too if it were going to be.
    redis.publish(
        &ch,
        &json!({"scope": "fakebot", "action": "crash", "args": {"id": 2}}),
    );
    wait_for("cluster 2's crash restart", DEADLINE, || {
        events(&redis.action_log(&ch), "cluster_restarted")
            .into_iter()
            .find(|e| e["id"] == 2)
    });
    let st = ask(&redis, &listener, &ch, "statuses", json!({}));
    assert_eq!(st["output"]["0"]["status"], "stopped");
    assert_eq!(bot.starts_of(0), 1);
}

#[test]
fn bad_messages_are_logged_and_ignored() {
    let (redis, _d, _bot, manager, listener, ch) = up("badmsg", "");
    let huge = format!(
        "{{\"scope\":\"launcher\",\"action\":\"action_logs\",\"data\":{{\"event\":\"big\",\"blob\":\"{}\"}},\"x\":",
        "a".repeat(2 * 1024 * 1024)
    );
    let bad: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        b"\xff\xfe\x00binary".to_vec(),
        b"[1, 2, 3]".to_vec(),
        b"{\"scope\": \"launcher\"}".to_vec(),
        b"{\"scope\": \"launcher\", \"action\": 7}".to_vec(),
        b"{\"scope\": \"launcher\", \"action\": \"fly_to_the_moon\"}".to_vec(),
        b"{\"scope\": \"launcher\", \"action\": \"stop\", \"args\": {\"id\": \"zero\"}}".to_vec(),
        b"{\"scope\": \"launcher\", \"action\": \"stop\", \"args\": {\"id\": 99}}".to_vec(),
        b"{\"scope\": \"launcher\", \"action\": \"start\", \"args\": [1]}".to_vec(),
        b"{\"scope\": \"launcher\", \"action\": \"launch_next\", \"args\": {\"id\": -4}}".to_vec(),
        b"{\"scope\": \"launcher\", \"action\": \"diag\", \"output\": 12}".to_vec(),
        b"{\"scope\": \"launcher\", \"action\": \"action_logs\", \"data\": [1]}".to_vec(),
        huge.into_bytes(),
    ];
    for payload in &bad {
        redis.publish_raw(&ch, payload);
    }
    // A valid 2 MB message is handled too.
    let big = json!({"scope": "launcher", "action": "action_logs", "data": {"event": "big_entry", "blob": "b".repeat(2 * 1024 * 1024)}});
    redis.publish(&ch, &big);
    wait_for("the 2 MB entry in the action log", DEADLINE, || {
        (!events(&redis.action_log(&ch), "big_entry").is_empty()).then_some(())
    });
    // Still answering, nothing stopped.
    let st = ask(&redis, &listener, &ch, "statuses", json!({}));
    for id in ["0", "1", "2"] {
        assert_eq!(st["output"][id]["status"], "running");
    }
    wait_for("warnings about the ignored messages", DEADLINE, || {
        let warned = manager
            .stderr()
            .iter()
            .filter(|l| l.contains("ignored a malformed message"))
            .count();
        (warned >= 9).then_some(())
    });
    assert!(
        manager.stderr().iter().all(|l| l.len() < 4096),
        "huge payloads are not echoed whole"
    );
}

#[test]
fn action_log_is_capped() {
    let (redis, _d, _bot, _manager, _listener, ch) = up("cap", "action_log_max_len: 5\n");
    for i in 0..20 {
        redis.publish(
            &ch,
            &json!({"scope": "launcher", "action": "action_logs", "data": {"event": "n", "i": i}}),
        );
    }
    let log = wait_for("the last entry", DEADLINE, || {
        let log = redis.action_log(&ch);
        log.last().is_some_and(|e| e["i"] == 19).then_some(log)
    });
    assert_eq!(log.len(), 5);
    assert_eq!(log[0]["i"], 15, "the newest entries are kept");
}

#[test]
fn few_session_starts_left_waits_for_the_reset() {
    let f = Fixture::new("sessions", vec![Answer::gateway(2, 1, 1500)]);
    let mut manager = Manager::start(&f.config(""), &f.redis, &f.bot);
    manager.wait_launched(&f.listener);
    assert!(
        manager
            .stderr()
            .iter()
            .any(|l| l.contains("few session starts left")),
        "{:?}",
        manager.stderr()
    );
    let first_start = events(&f.redis.action_log(&f.ch), "cluster_started")[0]["ts"]
        .as_i64()
        .expect("ts");
    let asked = f.discord.requests()[0]
        .at
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as i64;
    assert!(
        first_start - asked >= 1_500_000,
        "cluster 0 started {}ms after Discord was asked; reset_after was 1500ms",
        (first_start - asked) / 1000
    );
}

/// `rediss://` works: the manager talks to Redis over TLS, and checks the
/// server's certificate (here a self-signed one it is told to trust).
#[test]
fn a_rediss_url_talks_to_redis_over_tls() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (redis, tls_port) = Redis::start_tls(certs.path());
    let discord = FakeDiscord::start(vec![Answer::gateway(2, 900, 0)]);
    let bot = BotDir::new();
    let ch = channel("tls");
    let listener = redis.listen(&ch);
    let config = config_text(&redis, &discord, &bot, &ch, "").replace(
        &format!("redis: 127.0.0.1:{}", redis.port),
        &format!("redis: rediss://127.0.0.1:{tls_port}/0"),
    );
    assert!(config.contains("rediss://"), "{config}");
    let ca = certs.path().join("cert.pem").display().to_string();
    let mut manager = Manager::start_with(
        &config,
        &["--daemon"],
        Some(&redis),
        &bot,
        &[("SSL_CERT_FILE", ca.as_str())],
    );
    manager.wait_launched(&listener);
    let st = ask(&redis, &listener, &ch, "statuses", json!({}));
    assert_eq!(st["output"]["0"]["status"], "running");
    assert!(!events(&redis.action_log(&ch), "cluster_started").is_empty());
}

/// `--log-format json`: every line the daemon writes, on stdout and
/// stderr, is one JSON object; cluster output names its cluster; the
/// manager's lines carry level, target and fields; the token is in none.
#[test]
fn json_logs_are_one_object_per_line() {
    let f = Fixture::new("jsonlogs", vec![Answer::gateway(4, 900, 0)]);
    let args = ["--daemon", "--log-format", "json"];
    let mut manager = Manager::start_with(&f.config(""), &args, Some(&f.redis), &f.bot, &[]);
    manager.wait_launched(&f.listener);
    ask(&f.redis, &f.listener, &f.ch, "stop", json!({"id": 1}));
    f.redis
        .publish_raw(&f.ch, b"{\"scope\": \"launcher\", \"action\": 7}");
    let ignored = wait_for("the malformed message reported", DEADLINE, || {
        manager
            .stderr()
            .into_iter()
            .find(|l| l.contains("ignored a malformed message"))
    });
    // Its text and the payload are two keys, not one `message` twice.
    assert_eq!(ignored.matches("\"message\":").count(), 1, "{ignored}");
    assert!(ignored.contains("\"payload\":"), "{ignored}");
    f.redis
        .publish(&f.ch, &json!({"scope": "launcher", "action": "shutdown"}));
    assert_eq!(manager.wait_exit(), Some(0));
    let parse = |lines: Vec<String>, what: &str| -> Vec<serde_json::Value> {
        assert!(!lines.is_empty(), "nothing on {what}");
        lines
            .iter()
            .map(|l| {
                assert!(!l.contains(TOKEN), "the token on {what}");
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: {e}: {l}"))
            })
            .collect()
    };
    let out = parse(manager.stdout(), "stdout");
    let launched = out
        .iter()
        .find(|v| {
            v["line"]
                .as_str()
                .is_some_and(|l| l.contains("cluster 1 launched"))
        })
        .expect("cluster 1's output as an object");
    assert_eq!(launched["cluster"], 1, "{launched}");
    assert_eq!(launched["name"], "cluster-1");
    assert_eq!(launched["stream"], "stdout");
    let err = parse(manager.stderr(), "stderr");
    let stop = err
        .iter()
        .find(|v| {
            v["target"] == "mewld::actlog"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("operator_action"))
        })
        .expect("the action log's stop as a log object");
    assert_eq!(stop["level"], "INFO", "{stop}");
    assert!(stop["timestamp"].as_str().is_some(), "{stop}");
    assert!(
        err.iter()
            .any(|v| v["level"] == "INFO" && v.as_object().is_some_and(|o| o.len() > 4)),
        "a line with fields of its own"
    );
}
