//! `config.yaml` → [`Config`]: parsing, validation and environment overrides.
//!
//! The keys and their meaning are the original mewld's (docs/protocol.md §2), so an
//! existing bot's file loads unchanged. Errors name the file, the line and the
//! key; unknown keys are warnings, never failures.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cluster_map;
use crate::engine::argv;

/// The bot token. Its `Debug` and `Display` never show the value, so it can
/// be carried around in structs that get logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(value: impl Into<String>) -> Self {
        Token(value.into())
    }

    /// The raw token, for the places that must send it (HTTP header, child env).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

/// The file as written, before defaults and validation. Every field is
/// optional so that a missing key can be reported by name, with the file.
#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    token: Option<String>,
    dir: Option<String>,
    override_dir: Option<String>,
    use_current_directory: Option<bool>,
    env: Option<Vec<String>>,
    names: Option<Vec<String>>,
    module: Option<String>,
    interp: Option<String>,
    redis: Option<String>,
    redis_channel: Option<String>,
    per_cluster: Option<u32>,
    fixed_shard_count: Option<u32>,
    ping_interval: Option<u64>,
    ping_timeout: Option<u64>,
    cluster_start_next_delay: Option<u64>,
    minimum_safe_sessions_remaining: Option<u32>,
    experimental_features: Option<Vec<String>>,
    reshard_all: Option<bool>,
    proxy: Option<String>,
    // The original's web UI; accepted and ignored (the console replaces it).
    allowed_ids: Option<serde_yaml::Value>,
    oauth: Option<serde_yaml::Value>,
    use_custom_webui: Option<serde_yaml::Value>,
    // Extensions of this project (docs/protocol.md marks them so).
    args: Option<Vec<String>>,
    action_log_max_len: Option<usize>,
    stop_grace_period: Option<u64>,
    ipc: Option<String>,
    ipc_socket: Option<String>,
    restart_backoff_base: Option<u64>,
    restart_backoff_max: Option<u64>,
    restart_max_failures: Option<u32>,
    restart_stable_after: Option<u64>,
    rolling_restart_timeout: Option<u64>,
    launch_timeout: Option<u64>,
}

/// Longest duration a setting may have: beyond it a typo is likelier than intent.
const MAX_SECS: u64 = 30 * 24 * 3600;

/// Largest config file read. A real one is a few hundred bytes; the cap
/// keeps a wrong path (a log, a device) from being read whole.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Deepest `[`/`{` nesting accepted. libyaml's time grows with the square
/// of it (200k levels take minutes); a mewld config needs 2.
const MAX_FLOW_DEPTH: usize = 64;

/// Values read from the environment that override the file. Kept apart from
/// the process environment so that parsing stays a pure function.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `MTOKEN`
    pub token: Option<String>,
    /// `PER_CLUSTER`
    pub per_cluster: Option<String>,
    /// `$HOME`, for `dir`
    pub home: Option<PathBuf>,
    /// The working directory, for `use_current_directory` and relative paths.
    pub cwd: PathBuf,
}

impl Overrides {
    /// Reads `MTOKEN`, `PER_CLUSTER`, `HOME` and the working directory; `lookup`
    /// sees the process environment plus the config's env files.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Self {
        Overrides {
            token: lookup("MTOKEN").filter(|t| !t.trim().is_empty()),
            per_cluster: lookup("PER_CLUSTER").filter(|v| !v.trim().is_empty()),
            home: lookup("HOME").map(PathBuf::from),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        }
    }
}

/// Where the manager exchanges messages with its clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ipc {
    /// Redis pub/sub; a full `redis://` or `rediss://` URL.
    Redis { url: String },
    /// The manager's own Unix socket (docs/protocol.md §7); clusters learn its
    /// path from `MEWLD_SOCKET`.
    Unix { path: PathBuf },
}

/// How a cluster that exits unasked is restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Wait before the first restart; doubled for each quick failure in a row.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Quick failures in a row after which the cluster is marked failed and
    /// left stopped; 0 never gives up.
    pub max_failures: u32,
    /// A cluster that ran this long before exiting starts counting afresh.
    pub stable_after: Duration,
}

/// The resolved, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, for messages.
    pub path: PathBuf,
    pub token: Option<Token>,
    pub bot_dir: PathBuf,
    /// The env files, resolved against the working directory.
    pub env_files: Vec<PathBuf>,
    pub names: Vec<String>,
    pub module: String,
    pub interp: Option<String>,
    pub ipc: Ipc,
    /// The channel everything travels on; clusters get it as `MEWLD_CHANNEL`.
    pub channel: String,
    pub per_cluster: u32,
    pub fixed_shard_count: Option<u32>,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub cluster_start_next_delay: Duration,
    pub minimum_safe_sessions_remaining: u32,
    pub experimental_features: Vec<String>,
    pub reshard_all: bool,
    pub proxy: Option<String>,
    pub args: Vec<String>,
    pub action_log_max_len: usize,
    pub stop_grace_period: Duration,
    pub restart: RestartPolicy,
    /// How long a rolling restart waits for each cluster's `launch_next`.
    pub rolling_restart_timeout: Duration,
    /// How long the launch waits for a cluster's `launch_next` before it
    /// starts the next one anyway.
    pub launch_timeout: Duration,
}

/// What loading a file found wrong, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A config that loaded, plus what deserves a warning.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Loaded, ConfigError> {
    let file_error = |message: String| ConfigError {
        path: path.to_path_buf(),
        line: None,
        key: None,
        message,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| file_error(format!("cannot read the config file: {e}")))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(file_error(
            "the file is over 1 MiB, too big to be a mewld config".into(),
        ));
    }
    parse(&text, path, overrides)
}

/// A config from YAML for unit tests, resolved against `/`; panics with
/// the error when the text is not a valid config.
#[cfg(test)]
pub(crate) fn for_tests(text: &str) -> Config {
    let ov = Overrides {
        cwd: PathBuf::from("/"),
        ..Overrides::default()
    };
    match parse(text, Path::new("c.yaml"), &ov) {
        Ok(loaded) => loaded.config,
        Err(e) => panic!("{e}"),
    }
}

/// Parses `text` as the config file `path` (used in messages only).
pub fn parse(text: &str, path: &Path, overrides: &Overrides) -> Result<Loaded, ConfigError> {
    // Editors on Windows save a byte order mark, which YAML would take for
    // the start of a second document.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(line) = too_deep(text, MAX_FLOW_DEPTH) {
        return Err(ConfigError {
            path: path.to_path_buf(),
            line: Some(line),
            key: None,
            message: format!(
                "brackets are nested more than {MAX_FLOW_DEPTH} levels deep; a mewld config needs 2"
            ),
        });
    }
    let mut unknown = Vec::new();
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        let de = serde_yaml::Deserializer::from_str(text);
        serde_ignored::deserialize(de, |ignored| unknown.push(ignored.to_string())).map_err(
            |e: serde_yaml::Error| {
                let line = e.location().map(|l| l.line());
                // serde_yaml prefixes the message with the key path ("per_cluster: ...").
                let msg = e.to_string();
                let (key, message) = match msg.split_once(": ") {
                    Some((k, rest)) if !k.contains(' ') => (Some(k.to_string()), rest.to_string()),
                    _ => (None, msg.clone()),
                };
                let message = strip_location(&message);
                // serde_yaml points duplicates at the mapping, not the key.
                let line = message
                    .strip_prefix("duplicate field `")
                    .and_then(|r| r.split('`').next())
                    .and_then(|k| line_of_duplicate(text, k))
                    .or(line);
                ConfigError {
                    path: path.to_path_buf(),
                    line,
                    key,
                    message,
                }
            },
        )?
    };
    let mut warnings: Vec<String> = unknown
        .into_iter()
        .map(|key| {
            let at = line_of_key(text, &key)
                .map(|l| format!(":{l}"))
                .unwrap_or_default();
            format!("{}{at}: unknown key `{key}` ignored", path.display())
        })
        .collect();
    let webui: Vec<&str> = [
        ("allowed_ids", raw.allowed_ids.is_some()),
        ("oauth", raw.oauth.is_some()),
        ("use_custom_webui", raw.use_custom_webui.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, present)| present.then_some(k))
    .collect();
    if !webui.is_empty() {
        warnings.push(format!(
            "{}: {} belong to the original's web UI, which the terminal console replaces; ignored",
            path.display(),
            webui.join(", ")
        ));
    }
    let config = resolve(raw, text, path, overrides)?;
    Ok(Loaded { config, warnings })
}

fn resolve(raw: RawConfig, text: &str, path: &Path, ov: &Overrides) -> Result<Config, ConfigError> {
    let err = |key: &str, message: String| ConfigError {
        path: path.to_path_buf(),
        line: line_of_key(text, key),
        key: Some(key.to_string()),
        message,
    };
    let non_empty = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());

    let token = ov.token.clone().or(non_empty(raw.token)).map(Token::new);

    let module = non_empty(raw.module).ok_or_else(|| {
        err(
            "module",
            "missing: the program to run for each cluster is required".into(),
        )
    })?;
    let ipc = match non_empty(raw.ipc).as_deref() {
        None | Some("redis") => {
            let url = redis_url(&non_empty(raw.redis).ok_or_else(|| {
                err(
                    "redis",
                    "missing: a Redis address (host:port or redis:// URL) is required".into(),
                )
            })?);
            // The transport opens it the same way; the value is not echoed,
            // as it may hold a password.
            redis::IntoConnectionInfo::into_connection_info(url.as_str()).map_err(|e| {
                err(
                    "redis",
                    format!(
                        "not a usable Redis address ({e}); write host:port or \
                         redis://[user:password@]host:port/db"
                    ),
                )
            })?;
            Ipc::Redis { url }
        }
        Some("unix") => Ipc::Unix {
            path: ov
                .cwd
                .join(non_empty(raw.ipc_socket).unwrap_or_else(|| "mewld.sock".into())),
        },
        Some(other) => {
            return Err(err(
                "ipc",
                format!("must be `redis` or `unix`, not {other:?}"),
            ))
        }
    };
    let channel = match (non_empty(raw.redis_channel), &ipc) {
        (Some(channel), _) => channel,
        (None, Ipc::Unix { .. }) => "mewld".into(),
        (None, Ipc::Redis { .. }) => {
            return Err(err(
                "redis_channel",
                "missing: the pub/sub channel name is required".into(),
            ))
        }
    };

    let per_cluster = match &ov.per_cluster {
        Some(v) => v.trim().parse::<u32>().map_err(|_| ConfigError {
            path: path.to_path_buf(),
            line: None,
            key: Some("per_cluster".into()),
            message: format!("the PER_CLUSTER environment variable is not a whole number: {v:?}"),
        })?,
        None => raw.per_cluster.ok_or_else(|| {
            err(
                "per_cluster",
                "missing: shards per cluster is required (or set PER_CLUSTER)".into(),
            )
        })?,
    };
    if per_cluster == 0 {
        return Err(err("per_cluster", "must be greater than 0".into()));
    }

    let secs = |key: &str, v: Option<u64>, default: u64, allow_zero: bool| {
        let v = v.unwrap_or(default);
        if v == 0 && !allow_zero {
            Err(err(key, "must be greater than 0 seconds".into()))
        } else if v > MAX_SECS {
            Err(err(
                key,
                format!("{v} seconds is more than 30 days; too long to mean anything here"),
            ))
        } else {
            Ok(Duration::from_secs(v))
        }
    };
    // The original had no default and broke on 0: 0 means the default here.
    let ping_interval = secs(
        "ping_interval",
        raw.ping_interval.filter(|v| *v > 0),
        60,
        false,
    )?;
    let ping_timeout = secs("ping_timeout", raw.ping_timeout, 120, false)?;
    let cluster_start_next_delay = secs(
        "cluster_start_next_delay",
        raw.cluster_start_next_delay,
        5,
        true,
    )?;
    let stop_grace_period = secs("stop_grace_period", raw.stop_grace_period, 10, true)?;
    let restart = RestartPolicy {
        backoff_base: secs("restart_backoff_base", raw.restart_backoff_base, 3, false)?,
        backoff_max: secs("restart_backoff_max", raw.restart_backoff_max, 60, true)?,
        // 0: keep restarting (with backoff), as the original did.
        max_failures: raw.restart_max_failures.unwrap_or(0),
        stable_after: secs("restart_stable_after", raw.restart_stable_after, 60, true)?,
    };
    let launch_timeout = secs("launch_timeout", raw.launch_timeout, 600, false)?;
    let rolling_restart_timeout = secs(
        "rolling_restart_timeout",
        raw.rolling_restart_timeout,
        600,
        false,
    )?;

    let action_log_max_len = raw.action_log_max_len.unwrap_or(10_000);
    if action_log_max_len == 0 {
        return Err(err("action_log_max_len", "must be greater than 0".into()));
    }

    let fixed_shard_count = raw.fixed_shard_count.filter(|n| *n > 0);
    if let Some(n) = fixed_shard_count {
        cluster_map::check_size(n, per_cluster)
            .map_err(|e| err("fixed_shard_count", e.to_string()))?;
    }

    let args = match raw.args {
        None => argv::DEFAULT_ARGS.iter().map(|s| s.to_string()).collect(),
        Some(args) => {
            if let Some(unknown) = args.iter().find_map(|a| argv::unknown_placeholder(a)) {
                return Err(ConfigError {
                    line: line_of_key(text, "args")
                        .map(|from| line_of_text_after(text, unknown, from)),
                    ..err(
                        "args",
                        format!(
                            "unknown placeholder {unknown} (known: {})",
                            argv::known_placeholders()
                        ),
                    )
                });
            }
            args
        }
    };

    let bot_dir = match non_empty(raw.override_dir) {
        Some(dir) => ov.cwd.join(dir),
        None => {
            let base = if raw.use_current_directory.unwrap_or(false) {
                ov.cwd.clone()
            } else {
                ov.home.clone().ok_or_else(|| {
                    err(
                        "dir",
                        "is relative to $HOME, but HOME is not set (use override_dir or use_current_directory)".into(),
                    )
                })?
            };
            match non_empty(raw.dir) {
                Some(dir) => base.join(dir),
                None => base,
            }
        }
    };

    let experimental_features = raw.experimental_features.unwrap_or_default();

    Ok(Config {
        path: path.to_path_buf(),
        token,
        bot_dir,
        env_files: raw
            .env
            .unwrap_or_default()
            .into_iter()
            .map(|p| ov.cwd.join(p))
            .collect(),
        names: raw.names.unwrap_or_default(),
        module,
        interp: non_empty(raw.interp),
        ipc,
        channel,
        per_cluster,
        fixed_shard_count,
        ping_interval,
        ping_timeout,
        cluster_start_next_delay,
        minimum_safe_sessions_remaining: raw.minimum_safe_sessions_remaining.unwrap_or(5),
        experimental_features,
        reshard_all: raw.reshard_all.unwrap_or(false),
        proxy: non_empty(raw.proxy).map(|p| p.trim_end_matches('/').to_string()),
        args,
        action_log_max_len,
        stop_grace_period,
        restart,
        rolling_restart_timeout,
        launch_timeout,
    })
}

impl Config {
    pub fn feature_enabled(&self, name: &str) -> bool {
        self.experimental_features.iter().any(|f| f == name)
    }

    /// The list key of the action log (docs/protocol.md §5.4).
    pub fn action_log_key(&self) -> String {
        format!("{}/actlogs", self.channel)
    }
}

/// `host:port` means database 0 on that host, as in the original.
pub fn redis_url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("redis://{addr}/0")
    }
}

/// `url` with its password, if any, replaced by `****`, for printing.
pub fn redacted_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    // The last `@` ends the user info: a password may hold an `@` itself.
    let Some(at) = url[scheme_end..].rfind('@').map(|i| scheme_end + i) else {
        return url.to_string();
    };
    match url[scheme_end..at].find(':').map(|i| scheme_end + i) {
        Some(colon) => format!("{}:****{}", &url[..colon], &url[at..]),
        None => url.to_string(),
    }
}

/// The 1-based line where flow brackets (`[`, `{`) first nest deeper than
/// `max`, found with a cheap scan before libyaml, whose cost grows with the
/// square of the depth. Not a parser: brackets inside quotes and comments
/// are skipped, taking a quote to open only where a YAML scalar can start.
fn too_deep(text: &str, max: usize) -> Option<usize> {
    enum In {
        Plain,
        Single,
        Double,
        Comment,
    }
    let mut state = In::Plain;
    let mut depth = 0usize;
    let mut line = 1;
    // What the previous character lets start here: a comment needs a
    // space before it, a quoted scalar a space or a flow indicator.
    let (mut comment_may_start, mut quote_may_start) = (true, true);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
        }
        match state {
            In::Comment if c == '\n' => state = In::Plain,
            In::Comment => {}
            In::Single if c == '\'' => state = In::Plain,
            In::Double if c == '\\' => {
                if chars.next() == Some('\n') {
                    line += 1;
                }
            }
            In::Double if c == '"' => state = In::Plain,
            In::Single | In::Double => {}
            In::Plain => match c {
                '\'' if quote_may_start => state = In::Single,
                '"' if quote_may_start => state = In::Double,
                '#' if comment_may_start => state = In::Comment,
                '[' | '{' => {
                    depth += 1;
                    if depth > max {
                        return Some(line);
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        comment_may_start = c.is_whitespace();
        quote_may_start = comment_may_start || matches!(c, '[' | '{' | ',' | ':' | '-' | '?');
    }
    None
}

/// serde_yaml puts " at line L column C" in its messages; the line is
/// reported separately, so it is taken out.
fn strip_location(message: &str) -> String {
    let Some(start) = message.find(" at line ") else {
        return message.to_string();
    };
    let rest = &message[start + " at line ".len()..];
    let mut words = rest.splitn(4, ' ');
    let (_line, column, _col_no) = (words.next(), words.next(), words.next());
    let tail = if column == Some("column") {
        words.next().unwrap_or("")
    } else {
        rest
    };
    let tail = tail.trim_start_matches(',').trim_start();
    if tail.is_empty() {
        message[..start].to_string()
    } else {
        format!("{}, {tail}", &message[..start])
    }
}

/// The line of the second `key:` at the top level, for duplicate keys.
fn line_of_duplicate(text: &str, key: &str) -> Option<usize> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| {
        l.strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with(':'))
    });
    lines.nth(1).map(|(i, _)| i + 1)
}

/// The 1-based line where a top-level key is written, if it is.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let top = key.split('.').next().unwrap_or(key);
    text.lines()
        .position(|line| {
            line.strip_prefix(top)
                .map(|rest| rest.trim_start().starts_with(':'))
                .unwrap_or(false)
        })
        .map(|i| i + 1)
}

/// The 1-based line, from line `from` on, that holds `needle` (or `from`).
fn line_of_text_after(text: &str, needle: &str, from: usize) -> usize {
    text.lines()
        .enumerate()
        .skip(from - 1)
        .find(|(_, l)| l.contains(needle))
        .map_or(from, |(i, _)| i + 1)
}

/// Variables read from the config's env files.
#[derive(Debug, Default)]
pub struct EnvFiles {
    /// In file order; none overrides a variable the process already has or
    /// an earlier file set (godotenv.Load's rule). Handed to every cluster
    /// and consulted for `MTOKEN` and `PER_CLUSTER`.
    pub vars: Vec<(String, String)>,
    /// Files that could not be read or parsed, each with the reason.
    pub problems: Vec<String>,
}

impl EnvFiles {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub fn read_env_files(files: &[PathBuf], process_has: impl Fn(&str) -> bool) -> EnvFiles {
    let mut out = EnvFiles::default();
    for file in files {
        let items = match dotenvy::from_path_iter(file) {
            Ok(iter) => iter,
            Err(e) => {
                out.problems
                    .push(format!("env file {}: {e}", file.display()));
                continue;
            }
        };
        for item in items {
            match item {
                Ok((k, v)) => {
                    if !process_has(&k) && out.get(&k).is_none() {
                        out.vars.push((k, v));
                    }
                }
                Err(e) => {
                    out.problems
                        .push(format!("env file {}: {e}", file.display()));
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov() -> Overrides {
        Overrides {
            token: None,
            per_cluster: None,
            home: Some(PathBuf::from("/home/bot")),
            cwd: PathBuf::from("/srv"),
        }
    }

    const MIN: &str =
        "token: abc\nmodule: bot.py\nredis: localhost:6379\nredis_channel: ch\nper_cluster: 10\n";

    fn parse_ok(text: &str, o: &Overrides) -> Loaded {
        match parse(text, Path::new("config.yaml"), o) {
            Ok(l) => l,
            Err(e) => panic!("config should load: {e}"),
        }
    }

    fn parse_err(text: &str) -> ConfigError {
        match parse(text, Path::new("config.yaml"), &ov()) {
            Ok(_) => panic!("config should not load"),
            Err(e) => e,
        }
    }

    #[test]
    fn original_sample_loads_with_its_values() {
        let text = include_str!("../tests/data/original-sample.yaml");
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
    fn wrong_type_names_line_and_key() {
        let e = parse_err("module: m\nredis: r:1\nredis_channel: c\nper_cluster: lots\n");
        assert_eq!(e.line, Some(4), "{e}");
        assert_eq!(e.key.as_deref(), Some("per_cluster"), "{e}");
        assert!(
            e.to_string()
                .starts_with("config.yaml:4: key `per_cluster`"),
            "{e}"
        );
    }

    #[test]
    fn malformed_yaml_names_the_line() {
        let e = parse_err("module: m\nredis: [unclosed\nper_cluster: 1\n");
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn duplicate_keys_point_at_the_second_one() {
        let e =
            parse_err("module: m\nredis: r:1\nredis_channel: c\nper_cluster: 1\nper_cluster: 2\n");
        assert_eq!(e.line, Some(5), "{e}");
    }

    #[test]
    fn location_is_taken_out_of_messages() {
        assert_eq!(
            strip_location("bad at line 6 column 6, while parsing x"),
            "bad, while parsing x"
        );
        assert_eq!(strip_location("bad at line 6 column 6"), "bad");
        assert_eq!(strip_location("bad"), "bad");
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
    fn unknown_keys_warn_with_line() {
        let l = parse_ok(&format!("{MIN}colour: blue\n"), &ov());
        assert!(
            l.warnings
                .iter()
                .any(|w| w == "config.yaml:6: unknown key `colour` ignored"),
            "{:?}",
            l.warnings
        );
    }

    #[test]
    fn token_is_never_shown() {
        let c = parse_ok(MIN, &ov()).config;
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("abc"), "{dbg}");
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
    fn redis_address_is_parsed_as_the_transport_will() {
        let e =
            parse_err("module: m\nredis: http://:hunter2@x\nredis_channel: c\nper_cluster: 1\n");
        assert_eq!((e.key.as_deref(), e.line), (Some("redis"), Some(2)), "{e}");
        assert!(
            !e.to_string().contains("hunter2"),
            "the password is not echoed: {e}"
        );
        for bad in ["h:notaport", "redis://h:1/zero"] {
            let e = parse_err(&format!(
                "module: m\nredis: {bad}\nredis_channel: c\nper_cluster: 1\n"
            ));
            assert_eq!(e.key.as_deref(), Some("redis"), "{bad}: {e}");
        }
        let c = parse_ok(&MIN.replace("localhost:6379", "redis://u:p@h:7/3"), &ov()).config;
        assert_eq!(
            c.ipc,
            Ipc::Redis {
                url: "redis://u:p@h:7/3".into()
            }
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redacted_url("redis://:pw@h:6379/0"),
            "redis://:****@h:6379/0"
        );
        assert_eq!(
            redacted_url("rediss://user:p@ss@h/0"),
            "rediss://user:****@h/0"
        );
        assert_eq!(redacted_url("redis://user@h/0"), "redis://user@h/0");
        assert_eq!(redacted_url("redis://h:6379/0"), "redis://h:6379/0");
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
    fn a_byte_order_mark_is_accepted() {
        let c = parse_ok(&format!("\u{feff}{MIN}"), &ov()).config;
        assert_eq!(c.module, "bot.py");
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = format!("{MIN}x: {}{}\n", "[".repeat(200_000), "]".repeat(200_000));
        let e = parse_err(&deep);
        assert_eq!(e.line, Some(6), "{e}");
        assert!(e.message.contains("nested more than 64"), "{e}");
        // Brackets in quotes and comments are text; shallow nesting is fine.
        let brackets = "[".repeat(100);
        let ok = format!(
            "{MIN}a: '{brackets}'\nb: \"{brackets}\\\"{brackets}\"\n# {brackets}\nc: {{d: [[1, 2], [3]]}}\n"
        );
        parse_ok(&ok, &ov());
        assert_eq!(
            too_deep("a: don't [[\n", 1),
            Some(1),
            "a quote inside a word opens nothing"
        );
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
    fn redis_address_forms() {
        assert_eq!(redis_url("h:1"), "redis://h:1/0");
        assert_eq!(redis_url("rediss://u:p@h:1/2"), "rediss://u:p@h:1/2");
    }

    #[test]
    fn env_files_do_not_override() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.env");
        let b = dir.path().join("b.env");
        std::fs::write(&a, "X=1\nY=2\n").expect("write");
        std::fs::write(&b, "X=3\nZ=4\nHOME=/nope\n").expect("write");
        let env = read_env_files(&[a, b], |k| k == "HOME");
        assert!(env.problems.is_empty());
        assert_eq!(
            env.vars,
            vec![
                ("X".to_string(), "1".to_string()),
                ("Y".to_string(), "2".to_string()),
                ("Z".to_string(), "4".to_string())
            ]
        );
        let missing = read_env_files(&[dir.path().join("none.env")], |_| false);
        assert!(missing.vars.is_empty());
        assert!(
            missing.problems[0].contains("none.env"),
            "{:?}",
            missing.problems
        );
    }
}
