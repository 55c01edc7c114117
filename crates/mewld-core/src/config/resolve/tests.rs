use super::*;
use crate::config::tests::{ov, parse_err, parse_ok, MIN};

#[test]
fn original_sample_loads_with_its_values() {
    let text = include_str!("../../../../../tests/data/original-sample.yaml");
    let mut o = ov();
    o.token = Some("from-env".into());
    let l = parse_ok(text, &o);
    let c = &l.config;
    assert_eq!(c.bot_dir, PathBuf::from("/home/bot/mewbot"));
    assert_eq!(c.names.len(), 20);
    assert_eq!(c.names[0], "Pika");
    assert_eq!(c.module, "mew");
    assert_eq!(c.interp.as_deref(), Some("/usr/bin/python3.10"));
    assert_eq!(
        c.ipc,
        Ipc::Redis {
            url: "redis://178.28.0.13:6379/0".into()
        }
    );
    assert_eq!(c.channel, "mewbot_clusters");
    assert_eq!(c.ping_interval, Duration::from_secs(120));
    assert_eq!(c.per_cluster, 10);
    assert_eq!(c.env_files.len(), 4);
    assert_eq!(c.env_files[0], PathBuf::from("/srv/env/bot.env"));
    assert_eq!(c.token.as_ref().map(Token::expose), Some("from-env"));
    assert!(
        l.warnings.iter().any(|w| w.contains("allowed_ids, oauth")),
        "{:?}",
        l.warnings
    );
}

#[test]
fn defaults_follow_the_protocol() {
    let c = parse_ok(MIN, &ov()).config;
    assert_eq!(c.ping_interval, Duration::from_secs(60));
    assert_eq!(c.ping_timeout, Duration::from_secs(120));
    assert_eq!(c.cluster_start_next_delay, Duration::from_secs(5));
    assert_eq!(c.minimum_safe_sessions_remaining, 5);
    assert_eq!(c.action_log_max_len, 10_000);
    assert_eq!(c.stop_grace_period, Duration::from_secs(10));
    assert_eq!(
        c.restart.max_failures, 0,
        "crashed clusters are restarted for ever by default"
    );
    assert_eq!(c.launch_timeout, Duration::from_secs(600));
    let c = parse_ok(&format!("{MIN}ping_interval: 0\n"), &ov()).config;
    assert_eq!(
        c.ping_interval,
        Duration::from_secs(60),
        "0 means the default"
    );
    let e = parse_err(&format!("{MIN}ping_timeout: 99999999999\n"));
    assert_eq!(e.key.as_deref(), Some("ping_timeout"));
    assert_eq!(c.fixed_shard_count, None);
    assert_eq!(c.args, argv::DEFAULT_ARGS.map(String::from).to_vec());
    assert_eq!(c.bot_dir, PathBuf::from("/home/bot"));
}

#[test]
fn rolling_restart_mode_and_parallel() {
    let c = parse_ok(MIN, &ov()).config;
    assert_eq!(
        c.rolling_restart_mode,
        RollingMode::StopFirst,
        "the original's"
    );
    assert_eq!(c.rolling_restart_parallel, 1);
    let text = format!("{MIN}rolling_restart_mode: start_first\nrolling_restart_parallel: 3\n");
    let c = parse_ok(&text, &ov()).config;
    assert_eq!(c.rolling_restart_mode, RollingMode::StartFirst);
    assert_eq!(c.rolling_restart_parallel, 3);
    for (text, key, says) in [
        (
            "rolling_restart_mode: new_first\n",
            "rolling_restart_mode",
            "stop_first or start_first",
        ),
        (
            "rolling_restart_parallel: 0\n",
            "rolling_restart_parallel",
            "at least 1",
        ),
        (
            "rolling_restart_parallel: -2\n",
            "rolling_restart_parallel",
            "expected u32",
        ),
    ] {
        let e = parse_err(&format!("{MIN}{text}"));
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert!(e.to_string().contains(says), "{e}");
        assert!(e.line.is_some(), "{e}");
    }
}

#[test]
fn launch_policy_and_identify_queue() {
    let c = parse_ok(MIN, &ov()).config;
    assert_eq!(c.launch, LaunchPolicy::Sequential, "the original's");
    assert_eq!(c.identify_queue, None);
    assert_eq!(c.identify_margin, Duration::from_millis(250));
    let q = "identify_queue: 127.0.0.1:5000\n";
    let c = parse_ok(&format!("{MIN}{q}launch: concurrent\n"), &ov()).config;
    assert_eq!(c.launch, LaunchPolicy::Concurrent { at_once: None });
    assert_eq!(
        c.identify_queue,
        Some("127.0.0.1:5000".parse().expect("addr"))
    );
    let text = format!("{MIN}{q}launch: concurrent\nlaunch_concurrency: 3\n");
    let c = parse_ok(&text, &ov()).config;
    assert_eq!(c.launch, LaunchPolicy::Concurrent { at_once: Some(3) });
    for (text, key, says) in [
        ("launch: concurrent\n", "launch", "needs `identify_queue`"),
        ("launch: fast\n", "launch", "not a launch policy"),
        (
            "identify_queue: 5000\n",
            "identify_queue",
            "e.g. 127.0.0.1:5000",
        ),
        (
            "launch_concurrency: 0\n",
            "launch_concurrency",
            "at least 1",
        ),
        (
            "identify_margin_ms: 5000\n",
            "identify_margin_ms",
            "more than a second",
        ),
    ] {
        let e = parse_err(&format!("{MIN}{text}"));
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert!(e.to_string().contains(says), "{e}");
        assert!(e.line.is_some(), "{e}");
    }
}

#[test]
fn env_overrides_win() {
    let mut o = ov();
    o.token = Some("envtoken".into());
    o.per_cluster = Some("3".into());
    let c = parse_ok(MIN, &o).config;
    assert_eq!(c.token.as_ref().map(Token::expose), Some("envtoken"));
    assert_eq!(c.per_cluster, 3);
}

#[test]
fn bot_dir_resolution() {
    let c = parse_ok(
        &format!("{MIN}dir: bots/x\nuse_current_directory: true\n"),
        &ov(),
    )
    .config;
    assert_eq!(c.bot_dir, PathBuf::from("/srv/bots/x"));
    let c = parse_ok(
        &format!("{MIN}dir: bots/x\noverride_dir: /opt/bot\n"),
        &ov(),
    )
    .config;
    assert_eq!(c.bot_dir, PathBuf::from("/opt/bot"));
}

#[test]
fn missing_required_keys_are_named() {
    let e = parse_err("redis: r:1\nredis_channel: c\nper_cluster: 1\n");
    assert_eq!(e.key.as_deref(), Some("module"));
    let e = parse_err("module: m\nredis: r:1\nredis_channel: c\nper_cluster: 0\n");
    assert_eq!(e.key.as_deref(), Some("per_cluster"));
    assert_eq!(e.line, Some(4));
}

#[test]
fn args_template_is_checked() {
    let e = parse_err(&format!("{MIN}args: [\"{{shards}}\", \"{{nope}}\"]\n"));
    assert_eq!(e.key.as_deref(), Some("args"));
    assert!(e.message.contains("{nope}"));
    assert!(
        e.message.contains("{cluster_count}"),
        "known ones are listed: {e}"
    );
    // In a block list the line is the offending item's.
    let e = parse_err(&format!(
        "{MIN}args:\n  - \"{{shards}}\"\n  - \"{{cluster_cnt}}\"\n"
    ));
    assert_eq!(e.line, Some(8), "{e}");
    let c = parse_ok(&format!("{MIN}args: [\"{{cluster_count}}\"]\n"), &ov()).config;
    assert_eq!(c.args, vec!["{cluster_count}"]);
}

#[test]
fn huge_shard_counts_are_refused_by_key() {
    let e = parse_err(&format!("{MIN}fixed_shard_count: 1000000000\n"));
    assert_eq!(
        (e.key.as_deref(), e.line),
        (Some("fixed_shard_count"), Some(6)),
        "{e}"
    );
    let e = parse_err(&MIN.replace(
        "per_cluster: 10",
        "per_cluster: 1\nfixed_shard_count: 900000",
    ));
    assert_eq!(e.key.as_deref(), Some("fixed_shard_count"));
    assert!(e.message.contains("raise per_cluster"), "{e}");
    let c = parse_ok(&format!("{MIN}fixed_shard_count: 1000000\n"), &ov()).config;
    assert_eq!(c.fixed_shard_count, Some(1_000_000));
}

#[test]
fn unix_socket_ipc_needs_no_redis() {
    let c = parse_ok(
        "token: t\nmodule: m\nper_cluster: 1\nipc: unix\nipc_socket: run/m.sock\n",
        &ov(),
    )
    .config;
    assert_eq!(
        c.ipc,
        Ipc::Unix {
            path: PathBuf::from("/srv/run/m.sock")
        }
    );
    assert_eq!(c.channel, "mewld");
    let e = parse_err("module: m\nper_cluster: 1\nipc: carrier-pigeon\n");
    assert_eq!(e.key.as_deref(), Some("ipc"));
}

#[test]
fn cluster_channels_is_off_by_default_and_needs_redis() {
    assert!(!parse_ok(MIN, &ov()).config.cluster_channels);
    let c = parse_ok(&format!("{MIN}cluster_channels: true\n"), &ov()).config;
    assert!(c.cluster_channels);
    assert_eq!(
        c.channels().name(&crate::protocol::Channel::Cluster(4)),
        format!("{}:4", c.channel)
    );
    let e = parse_err("token: t\nmodule: m\nper_cluster: 1\nipc: unix\ncluster_channels: true\n");
    assert_eq!(
        (e.key.as_deref(), e.line),
        (Some("cluster_channels"), Some(5))
    );
    assert!(e.message.contains("ipc: redis"), "{e}");
    let e = parse_err(&format!("{MIN}cluster_channels: sometimes\n"));
    assert_eq!(e.key.as_deref(), Some("cluster_channels"));
}
