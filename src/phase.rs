//! Where this manager is: a step of its start, then whether its engine
//! answers. One atomic cell, shared by start-up (which says each step as
//! it begins), the metrics' probe (which says whether the running engine
//! answers) and `/healthz` (which reads it): nobody waits to write or to
//! read it, so a health check is answered at once whatever start-up is
//! waiting for, and no lock is held across an await.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

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

    /// Still starting: the engine has never answered.
    pub fn is_start_up(self) -> bool {
        !matches!(self, Phase::Answers | Phase::DoesNotAnswer)
    }
}

/// The shared cell (cloning shares it).
#[derive(Debug, Clone)]
pub struct PhaseCell(Arc<AtomicU8>);

impl Default for PhaseCell {
    fn default() -> PhaseCell {
        PhaseCell(Arc::new(AtomicU8::new(Phase::Checking as u8)))
    }
}

impl PhaseCell {
    pub fn get(&self) -> Phase {
        decode(self.0.load(Ordering::Relaxed))
    }

    /// Start-up says which step begins. Ignored once the engine has
    /// answered: start-up never hides the engine's health.
    pub fn starting(&self, step: Phase) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                decode(now).is_start_up().then_some(step as u8)
            });
    }

    /// The probe's verdict. A failure during the start (the engine not
    /// yet run: its loop is driven once start-up is done) leaves the step
    /// shown; only an engine that has answered can stop answering.
    pub fn probed(&self, answers: bool) {
        if answers {
            self.0.store(Phase::Answers as u8, Ordering::Relaxed);
        } else {
            let _ = self.0.compare_exchange(
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
    fn every_phase_reads_back_and_start_up_says_starting() {
        let cell = PhaseCell::default();
        for phase in Phase::ALL {
            cell.0.store(phase as u8, Ordering::Relaxed);
            assert_eq!(cell.get(), phase);
            assert_eq!(
                phase.describe().starts_with("starting: "),
                phase.is_start_up(),
                "{phase:?}"
            );
        }
    }
}
