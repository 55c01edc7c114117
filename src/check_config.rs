//! `mewld check-config`: the resolved settings and the cluster map, and every
//! problem a start would fail on, from the same checks the start runs
//! (config validation, `preflight`, the map's size cap). Exit status 0 when
//! a start would get as far as the first cluster, 1 with `problem:` lines
//! otherwise. The token and the Redis password are never printed.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use mewld::cluster_map::{self, shard_range};
use mewld::config::{redacted_url, Ipc};
use mewld::preflight;
use mewld::startup::{self, Prepared};

pub async fn run(path: &Path) -> u8 {
    let mut out = String::new();
    let problems = report(path, &mut out).await;
    if problems.is_empty() {
        out.push_str("ok\n");
    }
    for p in &problems {
        let _ = writeln!(out, "problem: {p}");
    }
    // Written once: a reader that went away (`| head`) is not an error here.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    if problems.is_empty() {
        0
    } else {
        1
    }
}

/// Writes the settings to `out` and returns the problems found.
async fn report(path: &Path, out: &mut String) -> Vec<String> {
    let Prepared {
        config,
        env,
        warnings,
    } = match startup::load_config(path) {
        Ok(p) => p,
        Err(e) => return vec![format!("{e:#}")],
    };
    for w in &warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let mut problems = env.problems.clone();
    let mut line = |label: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{:<19}{value}", format!("{label}:"));
    };
    line("config", &config.path.display());
    line(
        "token",
        &if config.token.is_some() {
            "set (hidden)"
        } else {
            "MISSING"
        },
    );
    if config.token.is_none() {
        problems.push("no bot token: set `token` or the MTOKEN environment variable".to_string());
    }
    line("bot directory", &config.bot_dir.display());
    line("module", &config.module);
    line(
        "interp",
        &config
            .interp
            .as_deref()
            .unwrap_or("(none: the module is the program)"),
    );
    line("args", &config.args.join(" "));
    for f in &config.env_files {
        line("env file", &f.display());
    }
    line(
        "env variables",
        &format!("{} from env files", env.vars.len()),
    );
    match &config.ipc {
        Ipc::Redis { url } => line("redis", &redacted_url(url)),
        Ipc::Unix { path } => line("unix socket", &path.display()),
    }
    line("redis_channel", &config.channel);
    line("action log key", &config.action_log_key());
    line("per_cluster", &config.per_cluster);
    line(
        "ping interval",
        &format!(
            "{}s, timeout {}s",
            config.ping_interval.as_secs(),
            config.ping_timeout.as_secs()
        ),
    );
    line(
        "start next delay",
        &format!("{}s", config.cluster_start_next_delay.as_secs()),
    );
    line(
        "stop grace period",
        &format!("{}s", config.stop_grace_period.as_secs()),
    );
    line(
        "proxy",
        &config.proxy.as_deref().unwrap_or("(none: discord.com)"),
    );
    problems.extend(preflight::check_files(&config, &env.vars));

    let shard_count = match config.fixed_shard_count {
        Some(n) => {
            line("shards", &format!("{n} (fixed_shard_count)"));
            Some(n)
        }
        None if config.token.is_some() => match startup::fetch_gateway(&config).await {
            Ok(g) => {
                line(
                    "shards",
                    &format!(
                        "{} (from Discord; {} of {} session starts left)",
                        g.shards, g.session_start_limit.remaining, g.session_start_limit.total
                    ),
                );
                Some(g.shards)
            }
            Err(e) => {
                problems.push(format!("{e:#}"));
                None
            }
        },
        None => None,
    };
    let Some(n) = shard_count else {
        return problems;
    };
    if let Err(e) = cluster_map::check_size(n, config.per_cluster) {
        problems.push(e.to_string());
        return problems;
    }
    let map = cluster_map::build(n, config.per_cluster, &config.names);
    line("cluster map", &format!("{} clusters", map.len()));
    for c in &map {
        let _ = writeln!(
            out,
            "  {:>4}  {:<16} shards {}",
            c.id,
            mewld::protocol::truncate(&c.name, 40),
            shard_range(&c.shards)
        );
    }
    problems.extend(preflight::check_command_lines(&config, &map, n));
    problems
}
