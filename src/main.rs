//! The `mewld` command line: which face runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use color_eyre::eyre::{eyre, Result, WrapErr};

use mewld::cli;
use mewld::control::client;
use mewld::control::server::Control;
use mewld::control::{Client, Hello};
use mewld::fleet;
use mewld::host::{self, Face, Launched, Listeners};
use mewld::logging::LogFormat;
use mewld::phase::Lifecycle;
use mewld::startup;
use mewld::{daemon, demo, fake_bot, guardian, logging, systemd, tui};
use mewld_core::fleet::per_host::HostSlot;
use mewld_core::model::{Exit, Operation};

mod args;
mod check_config;

use args::{Cli, Command, FleetArgs, OneShot, Reach};

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
    let Some(command) = cli.command else {
        return if cli.daemon {
            run_daemon(&cli.config, cli.control_socket, &cli.fleet, cli.log_format).await
        } else {
            let log_file = cli.log_file.unwrap_or_else(|| PathBuf::from(CONSOLE_LOG));
            let log = logging::init_console(&log_file, cli.log_format);
            run_console(&cli.config, cli.control_socket, &cli.fleet, log).await
        };
    };
    match command {
        Command::CheckConfig => Ok(check_config::run(&cli.config, &cli.fleet.host()?).await),
        Command::FakeBot { args } => {
            logging::init_cluster();
            let code = fake_bot::run(args).await?;
            Ok(u8::try_from(code).unwrap_or(1))
        }
        Command::Demo => run_demo(cli.log_file, cli.log_format).await,
        Command::Attach { redis } => {
            // No log file unless asked for: attach runs from anywhere.
            let log = cli
                .log_file
                .as_deref()
                .map_or((logging::ConsoleLog::off(), None), |path| {
                    logging::init_console(path, cli.log_format)
                });
            if redis {
                run_attach_fleet(&cli.config, log).await
            } else {
                let socket =
                    host::attach_socket(&cli.config, cli.control_socket, cli.fleet.slot()?)?;
                run_attach(socket, log).await
            }
        }
        Command::OneShot(command) => {
            let socket = cli.control_socket;
            run_one_shot(command, &cli.config, socket, cli.fleet.slot()?).await
        }
        // Normally handled in `main`, before any runtime exists.
        Command::Guardian { tag, groups } => Ok(guardian::run(&tag, &groups)),
    }
}

/// A one-shot command, on the engine behind the control socket `mewld
/// attach` would reach (host `slot`'s in a fleet on one machine), or on
/// the whole fleet with `--redis`.
async fn run_one_shot(
    command: OneShot,
    config: &Path,
    socket: Option<PathBuf>,
    slot: Option<HostSlot>,
) -> Result<u8> {
    let reach = |reach: Reach| -> Result<cli::Target> {
        if reach.redis {
            let config = startup::load_config(config)?.config;
            return Ok(cli::Target::Fleet(Box::new(config)));
        }
        let socket = host::attach_socket(config, socket.clone(), slot)?;
        Ok(cli::Target::Socket(socket))
    };
    // What goes wrong is said on stderr.
    logging::init_cluster();
    match command {
        OneShot::Status { json, reach: r } => Ok(cli::status::run(&reach(r)?, json).await),
        OneShot::Start { id, reach: r } => operate(reach(r)?, Operation::Start(id)).await,
        OneShot::Stop { id, reach: r } => operate(reach(r)?, Operation::Stop(id)).await,
        OneShot::Restart { id, reach: r } => operate(reach(r)?, Operation::Restart(id)).await,
        OneShot::Shutdown { reach: r } => operate(reach(r)?, Operation::Shutdown).await,
        OneShot::RestartProcess { reach: r } => operate(reach(r)?, Operation::RestartProcess).await,
        OneShot::RollingRestart {
            wait,
            timeout,
            reach: r,
        } => {
            let timeout = timeout.map(Duration::from_secs);
            Ok(cli::roll::run(&reach(r)?, wait, timeout).await)
        }
        OneShot::Logs {
            follow,
            cluster,
            lines,
            json,
            reach: r,
        } => {
            let ask = cli::logs::Ask {
                follow,
                cluster,
                lines,
                json,
            };
            Ok(cli::logs::run(&reach(r)?, ask).await)
        }
    }
}

/// Where a console that runs the engine writes its log by default.
const CONSOLE_LOG: &str = "mewld.log";

async fn operate(target: cli::Target, op: Operation) -> Result<u8> {
    Ok(cli::operate(&target, op).await)
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
    let life = Lifecycle::default();
    let launched = host::launch(config, socket, &fleet.host()?, Face::Console, &life).await?;
    run_embedded(launched, log).await
}

async fn run_demo(log_file: Option<PathBuf>, format: LogFormat) -> Result<u8> {
    let dir = tempfile::Builder::new()
        .prefix("mewld-demo-")
        .tempdir()
        .wrap_err("cannot make a temporary directory for the demo")?;
    let log_file = log_file.unwrap_or_else(|| dir.path().join(CONSOLE_LOG));
    let (log, _flush_log) = logging::init_console(&log_file, format);
    let setup = demo::setup(dir.path())?;
    let life = Lifecycle::default();
    let hello = Hello::of_this_process(true, setup.config.path.clone());
    let control = Control::bind(&setup.config.control_socket).map_err(|e| eyre!(e))?;
    let control = control.open(hello, life.clone());
    let listeners = Listeners::bind(&setup.config, life.phase().clone()).await?;
    let launched = host::start(setup, control, listeners, &life).await?;
    run_embedded(launched, log).await
}

/// The console with the engine in this process, attachable on its control
/// socket (unless a stop abandoned the start: its exit status).
async fn run_embedded(launched: Launched, log: logging::ConsoleLog) -> Result<u8> {
    let host = match launched {
        Launched::Running(host) => host,
        Launched::Stopped(exit) => return Ok(exit_status(exit)),
    };
    let face = tui::Face::Embedded {
        engine: Box::new(host.engine),
        transport_rx: host.transport_rx,
    };
    let code = tui::run(face, host.handle, log).await;
    host.leaving.run().await;
    code
}

async fn run_attach(socket: PathBuf, log: ConsoleLogging) -> Result<u8> {
    let (log, _flush_log) = log;
    let attached = client::attach(&socket, Client::Console)
        .await
        .map_err(|e| eyre!(e))?;
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
    // Before anything: a signal during start-up abandons it cleanly.
    let life = Lifecycle::default();
    let signals = daemon::stop_on_signals(life.clone())?;
    let host = match host::launch(config, socket, &fleet.host()?, Face::Daemon, &life).await? {
        Launched::Running(host) => host,
        Launched::Stopped(exit) => return Ok(exit_status(exit)),
    };
    systemd::start(host.handle.clone());
    let events = host.handle.events();
    let exit = daemon::run(host.engine, events, host.transport_rx, format, signals).await?;
    host.leaving.run().await;
    tracing::info!(code = exit.code(), "every cluster has stopped; exiting");
    Ok(exit_status(exit))
}

/// The process's exit status after `exit` (0 shutdown, 1 restartproc).
fn exit_status(exit: Exit) -> u8 {
    u8::try_from(exit.code()).unwrap_or(1)
}
