//! The channels of docs/protocol.md §5.5, end to end: a real redis-server,
//! real managers, and a bot of `/bin/sh` and `redis-cli` that knows the
//! extension (it listens where `MEWLD_CLUSTER_CHANNEL` says and talks on
//! `MEWLD_LAUNCHER_CHANNEL`), beside the repo's fake bot, which knows only
//! the main channel.

mod common;

use common::*;
use serde_json::{json, Value};

/// A cluster as a bot that knows the extension would be: it subscribes to
/// its channel (`SHBOT_LISTEN` overrides it), says `launch_next` once
/// subscribed, and answers each of its diagnostics on the launcher channel,
/// unless the file `mute-<id>` exists. It records its environment and every
/// diagnostic it got. `$3` is the cluster id (the default `args`).
const SH_BOT: &str = r#"#!/bin/sh
id=$3
env > "$FAKEBOT_RECORD/env-$id.$$"
listen=${SHBOT_LISTEN:-$MEWLD_CLUSTER_CHANNEL}
pub() { redis-cli -u "$MEWLD_REDIS_URL" PUBLISH "$MEWLD_LAUNCHER_CHANNEL" "$1" >/dev/null; }
redis-cli -u "$MEWLD_REDIS_URL" SUBSCRIBE "$listen" | while read -r kind; do
  read -r chan; read -r payload
  case "$kind" in
  subscribe) pub "{\"scope\":\"launcher\",\"action\":\"launch_next\",\"args\":{\"id\":$id}}" ;;
  message)
    case "$payload" in *'"diag":true'*) ;; *) continue ;; esac
    case "$payload" in *"\"id\":$id,"*) ;; *) continue ;; esac
    printf '%s\n' "$payload" >> "$FAKEBOT_RECORD/pings-$id"
    [ -e "$FAKEBOT_RECORD/mute-$id" ] && continue
    nonce=$(printf '%s' "$payload" | sed -n 's/.*"nonce":"\([^"]*\)".*/\1/p')
    pub "{\"scope\":\"launcher\",\"action\":\"diag\",\"output\":\"{\\\"nonce\\\":\\\"$nonce\\\",\\\"data\\\":[]}\"}" ;;
  esac
done
"#;

const FAST_PINGS: &str = "ping_interval: 1\nping_timeout: 2\n";

fn sh_bot(f: &Fixture) {
    write_executable(&f.bot.path().join("bot.sh"), SH_BOT);
}

/// What the shell bot recorded in the files named `prefix`… (`env-<id>.<pid>`,
/// `pings-<id>`).
fn records(bot: &BotDir, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(bot.records_dir())
        .expect("records")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    out.sort();
    out
}

/// The diagnostics cluster `id` got so far.
fn pings_of(f: &Fixture, id: u32) -> usize {
    records(&f.bot, &format!("pings-{id}"))
        .concat()
        .lines()
        .count()
}

/// Waits until every cluster of `ids` got `more` diagnostics past what it had.
fn wait_pings(f: &Fixture, ids: std::ops::Range<u32>, more: usize) {
    let from: Vec<usize> = ids.clone().map(|id| pings_of(f, id)).collect();
    wait_for("more diagnostics for every cluster", DEADLINE, || {
        ids.clone()
            .zip(&from)
            .all(|(id, n)| pings_of(f, id) >= n + more)
            .then_some(())
    });
}

/// The variable `name` in the environment cluster `id` started with.
fn env_of(bot: &BotDir, id: u32, name: &str) -> Vec<String> {
    records(bot, &format!("env-{id}."))
        .iter()
        .filter_map(|env| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")).map(String::from))
        })
        .collect()
}

fn channel_of(m: &Value) -> &str {
    m["channel"].as_str().unwrap_or_default()
}

#[test]
fn each_ping_goes_to_its_clusters_channel_alone_and_answers_on_the_launcher_channel_count() {
    let f = Fixture::new("chan_pings", vec![Answer::gateway(6, 900, 0)]);
    sh_bot(&f);
    let seen = f.redis.listen_pattern(&format!("{}*", f.ch));
    let config = f.config(&format!("cluster_channels: true\n{FAST_PINGS}"));
    let mut manager = Manager::start(&config, &f.redis, &f.bot);
    manager.wait_launched(&f.listener);
    wait_pings(&f, 0..3, 3);

    for id in 0..3 {
        assert_eq!(
            env_of(&f.bot, id, "MEWLD_CLUSTER_CHANNEL"),
            [format!("{}:{id}", f.ch)]
        );
        assert_eq!(
            env_of(&f.bot, id, "MEWLD_LAUNCHER_CHANNEL"),
            [format!("{}:launcher", f.ch)]
        );
    }
    let pings: Vec<Value> = seen
        .all()
        .into_iter()
        .filter(|m| m["message"]["diag"] == true)
        .collect();
    assert!(pings.len() >= 9, "{pings:?}");
    for ping in &pings {
        let id = &ping["message"]["id"];
        assert_eq!(
            channel_of(ping),
            format!("{}:{id}", f.ch),
            "a ping elsewhere: {ping}"
        );
    }
    // The bystander on the main channel heard none of it, nor the echoes.
    let main = f.listener.all();
    assert!(
        main.iter()
            .all(|m| m.get("diag").is_none() && m["action"] != "mewld_echo"),
        "{main:?}"
    );
    let log = f.redis.action_log(&f.ch);
    assert!(events(&log, "ping_failure").is_empty(), "{log:?}");
    assert!(events(&log, "cluster_stopped").is_empty(), "{log:?}");

    // Answers are what keeps them up: a cluster that stops answering is
    // restarted, and only it.
    std::fs::write(f.bot.records_dir().join("mute-1"), "").expect("mute");
    let failure = wait_for("a ping failure", DEADLINE, || {
        events(&f.redis.action_log(&f.ch), "ping_failure")
            .into_iter()
            .next()
    });
    assert_eq!(failure["id"], 1);
    wait_for("cluster 1 started again", DEADLINE, || {
        (env_of(&f.bot, 1, "MEWLD_CLUSTER_CHANNEL").len() == 2).then_some(())
    });
    let log = f.redis.action_log(&f.ch);
    assert!(
        events(&log, "ping_failure").iter().all(|e| e["id"] == 1),
        "{log:?}"
    );
    assert_eq!(env_of(&f.bot, 0, "MEWLD_CLUSTER_CHANNEL").len(), 1);
}

#[test]
fn without_the_key_pings_stay_on_the_main_channel_and_answers_on_the_launcher_channel_count() {
    let f = Fixture::new("chan_off", vec![Answer::gateway(4, 900, 0)]);
    sh_bot(&f);
    let config = f.config(FAST_PINGS);
    let env = [("SHBOT_LISTEN", f.ch.as_str())];
    let mut manager = Manager::start_with(&config, &["--daemon"], Some(&f.redis), &f.bot, &env);
    manager.wait_launched(&f.listener);
    wait_pings(&f, 0..2, 3);
    // The variables are there whether or not the key is on.
    assert_eq!(
        env_of(&f.bot, 1, "MEWLD_CLUSTER_CHANNEL"),
        [format!("{}:1", f.ch)]
    );
    assert!(f.listener.all().iter().any(|m| m["diag"] == true));
    let log = f.redis.action_log(&f.ch);
    assert!(events(&log, "ping_failure").is_empty(), "{log:?}");
    assert!(events(&log, "cluster_stopped").is_empty(), "{log:?}");
}

/// Publishes `request` with a fresh `command_id`, then a marker question
/// on the main channel, and waits for the marker's reply: the manager
/// handles and publishes in order, so whatever it said for `request` on
/// the main channel is in by then. Returns `request`'s command id.
fn ask_then_mark(f: &Fixture, mut request: Value) -> String {
    let id = format!("q-{}", rand_id());
    request["command_id"] = json!(id);
    f.redis.publish(&f.ch, &request);
    ask(&f.redis, &f.listener, &f.ch, "num_processes", json!({}));
    id
}

#[test]
fn a_reply_goes_to_reply_to_in_the_namespace_and_one_outside_is_refused() {
    let (f, manager) = launched("chan_reply_to", 4, "", &[]);
    let there = f.redis.listen(&format!("{}:replies:t", f.ch));
    let elsewhere = f.redis.listen("elsewhere");
    let id = ask_then_mark(
        &f,
        json!({"scope": "launcher", "action": "statuses", "reply_to": format!("{}:replies:t", f.ch)}),
    );
    let reply = there.reply(&id);
    assert_eq!(reply["output"]["1"]["status"], "running");
    assert!(
        replies_on(&f.listener, &id).is_empty(),
        "also on the main channel"
    );
    assert_eq!(there.all().len(), 1);

    for outside in ["elsewhere", &format!("{}x:1", f.ch), &f.ch] {
        let id = ask_then_mark(
            &f,
            json!({"scope": "launcher", "action": "stop", "args": {"id": 0}, "reply_to": outside}),
        );
        assert!(replies_on(&f.listener, &id).is_empty());
        wait_for("the refusal in the manager's log", DEADLINE, || {
            manager
                .stderr()
                .iter()
                .chain(manager.stdout().iter())
                .any(|l| l.contains("refused a request") && l.contains(&id))
                .then_some(())
        });
    }
    assert!(elsewhere.all().is_empty(), "{:?}", elsewhere.all());
    let log = f.redis.action_log(&f.ch);
    assert!(events(&log, "operator_action").is_empty(), "{log:?}");
    assert!(events(&log, "cluster_stopped").is_empty(), "{log:?}");
}

/// The replies to `command_id` (not the question) `listener` heard.
fn replies_on(listener: &Listener, command_id: &str) -> Vec<Value> {
    listener
        .all()
        .into_iter()
        .filter(|m| m["command_id"] == command_id && m["scope"] == "bot")
        .collect()
}

#[test]
fn a_fleet_with_the_key_answers_once_on_reply_to_and_restarts_nothing() {
    let f = Fixture::new("chan_fleet", vec![Answer::gateway(8, 900, 0)]);
    sh_bot(&f);
    let seen = f.redis.listen_pattern(&format!("{}:*", f.ch));
    let config = f.config(&format!("cluster_channels: true\n{FAST_PINGS}"));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("config.yaml"), &config).expect("config");
    let host = |index: &str| {
        let mut cmd = std::process::Command::new(MEWLD);
        cmd.args(["--daemon", "--config", "config.yaml", "--host-count", "2"])
            .args(["--host-index", index]);
        Manager::start_in(cmd, dir.path(), &f.redis, &f.bot)
    };
    let (mut a, mut b) = (host("0"), host("1"));
    a.wait_launched(&f.listener);
    wait_pings(&f, 0..4, 3);

    let replies = f.redis.listen(&format!("{}:replies:f", f.ch));
    let id = format!("st-{}", rand_id());
    f.redis.publish(
        &f.ch,
        &json!({"scope": "launcher", "action": "statuses", "command_id": id,
                "reply_to": format!("{}:replies:f", f.ch)}),
    );
    let reply = replies.reply(&id);
    assert_eq!(
        reply["output"].as_object().map(|o| o.len()),
        Some(4),
        "{reply}"
    );
    // Both hosts heard the question before their next rounds of pings.
    wait_pings(&f, 0..4, 2);
    assert_eq!(replies_on(&replies, &id).len(), 1, "answered twice");
    assert!(
        replies_on(&f.listener, &id).is_empty(),
        "answered on the main channel"
    );
    let notes: Vec<Value> = seen
        .all()
        .into_iter()
        .filter(|m| m["message"]["action"] == "mewld_answered" && m["message"]["command_id"] == id)
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(channel_of(&notes[0]), format!("{}:launcher", f.ch));

    let log = f.redis.action_log(&f.ch);
    assert!(events(&log, "ping_failure").is_empty(), "{log:?}");
    assert!(events(&log, "cluster_stopped").is_empty(), "{log:?}");
    for id in 0..4 {
        assert_eq!(
            env_of(&f.bot, id, "MEWLD_CLUSTER_CHANNEL").len(),
            1,
            "cluster {id} restarted"
        );
    }

    // The one-shot commands' operations go on the launcher channel too, and
    // so does the leader's ack of a shutdown: no cluster hears them.
    let config_path = dir.path().join("config.yaml");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(MEWLD)
            .args(args)
            .arg("--config")
            .arg(&config_path)
            .output()
            .expect("run mewld");
        assert!(out.status.success(), "mewld {args:?}: {out:?}");
    };
    cli(&["restart", "3", "--redis"]);
    wait_for("cluster 3 restarted", DEADLINE, || {
        (env_of(&f.bot, 3, "MEWLD_CLUSTER_CHANNEL").len() == 2).then_some(())
    });
    cli(&["shutdown", "--redis"]);
    assert_eq!((a.wait_exit(), b.wait_exit()), (Some(0), Some(0)));
    let on = |action: &str, scope: &str| -> Vec<Value> {
        seen.all()
            .into_iter()
            .filter(|m| m["message"]["scope"] == scope && m["message"]["action"] == action)
            .collect()
    };
    let launcher = format!("{}:launcher", f.ch);
    let handed = on("mewld_op", "launcher");
    assert_eq!(handed.len(), 1, "{handed:?}");
    assert_eq!(channel_of(&handed[0]), launcher);
    let shutdown = on("shutdown", "launcher");
    assert_eq!(shutdown.len(), 1, "{shutdown:?}");
    assert_eq!(channel_of(&shutdown[0]), launcher);
    let shutdown_id = &shutdown[0]["message"]["command_id"];
    let acks: Vec<Value> = on("", "bot")
        .into_iter()
        .filter(|m| &m["message"]["command_id"] == shutdown_id)
        .collect();
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(channel_of(&acks[0]), launcher);
    let main = f.listener.all();
    assert!(
        main.iter()
            .all(|m| m["scope"] != "bot" || m["action"] != ""),
        "{main:?}"
    );
    assert!(main
        .iter()
        .all(|m| m["action"] != "shutdown" && m["action"] != "mewld_op"));
}

#[test]
fn over_the_unix_socket_there_are_no_channels_and_reply_to_is_checked_all_the_same() {
    let discord = FakeDiscord::start(vec![Answer::gateway(2, 900, 0)]);
    let bot = BotDir::new();
    // A cluster that only records its environment.
    let script = "#!/bin/sh\nenv > \"$FAKEBOT_RECORD/env-$3.$$\"\nexec sleep 600\n";
    write_executable(&bot.path().join("bot.sh"), script);
    let sock_dir = tempfile::tempdir().expect("tempdir");
    let sock = sock_dir.path().join("mewld.sock");
    let config = unix_config(&discord, &bot, &sock, "");
    let manager = Manager::start_with(&config, &["--daemon"], None, &bot, &[]);
    let mut client = SocketClient::connect(&sock);
    wait_for("cluster 0 started", DEADLINE, || {
        (!env_of(&bot, 0, "MEWLD_SOCKET").is_empty()).then_some(())
    });
    assert!(env_of(&bot, 0, "MEWLD_CLUSTER_CHANNEL").is_empty());
    assert!(env_of(&bot, 0, "MEWLD_LAUNCHER_CHANNEL").is_empty());

    // One under the default channel's name is answered, on the socket.
    let ask = |client: &mut SocketClient, id: &str, reply_to: &str| {
        client.send(&json!({"scope": "launcher", "action": "num_processes", "command_id": id, "reply_to": reply_to}));
    };
    ask(&mut client, "inside", "mewld:r");
    ask(&mut client, "outside", "other:r");
    ask(&mut client, "marker", "");
    // `wait` reads the socket in order, so every reply before the marker's
    // passes through here.
    let replies = std::cell::RefCell::new(Vec::new());
    let marker = client.wait(|m| {
        if m["scope"] == "bot" {
            replies.borrow_mut().push(m["command_id"].clone());
        }
        m["command_id"] == "marker" && m["scope"] == "bot"
    });
    assert_eq!(marker["output"]["clusters"], 1);
    assert_eq!(replies.into_inner(), [json!("inside"), json!("marker")]);
    wait_for("the refusal in the manager's log", DEADLINE, || {
        manager
            .stderr()
            .iter()
            .any(|l| l.contains("refused a request") && l.contains("other:r"))
            .then_some(())
    });
}
