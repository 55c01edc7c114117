//! systemd `Type=notify` for `mewld --daemon` (contrib/mewld.service):
//! `READY=1` once every cluster has launched (or the launch moved past
//! every one), `STATUS=` with the header's summary, `WATCHDOG=1` while the
//! engine's loop answers, `STOPPING=1` when a shutdown begins. Without
//! `NOTIFY_SOCKET` nothing is sent. Fed from the engine's snapshots, like
//! any face.

use std::time::Duration;

use sd_notify::NotifyState;

use crate::engine::state::{ClusterState, Snapshot};
use crate::engine::{next_snapshot, EngineHandle};

/// `STATUS=` goes out at most this often (the latest one wins).
const STATUS_EVERY: Duration = Duration::from_millis(500);

/// Starts notifying systemd, if it asked (`NOTIFY_SOCKET` is set).
pub fn start(handle: EngineHandle) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    tokio::spawn(notify_loop(handle, sd_notify::watchdog_enabled()));
}

async fn notify_loop(handle: EngineHandle, watchdog: Option<Duration>) {
    let mut snapshots = handle.snapshot();
    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    // systemd wants a ping at least every WatchdogSec: send at half of it.
    let half = watchdog.map_or(Duration::from_secs(86_400), |d| {
        (d / 2).max(Duration::from_millis(10))
    });
    let mut watchdog_tick = tokio::time::interval(half);
    let (mut ready, mut stopping) = (false, false);
    let (mut wanted, mut sent) = (String::new(), String::new());
    loop {
        tokio::select! {
            s = next_snapshot(&mut snapshots) => {
                let Some(s) = s else { return };
                wanted = summary(&s);
                if s.fully_up && !ready {
                    ready = true;
                    send(vec![NotifyState::Ready], &wanted).await;
                    sent.clone_from(&wanted);
                }
                if s.exiting && !stopping {
                    stopping = true;
                    send(vec![NotifyState::Stopping], &wanted).await;
                    sent.clone_from(&wanted);
                }
            }
            _ = status_tick.tick() => {
                if wanted != sent {
                    send(Vec::new(), &wanted).await;
                    sent.clone_from(&wanted);
                }
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                // A wedged engine stops the pings, and systemd restarts us.
                if tokio::time::timeout(half, handle.alive()).await == Ok(true) {
                    send(vec![NotifyState::Watchdog], "").await;
                } else {
                    tracing::error!("the engine did not answer in time; no watchdog ping sent");
                }
            }
        }
    }
}

/// Sends `states` and, if not empty, `status`, in one datagram. The send
/// is a blocking call, so it runs off the async threads.
async fn send(states: Vec<NotifyState<'static>>, status: &str) {
    let status = status.to_string();
    let sent = tokio::task::spawn_blocking(move || {
        let mut all = states;
        if !status.is_empty() {
            all.push(NotifyState::Status(&status));
        }
        sd_notify::notify(&all)
    })
    .await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not notify systemd"),
        Err(e) => tracing::warn!(error = %e, "could not notify systemd"),
    }
}

/// The header's summary in a line: what systemctl status shows.
pub fn summary(s: &Snapshot) -> String {
    let total = s.clusters.len();
    let count = |state: ClusterState| s.clusters.iter().filter(|c| c.state == state).count();
    let running = count(ClusterState::Running);
    let mut text = if s.exiting {
        format!("stopping every cluster ({running}/{total} still running)")
    } else if let Some(r) = &s.rolling {
        format!(
            "rolling restart {}/{}; {running}/{total} clusters running",
            r.done, r.total
        )
    } else if s.resharding {
        format!("resharding; {running}/{total} clusters running")
    } else if s.fully_up {
        format!("{running}/{total} clusters running, fully up")
    } else {
        let started = total - count(ClusterState::Pending);
        format!("launching: {started}/{total} clusters started, {running} running")
    };
    for (state, word) in [
        (ClusterState::Crashed, "crashed"),
        (ClusterState::Failed, "failed"),
        (ClusterState::Stopped, "stopped"),
    ] {
        let n = count(state);
        if n > 0 {
            text.push_str(&format!(", {n} {word}"));
        }
    }
    if !s.transport_connected && !s.exiting {
        text.push_str("; IPC (Redis) down, retrying");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_map;
    use crate::engine::state::ClusterView;

    fn snapshot(states: &[ClusterState]) -> Snapshot {
        let clusters = cluster_map::build(states.len() as u32, 1, &[]);
        Snapshot {
            clusters: clusters
                .into_iter()
                .zip(states)
                .map(|(spec, state)| ClusterView {
                    state: *state,
                    ..ClusterView::lost(&spec)
                })
                .collect(),
            transport_connected: true,
            ..Snapshot::default()
        }
    }

    #[test]
    fn the_summary_says_where_the_bot_is() {
        use ClusterState::*;
        let mut s = snapshot(&[Running, Starting, Pending]);
        assert_eq!(summary(&s), "launching: 2/3 clusters started, 1 running");
        s = snapshot(&[Running, Running, Crashed]);
        s.fully_up = true;
        assert_eq!(summary(&s), "2/3 clusters running, fully up, 1 crashed");
        s.transport_connected = false;
        assert_eq!(
            summary(&s),
            "2/3 clusters running, fully up, 1 crashed; IPC (Redis) down, retrying"
        );
        s.exiting = true;
        assert_eq!(
            summary(&s),
            "stopping every cluster (2/3 still running), 1 crashed"
        );
    }
}
