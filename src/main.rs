//! The `mewld` command line: which face runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use color_eyre::eyre::{eyre, Result, WrapErr};

use mewld::control::client;
use mewld::control::server::Control;
use mewld::engine::Setup;
use mewld::fleet;
use mewld::host::{self, Face, HostFlags, Listeners};
use mewld::logging::LogFormat;
use mewld::startup;
use mewld::{daemon, demo, fake_bot, guardian, logging, systemd, tui};
use mewld_core::fleet::per_host::HostSlot;
use mewld_core::fleet::slice::SliceSpec;

mod check_config;

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
    mewld --daemon --host-index 0 --host-count 3  one of three hosts sharing the clusters (a fleet)\n  \
    mewld attach --redis                          the console on the whole fleet\n\n\
Environment: MTOKEN (bot token, wins over `token`), PER_CLUSTER (wins over\n\
`per_cluster`), RUST_LOG (log filter, default info). See README.md."
)]
struct Cli {
    /// The config file (the original's format; see config.example.yaml).
    #[arg(
        long,
        short = 'c',
        visible_alias = "cfg-file",
        global = true,
        default_value = "config.yaml",
        value_name = "PATH"
    )]
    config: PathBuf,

    /// The control socket `mewld attach` reaches the engine on (default:
    /// `control_socket` in the config, else mewld.ctl beside the config).
    #[arg(long, global = true, value_name = "PATH")]
    control_socket: Option<PathBuf>,

    /// How the manager's log is written: `text`, or `json` (one object per
    /// line, for log shippers; the daemon's cluster output too).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        value_name = "FORMAT"
    )]
    log_format: LogFormat,

    /// Where the console writes its own log (the screen is for the console).
    #[arg(long, global = true, default_value = "mewld.log", value_name = "PATH")]
    log_file: PathBuf,

    /// Run headless: no console; cluster output on stdout, logs on stderr.
    /// For systemd and other service managers. Exit status: 0 after
    /// `shutdown` or SIGTERM/SIGINT/SIGHUP, 1 after `restartproc`, 2 on a start-up error.
    #[arg(long)]
    daemon: bool,

    #[command(flatten)]
    fleet: FleetArgs,

    #[command(subcommand)]
    command: Option<Command>,
}

/// Running one slice of the cluster map, as one host of a fleet of
/// managers sharing one Redis (docs/fleet.md).
#[derive(Debug, clap::Args)]
struct FleetArgs {
    /// This host's index in the fleet (0-based): it runs the index-th of
    /// `--host-count` contiguous slices of the clusters, in id order. Its
    /// control socket, name and ports are made from it (docs/fleet.md).
    /// With `attach`, the host to attach to.
    #[arg(long, env = "MEWLD_HOST_INDEX", global = true, value_name = "I")]
    host_index: Option<u32>,

    /// How many hosts share the clusters (with `--host-index`).
    #[arg(
        long,
        env = "MEWLD_HOST_COUNT",
        global = true,
        requires = "host_index",
        value_name = "N"
    )]
    host_count: Option<u32>,

    /// The clusters this host runs, as ids and ranges: `0-9,20-29`. The
    /// lowest id stands in for the host index (docs/fleet.md).
    #[arg(
        long,
        global = true,
        value_name = "IDS",
        conflicts_with_all = ["host_index", "host_count"]
    )]
    clusters: Option<String>,

    /// This host's name in the fleet (default: the machine's host name,
    /// then `-<index>` in a fleet).
    #[arg(long, env = "MEWLD_HOST_NAME", global = true, value_name = "NAME")]
    host_name: Option<String>,

    /// This host's metrics address, as written (default: `metrics_addr`,
    /// its port plus the host index in a fleet).
    #[arg(
        long,
        env = "MEWLD_METRICS_ADDR",
        global = true,
        value_name = "ADDR:PORT"
    )]
    metrics_addr: Option<std::net::SocketAddr>,
}

impl FleetArgs {
    /// The slice asked for, if any: without one, this manager runs every
    /// cluster alone, as the original did.
    fn slice(&self) -> Result<Option<SliceSpec>> {
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
    fn host(&self) -> Result<HostFlags> {
        Ok(HostFlags {
            slice: self.slice()?,
            name: self.host_name.clone(),
            metrics_addr: self.metrics_addr,
        })
    }

    /// The host `attach` is for: an index alone is enough.
    fn slot(&self) -> Result<Option<HostSlot>> {
        Ok(match (self.host_index, &self.clusters) {
            (Some(index), _) => Some(HostSlot::Index(index)),
            (None, Some(list)) => Some(SliceSpec::parse_list(list)?.slot()),
            (None, None) => None,
        })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
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

fn main() -> ExitCode {
    // The original took Go-style `-cfg-file PATH`; keep old unit files working.
    let args = std::env::args_os().map(|a| match a.to_str() {
        Some("-cfg-file") => "--cfg-file".into(),
        Some(s) if s.starts_with("-cfg-file=") => format!("-{s}").into(),
        _ => a,
    });
    let cli = Cli::parse_from(args);
    // The guardian needs no runtime and no threads.
    if let Some(Command::Guardian { tag, groups }) = &cli.command {
        return ExitCode::from(guardian::run(tag, groups));
    }
    if let Err(e) = color_eyre::install() {
        logging::to_stderr(&format!("mewld: {e}"));
    }
    // The fake bot is run hundreds of times at once: keep it to one thread.
    let runtime = if matches!(cli.command, Some(Command::FakeBot { .. })) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            logging::to_stderr(&format!("mewld: cannot start the async runtime: {e}"));
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(run(cli));
    mewld::socket_file::remove_all();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            logging::to_stderr(&format!("mewld: error: {e:#}"));
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Some(Command::CheckConfig) => Ok(check_config::run(&cli.config, &cli.fleet.host()?).await),
        Some(Command::FakeBot { args }) => {
            logging::init_cluster();
            let code = fake_bot::run(args).await?;
            Ok(u8::try_from(code).unwrap_or(1))
        }
        Some(Command::Demo) => run_demo(&cli.log_file, cli.log_format).await,
        Some(Command::Attach { redis }) => {
            let log = logging::init_console(&cli.log_file, cli.log_format);
            if redis {
                run_attach_fleet(&cli.config, log).await
            } else {
                let socket =
                    host::attach_socket(&cli.config, cli.control_socket, cli.fleet.slot()?)?;
                run_attach(socket, log).await
            }
        }
        // Normally handled in `main`, before any runtime exists.
        Some(Command::Guardian { tag, groups }) => Ok(guardian::run(&tag, &groups)),
        None if cli.daemon => {
            run_daemon(&cli.config, cli.control_socket, &cli.fleet, cli.log_format).await
        }
        None => {
            let log = logging::init_console(&cli.log_file, cli.log_format);
            run_console(&cli.config, cli.control_socket, &cli.fleet, log).await
        }
    }
}

/// The console's log and the guard that flushes it at exit.
type ConsoleLogging = (logging::ConsoleLog, Option<logging::LogGuard>);

async fn run_console(
    config: &Path,
    socket: Option<PathBuf>,
    fleet: &FleetArgs,
    log: ConsoleLogging,
) -> Result<u8> {
    let (log, _flush_log) = log;
    // Start-up problems are printed before the screen is taken.
    let (setup, control, listeners) =
        host::prepare(config, socket, &fleet.host()?, Face::Console).await?;
    run_embedded(setup, control, listeners, log).await
}

async fn run_demo(log_file: &Path, format: LogFormat) -> Result<u8> {
    let dir = tempfile::Builder::new()
        .prefix("mewld-demo-")
        .tempdir()
        .wrap_err("cannot make a temporary directory for the demo")?;
    let log_file = if log_file == Path::new("mewld.log") {
        dir.path().join("mewld.log")
    } else {
        log_file.to_path_buf()
    };
    let (log, _flush_log) = logging::init_console(&log_file, format);
    let setup = demo::setup(dir.path())?;
    let control = Control::bind(&setup.config.control_socket).map_err(|e| eyre!(e))?;
    let listeners = Listeners::bind(&setup.config).await?;
    run_embedded(setup, control, listeners, log).await
}

/// The console with the engine in this process, attachable on `control`.
async fn run_embedded(
    setup: Setup,
    control: Control,
    listeners: Listeners,
    log: logging::ConsoleLog,
) -> Result<u8> {
    let host = host::start(setup, control, listeners, Face::Console).await?;
    let face = tui::Face::Embedded {
        engine: Box::new(host.engine),
        transport_rx: host.transport_rx,
    };
    let code = tui::run(face, host.handle, log).await;
    if let Some(fleet) = host.fleet {
        fleet.leave().await;
    }
    code
}

async fn run_attach(socket: PathBuf, log: ConsoleLogging) -> Result<u8> {
    let (log, _flush_log) = log;
    let attached = client::attach(&socket).await.map_err(|e| eyre!(e))?;
    tracing::info!(socket = %socket.display(), pid = attached.hello.pid, "attached");
    let face = tui::Face::Attached {
        socket,
        status: attached.status,
        events: attached.events,
    };
    tui::run(face, attached.handle, log).await
}

/// The console on a whole fleet, through its Redis.
async fn run_attach_fleet(config: &Path, log: ConsoleLogging) -> Result<u8> {
    let (log, _flush_log) = log;
    let config = startup::load_config(config)?.config;
    let attached = fleet::attach::attach(&config).await.map_err(|e| eyre!(e))?;
    tracing::info!(channel = %config.channel, "attached to the fleet");
    let face = tui::Face::Attached {
        socket: PathBuf::from(format!("the fleet on {}", config.channel)),
        status: attached.status,
        events: attached.events,
    };
    tui::run(face, attached.handle, log).await
}

async fn run_daemon(
    config: &Path,
    socket: Option<PathBuf>,
    fleet: &FleetArgs,
    format: LogFormat,
) -> Result<u8> {
    let _flush_log = logging::init_daemon(format);
    let (setup, control, listeners) =
        host::prepare(config, socket, &fleet.host()?, Face::Daemon).await?;
    let host = host::start(setup, control, listeners, Face::Daemon).await?;
    systemd::start(host.handle.clone());
    let exit = daemon::run(host.engine, host.handle, host.transport_rx, format).await?;
    if let Some(fleet) = host.fleet {
        fleet.leave().await;
    }
    tracing::info!(code = exit.code(), "every cluster has stopped; exiting");
    Ok(u8::try_from(exit.code()).unwrap_or(1))
}
