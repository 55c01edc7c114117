//! The headless face (`mewld --daemon`): the engine with no screen, for
//! systemd. Cluster output goes to stdout with a `[cluster <id> <name>]`
//! prefix; the manager's own log goes to stderr. Neither ever holds up the
//! engine: both go through lossy queues (see `logging`).

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc};

use crate::engine::{Engine, EngineHandle, Event, Exit, Operation, Via};
use crate::logging::LossyLines;
use crate::transport::TransportEvent;

/// Runs the engine until it exits; SIGINT, SIGTERM and SIGHUP shut it down
/// cleanly. SIGHUP too, as the console treats a hang-up: its default would
/// kill the manager at once and leave the clusters to be SIGKILLed.
pub async fn run(
    engine: Engine,
    handle: EngineHandle,
    transport_rx: mpsc::Receiver<TransportEvent>,
) -> std::io::Result<Exit> {
    let mut events = handle.events();
    // A stalled or closed stdout costs lines (counted and reported in the
    // log), never the engine's time.
    let stdout = LossyLines::start("cluster output lines on stdout", std::io::stdout());
    let out = stdout.clone();
    let printer = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(Event::Output { id, name, line, .. }) => {
                    out.send(format!("[cluster {id} {name}] {line}\n").into_bytes());
                }
                Ok(Event::ActionLog(_)) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        lines = n,
                        "output came faster than it could be printed; skipped some"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let signals = tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = sigint.recv() => "SIGINT",
                _ = sigterm.recv() => "SIGTERM",
                _ = sighup.recv() => "SIGHUP",
            };
            tracing::info!(signal = name, "stopping every cluster, then exiting");
            if let Err(e) = handle.request(Operation::Shutdown, Via::Daemon).await {
                tracing::info!(reason = %e, "already shutting down");
            }
        }
    });
    let exit = engine.run(transport_rx).await;
    // Dropping the last handle closes the event stream, so the printer
    // finishes the lines already sent and ends.
    signals.abort();
    let _ = signals.await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), printer).await;
    let flush = move || stdout.flush_within(std::time::Duration::from_secs(2));
    let _ = tokio::task::spawn_blocking(flush).await;
    Ok(exit)
}
