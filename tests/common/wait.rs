//! Waiting for a condition, with a deadline.

use std::thread;
use std::time::{Duration, Instant};

/// Generous: CI machines are small and busy.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Polls `check` until it returns `Some`, or panics with `what` after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, check: impl FnMut() -> Option<T>) -> T {
    match poll(deadline, check) {
        Some(v) => v,
        None => panic!("timed out after {deadline:?} waiting for: {what}"),
    }
}

/// As [`wait_for`], for a condition on a figure: `check` returns what it
/// saw while the condition does not hold, and a timeout shows the last.
pub fn wait_for_seen<T, S: std::fmt::Debug>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Result<T, S>,
) -> T {
    let mut seen = None;
    let found = poll(deadline, || match check() {
        Ok(v) => Some(v),
        Err(s) => {
            seen = Some(s);
            None
        }
    });
    match found {
        Some(v) => v,
        None => panic!("timed out after {deadline:?} waiting for: {what}; last saw: {seen:?}"),
    }
}

/// `check`'s first `Some`, polled until `deadline` has passed.
fn poll<T>(deadline: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if start.elapsed() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
