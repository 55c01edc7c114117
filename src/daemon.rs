//! The headless face (`mewld --daemon`): the engine with no screen, for
//! systemd. Cluster output goes to stdout with a `[cluster <id> <name>]`
//! prefix; the manager's own log goes to stderr. Neither ever holds up the
//! engine: both go through lossy queues (see `logging`).

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::engine::Engine;
use crate::logging::{LogFormat, LossyLines};
use crate::phase::{Lifecycle, Stop};
use crate::transport::TransportEvent;
use mewld_core::cluster_map::ClusterId;
use mewld_core::model::Stream;
use mewld_core::model::{Event, Exit, Operation, Via};

/// SIGINT, SIGTERM and SIGHUP, from the moment this is called: before
/// the engine runs they abandon the start (`host::launch` says so and
/// exits 0); once it runs they shut it down cleanly. SIGHUP too, as the
/// console treats a hang-up: its default would kill the manager at once
/// and leave the clusters to be SIGKILLed.
pub fn stop_on_signals(life: Lifecycle) -> std::io::Result<JoinHandle<()>> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = sigint.recv() => "SIGINT",
                _ = sigterm.recv() => "SIGTERM",
                _ = sighup.recv() => "SIGHUP",
            };
            let stop = Stop {
                exit: Exit::Shutdown,
                by: name.into(),
            };
            let Err(engine) = life.abandon(stop) else {
                continue;
            };
            tracing::info!(signal = name, "stopping every cluster, then exiting");
            if let Err(e) = engine.request(Operation::Shutdown, Via::Daemon).await {
                tracing::info!(reason = %e, "already shutting down");
            }
        }
    }))
}

/// Runs the engine until it exits, printing the clusters' output from
/// `events`; `signals` (from [`stop_on_signals`]) are stopped then.
pub async fn run(
    engine: Engine,
    mut events: broadcast::Receiver<Event>,
    transport_rx: mpsc::Receiver<TransportEvent>,
    format: LogFormat,
    signals: JoinHandle<()>,
) -> std::io::Result<Exit> {
    // A stalled or closed stdout costs lines (counted and reported in the
    // log), never the engine's time.
    let stdout = LossyLines::start("cluster output lines on stdout", std::io::stdout());
    let out = stdout.clone();
    let printer = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(Event::Output {
                    id,
                    name,
                    stream,
                    line,
                }) => out.send(output_line(format, id, &name, stream, &line)),
                Ok(Event::ActionLog(_) | Event::ClusterLog(_)) => {}
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
    let exit = engine.run(transport_rx).await;
    // The printer finishes the lines already sent, and ends once the last
    // handle on the engine is dropped, or is given up on.
    signals.abort();
    let _ = signals.await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), printer).await;
    let flush = move || stdout.flush_within(std::time::Duration::from_secs(2));
    let _ = tokio::task::spawn_blocking(flush).await;
    Ok(exit)
}

/// One line a cluster printed, as stdout gets it: `[cluster <id> <name>]
/// line`, or a JSON object with the time, the cluster and the stream.
fn output_line(
    format: LogFormat,
    id: ClusterId,
    name: &str,
    stream: Stream,
    line: &str,
) -> Vec<u8> {
    let mut text = match format {
        LogFormat::Text => format!("[cluster {id} {name}] {line}"),
        LogFormat::Json => {
            let now = time::OffsetDateTime::now_utc();
            let timestamp = now
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            serde_json::json!({
                "timestamp": timestamp,
                "cluster": id,
                "name": name,
                "stream": stream,
                "line": line,
            })
            .to_string()
        }
    };
    text.push('\n');
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lines_in_both_formats() {
        let text = output_line(LogFormat::Text, 2, "Eevee", Stream::Stderr, "hi \"there\"");
        assert_eq!(text, b"[cluster 2 Eevee] hi \"there\"\n");
        let json = output_line(LogFormat::Json, 2, "Eevee", Stream::Stderr, "hi \"there\"");
        let v: serde_json::Value = serde_json::from_slice(&json).expect("one JSON object");
        assert_eq!(v["cluster"], 2);
        assert_eq!(v["name"], "Eevee");
        assert_eq!(v["stream"], "stderr");
        assert_eq!(v["line"], "hi \"there\"");
        assert!(
            v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{v}"
        );
    }
}
