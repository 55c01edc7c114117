//! The management console: a terminal face on the same engine as the
//! daemon. The loop turns keys, snapshots, engine events and ticks into
//! [`Msg`]s for [`App`], carries out the [`Effect`]s, and redraws when
//! something changed. It never waits on I/O: requests to the engine run in
//! tasks of their own and come back as messages.

pub mod app;
pub mod clusters;
pub mod keys;
pub mod lines;
pub mod view;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crossterm::event::{Event as TermEvent, EventStream};
use futures_util::StreamExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc};

use crate::control::client::LinkStatus;
use crate::engine::{Engine, EngineHandle, Event, Operation, Via};
use crate::logging::ConsoleLog;
use crate::transport::TransportEvent;
use app::{App, Effect, FaceView, Msg};

/// Redraws are coalesced to at most one per this long.
const FRAME: Duration = Duration::from_millis(50);
/// Verdicts and history reads waiting for the console loop.
const MESSAGES: usize = 64;
/// Clocks and countdowns move on this tick even when nothing else happens.
const TICK: Duration = Duration::from_secs(1);

/// Colour unless `NO_COLOR` is set to something (https://no-color.org).
pub fn color_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

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
    },
}

/// Runs the console: embedded, until the engine has stopped every cluster
/// (returns its exit code); attached, until the operator detaches (0).
pub async fn run(face: Face, handle: EngineHandle, log: ConsoleLog) -> color_eyre::Result<u8> {
    let mut events = handle.events();
    let mut snapshots = handle.snapshot();
    let mut app = App::new(color_wanted(), SystemTime::now());
    app.log_file = Some(log.path.clone());
    let (mut engine_task, mut link) = match face {
        Face::Embedded {
            engine,
            transport_rx,
        } => (Some(tokio::spawn((*engine).run(transport_rx))), None),
        Face::Attached { socket, status } => {
            let socket = socket.display().to_string();
            app.face = FaceView::Attached { socket, lost: None };
            (None, Some(status))
        }
    };
    // A log file that cannot be written is said once, in the message line;
    // the screen is the console's, never the log's.
    let mut log_problem_shown = false;
    // Verdicts and the history, from tasks that may wait: bounded.
    let (msg_tx, mut msg_rx) = mpsc::channel::<Msg>(MESSAGES);
    load_history(&handle, &msg_tx);

    // A closed tmux window (SIGHUP) or a service stop (SIGTERM) stops the
    // clusters cleanly, as quitting does (an attached console just ends).
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;

    // ratatui::init puts the terminal back on panic too, before color-eyre's report.
    let mut terminal = ratatui::init();
    let mut keys = EventStream::new();
    let mut frame = tokio::time::interval(FRAME);
    let mut tick = tokio::time::interval(TICK);
    let mut dirty = true;
    let mut quitting = false;
    // The engine's end (embedded), or none when an attached console detaches.
    let ended = loop {
        tokio::select! {
            Some(result) = async { Some(engine_task.as_mut()?.await) }, if engine_task.is_some() => {
                break Some(result);
            }
            Some(status) = async { link.as_mut()?.recv().await }, if link.is_some() => {
                if matches!(status, LinkStatus::Connected(_)) {
                    load_history(&handle, &msg_tx);
                }
                app.update(Msg::Link(match status {
                    LinkStatus::Connected(_) => None,
                    LinkStatus::Lost(why) => Some(why),
                }));
                dirty = true;
            }
            Some(Ok(ev)) = keys.next() => {
                if let TermEvent::Key(key) = ev {
                    if let Some(effect) = app.update(Msg::Key(key)) {
                        if effect == Effect::Quit && link.is_some() {
                            break None;
                        }
                        carry_out(effect, &mut app, &mut quitting, &handle, &msg_tx);
                    }
                }
                dirty = true;
            }
            _ = hangup.recv() => {
                if link.is_some() { break None; }
                stop_on_signal("SIGHUP", &handle, &msg_tx);
            }
            _ = terminate.recv() => {
                if link.is_some() { break None; }
                stop_on_signal("SIGTERM", &handle, &msg_tx);
            }
            Ok(()) = snapshots.changed() => {
                let snapshot = snapshots.borrow_and_update().clone();
                app.update(Msg::Snapshot(snapshot));
                dirty = true;
            }
            event = events.recv() => {
                on_engine_event(&mut app, event);
                dirty = true;
            }
            Some(msg) = msg_rx.recv() => {
                app.update(msg);
                dirty = true;
            }
            _ = tick.tick() => {
                app.update(Msg::Tick(SystemTime::now()));
                if let Some(problem) = log.problem().filter(|_| !log_problem_shown) {
                    app.say(problem, true);
                    log_problem_shown = true;
                }
                dirty = true;
            }
            _ = frame.tick() => {
                if dirty {
                    dirty = false;
                    if let Err(e) = terminal.draw(|f| view::draw(f, &app)) {
                        tracing::error!(error = %e, "drawing failed");
                    }
                }
            }
        }
    };
    ratatui::restore();
    match ended {
        Some(exit) => Ok(u8::try_from(exit?.code()).unwrap_or(1)),
        None => Ok(0),
    }
}

/// Reads the stored action log in a task of its own; it arrives as a message.
fn load_history(handle: &EngineHandle, tx: &mpsc::Sender<Msg>) {
    let handle = handle.clone();
    let tx = tx.clone();
    tokio::spawn(async move {
        let msg = match handle.history().await {
            Ok(entries) => Msg::History(entries),
            Err(e) => Msg::Outcome(Err(format!("could not read the action log: {e}"))),
        };
        let _ = tx.send(msg).await;
    });
}

fn on_engine_event(app: &mut App, event: Result<Event, broadcast::error::RecvError>) {
    match event {
        Ok(event) => {
            app.update(Msg::Engine(event));
        }
        Err(broadcast::error::RecvError::Lagged(n)) => {
            tracing::warn!(skipped = n, "the console fell behind the engine's events");
        }
        Err(broadcast::error::RecvError::Closed) => {}
    }
}

/// Does what a key asked for. Quitting stops every cluster first, once.
fn carry_out(
    effect: Effect,
    app: &mut App,
    quitting: &mut bool,
    handle: &EngineHandle,
    tx: &mpsc::Sender<Msg>,
) {
    match effect {
        Effect::Request(op) => request(handle, op, tx),
        Effect::Quit if !*quitting => {
            *quitting = true;
            app.say("stopping every cluster, then quitting…", false);
            request(handle, Operation::Shutdown, tx);
        }
        Effect::Quit => {}
    }
}

fn stop_on_signal(name: &str, handle: &EngineHandle, tx: &mpsc::Sender<Msg>) {
    tracing::info!("{name}: stopping every cluster, then exiting");
    request(handle, Operation::Shutdown, tx);
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

fn describe(op: Operation) -> String {
    match op {
        Operation::Start(id) => format!("start of cluster {id}"),
        Operation::Stop(id) => format!("stop of cluster {id}"),
        Operation::Restart(id) => format!("restart of cluster {id}"),
        Operation::Diagnose(id) => format!("diagnostic of cluster {id}"),
        Operation::RollingRestart => "rolling restart".into(),
        Operation::Reshard => "reshard".into(),
        Operation::Shutdown => "shutdown".into(),
        Operation::RestartProcess => "process restart".into(),
    }
}
