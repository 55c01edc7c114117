//! `mewld check-config`: the resolved settings and the cluster map, and every
//! problem a start would fail on, from the same checks the start runs
//! (config validation, `preflight`, the map's size cap). Exit status 0 when
//! a start would get as far as the first cluster, 1 with `problem:` lines
//! otherwise. The token and the Redis password are never printed.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use mewld::config::{redacted_url, Config, Ipc, LaunchPolicy};
use mewld::host::HostFlags;
use mewld::preflight;
use mewld::startup::{self, Prepared};
use mewld_core::cluster_map::{self, shard_range};
use mewld_core::fleet::slice::Ranges;
use mewld_core::protocol::Channel;

/// Checks `path`, as `host` would run it (in a fleet, one host's slice,
/// socket, name and ports).
pub async fn run(path: &Path, host: &HostFlags) -> u8 {
    let mut out = String::new();
    let problems = report(path, host, &mut out).await;
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
async fn report(path: &Path, host: &HostFlags, out: &mut String) -> Vec<String> {
    let Prepared {
        config,
        env,
        warnings,
    } = match mewld::host::load_config(path, host) {
        Ok(p) => p,
        Err(e) => return vec![format!("{e:#}")],
    };
    for w in &warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let mut problems = env.problems.clone();
    if config.token.is_none() {
        problems.push("no bot token: set `token` or the MTOKEN environment variable".to_string());
    }
    settings(&config, env.vars.len(), out);
    problems.extend(preflight::check_files(&config, &env.vars));
    if let Err(e) = mewld::socket_file::check_private_dir(&config.control_socket) {
        problems.push(format!("control socket: {e}"));
    }
    if let Err(e) = mewld::socket_file::check_length(&config.control_socket) {
        problems.push(format!(
            "control_socket {}: {e}",
            config.control_socket.display()
        ));
    }
    if let mewld::config::Ipc::Unix { path } = &config.ipc {
        if let Err(e) = mewld::socket_file::check_length(path) {
            problems.push(format!("ipc_socket {}: {e}", path.display()));
        }
    }

    let shard_count = match shard_count(&config, out).await {
        Ok(Some(n)) => n,
        Ok(None) => return problems,
        Err(e) => {
            problems.push(e);
            return problems;
        }
    };
    if let Err(e) = cluster_map::check_size(shard_count, config.per_cluster) {
        problems.push(e.to_string());
        return problems;
    }
    let map = cluster_map::build(shard_count, config.per_cluster, &config.names);
    line(out, "cluster map", &format!("{} clusters", map.len()));
    let names: Vec<String> = map
        .iter()
        .map(|c| mewld_core::protocol::truncate(&c.name, 40))
        .collect();
    // The shards line up under the longest name shown.
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    for (c, name) in map.iter().zip(names) {
        let _ = writeln!(
            out,
            "  {:>4}  {name:<width$}  shards {}",
            c.id,
            shard_range(&c.shards)
        );
    }
    if let Some(slice) = &host.slice {
        line(out, "host name", &host.host_name());
        match (slice.resolve(map.len() as u32), &config.ipc) {
            (_, Ipc::Unix { .. }) => problems.push(
                "several hosts share their clusters through Redis; `ipc: unix` runs on one host only"
                    .into(),
            ),
            (Ok(owned), _) => line(
                out,
                "this host runs",
                &format!("{} ({} of {} clusters)", Ranges(&owned), owned.len(), map.len()),
            ),
            (Err(e), _) => problems.push(e.to_string()),
        }
    }
    problems.extend(preflight::check_command_lines(&config, &map, shard_count));
    problems
}

/// One `label: value` line, values aligned.
fn line(out: &mut String, label: &str, value: &dyn std::fmt::Display) {
    let _ = writeln!(out, "{:<19}{value}", format!("{label}:"));
}

/// The web API (docs/protocol.md §8.2): where, who may log in, from
/// where; the client secret is never shown.
fn web_api(config: &Config) -> String {
    let Some(web) = &config.web_api else {
        return "off (web_api)".to_string();
    };
    let how = config
        .listen_origin("web_api", web.addr)
        .map(|o| format!(" ({o})"))
        .unwrap_or_default();
    let origins = match web.origins.len() {
        0 => "none".to_string(),
        _ => web.origins.join(", "),
    };
    format!(
        "http://{}{how}; login through Discord application {} (secret hidden), back at {}/confirm; \
         {} allowed user(s); browser origins: {origins}",
        web.addr,
        web.oauth.client_id,
        web.oauth.redirect_url,
        web.allowed_ids.len()
    )
}

/// Where messages go (docs/protocol.md §5.5).
fn cluster_channels(config: &Config) -> String {
    let name = |c| config.channels().name(&c);
    let launcher = name(Channel::Launcher);
    if config.cluster_channels {
        let cluster = name(Channel::Main) + ":<id>";
        format!("on: pings on {cluster}, mewld's own messages on {launcher}")
    } else {
        format!(
            "off: everything on {} (mewld also hears {launcher})",
            config.channel
        )
    }
}

/// The resolved settings, secrets hidden.
fn settings(config: &Config, env_vars: usize, out: &mut String) {
    line(out, "config", &config.path.display());
    let token = if config.token.is_some() {
        "set (hidden)"
    } else {
        "MISSING"
    };
    line(out, "token", &token);
    line(out, "bot directory", &config.bot_dir.display());
    line(out, "module", &config.module);
    let interp = config.interp.as_deref();
    line(
        out,
        "interp",
        &interp.unwrap_or("(none: the module is the program)"),
    );
    line(out, "args", &config.args.join(" "));
    for f in &config.env_files {
        line(out, "env file", &f.display());
    }
    line(out, "env variables", &format!("{env_vars} from env files"));
    match &config.ipc {
        Ipc::Redis { url } => line(out, "redis", &redacted_url(url)),
        Ipc::Unix { path } => line(out, "unix socket", &path.display()),
    }
    line(out, "control socket", &config.control_socket.display());
    // In a fleet, how this host's address was made from the file's.
    let origin = |key: &str, a| config.listen_origin(key, a);
    let metrics = config.metrics_addr.map(|a| {
        let how = origin("metrics_addr", a).map(|o| format!(" ({o})"));
        format!("http://{a}/metrics{}", how.unwrap_or_default())
    });
    line(
        out,
        "metrics",
        &metrics.as_deref().unwrap_or("off (metrics_addr)"),
    );
    let identify = config.identify_queue.map(|a| {
        let how = origin("identify_queue", a).map(|o| format!("{o}; "));
        let how = how.unwrap_or_default();
        format!("http://{a}/<secret>?shard=<id> ({how}a new secret at each start)")
    });
    line(
        out,
        "identify queue",
        &identify.as_deref().unwrap_or("off (identify_queue)"),
    );
    line(out, "web API", &web_api(config));
    let launch = match config.launch {
        LaunchPolicy::Sequential => "sequential".to_string(),
        LaunchPolicy::Concurrent { at_once: Some(n) } => format!("concurrent, {n} at once"),
        LaunchPolicy::Concurrent { at_once: None } => {
            "concurrent, 2 × ⌈max_concurrency / per_cluster⌉ at once".to_string()
        }
    };
    line(out, "launch", &launch);
    line(out, "redis_channel", &config.channel);
    if matches!(config.ipc, Ipc::Redis { .. }) {
        line(out, "cluster channels", &cluster_channels(config));
    }
    line(out, "action log key", &config.action_log_key());
    line(out, "per_cluster", &config.per_cluster);
    let (interval, timeout) = (config.ping_interval, config.ping_timeout);
    let pings = format!("{}s, timeout {}s", interval.as_secs(), timeout.as_secs());
    line(out, "ping interval", &pings);
    let delay = config.cluster_start_next_delay.as_secs();
    line(out, "start next delay", &format!("{delay}s"));
    let grace = config.stop_grace_period.as_secs();
    line(out, "stop grace period", &format!("{grace}s"));
    line(out, "rolling restart", &rolling(config));
    let proxy = config.proxy.as_deref();
    line(out, "proxy", &proxy.unwrap_or("(none: discord.com)"));
}

/// `rolling_restart_mode`, `_parallel` and `_timeout` in a line.
fn rolling(config: &Config) -> String {
    let how = match config.rolling_restart_mode {
        mewld::config::RollingMode::StopFirst => "stop first",
        mewld::config::RollingMode::StartFirst => "start first (new process beside the old)",
    };
    format!(
        "{} ({how}), {} at a time, {}s for each launch_next",
        config.rolling_restart_mode.as_str(),
        config.rolling_restart_parallel,
        config.rolling_restart_timeout.as_secs()
    )
}

/// The shard count a start would use: fixed in the config, else asked of
/// Discord (none without a token: that problem is already reported).
async fn shard_count(config: &Config, out: &mut String) -> Result<Option<u32>, String> {
    if let Some(n) = config.fixed_shard_count {
        line(out, "shards", &format!("{n} (fixed_shard_count)"));
        return Ok(Some(n));
    }
    if config.token.is_none() {
        return Ok(None);
    }
    let g = startup::fetch_gateway(config)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let limit = &g.session_start_limit;
    let from = format!(
        "{} (from Discord; {} of {} session starts left)",
        g.shards, limit.remaining, limit.total
    );
    line(out, "shards", &from);
    Ok(Some(g.shards))
}
