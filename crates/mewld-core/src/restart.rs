//! Crash-loop policy: when to restart a cluster that exited unasked, and
//! when to give up on it. Pure, so the schedule is tested without waiting.

use std::time::Duration;

use crate::config::RestartPolicy;

/// What to do after an unasked exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Restart after this long.
    RestartIn(Duration),
    /// Too many quick failures in a row: leave it stopped.
    GiveUp,
}

/// Decides for a cluster that ran for `ran_for` and had `quick_failures`
/// quick failures in a row before this exit. Returns the verdict and the
/// new count of quick failures.
pub fn after_exit(
    policy: &RestartPolicy,
    ran_for: Duration,
    quick_failures: u32,
) -> (Verdict, u32) {
    if ran_for >= policy.stable_after {
        // It ran well for a while: this crash starts a fresh count.
        return (Verdict::RestartIn(policy.backoff_base), 0);
    }
    let failures = quick_failures.saturating_add(1);
    if policy.max_failures > 0 && failures >= policy.max_failures {
        return (Verdict::GiveUp, failures);
    }
    let factor = 2u32.saturating_pow(failures - 1);
    let delay = policy
        .backoff_base
        .saturating_mul(factor)
        .min(policy.backoff_max);
    (Verdict::RestartIn(delay), failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_failures: u32) -> RestartPolicy {
        RestartPolicy {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
            max_failures,
            stable_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn quick_failures_back_off_then_give_up() {
        let p = policy(6);
        let quick = Duration::from_secs(1);
        let mut n = 0;
        let mut delays = Vec::new();
        loop {
            let (v, next) = after_exit(&p, quick, n);
            n = next;
            match v {
                Verdict::RestartIn(d) => delays.push(d.as_secs()),
                Verdict::GiveUp => break,
            }
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 10]);
        assert_eq!(n, 6);
    }

    #[test]
    fn a_stable_run_resets_the_count() {
        let (v, n) = after_exit(&policy(3), Duration::from_secs(61), 2);
        assert_eq!(v, Verdict::RestartIn(Duration::from_secs(1)));
        assert_eq!(n, 0);
    }

    #[test]
    fn zero_max_failures_never_gives_up() {
        let (v, _) = after_exit(&policy(0), Duration::ZERO, 1000);
        assert_eq!(v, Verdict::RestartIn(Duration::from_secs(10)));
    }
}
