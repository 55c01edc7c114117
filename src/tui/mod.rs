//! The management console: a terminal face on the same engine as the
//! daemon. The loop turns keys, snapshots, engine events and ticks into
//! [`Msg`]s for [`App`], carries out the [`Effect`]s, and redraws when
//! something changed. It never waits on I/O: requests to the engine run in
//! tasks of their own and come back as messages.

pub mod app;
pub mod clusters;
pub mod diagnostics;
pub mod keys;
pub mod lines;
pub mod pane;
pub mod view;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crossterm::event::{Event as TermEvent, EventStream};
use futures_util::StreamExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc};

use crate::control::client::LinkStatus;
use crate::engine::{Engine, EngineHandle};
use crate::logging::{color_wanted, ConsoleLog};
use crate::transport::TransportEvent;
use app::{App, Effect, FaceView, Msg};
use mewld_core::model::{Event, Operation, Via};

/// Redraws are coalesced to at most one per this long.
const FRAME: Duration = Duration::from_millis(50);
/// Verdicts and history reads waiting for the console loop.
const MESSAGES: usize = 64;
/// Clocks and countdowns move on this tick even when nothing else happens.
const TICK: Duration = Duration::from_secs(1);

/// Where the console's engine runs.
pub enum Face {
    /// In this process; the console runs it and quitting stops it.
    Embedded {
        engine: Box<Engine>,
        transport_rx: mpsc::Receiver<TransportEvent>,
    },
    /// In another process, reached over its control socket; quitting
    /// detaches.
    Attached {
        socket: PathBuf,
        status: mpsc::Receiver<LinkStatus>,
        /// Subscribed before the link started (see `control::client`).
        events: broadcast::Receiver<Event>,
    },
}

/// Runs the console: embedded, until the engine has stopped every cluster
/// (returns its exit code); attached, until the operator detaches (0).
pub async fn run(face: Face, handle: EngineHandle, log: ConsoleLog) -> color_eyre::Result<u8> {
    let mut snapshots = handle.snapshot();
    let (mut engine_task, mut link, mut events, face) = match face {
        Face::Embedded {
            engine,
            transport_rx,
        } => (
            Some(tokio::spawn((*engine).run(transport_rx))),
            None,
            handle.events(),
            FaceView::Embedded,
        ),
        Face::Attached {
            socket,
            status,
            events,
        } => {
            let socket = socket.display().to_string();
            let face = FaceView::Attached { socket, lost: None };
            (None, Some(status), events, face)
        }
    };
    // Verdicts and the history, from tasks that may wait: bounded.
    let (msg_tx, mut msg_rx) = mpsc::channel::<Msg>(MESSAGES);
    let mut console = Console::new(handle, log, face, msg_tx);
    console.load_history();

    // A closed tmux window (SIGHUP) or a service stop (SIGTERM) stops the
    // clusters cleanly, as quitting does (an attached console just ends).
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;

    // ratatui::init puts the terminal back on panic too, before color-eyre's report.
    let mut terminal = ratatui::init();
    let mut keys = EventStream::new();
    let mut frame = tokio::time::interval(FRAME);
    let mut tick = tokio::time::interval(TICK);
    // The engine's end (embedded), or none when an attached console detaches.
    let ended = loop {
        let flow = tokio::select! {
            Some(result) = async { Some(engine_task.as_mut()?.await) }, if engine_task.is_some() => {
                break Some(result);
            }
            Some(status) = async { link.as_mut()?.recv().await }, if link.is_some() => {
                console.on_link(status)
            }
            Some(Ok(ev)) = keys.next() => console.on_terminal(ev),
            _ = hangup.recv() => console.on_signal("SIGHUP"),
            _ = terminate.recv() => console.on_signal("SIGTERM"),
            Ok(()) = snapshots.changed() => {
                let snapshot = snapshots.borrow_and_update().clone();
                console.update(Msg::Snapshot(snapshot))
            }
            event = events.recv() => console.on_engine_event(event),
            Some(msg) = msg_rx.recv() => console.update(msg),
            _ = tick.tick() => console.on_tick(),
            _ = frame.tick() => console.draw(&mut terminal),
        };
        if flow == Flow::Detach {
            break None;
        }
    };
    ratatui::restore();
    // On stderr: the screen (stdout) was the console's.
    if let Some(why) = console.farewell {
        eprintln!("mewld attach: {why}; detached");
    }
    match ended {
        Some(exit) => Ok(u8::try_from(exit?.code()).unwrap_or(1)),
        None => Ok(0),
    }
}

/// Whether the loop goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    /// An attached console leaves; the engine runs on.
    Detach,
}

/// The console's state and what it needs to act, between loop turns.
struct Console {
    app: App,
    handle: EngineHandle,
    log: ConsoleLog,
    /// A log file that cannot be written is said once, in the message
    /// line; the screen is the console's, never the log's.
    log_problem_shown: bool,
    msg_tx: mpsc::Sender<Msg>,
    /// Something changed since the last frame.
    dirty: bool,
    /// A shutdown was asked by quitting (asked once).
    quitting: bool,
    /// Why an attached console left by itself, said once the screen is
    /// given back.
    farewell: Option<String>,
}

impl Console {
    fn new(
        handle: EngineHandle,
        log: ConsoleLog,
        face: FaceView,
        msg_tx: mpsc::Sender<Msg>,
    ) -> Self {
        let mut app = App::new(color_wanted(), SystemTime::now());
        app.log_file = log.path.clone();
        app.face = face;
        Console {
            app,
            handle,
            log,
            log_problem_shown: false,
            msg_tx,
            dirty: true,
            quitting: false,
            farewell: None,
        }
    }

    fn attached(&self) -> bool {
        matches!(self.app.face, FaceView::Attached { .. })
    }

    fn update(&mut self, msg: Msg) -> Flow {
        self.app.update(msg);
        self.dirty = true;
        Flow::Continue
    }

    /// Reads the stored action log in a task of its own; it arrives as a message.
    fn load_history(&self) {
        let handle = self.handle.clone();
        let tx = self.msg_tx.clone();
        tokio::spawn(async move {
            let msg = match handle.history().await {
                // Entries that are not JSON objects are not shown.
                Ok(entries) => Msg::History(
                    entries
                        .iter()
                        .filter_map(|e| serde_json::from_str(e).ok())
                        .collect(),
                ),
                Err(e) => Msg::Outcome(Err(format!("could not read the action log: {e}"))),
            };
            let _ = tx.send(msg).await;
        });
    }

    fn on_link(&mut self, status: LinkStatus) -> Flow {
        let lost = match status {
            LinkStatus::Connected(_) => {
                self.load_history();
                None
            }
            LinkStatus::Starting(phase) => return self.update(Msg::Starting(phase)),
            LinkStatus::Lost(why) => Some(why),
            LinkStatus::Ended(why) => {
                self.farewell = Some(why);
                return Flow::Detach;
            }
        };
        self.update(Msg::Link(lost))
    }

    /// A key does what the table says. Quitting stops every cluster first
    /// (once), or detaches an attached console.
    fn on_terminal(&mut self, ev: TermEvent) -> Flow {
        self.dirty = true;
        let TermEvent::Key(key) = ev else {
            return Flow::Continue;
        };
        match self.app.update(Msg::Key(key)) {
            Some(Effect::Request(op)) => request(&self.handle, op, &self.msg_tx),
            Some(Effect::Quit) if self.attached() => return Flow::Detach,
            Some(Effect::Quit) if !self.quitting => {
                self.quitting = true;
                self.app
                    .say("stopping every cluster, then quitting…", false);
                request(&self.handle, Operation::Shutdown, &self.msg_tx);
            }
            Some(Effect::Quit) | None => {}
        }
        Flow::Continue
    }

    fn on_signal(&mut self, name: &str) -> Flow {
        if self.attached() {
            return Flow::Detach;
        }
        tracing::info!("{name}: stopping every cluster, then exiting");
        request(&self.handle, Operation::Shutdown, &self.msg_tx);
        Flow::Continue
    }

    fn on_engine_event(&mut self, event: Result<Event, broadcast::error::RecvError>) -> Flow {
        match event {
            Ok(event) => return self.update(Msg::Engine(event)),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(skipped = n, "the console fell behind the engine's events");
            }
            Err(broadcast::error::RecvError::Closed) => {}
        }
        Flow::Continue
    }

    fn on_tick(&mut self) -> Flow {
        self.app.update(Msg::Tick(SystemTime::now()));
        if let Some(problem) = self.log.problem().filter(|_| !self.log_problem_shown) {
            self.app.say(problem, true);
            self.log_problem_shown = true;
        }
        self.dirty = true;
        Flow::Continue
    }

    fn draw(&mut self, terminal: &mut ratatui::DefaultTerminal) -> Flow {
        if std::mem::take(&mut self.dirty) {
            if let Err(e) = terminal.draw(|f| view::draw(f, &self.app)) {
                tracing::error!(error = %e, "drawing failed");
            }
        }
        Flow::Continue
    }
}

/// Sends `op` to the engine; the verdict comes back as a message.
fn request(handle: &EngineHandle, op: Operation, tx: &mpsc::Sender<Msg>) {
    let handle = handle.clone();
    let tx = tx.clone();
    tokio::spawn(async move {
        let outcome = handle
            .request(op, Via::Console)
            .await
            .map(|()| format!("{} requested", describe(op)))
            .map_err(|refused| format!("{} refused: {refused}", describe(op)));
        let _ = tx.send(Msg::Outcome(outcome)).await;
    });
}

/// The operation as the message line says it: "restart of cluster 3".
fn describe(op: Operation) -> String {
    // The operation's own name, but where a word reads better than the wire's.
    let what = match op {
        Operation::Diagnose(_) => "diagnostic",
        Operation::RollingRestart => "rolling restart",
        Operation::RestartProcess => "process restart",
        _ => op.name(),
    };
    match op.cluster() {
        Some(id) => format!("{what} of cluster {id}"),
        None => what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_line_names_each_operation() {
        let said: Vec<String> = [
            Operation::Start(3),
            Operation::Stop(3),
            Operation::Restart(3),
            Operation::Diagnose(3),
            Operation::RollingRestart,
            Operation::Reshard,
            Operation::Shutdown,
            Operation::RestartProcess,
        ]
        .into_iter()
        .map(describe)
        .collect();
        assert_eq!(
            said,
            [
                "start of cluster 3",
                "stop of cluster 3",
                "restart of cluster 3",
                "diagnostic of cluster 3",
                "rolling restart",
                "reshard",
                "shutdown",
                "process restart",
            ]
        );
    }
}
