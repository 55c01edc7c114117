//! systemd `Type=notify` for `mewld --daemon` (contrib/mewld.service):
//! `READY=1` once every cluster has launched (or the launch moved past
//! every one), `STATUS=` with the header's summary, `WATCHDOG=1` while the
//! engine's loop answers, `STOPPING=1` when a shutdown begins. Without
//! `NOTIFY_SOCKET` nothing is sent. Fed from the engine's snapshots, like
//! any face.
//!
//! Sent on a non-blocking socket, never `sd_notify::notify`: its send
//! blocks while the socket's queue is full, and a socket nobody reads would
//! then hold a thread for ever, and the process's exit with it.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::engine::{next_snapshot, EngineHandle};

/// `STATUS=` goes out at most this often (the latest one wins).
const STATUS_EVERY: Duration = Duration::from_millis(500);

/// Starts notifying systemd, if it asked (`NOTIFY_SOCKET` is set).
pub fn start(handle: EngineHandle) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let notifier = Notifier { socket, dropped: 0 };
    tokio::spawn(notify_loop(handle, notifier, sd_notify::watchdog_enabled()));
}

async fn notify_loop(handle: EngineHandle, mut notifier: Notifier, watchdog: Option<Duration>) {
    let mut snapshots = handle.snapshot();
    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    // systemd wants a ping at least every WatchdogSec: send at half of it.
    let half = watchdog.map_or(Duration::from_secs(86_400), |d| {
        (d / 2).max(Duration::from_millis(10))
    });
    let mut watchdog_tick = tokio::time::interval(half);
    let (mut ready, mut stopping) = (false, false);
    // READY=1 and STOPPING=1 until systemd has taken them (at most both),
    // and the status it has.
    let mut owed: Vec<NotifyState<'static>> = Vec::new();
    let (mut wanted, mut sent) = (String::new(), String::new());
    loop {
        tokio::select! {
            s = next_snapshot(&mut snapshots) => {
                let Some(s) = s else { return notifier.finish() };
                wanted = s.summary();
                if s.fully_up && !ready {
                    ready = true;
                    owed.push(NotifyState::Ready);
                }
                if s.exiting.is_some() && !stopping {
                    stopping = true;
                    owed.push(NotifyState::Stopping);
                }
                if !owed.is_empty() && notifier.send(&owed, &wanted) {
                    owed.clear();
                    sent.clone_from(&wanted);
                }
            }
            // What was dropped is sent again, with the latest status.
            _ = status_tick.tick() => {
                if (wanted != sent || !owed.is_empty()) && notifier.send(&owed, &wanted) {
                    owed.clear();
                    sent.clone_from(&wanted);
                }
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                // A wedged engine stops the pings, and systemd restarts us.
                if tokio::time::timeout(half, handle.alive()).await == Ok(true) {
                    notifier.send(&[NotifyState::Watchdog], "");
                } else {
                    tracing::error!("the engine did not answer in time; no watchdog ping sent");
                }
            }
        }
    }
}

/// systemd's notification socket, and what could not be sent to it.
struct Notifier {
    socket: OsString,
    /// Notifications dropped since the last one that went through.
    dropped: u64,
}

impl Notifier {
    /// Sends `states` and, if not empty, `status`, in one datagram, without
    /// ever waiting: one the socket does not take at once (its queue is
    /// full: nobody reads it) is dropped and counted. The first drop is
    /// logged, and so is the next notification that goes through. True if
    /// systemd has it.
    fn send(&mut self, states: &[NotifyState], status: &str) -> bool {
        let mut message = String::new();
        for state in states {
            let _ = writeln!(message, "{state}");
        }
        if !status.is_empty() {
            let _ = writeln!(message, "{}", NotifyState::Status(status));
        }
        let sent = self.send_now(message.as_bytes());
        match &sent {
            Ok(()) if self.dropped > 0 => {
                tracing::info!(
                    dropped = std::mem::take(&mut self.dropped),
                    "systemd takes notifications again"
                );
            }
            Ok(()) => {}
            Err(e) => {
                self.dropped += 1;
                if self.dropped == 1 {
                    let full = e.kind() == std::io::ErrorKind::WouldBlock;
                    tracing::warn!(
                        error = %e,
                        socket = ?self.socket,
                        "could not notify systemd{}; dropping notifications until it takes \
                         them again",
                        if full { " (its socket is full: nobody reads it?)" } else { "" }
                    );
                }
            }
        }
        sent.is_ok()
    }

    fn send_now(&self, message: &[u8]) -> std::io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        socket.connect(&self.socket)?;
        if socket.send(message)? == message.len() {
            Ok(())
        } else {
            Err(std::io::ErrorKind::WriteZero.into())
        }
    }

    /// The engine is gone: says what never reached systemd.
    fn finish(self) {
        if self.dropped > 0 {
            tracing::warn!(dropped = self.dropped, "notifications systemd never took");
        }
    }
}
