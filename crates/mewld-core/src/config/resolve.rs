//! [`RawConfig`] → [`Config`]: defaults, environment overrides and
//! validation, one concern per function. Checks run in a fixed order, so
//! the first problem reported for a file never changes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{line_of_key, line_of_text_after, RawConfig};
use super::RollingMode;
use super::{redis_url, Config, ConfigError, Ipc, LaunchPolicy, Overrides, RestartPolicy, Token};
use crate::argv;
use crate::cluster_map;

/// Longest duration a setting may have: beyond it a typo is likelier than intent.
const MAX_SECS: u64 = 30 * 24 * 3600;

/// Where errors point: the file and its text, to find a key's line.
struct At<'a> {
    text: &'a str,
    path: &'a Path,
}

impl At<'_> {
    fn err(&self, key: &str, message: String) -> ConfigError {
        ConfigError {
            path: self.path.to_path_buf(),
            line: line_of_key(self.text, key),
            key: Some(key.to_string()),
            message,
        }
    }
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

pub(super) fn resolve(
    mut raw: RawConfig,
    text: &str,
    path: &Path,
    ov: &Overrides,
) -> Result<Config, ConfigError> {
    let at = At { text, path };
    // Fields moved out before `timings` borrows the rest are `take`n.
    let token = ov
        .token
        .clone()
        .or(non_empty(raw.token.take()))
        .map(Token::new);
    let missing_module = "missing: the program to run for each cluster is required";
    let module =
        non_empty(raw.module.take()).ok_or_else(|| at.err("module", missing_module.into()))?;
    let (kind, redis, socket) = (raw.ipc.take(), raw.redis.take(), raw.ipc_socket.take());
    let ipc = ipc(kind, redis, socket, ov, &at)?;
    let (channel, cluster_channels) = channels(&mut raw, &ipc, &at)?;
    let per_cluster = per_cluster(raw.per_cluster, ov, &at)?;
    let t = timings(&raw, &at)?;
    let (action_log_max_len, fixed_shard_count) = sizes(&raw, per_cluster, &at)?;
    let (metrics_addr, web_api) = http_servers(&mut raw, &ipc, &at)?;
    let (identify_queue, identify_margin, launch) = identify_and_launch(&mut raw, &at)?;
    let (rolling_restart_mode, rolling_restart_parallel) = rolling(&mut raw, &at)?;
    let args = args_template(raw.args, &at)?;
    let bot_dir = bot_dir(
        raw.override_dir,
        raw.use_current_directory,
        raw.dir,
        ov,
        &at,
    )?;
    Ok(Config {
        path: path.to_path_buf(),
        token,
        bot_dir,
        env_files: raw
            .env
            .into_iter()
            .flatten()
            .map(|p| ov.cwd.join(p))
            .collect(),
        names: raw.names.unwrap_or_default(),
        module,
        interp: non_empty(raw.interp),
        ipc,
        channel,
        cluster_channels,
        per_cluster,
        fixed_shard_count,
        ping_interval: t.ping_interval,
        ping_timeout: t.ping_timeout,
        cluster_start_next_delay: t.cluster_start_next_delay,
        minimum_safe_sessions_remaining: raw.minimum_safe_sessions_remaining.unwrap_or(5),
        experimental_features: raw.experimental_features.unwrap_or_default(),
        reshard_all: raw.reshard_all.unwrap_or(false),
        proxy: non_empty(raw.proxy).map(|p| p.trim_end_matches('/').to_string()),
        args,
        action_log_max_len,
        stop_grace_period: t.stop_grace_period,
        restart: t.restart,
        rolling_restart_timeout: t.rolling_restart_timeout,
        rolling_restart_mode,
        rolling_restart_parallel,
        launch_timeout: t.launch_timeout,
        control_socket: control_socket(raw.control_socket, path),
        metrics_addr,
        web_api,
        identify_queue,
        identify_margin,
        launch,
        host: super::HostArgs::default(),
    })
}

/// The HTTP servers beside the engine: the metrics (`metrics_addr`) and
/// the web API (`web_api`, with what it needs).
fn http_servers(
    raw: &mut RawConfig,
    ipc: &Ipc,
    at: &At,
) -> Result<(Option<SocketAddr>, Option<crate::config::WebApi>), ConfigError> {
    let metrics_addr = listen_addr("metrics_addr", raw.metrics_addr.take(), 9464, at)?;
    Ok((metrics_addr, web::web_api(raw, ipc, at)?))
}

/// `metrics_addr`, `identify_queue`, `web_api`: an address and port to
/// listen on, or absent (off).
fn listen_addr(
    key: &str,
    value: Option<String>,
    example_port: u16,
    at: &At,
) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(text) = non_empty(value) else {
        return Ok(None);
    };
    text.parse().map(Some).map_err(|_| {
        at.err(
            key,
            format!("{text:?} is not an address and port (e.g. 127.0.0.1:{example_port})"),
        )
    })
}

/// `identify_queue`, `identify_margin_ms`, and the launch policy that may
/// rely on them.
fn identify_and_launch(
    raw: &mut RawConfig,
    at: &At,
) -> Result<(Option<SocketAddr>, Duration, LaunchPolicy), ConfigError> {
    let queue = listen_addr("identify_queue", raw.identify_queue.take(), 5000, at)?;
    let margin = identify_margin(raw.identify_margin_ms, at)?;
    let launch = launch(raw.launch.take(), raw.launch_concurrency, queue, at)?;
    Ok((queue, margin, launch))
}

/// `launch` and `launch_concurrency`. Concurrent launches are only safe
/// when the clusters identify through the queue, which spaces them.
fn launch(
    value: Option<String>,
    at_once: Option<u32>,
    identify_queue: Option<SocketAddr>,
    at: &At,
) -> Result<LaunchPolicy, ConfigError> {
    if at_once == Some(0) {
        return Err(at.err("launch_concurrency", "must be at least 1".into()));
    }
    match non_empty(value).as_deref() {
        None | Some("sequential") => Ok(LaunchPolicy::Sequential),
        Some("concurrent") if identify_queue.is_none() => Err(at.err(
            "launch",
            "`concurrent` needs `identify_queue`: without the queue nothing would keep \
             the clusters' identifies within Discord's rate limit"
                .into(),
        )),
        Some("concurrent") => Ok(LaunchPolicy::Concurrent { at_once }),
        Some(other) => Err(at.err(
            "launch",
            format!("{other:?} is not a launch policy (sequential or concurrent)"),
        )),
    }
}

/// `rolling_restart_mode` (`stop_first` by default, the original's) and
/// `rolling_restart_parallel` (1 by default: one cluster at a time).
fn rolling(raw: &mut RawConfig, at: &At) -> Result<(RollingMode, u32), ConfigError> {
    let mode = match non_empty(raw.rolling_restart_mode.take()).as_deref() {
        None | Some("stop_first") => RollingMode::StopFirst,
        Some("start_first") => RollingMode::StartFirst,
        Some(other) => {
            return Err(at.err(
                "rolling_restart_mode",
                format!("{other:?} is not a rolling restart mode (stop_first or start_first)"),
            ))
        }
    };
    match raw.rolling_restart_parallel.unwrap_or(1) {
        0 => Err(at.err(
            "rolling_restart_parallel",
            "must be at least 1 (clusters restarted at a time)".into(),
        )),
        k => Ok((mode, k)),
    }
}

/// `identify_margin_ms`: 250 ms by default, at most a second.
fn identify_margin(ms: Option<u64>, at: &At) -> Result<Duration, ConfigError> {
    match ms.unwrap_or(250) {
        ms @ 0..=1000 => Ok(Duration::from_millis(ms)),
        ms => Err(at.err(
            "identify_margin_ms",
            format!("{ms} ms is more than a second; the margin is for network jitter"),
        )),
    }
}

/// `control_socket`, by default `mewld.ctl` beside the config file.
fn control_socket(value: Option<String>, config: &Path) -> PathBuf {
    super::dir_of(config).join(non_empty(value).unwrap_or_else(|| "mewld.ctl".into()))
}

/// `action_log_max_len` and `fixed_shard_count` (0 or absent: ask Discord),
/// within their bounds.
fn sizes(raw: &RawConfig, per_cluster: u32, at: &At) -> Result<(usize, Option<u32>), ConfigError> {
    let action_log_max_len = raw.action_log_max_len.unwrap_or(10_000);
    if action_log_max_len == 0 {
        return Err(at.err("action_log_max_len", "must be greater than 0".into()));
    }
    let fixed_shard_count = raw.fixed_shard_count.filter(|n| *n > 0);
    if let Some(n) = fixed_shard_count {
        cluster_map::check_size(n, per_cluster)
            .map_err(|e| at.err("fixed_shard_count", e.to_string()))?;
    }
    Ok((action_log_max_len, fixed_shard_count))
}

/// `ipc` with its `redis` address or `ipc_socket` path.
fn ipc(
    kind: Option<String>,
    redis: Option<String>,
    socket: Option<String>,
    ov: &Overrides,
    at: &At,
) -> Result<Ipc, ConfigError> {
    match non_empty(kind).as_deref() {
        None | Some("redis") => {
            // Whether Redis can open it is the main crate's check
            // (`config::parse`): the parser is the client's.
            let url = redis_url(&non_empty(redis).ok_or_else(|| {
                at.err(
                    "redis",
                    "missing: a Redis address (host:port or redis:// URL) is required".into(),
                )
            })?);
            Ok(Ipc::Redis { url })
        }
        Some("unix") => Ok(Ipc::Unix {
            path: ov
                .cwd
                .join(non_empty(socket).unwrap_or_else(|| "mewld.sock".into())),
        }),
        Some(other) => Err(at.err("ipc", format!("must be `redis` or `unix`, not {other:?}"))),
    }
}

/// `redis_channel`, and `cluster_channels`: Redis only, since the socket
/// has no channels (it gives every line to every client).
fn channels(raw: &mut RawConfig, ipc: &Ipc, at: &At) -> Result<(String, bool), ConfigError> {
    let main = channel(raw.redis_channel.take(), ipc, at)?;
    match (raw.cluster_channels.unwrap_or(false), ipc) {
        (true, Ipc::Unix { .. }) => Err(at.err(
            "cluster_channels",
            "needs `ipc: redis`: the Unix socket has no channels, every line goes to every client"
                .into(),
        )),
        (on, _) => Ok((main, on)),
    }
}

/// `redis_channel`: required with Redis, `mewld` by default on a socket.
fn channel(channel: Option<String>, ipc: &Ipc, at: &At) -> Result<String, ConfigError> {
    match (non_empty(channel), ipc) {
        (Some(channel), _) => Ok(channel),
        (None, Ipc::Unix { .. }) => Ok("mewld".into()),
        (None, Ipc::Redis { .. }) => Err(at.err(
            "redis_channel",
            "missing: the pub/sub channel name is required".into(),
        )),
    }
}

/// `per_cluster`, which `PER_CLUSTER` overrides.
fn per_cluster(raw: Option<u32>, ov: &Overrides, at: &At) -> Result<u32, ConfigError> {
    let per_cluster = match &ov.per_cluster {
        Some(v) => v.trim().parse::<u32>().map_err(|_| ConfigError {
            path: at.path.to_path_buf(),
            line: None,
            key: Some("per_cluster".into()),
            message: format!("the PER_CLUSTER environment variable is not a whole number: {v:?}"),
        })?,
        None => raw.ok_or_else(|| {
            at.err(
                "per_cluster",
                "missing: shards per cluster is required (or set PER_CLUSTER)".into(),
            )
        })?,
    };
    if per_cluster == 0 {
        return Err(at.err("per_cluster", "must be greater than 0".into()));
    }
    Ok(per_cluster)
}

/// The durations, each with its default.
struct Timings {
    ping_interval: Duration,
    ping_timeout: Duration,
    cluster_start_next_delay: Duration,
    stop_grace_period: Duration,
    restart: RestartPolicy,
    launch_timeout: Duration,
    rolling_restart_timeout: Duration,
}

fn timings(raw: &RawConfig, at: &At) -> Result<Timings, ConfigError> {
    let secs = |key: &str, v: Option<u64>, default: u64, allow_zero: bool| {
        let v = v.unwrap_or(default);
        if v == 0 && !allow_zero {
            Err(at.err(key, "must be greater than 0 seconds".into()))
        } else if v > MAX_SECS {
            Err(at.err(
                key,
                format!("{v} seconds is more than 30 days; too long to mean anything here"),
            ))
        } else {
            Ok(Duration::from_secs(v))
        }
    };
    Ok(Timings {
        // The original had no default and broke on 0: 0 means the default here.
        ping_interval: secs(
            "ping_interval",
            raw.ping_interval.filter(|v| *v > 0),
            60,
            false,
        )?,
        ping_timeout: secs("ping_timeout", raw.ping_timeout, 120, false)?,
        cluster_start_next_delay: secs(
            "cluster_start_next_delay",
            raw.cluster_start_next_delay,
            5,
            true,
        )?,
        stop_grace_period: secs("stop_grace_period", raw.stop_grace_period, 10, true)?,
        restart: RestartPolicy {
            backoff_base: secs("restart_backoff_base", raw.restart_backoff_base, 3, false)?,
            backoff_max: secs("restart_backoff_max", raw.restart_backoff_max, 60, true)?,
            // 0: keep restarting (with backoff), as the original did.
            max_failures: raw.restart_max_failures.unwrap_or(0),
            stable_after: secs("restart_stable_after", raw.restart_stable_after, 60, true)?,
        },
        launch_timeout: secs("launch_timeout", raw.launch_timeout, 600, false)?,
        rolling_restart_timeout: secs(
            "rolling_restart_timeout",
            raw.rolling_restart_timeout,
            600,
            false,
        )?,
    })
}

/// `args`, whose placeholders must all be known; the error points at the
/// offending item's line.
fn args_template(args: Option<Vec<String>>, at: &At) -> Result<Vec<String>, ConfigError> {
    let Some(args) = args else {
        return Ok(argv::DEFAULT_ARGS.iter().map(|s| s.to_string()).collect());
    };
    if let Some(unknown) = args.iter().find_map(|a| argv::unknown_placeholder(a)) {
        return Err(ConfigError {
            line: line_of_key(at.text, "args")
                .map(|from| line_of_text_after(at.text, unknown, from)),
            ..at.err(
                "args",
                format!(
                    "unknown placeholder {unknown} (known: {})",
                    argv::known_placeholders()
                ),
            )
        });
    }
    Ok(args)
}

/// The bot's directory: `override_dir`, else `dir` under $HOME or the
/// working directory.
fn bot_dir(
    override_dir: Option<String>,
    use_current_directory: Option<bool>,
    dir: Option<String>,
    ov: &Overrides,
    at: &At,
) -> Result<PathBuf, ConfigError> {
    if let Some(dir) = non_empty(override_dir) {
        return Ok(ov.cwd.join(dir));
    }
    let base = if use_current_directory.unwrap_or(false) {
        ov.cwd.clone()
    } else {
        ov.home.clone().ok_or_else(|| {
            at.err(
                "dir",
                "is relative to $HOME, but HOME is not set (use override_dir or use_current_directory)".into(),
            )
        })?
    };
    Ok(match non_empty(dir) {
        Some(dir) => base.join(dir),
        None => base,
    })
}

#[cfg(test)]
mod tests;
mod web;
