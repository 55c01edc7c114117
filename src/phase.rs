//! Where this manager is: a step of its start, then whether its engine
//! answers. One atomic cell, shared by start-up (which says each step as
//! it begins), the metrics' probe (which says whether the running engine
//! answers), `/healthz` and the control socket (which read it): nobody
//! waits to write or to read it, so a health check is answered at once
//! whatever start-up is waiting for, and no lock is held across an await.
//!
//! Beside it, the [`Lifecycle`]: whether the engine runs yet, and a stop
//! (a signal, `mewld shutdown`) that, asked before it does, abandons the
//! start.

use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{watch, Notify};

use crate::engine::EngineHandle;
use mewld_core::model::Exit;

/// A step of the start, or the engine's health once it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// The bot's files and command lines, before Discord is asked.
    Checking = 0,
    /// Get Gateway Bot, with its retries.
    AskingDiscord,
    /// Too few session starts left: waiting for Discord's reset.
    WaitingForReset,
    /// Claiming this manager's clusters in Redis (joining the fleet).
    Claiming,
    /// The engine is set up and starting; until it first answers.
    Launching,
    /// The engine's loop answers (the metrics' probe says so).
    Answers,
    /// The engine ran, and its loop has stopped answering.
    DoesNotAnswer,
}

impl Phase {
    const ALL: [Phase; 7] = [
        Phase::Checking,
        Phase::AskingDiscord,
        Phase::WaitingForReset,
        Phase::Claiming,
        Phase::Launching,
        Phase::Answers,
        Phase::DoesNotAnswer,
    ];

    /// What `/healthz` says in this phase.
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Checking => "starting: checking the config",
            Phase::AskingDiscord => "starting: asking Discord",
            Phase::WaitingForReset => "starting: waiting for the session budget's reset",
            Phase::Claiming => "starting: claiming the clusters in Redis",
            Phase::Launching => "starting: launching",
            Phase::Answers => "ok",
            Phase::DoesNotAnswer => "the engine does not answer",
        }
    }

    /// What the control socket says of a step of the start: "asking
    /// Discord" (what `/healthz` says, past its `starting: `).
    pub fn step(self) -> &'static str {
        let said = self.describe();
        said.strip_prefix("starting: ").unwrap_or(said)
    }

    /// Still starting: the engine has never answered.
    pub fn is_start_up(self) -> bool {
        !matches!(self, Phase::Answers | Phase::DoesNotAnswer)
    }
}

/// The shared cell (cloning shares it).
#[derive(Debug, Clone, Default)]
pub struct PhaseCell(Arc<Cell>);

#[derive(Debug)]
struct Cell {
    phase: AtomicU8,
    /// When Discord's session budget resets (Unix seconds), while start-up
    /// waits for it.
    reset_at: AtomicI64,
    /// Woken at each step of the start, for those who say it as it goes.
    changed: Notify,
}

impl Default for Cell {
    fn default() -> Cell {
        Cell {
            phase: AtomicU8::new(Phase::Checking as u8),
            reset_at: AtomicI64::new(0),
            changed: Notify::new(),
        }
    }
}

impl PhaseCell {
    pub fn get(&self) -> Phase {
        decode(self.0.phase.load(Ordering::Relaxed))
    }

    /// Start-up says which step begins. Ignored once the engine has
    /// answered: start-up never hides the engine's health.
    pub fn starting(&self, step: Phase) {
        let set = self
            .0
            .phase
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                decode(now).is_start_up().then_some(step as u8)
            });
        if set.is_ok() {
            self.0.changed.notify_waiters();
        }
    }

    /// Start-up waits for Discord's session budget to reset at `at`.
    pub fn waiting_for_reset(&self, at: SystemTime) {
        let secs = time::OffsetDateTime::from(at).unix_timestamp();
        self.0.reset_at.store(secs, Ordering::Relaxed);
        self.starting(Phase::WaitingForReset);
    }

    /// The step of the start as the control socket says it: [`Phase::step`],
    /// and when the wait for Discord's reset ends (an operator reads it
    /// hours before: `waiting for the session budget's reset (until
    /// 2026-12-04T03:25:20Z)`).
    pub fn step_said(&self) -> String {
        let phase = self.get();
        if phase != Phase::WaitingForReset {
            return phase.step().to_string();
        }
        let at = self.0.reset_at.load(Ordering::Relaxed);
        let until = time::OffsetDateTime::from_unix_timestamp(at)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
        match until {
            Some(until) => format!("{} (until {until})", phase.step()),
            None => phase.step().to_string(),
        }
    }

    /// Resolves at the next step of the start after this is called (not
    /// on the probe's verdicts): make it, then read the phase, and no step
    /// falls in between.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.0.changed.notified()
    }

    /// The probe's verdict. A failure during the start (the engine not
    /// yet run: its loop is driven once start-up is done) leaves the step
    /// shown; only an engine that has answered can stop answering.
    pub fn probed(&self, answers: bool) {
        if answers {
            self.0.phase.store(Phase::Answers as u8, Ordering::Relaxed);
        } else {
            let _ = self.0.phase.compare_exchange(
                Phase::Answers as u8,
                Phase::DoesNotAnswer as u8,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

/// The phase stored as `n` (only ever a phase's own number).
fn decode(n: u8) -> Phase {
    Phase::ALL
        .get(usize::from(n))
        .copied()
        .unwrap_or(Phase::Checking)
}

/// A stop asked of this manager: how the process is to exit, and who
/// asked (for the log).
#[derive(Debug, Clone)]
pub struct Stop {
    pub exit: Exit,
    pub by: String,
}

/// Whether this manager's engine runs yet.
#[derive(Clone)]
pub enum Window {
    /// Start-up: the engine has not run (no cluster has started).
    Starting,
    /// A stop was asked during start-up: the start is given up.
    Abandoned(Stop),
    Running(EngineHandle),
}

/// This manager as what answers from the first moment sees it (the
/// control socket, the daemon's signals): the phase of its start, whether
/// its engine runs yet, and a stop, which before the engine runs abandons
/// the start and afterwards is the engine's to carry out (cloning shares
/// it).
#[derive(Clone)]
pub struct Lifecycle {
    phase: PhaseCell,
    window: Arc<watch::Sender<Window>>,
}

impl Default for Lifecycle {
    fn default() -> Lifecycle {
        Lifecycle {
            phase: PhaseCell::default(),
            window: Arc::new(watch::Sender::new(Window::Starting)),
        }
    }
}

impl Lifecycle {
    pub fn phase(&self) -> &PhaseCell {
        &self.phase
    }

    /// The window now, and news of it.
    pub fn window(&self) -> watch::Receiver<Window> {
        self.window.subscribe()
    }

    /// A stop: during start-up it abandons the start (`Ok`; asked twice,
    /// the first says how to exit); once the engine runs, `Err` with the
    /// engine, for the caller to ask it.
    pub fn abandon(&self, stop: Stop) -> Result<(), EngineHandle> {
        let mut running = None;
        self.window.send_if_modified(|window| match window {
            Window::Starting => {
                *window = Window::Abandoned(stop);
                true
            }
            Window::Abandoned(_) => false,
            Window::Running(engine) => {
                running = Some(engine.clone());
                false
            }
        });
        running.map_or(Ok(()), Err)
    }

    /// The engine is about to run, unless a stop came first (`Err`, that
    /// stop): decided in one step with [`Lifecycle::abandon`], so a stop is
    /// either the start's or the engine's, never lost in between.
    pub fn runs(&self, engine: EngineHandle) -> Result<(), Stop> {
        let mut abandoned = None;
        self.window.send_if_modified(|window| match window {
            Window::Abandoned(stop) => {
                abandoned = Some(stop.clone());
                false
            }
            _ => {
                *window = Window::Running(engine);
                true
            }
        });
        abandoned.map_or(Ok(()), Err)
    }

    /// Resolves once a stop has abandoned the start.
    pub async fn abandoned(&self) -> Stop {
        let mut window = self.window();
        loop {
            if let Window::Abandoned(stop) = &*window.borrow_and_update() {
                return stop.clone();
            }
            // `self` holds the sender: it cannot close while we wait.
            let _ = window.changed().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_up_steps_until_the_engine_answers_then_only_its_health() {
        let cell = PhaseCell::default();
        assert_eq!(cell.get(), Phase::Checking);
        cell.starting(Phase::AskingDiscord);
        assert_eq!(cell.get(), Phase::AskingDiscord);
        // The engine not run yet: a probe that times out changes nothing.
        cell.probed(false);
        assert_eq!(cell.get(), Phase::AskingDiscord);
        cell.starting(Phase::Launching);
        cell.probed(true);
        assert_eq!(cell.get(), Phase::Answers);
        cell.starting(Phase::Claiming);
        assert_eq!(cell.get(), Phase::Answers, "start-up cannot hide health");
        cell.probed(false);
        assert_eq!(cell.get(), Phase::DoesNotAnswer);
        cell.probed(true);
        assert_eq!(cell.get(), Phase::Answers);
    }

    #[test]
    fn the_wait_for_the_reset_says_when_it_ends() {
        let cell = PhaseCell::default();
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_354_720);
        cell.waiting_for_reset(at);
        assert_eq!(
            cell.step_said(),
            "waiting for the session budget's reset (until 2026-12-04T03:25:20Z)"
        );
        // Only that step says it.
        cell.starting(Phase::Claiming);
        assert_eq!(cell.step_said(), "claiming the clusters in Redis");
    }

    #[test]
    fn every_phase_reads_back_and_start_up_says_starting() {
        let cell = PhaseCell::default();
        for phase in Phase::ALL {
            cell.0.phase.store(phase as u8, Ordering::Relaxed);
            assert_eq!(cell.get(), phase);
            assert_eq!(
                phase.describe().starts_with("starting: "),
                phase.is_start_up(),
                "{phase:?}"
            );
        }
    }

    fn engine() -> EngineHandle {
        let (requests, _) = tokio::sync::mpsc::channel(1);
        let (events, _) = tokio::sync::broadcast::channel(1);
        let (_, snapshot) = watch::channel(Default::default());
        EngineHandle::remote(requests, events, snapshot)
    }

    fn stop(exit: Exit, by: &str) -> Stop {
        Stop {
            exit,
            by: by.into(),
        }
    }

    #[tokio::test]
    async fn a_stop_is_the_starts_or_the_engines_never_both() {
        let life = Lifecycle::default();
        assert!(life.abandon(stop(Exit::RestartProcess, "first")).is_ok());
        assert!(life.abandon(stop(Exit::Shutdown, "second")).is_ok());
        assert_eq!(
            life.abandoned().await.by,
            "first",
            "the first stop says how"
        );
        let refused = life.runs(engine());
        assert!(matches!(
            refused,
            Err(Stop {
                exit: Exit::RestartProcess,
                ..
            })
        ));

        let life = Lifecycle::default();
        assert!(life.runs(engine()).is_ok());
        assert!(
            life.abandon(stop(Exit::Shutdown, "SIGTERM")).is_err(),
            "the engine's"
        );
        assert!(matches!(*life.window().borrow(), Window::Running(_)));
    }

    #[tokio::test]
    async fn a_step_of_the_start_wakes_who_waits_for_it() {
        let cell = PhaseCell::default();
        let changed = cell.changed();
        cell.starting(Phase::WaitingForReset);
        tokio::time::timeout(std::time::Duration::from_secs(5), changed)
            .await
            .expect("woken");
        assert_eq!(cell.get().step(), "waiting for the session budget's reset");
    }
}
