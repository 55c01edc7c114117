//! The `mewld` command line: which face runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use color_eyre::eyre::{eyre, Result, WrapErr};

use mewld::control::client;
use mewld::control::server::Control;
use mewld::control::Hello;
use mewld::engine::{Engine, Setup};
use mewld::logging::LogFormat;
use mewld::startup;
use mewld::{
    daemon, demo, fake_bot, guardian, identify, logging, metrics, systemd, transport, tui,
};
use tokio::net::TcpListener;

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
    mewld check-config                            validate config.yaml, show the cluster map\n\n\
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

    #[command(subcommand)]
    command: Option<Command>,
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
    Attach,
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
        Some(Command::CheckConfig) => Ok(check_config::run(&cli.config).await),
        Some(Command::FakeBot { args }) => {
            logging::init_cluster();
            let code = fake_bot::run(args).await?;
            Ok(u8::try_from(code).unwrap_or(1))
        }
        Some(Command::Demo) => run_demo(&cli.log_file, cli.log_format).await,
        Some(Command::Attach) => {
            let log = logging::init_console(&cli.log_file, cli.log_format);
            run_attach(&cli.config, cli.control_socket, log).await
        }
        // Normally handled in `main`, before any runtime exists.
        Some(Command::Guardian { tag, groups }) => Ok(guardian::run(&tag, &groups)),
        None if cli.daemon => run_daemon(&cli.config, cli.control_socket, cli.log_format).await,
        None => {
            let log = logging::init_console(&cli.log_file, cli.log_format);
            run_console(&cli.config, cli.control_socket, log).await
        }
    }
}

/// The console's log and the guard that flushes it at exit.
type ConsoleLogging = (logging::ConsoleLog, Option<logging::LogGuard>);

async fn run_console(config: &Path, socket: Option<PathBuf>, log: ConsoleLogging) -> Result<u8> {
    let (log, _flush_log) = log;
    // Start-up problems are printed before the screen is taken.
    let prepared = startup::load_config(config)?;
    for w in &prepared.warnings {
        logging::to_stderr(&format!("warning: {w}"));
        tracing::warn!("{w}");
    }
    let control = Control::bind(&socket.unwrap_or(prepared.config.control_socket.clone()))
        .map_err(|e| eyre!(e))?;
    let listeners = Listeners::bind(&prepared.config).await?;
    logging::to_stderr("mewld: asking Discord for the shard count…");
    let setup = startup::prepare(prepared).await?;
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
    let (transport, transport_rx) = transport::start(&setup.config)?;
    guardian::start();
    let hello = Hello::of_this_process(true, setup.config.path.clone());
    let (engine, handle) = listeners.start_engine(setup, transport);
    control.serve(handle.clone(), hello);
    let face = tui::Face::Embedded {
        engine: Box::new(engine),
        transport_rx,
    };
    tui::run(face, handle, log).await
}

async fn run_attach(config: &Path, socket: Option<PathBuf>, log: ConsoleLogging) -> Result<u8> {
    let (log, _flush_log) = log;
    let socket = match socket {
        Some(path) => path,
        None => startup::load_config(config)?.config.control_socket,
    };
    let attached = client::attach(&socket).await.map_err(|e| eyre!(e))?;
    tracing::info!(socket = %socket.display(), pid = attached.hello.pid, "attached");
    let face = tui::Face::Attached {
        socket,
        status: attached.status,
        events: attached.events,
    };
    tui::run(face, attached.handle, log).await
}

/// The TCP listeners the config asks for (metrics, identify queue): bound
/// before anything starts, so a taken port stops the start.
struct Listeners {
    metrics: Option<TcpListener>,
    identify: Option<identify::Server>,
}

impl Listeners {
    async fn bind(config: &mewld::config::Config) -> Result<Listeners> {
        let metrics = match config.metrics_addr {
            Some(addr) => Some(metrics::bind(addr).await.map_err(|e| eyre!(e))?),
            None => None,
        };
        let identify = match config.identify_queue {
            Some(addr) => Some(identify::Server::bind(addr).await.map_err(|e| eyre!(e))?),
            None => None,
        };
        Ok(Listeners { metrics, identify })
    }

    /// The engine, with the identify queue (whose URL its clusters get) and
    /// the metrics served beside it.
    fn start_engine(
        self,
        mut setup: Setup,
        transport: transport::Transport,
    ) -> (Engine, mewld::engine::EngineHandle) {
        let identify = self.identify.map(|server| {
            setup
                .env_vars
                .push(("MEWLD_IDENTIFY_URL".into(), server.url()));
            let (config, shards) = (setup.config.clone(), setup.shard_count);
            (server, config, shards, setup.session_limit.clone())
        });
        let (mut engine, handle) = Engine::new(setup, transport);
        if let Some((server, config, shards, limit)) = identify {
            let link = server.serve(&config, shards, limit.as_ref(), handle.snapshot());
            engine.follow_identify(link);
        }
        if let Some(listener) = self.metrics {
            metrics::serve(listener, handle.clone());
        }
        (engine, handle)
    }
}

async fn run_daemon(config: &Path, socket: Option<PathBuf>, format: LogFormat) -> Result<u8> {
    let _flush_log = logging::init_daemon(format);
    let prepared = startup::load_config(config)?;
    for w in &prepared.warnings {
        tracing::warn!("{w}");
    }
    let control = Control::bind(&socket.unwrap_or(prepared.config.control_socket.clone()))
        .map_err(|e| eyre!(e))?;
    let listeners = Listeners::bind(&prepared.config).await?;
    let setup = startup::prepare(prepared).await?;
    let (transport, transport_rx) = transport::start(&setup.config)?;
    guardian::start();
    let hello = Hello::of_this_process(false, setup.config.path.clone());
    let (engine, handle) = listeners.start_engine(setup, transport);
    control.serve(handle.clone(), hello);
    systemd::start(handle.clone());
    let exit = daemon::run(engine, handle, transport_rx, format).await?;
    tracing::info!(code = exit.code(), "every cluster has stopped; exiting");
    Ok(u8::try_from(exit.code()).unwrap_or(1))
}
