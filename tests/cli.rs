//! The command line as a new user meets it: bad configs, missing tokens,
//! Discord saying no, `check-config` and `--help`.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(MEWLD);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("MTOKEN")
        .env_remove("PER_CLUSTER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(dir, args, env).output().expect("run mewld")
}

/// Runs mewld like `run_in`, but fails the test, killing mewld, if it has
/// not finished within `deadline`.
fn run_within(dir: &Path, args: &[&str], env: &[(&str, &str)], deadline: Duration) -> Output {
    let mut child = command(dir, args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mewld");
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mewld {args:?} had not finished after {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// A directory holding `config` as config.yaml and a runnable `bot.sh`, so
/// the start gets past its checks of the program (BASE runs ./bot.sh).
fn config_dir(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("config.yaml"), config).expect("write");
    write_executable(&dir.path().join("bot.sh"), "#!/bin/sh\nexit 0\n");
    dir
}

/// (exit code, stderr+stdout) of a finished mewld.
fn outcome(out: &Output) -> (Option<i32>, String) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    (out.status.code(), text)
}

/// Runs `mewld --daemon` on `config` and returns (exit code, stderr+stdout).
fn daemon_with(config: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = config_dir(config);
    // Each case here ends in an error; a regression must fail, not hang.
    outcome(&run_within(dir.path(), &["--daemon"], env, DEADLINE))
}

/// Runs `mewld check-config` on `config` and returns (exit code, stdout+stderr).
fn check_with(config: &str) -> (Option<i32>, String) {
    let dir = config_dir(config);
    outcome(&run_within(dir.path(), &["check-config"], &[], DEADLINE))
}

const BASE: &str = "module: ./bot.sh\nredis: 127.0.0.1:1\nredis_channel: c\nper_cluster: 2\nuse_current_directory: true\n";

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
    // check-config asks Discord the same way the daemon does.
    let (_, text) = check_with(&format!("{BASE}token: {TOKEN}\nproxy: {}\n", discord.url));
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

/// The lines a start printed about Get Gateway Bot's retries.
fn retry_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.contains("Get Gateway Bot at ") && l.contains(" failed: "))
        .collect()
}

/// Each retry is one line: attempt n of 5, the short cause (the URL said
/// once, not a chain of errors each repeating it) and when the next try
/// is. The last failure is one error naming the `proxy` and what to check.
/// The token is never shown.
#[test]
fn each_discord_retry_is_one_line_and_the_last_says_what_to_check() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let proxy = format!("http://{}", closed.local_addr().expect("its address"));
    drop(closed);
    let config = format!("{BASE}token: {TOKEN}\nproxy: {proxy}\n");
    let (code, text) = daemon_with(&config, &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(!text.contains(TOKEN), "the token was printed: {text}");
    let url = format!("{proxy}/api/gateway/bot");
    let retries = retry_lines(&text);
    assert_eq!(retries.len(), 4, "one line per retried attempt: {text}");
    let waits = ["0.5 s", "1 s", "2 s", "4 s"];
    for (n, (line, wait)) in retries.iter().zip(waits).enumerate() {
        let want = format!("attempt {} of 5 failed: cannot connect: ", n + 1);
        assert!(line.contains(&want), "{line}");
        assert!(line.ends_with(&format!("next try in {wait}")), "{line}");
        assert_eq!(line.matches(&url).count(), 1, "{line}");
    }
    let error = text
        .lines()
        .find(|l| l.starts_with("mewld: error: "))
        .unwrap_or_else(|| panic!("an error line: {text}"));
    assert_eq!(error.matches(&url).count(), 1, "{error}");
    for part in [
        "could not ask Discord for the shard count: no answer from",
        "(the config's `proxy`) after 5 attempts over ",
        "cannot connect: ",
        "check `proxy` in the config",
    ] {
        assert!(error.contains(part), "{part:?} in {error}");
    }
}

/// With `fixed_shard_count`, Discord is asked for the session budget only:
/// when it keeps failing (500s) the start goes on without it, saying so.
#[test]
fn with_a_fixed_shard_count_a_failing_discord_does_not_stop_the_start() {
    let f = Fixture::new("fixed-no-discord", vec![Answer::status(500)]);
    let mut manager = Manager::start(&f.config("fixed_shard_count: 2\n"), &f.redis, &f.bot);
    manager.wait_launched(&f.listener);
    assert_eq!(f.discord.requests().len(), 5, "5 attempts in all");
    let text = manager.stderr().join("\n");
    assert!(!text.contains(TOKEN), "the token was printed: {text}");
    let retries = retry_lines(&text);
    assert_eq!(retries.len(), 4, "{text}");
    assert!(
        retries
            .iter()
            .all(|l| l.contains("failed: answered 500 Internal Server Error; next try in")),
        "{retries:#?}"
    );
    assert!(
        text.contains("starting with fixed_shard_count, the session-start budget unknown"),
        "{text}"
    );
}

#[test]
fn check_config_prints_settings_and_the_cluster_map() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("bot")).expect("bot dir");
    std::fs::write(dir.path().join("bot/bot.py"), "").expect("module");
    let config = "token: x\ninterp: sh\nmodule: bot.py\nredis: 127.0.0.1:1\nredis_channel: chan\nper_cluster: 10\nuse_current_directory: true\ndir: bot\nfixed_shard_count: 25\nnames: [Pika, Charizard the Magnificent]\nmystery: 1\nmetrics_addr: 127.0.0.1:9464\n";
    std::fs::write(dir.path().join("config.yaml"), config).expect("write");
    let out = run_in(dir.path(), &["check-config"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.ends_with("ok\n"), "{text}");
    assert!(text.contains("unknown key `mystery`"), "{text}");
    assert!(
        text.contains("shards:            25 (fixed_shard_count)"),
        "{text}"
    );
    assert!(text.contains("3 clusters"), "{text}");
    // The shards line up under the longest name.
    for line in [
        "0  Pika                       shards 0-9",
        "1  Charizard the Magnificent  shards 10-19",
        "2  cluster-2                  shards 20-24",
    ] {
        assert!(text.contains(line), "missing {line:?} in {text}");
    }
    assert!(text.contains("token:             set (hidden)") && !text.contains("token: x"));
    assert!(text.contains("http://127.0.0.1:9464/metrics"), "{text}");
    assert!(text.contains("control socket:"), "{text}");
    assert!(
        text.contains(
            "cluster channels:  off: everything on chan (mewld also hears chan:launcher)"
        ),
        "{text}"
    );
    let on = format!("{config}cluster_channels: true\n");
    std::fs::write(dir.path().join("config.yaml"), on).expect("write");
    let out = run_in(dir.path(), &["check-config"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "cluster channels:  on: pings on chan:<id>, mewld's own messages on chan:launcher"
        ),
        "{text}"
    );
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

#[test]
fn a_config_saved_with_a_byte_order_mark_loads() {
    let (code, text) = check_with(&format!("\u{feff}{BASE}token: x\nfixed_shard_count: 4\n"));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("2 clusters"), "{text}");
}

#[test]
fn deep_nesting_is_refused_without_parsing_it() {
    // libyaml takes minutes on this (the time grows with the square of the
    // depth); the deadline only keeps a regression from hanging the suite.
    let deep = format!(
        "{BASE}token: x\nmystery: {}{}\n",
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    let dir = config_dir(&deep);
    for (args, expected) in [(&["--daemon"][..], 2), (&["check-config"][..], 1)] {
        let (code, text) = outcome(&run_within(dir.path(), args, &[], Duration::from_secs(30)));
        assert_eq!(code, Some(expected), "{args:?}: {text}");
        assert!(
            text.contains("config.yaml:7:") && text.contains("nested more than 64"),
            "{args:?}: {text}"
        );
    }
}

#[test]
fn an_oversized_config_file_is_refused() {
    let big = format!("{BASE}token: x\n# {}\n", "x".repeat(2 << 20));
    let (code, text) = daemon_with(&big, &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("config.yaml") && text.contains("over 1 MiB"),
        "{text}"
    );
}

#[test]
fn a_huge_fixed_shard_count_names_the_key() {
    let (code, text) = daemon_with(
        &format!("{BASE}token: x\nfixed_shard_count: 1000000000\n"),
        &[],
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(
            "config.yaml:7: key `fixed_shard_count`: 1000000000 shards is more than the 1000000"
        ),
        "{text}"
    );
}

#[test]
fn discord_recommending_absurd_shards_is_a_clear_error() {
    let discord = FakeDiscord::start(vec![Answer::gateway(1_000_000_000, 900, 0)]);
    let (code, text) = daemon_with(
        &format!("{BASE}token: {TOKEN}\nproxy: {}\n", discord.url),
        &[],
    );
    assert_eq!(code, Some(2), "exits, does not abort: {text}");
    assert!(
        text.contains("recommends 1000000000 shards; mewld accepts 1 to 1000000"),
        "{text}"
    );
    // A plausible count whose clusters would be too many names per_cluster.
    let discord = FakeDiscord::start(vec![Answer::gateway(500_000, 900, 0)]);
    let (code, text) = daemon_with(
        &format!(
            "{}token: {TOKEN}\nproxy: {}\n",
            BASE.replace("per_cluster: 2", "per_cluster: 1"),
            discord.url
        ),
        &[],
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("raise per_cluster"), "{text}");
}

#[test]
fn an_oversized_discord_answer_is_an_error() {
    // Valid JSON, but 100 KiB of it: refused by size, not by parsing.
    let mut answer = Answer::gateway(2, 900, 0);
    answer.body = answer.body.replace(
        "wss://gateway.discord.gg",
        &format!("wss://{}", "x".repeat(100 * 1024)),
    );
    let discord = FakeDiscord::start(vec![answer]);
    let (code, text) = daemon_with(
        &format!("{BASE}token: {TOKEN}\nproxy: {}\n", discord.url),
        &[],
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("is over 64 KiB"), "{text}");
}

#[test]
fn check_config_fails_on_what_a_start_would_fail_on() {
    let long_name = "n".repeat(200_000);
    // (the BASE key the case replaces, the lines written instead, the problem)
    let cases = [
        (
            "redis",
            "redis: http://x".to_string(),
            "key `redis`: not a usable Redis address",
        ),
        (
            "module",
            "module: bot.sh\ninterp: /nonexistent/python3".to_string(),
            "`interp` /nonexistent/python3: does not exist",
        ),
        (
            "module",
            "module: missing.py\ninterp: sh".to_string(),
            "missing.py does not exist (with `interp`",
        ),
        (
            "module",
            "module: bot.sh".to_string(),
            "`module` bot.sh: not found on PATH",
        ),
        (
            "names",
            format!("names: [\"{long_name}\"]"),
            "cluster 0 (nnn",
        ),
    ];
    for (key, lines, expected) in cases {
        let base: String = BASE
            .lines()
            .filter(|l| !l.starts_with(&format!("{key}:")))
            .map(|l| format!("{l}\n"))
            .collect();
        let (code, text) = check_with(&format!("{base}token: x\nfixed_shard_count: 4\n{lines}\n"));
        assert_eq!(code, Some(1), "{expected}: {text:.2000}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("problem: ") && l.contains(expected)),
            "no problem line with {expected:?} in {text:.2000}"
        );
        assert!(!text.lines().any(|l| l == "ok"), "{expected}: {text:.2000}");
    }
}

#[test]
fn the_daemon_refuses_what_check_config_refuses_before_asking_discord() {
    let discord = FakeDiscord::start(vec![Answer::gateway(2, 900, 0)]);
    let proxy = format!("token: {TOKEN}\nproxy: {}\n", discord.url);
    let (code, text) = daemon_with(
        &format!("{}{proxy}", BASE.replace("127.0.0.1:1", "http://x")),
        &[],
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("config.yaml:2: key `redis`"), "{text}");
    let (code, text) = daemon_with(
        &format!("{}{proxy}", BASE.replace("./bot.sh", "./gone.sh")),
        &[],
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("`module` ") && text.contains("gone.sh: does not exist"),
        "{text}"
    );
    assert!(discord.requests().is_empty(), "Discord was asked: {text}");
}

#[test]
fn check_config_masks_the_redis_password() {
    let config = BASE.replace("127.0.0.1:1", "redis://user:hunter2@127.0.0.1:1/0");
    let (code, text) = check_with(&format!("{config}token: x\nfixed_shard_count: 2\n"));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("redis:             redis://user:****@127.0.0.1:1/0"),
        "{text}"
    );
    assert!(
        !text.contains("hunter2"),
        "the password was printed: {text}"
    );
}

#[test]
fn an_unknown_args_placeholder_is_a_config_error() {
    let (code, text) = daemon_with(
        &format!("{BASE}token: x\nargs:\n  - \"{{shards}}\"\n  - \"--of={{cluster_cout}}\"\n"),
        &[],
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("config.yaml:9: key `args`: unknown placeholder {cluster_cout}"),
        "{text}"
    );
}
