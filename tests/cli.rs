//! The command line as a new user meets it: bad configs, missing tokens,
//! Discord saying no, `check-config` and `--help`.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;

fn run_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(MEWLD);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("MTOKEN")
        .env_remove("PER_CLUSTER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run mewld")
}

/// Runs `mewld --daemon` on `config` and returns (exit code, stderr+stdout).
fn daemon_with(config: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("config.yaml"), config).expect("write");
    let out = run_in(dir.path(), &["--daemon"], env);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    (out.status.code(), text)
}

const BASE: &str = "module: bot.sh\nredis: 127.0.0.1:1\nredis_channel: c\nper_cluster: 2\nuse_current_directory: true\n";

#[test]
fn malformed_yaml_names_the_file_and_line() {
    let (code, text) = daemon_with(&format!("{BASE}names: [Pika, Eevee\ntoken: x\n"), &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("config.yaml:"), "{text}");
    assert!(text.contains("error"), "{text}");
}

#[test]
fn wrong_types_name_the_line_and_key() {
    let (code, text) = daemon_with(
        "token: x\nmodule: bot.sh\nredis: 127.0.0.1:1\nredis_channel: c\nper_cluster: many\n",
        &[],
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("config.yaml:5: key `per_cluster`"), "{text}");
    let (code, text) = daemon_with(&format!("{BASE}token: x\nping_interval: [1]\n"), &[]);
    assert_eq!(code, Some(2));
    assert!(
        text.contains("config.yaml:7: key `ping_interval`"),
        "{text}"
    );
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_in(dir.path(), &["--daemon", "--config", "nope.yaml"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("nope.yaml") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn missing_required_key_is_named() {
    let (code, text) = daemon_with(
        "token: x\nredis: 127.0.0.1:1\nredis_channel: c\nper_cluster: 2\n",
        &[],
    );
    assert_eq!(code, Some(2));
    assert!(text.contains("key `module`"), "{text}");
}

#[test]
fn no_token_says_where_to_put_one() {
    let discord = FakeDiscord::start(vec![Answer::gateway(1, 900, 0)]);
    let (code, text) = daemon_with(&format!("{BASE}proxy: {}\n", discord.url), &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("no bot token") && text.contains("MTOKEN"),
        "{text}"
    );
    assert!(
        discord.requests().is_empty(),
        "Discord is not asked without a token"
    );
}

#[test]
fn a_401_says_the_token_was_rejected_without_printing_it() {
    let discord = FakeDiscord::start(vec![Answer::status(401)]);
    let (code, text) = daemon_with(
        &format!("{BASE}proxy: {}\n", discord.url),
        &[("MTOKEN", TOKEN)],
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("rejected the bot token"), "{text}");
    assert!(!text.contains(TOKEN), "the token was printed: {text}");
    assert_eq!(discord.requests().len(), 1, "a 401 is not retried");
    assert_eq!(
        discord.requests()[0].authorization.as_deref(),
        Some(format!("Bot {TOKEN}").as_str()),
        "MTOKEN is used"
    );
}

#[test]
fn rate_limits_and_server_errors_are_retried_honouring_retry_after() {
    let limited = Answer {
        retry_after: Some("1.2"),
        ..Answer::status(429)
    };
    let discord = FakeDiscord::start(vec![
        limited,
        Answer::status(502),
        Answer::gateway(3, 900, 0),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!("token: {TOKEN}\nmodule: bot.sh\nredis: 127.0.0.1:1\nredis_channel: c\nper_cluster: 2\nuse_current_directory: true\nproxy: {}\n", discord.url);
    std::fs::write(dir.path().join("config.yaml"), config).expect("write");
    // check-config asks Discord the same way the daemon does.
    let out = run_in(dir.path(), &["check-config"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("shards:            3 (from Discord"),
        "{text}"
    );
    let reqs = discord.requests();
    assert_eq!(reqs.len(), 3);
    let gap = reqs[1].at.duration_since(reqs[0].at).expect("ordered");
    assert!(
        gap >= Duration::from_millis(1200),
        "Retry-After was honoured: {gap:?}"
    );
}

#[test]
fn check_config_prints_settings_and_the_cluster_map() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("bot")).expect("bot dir");
    let config = "token: x\nmodule: bot.sh\nredis: 127.0.0.1:1\nredis_channel: chan\nper_cluster: 10\nuse_current_directory: true\ndir: bot\nfixed_shard_count: 25\nnames: [Pika]\nmystery: 1\n";
    std::fs::write(dir.path().join("config.yaml"), config).expect("write");
    let out = run_in(dir.path(), &["check-config"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("unknown key `mystery`"), "{text}");
    assert!(
        text.contains("shards:            25 (fixed_shard_count)"),
        "{text}"
    );
    assert!(text.contains("3 clusters"), "{text}");
    for line in [
        "0  Pika             shards 0-9",
        "1  cluster-1        shards 10-19",
        "2  cluster-2        shards 20-24",
    ] {
        assert!(text.contains(line), "missing {line:?} in {text}");
    }
    assert!(text.contains("token:             set (hidden)") && !text.contains("token: x"));
}

#[test]
fn the_originals_sample_config_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sample = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/original-sample.yaml"
    ))
    .expect("sample");
    std::fs::write(dir.path().join("config.yaml"), sample).expect("write");
    let home = dir.path().display().to_string();
    // With PER_CLUSTER set and no token, nothing is fetched: only the file is judged.
    let out = run_in(
        dir.path(),
        &["--cfg-file", "config.yaml", "check-config"],
        &[("HOME", &home), ("PER_CLUSTER", "4")],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("redis_channel:     mewbot_clusters"),
        "{text}"
    );
    assert!(
        text.contains("redis:             redis://178.28.0.13:6379/0"),
        "{text}"
    );
    assert!(text.contains("per_cluster:       4"), "{text}");
    assert!(
        text.contains("web UI"),
        "the web UI keys are named as ignored: {text}"
    );
    // What is wrong is the missing token, env files and bot directory, not the file.
    assert!(text.contains("problem: no bot token"), "{text}");
    assert!(text.contains("problem: env file"), "{text}");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn go_style_cfg_file_flag_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("my.yaml"),
        format!("{BASE}fixed_shard_count: 2\n"),
    )
    .expect("write");
    let out = run_in(dir.path(), &["-cfg-file", "my.yaml", "check-config"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("my.yaml"), "{text}");
    assert!(text.contains("1 clusters"), "{text}");
}

#[test]
fn help_lists_every_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_in(dir.path(), &["--help"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--cfg-file",
        "--daemon",
        "check-config",
        "--version",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help:\n{text}");
    }
    assert!(!text.contains("fake-bot"), "the test fixture stays hidden");
}
