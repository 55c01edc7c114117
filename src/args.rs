//! The command line's shape: the flags, the faces and the one-shot
//! commands, as clap reads them (`main.rs` runs what they ask).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use color_eyre::eyre::{eyre, Result};

use mewld::host::HostFlags;
use mewld::logging::LogFormat;
use mewld_core::fleet::per_host::HostSlot;
use mewld_core::fleet::slice::SliceSpec;

/// A Discord bot clusterer: splits a bot's shards over cluster processes,
/// starts them one after another, restarts the ones that die, and answers
/// the original mewld's Redis protocol, so existing bots run unchanged.
#[derive(Debug, Parser)]
#[command(
    name = "mewld",
    version,
    after_help = "Examples:\n  \
    mewld --daemon --config /srv/bot/config.yaml   run headless (systemd)\n  \
    mewld check-config                            validate config.yaml, show the cluster map\n  \
    mewld status                                  the clusters of the running engine (exit 0: all run)\n  \
    mewld rolling-restart --wait                  deploy: exit 0 once every cluster is back\n  \
    mewld --daemon --host-index 0 --host-count 3  one of three hosts sharing the clusters (a fleet)\n  \
    mewld attach --redis                          the console on the whole fleet\n\n\
Environment: MTOKEN (bot token, wins over `token`), PER_CLUSTER (wins over\n\
`per_cluster`), RUST_LOG (log filter, default info). See README.md."
)]
pub struct Cli {
    /// The config file (the original's format; see config.example.yaml).
    #[arg(
        long,
        short = 'c',
        visible_alias = "cfg-file",
        global = true,
        default_value = "config.yaml",
        value_name = "PATH"
    )]
    pub config: PathBuf,

    /// The control socket `mewld attach` reaches the engine on (default:
    /// `control_socket` in the config, else mewld.ctl beside the config).
    #[arg(long, global = true, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,

    /// How the manager's log is written: `text`, or `json` (one object per
    /// line, for log shippers; the daemon's cluster output too).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,

    /// Where the console writes its own log (the screen is for the
    /// console). Default: mewld.log for a console that runs the engine;
    /// none for `mewld attach`.
    #[arg(long, global = true, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// Run headless: no console; cluster output on stdout, logs on stderr.
    /// For systemd and other service managers. Exit status: 0 after
    /// `shutdown` or SIGTERM/SIGINT/SIGHUP, 1 after `restartproc`, 2 on a start-up error.
    #[arg(long)]
    pub daemon: bool,

    #[command(flatten)]
    pub fleet: FleetArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Running one slice of the cluster map, as one host of a fleet of
/// managers sharing one Redis (docs/fleet.md).
#[derive(Debug, clap::Args)]
pub struct FleetArgs {
    /// This host's index in the fleet (0-based): it runs the index-th of
    /// `--host-count` contiguous slices of the clusters, in id order. Its
    /// control socket, name and ports are made from it (docs/fleet.md).
    /// With `attach`, the host to attach to.
    #[arg(long, env = "MEWLD_HOST_INDEX", global = true, value_name = "I")]
    pub host_index: Option<u32>,

    /// How many hosts share the clusters (with `--host-index`).
    #[arg(
        long,
        env = "MEWLD_HOST_COUNT",
        global = true,
        requires = "host_index",
        value_name = "N"
    )]
    pub host_count: Option<u32>,

    /// The clusters this host runs, as ids and ranges: `0-9,20-29`. The
    /// lowest id stands in for the host index (docs/fleet.md).
    #[arg(
        long,
        global = true,
        value_name = "IDS",
        conflicts_with_all = ["host_index", "host_count"]
    )]
    pub clusters: Option<String>,

    /// This host's name in the fleet (default: the machine's host name,
    /// then `-<index>` in a fleet).
    #[arg(long, env = "MEWLD_HOST_NAME", global = true, value_name = "NAME")]
    pub host_name: Option<String>,

    /// This host's metrics address, as written (default: `metrics_addr`,
    /// its port plus the host index in a fleet).
    #[arg(
        long,
        env = "MEWLD_METRICS_ADDR",
        global = true,
        value_name = "ADDR:PORT"
    )]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl FleetArgs {
    /// The slice asked for, if any: without one, this manager runs every
    /// cluster alone, as the original did.
    pub fn slice(&self) -> Result<Option<SliceSpec>> {
        let spec = match (self.host_index, self.host_count, &self.clusters) {
            (Some(index), Some(count), _) => SliceSpec::index(index, count)?,
            (Some(index), None, _) => {
                return Err(eyre!(
                    "--host-index {index} needs --host-count (or MEWLD_HOST_COUNT): how many \
                     hosts share the clusters"
                ))
            }
            (_, _, Some(list)) => SliceSpec::parse_list(list)?,
            _ => return Ok(None),
        };
        Ok(Some(spec))
    }

    /// This host, as the command line describes it.
    pub fn host(&self) -> Result<HostFlags> {
        Ok(HostFlags {
            slice: self.slice()?,
            name: self.host_name.clone(),
            metrics_addr: self.metrics_addr,
        })
    }

    /// The host `attach` is for: an index alone is enough.
    pub fn slot(&self) -> Result<Option<HostSlot>> {
        Ok(match (self.host_index, &self.clusters) {
            (Some(index), _) => Some(HostSlot::Index(index)),
            (None, Some(list)) => Some(SliceSpec::parse_list(list)?.slot()),
            (None, None) => None,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config and print the resolved settings and the cluster map.
    CheckConfig,
    /// Try the console with nothing installed: simulated clusters, no
    /// Discord token, no Redis.
    Demo,
    /// The console, on an engine that runs elsewhere (`mewld --daemon`, or
    /// another console) through its control socket. `q` detaches and leaves
    /// every cluster running.
    Attach {
        /// The whole fleet through its Redis instead (every host's
        /// clusters; operations go to the host that runs the cluster).
        #[arg(long)]
        redis: bool,
    },
    #[command(flatten)]
    OneShot(OneShot),
    /// The protocol-speaking fake bot used by the tests (see src/fake_bot.rs).
    #[command(hide = true)]
    FakeBot {
        /// <shards> <shard_count> <cluster_id> <cluster_name> <logging_code> <dir>
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Started by the manager itself: kills what its clusters left behind
    /// once the manager is gone (see src/guardian.rs).
    #[command(hide = true)]
    Guardian {
        /// The manager's tag, then the process groups already registered.
        tag: String,
        groups: Vec<u32>,
    },
}

/// Commands for a shell or a deploy script, on a running engine.
#[derive(Debug, Subcommand)]
pub enum OneShot {
    /// The clusters as a table (or `--json`): exit 0 if every cluster runs,
    /// 1 if not, 2 if the engine cannot be reached.
    Status {
        /// One JSON object, for scripts (docs/operations.md has its shape).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        reach: Reach,
    },
    /// Start a stopped or failed cluster.
    Start {
        id: u32,
        #[command(flatten)]
        reach: Reach,
    },
    /// Stop a cluster (it stays stopped until started).
    Stop {
        id: u32,
        #[command(flatten)]
        reach: Reach,
    },
    /// Restart a cluster.
    Restart {
        id: u32,
        #[command(flatten)]
        reach: Reach,
    },
    /// Restart every cluster, one at a time. With --wait, print the action
    /// log as it goes and exit 0 once every cluster is back, 1 if the roll
    /// was refused, stopped or a cluster did not come back.
    RollingRestart {
        /// Wait for the roll to end, printing it as it goes.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up waiting (exit 1) after this many seconds;
        /// the roll goes on.
        #[arg(long, requires = "wait", value_name = "SECS")]
        timeout: Option<u64>,
        #[command(flatten)]
        reach: Reach,
    },
    /// Stop every cluster, then the engine exits 0; waits until it has.
    Shutdown {
        #[command(flatten)]
        reach: Reach,
    },
    /// Stop every cluster, then the engine exits 1 so its service manager
    /// starts it again; waits until it has exited.
    RestartProcess {
        #[command(flatten)]
        reach: Reach,
    },
    /// The action log's newest entries; with --cluster, that cluster's
    /// entries and its latest output lines.
    Logs {
        /// Keep printing what comes, until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
        #[arg(long, value_name = "ID")]
        cluster: Option<u32>,
        /// How many stored entries to print first.
        #[arg(long, short = 'n', default_value_t = 50, value_name = "N")]
        lines: usize,
        /// Each entry as stored (one JSON object per line).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        reach: Reach,
    },
}

/// Where a one-shot command finds the engine.
#[derive(Debug, clap::Args)]
pub struct Reach {
    /// The whole fleet through its Redis, instead of this machine's
    /// control socket.
    #[arg(long)]
    pub redis: bool,
}
