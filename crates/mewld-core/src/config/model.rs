//! The resolved configuration: what the rest of mewld reads once the file
//! is parsed and checked.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A secret: the bot token, or the OAuth2 client secret of the web API.
/// Its `Debug` and `Display` never show the value, so it can be carried
/// around in structs that get logged.
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

/// How the launch starts clusters (docs/protocol.md §6, launch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchPolicy {
    /// The original's: one cluster at a time, the next after the previous
    /// one's `launch_next` and `cluster_start_next_delay`.
    Sequential,
    /// Several clusters at once, their identifies spaced by the identify
    /// queue; `at_once` clusters may be starting at the same time (`None`:
    /// derived from `max_concurrency` and `per_cluster` once Discord told).
    Concurrent { at_once: Option<u32> },
}

/// The web API (`web_api`, docs/protocol.md §8.2) and the original's keys
/// it uses: who may log in, through which Discord application, and which
/// browser origins may call it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebApi {
    pub addr: std::net::SocketAddr,
    pub oauth: OAuth,
    /// Discord user ids, as Discord writes them (decimal text).
    pub allowed_ids: Vec<String>,
    /// `web_api_origins`, canonical (`crate::web::origin`): the origins
    /// CORS answers and `/confirm` may send a session to.
    pub origins: Vec<String>,
}

/// The Discord application users log in through (the original's `oauth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth {
    pub client_id: String,
    pub client_secret: Token,
    /// The API as browsers reach it, without a trailing `/`: Discord sends
    /// the user back to `<redirect_url>/confirm`.
    pub redirect_url: String,
    /// Its origin, as `crate::web::origin` writes it.
    pub redirect_origin: String,
}

impl OAuth {
    /// Whether browsers reach the API over HTTPS (its cookie is then `Secure`).
    pub fn https(&self) -> bool {
        self.redirect_url.starts_with("https://")
    }
}

/// How a rolling restart (and a reshard) replaces each cluster's process
/// (docs/protocol.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RollingMode {
    /// The original's: stop the old process, then start the new one.
    #[default]
    StopFirst,
    /// Start the new process beside the old one, and stop the old one only
    /// once the new one said `launch_next` (ext).
    StartFirst,
}

impl RollingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RollingMode::StopFirst => "stop_first",
            RollingMode::StartFirst => "start_first",
        }
    }
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
    /// A message for one cluster (its diagnostic) goes on that cluster's
    /// channel, and the manager's own traffic on the launcher channel,
    /// instead of the main one (docs/protocol.md §5.5).
    pub cluster_channels: bool,
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
    /// Stop first (the original's) or start first (ext).
    pub rolling_restart_mode: RollingMode,
    /// How many clusters a rolling restart takes at a time (ext).
    pub rolling_restart_parallel: u32,
    /// How long the launch waits for a cluster's `launch_next` before it
    /// starts the next one anyway.
    pub launch_timeout: Duration,
    /// Where the daemon and the console listen for `mewld attach`
    /// (relative paths are relative to the config file's directory).
    pub control_socket: PathBuf,
    /// Where Prometheus metrics are served; off when `None`.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The original's web API, served there; off when `None`.
    pub web_api: Option<WebApi>,
    /// Where the identify queue listens; off when `None`.
    pub identify_queue: Option<std::net::SocketAddr>,
    /// Added to Discord's 5 s between two identifies of a bucket.
    pub identify_margin: Duration,
    pub launch: LaunchPolicy,
    /// This host of a fleet, when the config was made one's
    /// ([`Config::for_host`]): where its socket and ports came from.
    pub host: super::HostArgs,
}

impl Config {
    pub fn feature_enabled(&self, name: &str) -> bool {
        self.experimental_features.iter().any(|f| f == name)
    }

    /// The channel names under [`Config::channel`].
    pub fn channels(&self) -> crate::protocol::Channels<'_> {
        crate::protocol::Channels(&self.channel)
    }

    /// The list key of the action log (docs/protocol.md §5.4).
    pub fn action_log_key(&self) -> String {
        format!("{}/actlogs", self.channel)
    }
}
