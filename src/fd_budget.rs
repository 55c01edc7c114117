//! One process-wide budget of file descriptors for connections from
//! outside (the metrics and identify-queue servers, attached consoles,
//! socket clients with `ipc: unix`), so that no flood of connections takes
//! the descriptors the manager needs itself: a cluster start takes pipes,
//! a running cluster holds its output pipes (and with `ipc: unix` a
//! socket), and Redis needs its connections. The budget is the open-file
//! limit (raised to the hard limit first: [`raise_open_file_limit`]) less a
//! reserve of [`RESERVE_BASE`] plus [`RESERVE_PER_CLUSTER`] per cluster,
//! and never less than a quarter of the limit.
//!
//! Every accept loop takes a permit *before* it accepts, through its
//! [`Gate`], and holds it for the connection's life: when the budget is
//! spent the loop stops accepting, and new connections wait in the
//! kernel's backlog instead of in the manager's descriptor table.

use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Kept for the manager itself: Redis connections, listeners, its log,
/// the runtime, the guardian, and the pipes of a cluster being spawned.
const RESERVE_BASE: u64 = 64;
/// Kept per cluster: its two output pipes, its socket with `ipc: unix`,
/// and room to spare.
const RESERVE_PER_CLUSTER: u64 = 4;
/// A limit that leaves less than this beyond the reserve is warned about.
const SMALL_BUDGET: u64 = 64;
/// A listener that had to wait for a permit says it accepts again once it
/// has gone this long without waiting: a flood that keeps the budget spent
/// (released by closed connections, spent again at once) is one warning,
/// not one per connection.
const QUIET: Duration = Duration::from_secs(10);

/// A connection's share of the budget, held for the connection's life.
pub type Permit = OwnedSemaphorePermit;

struct Budget {
    permits: Arc<Semaphore>,
    /// Permits the budget has now, taken or not.
    size: Mutex<usize>,
}

/// Sized for no cluster until the engine says how many it runs: a
/// listener may start first (the socket transport does).
static BUDGET: LazyLock<Budget> = LazyLock::new(|| {
    let size = Sizing::now(0).budget();
    Budget {
        permits: Arc::new(Semaphore::new(size)),
        size: Mutex::new(size),
    }
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sizing {
    /// The open-file soft limit.
    limit: u64,
    reserve: u64,
}

impl Sizing {
    fn new(limit: u64, clusters: usize) -> Sizing {
        let per_cluster = RESERVE_PER_CLUSTER.saturating_mul(clusters as u64);
        Sizing {
            limit,
            reserve: RESERVE_BASE.saturating_add(per_cluster),
        }
    }

    /// For `clusters` clusters under this process's limit now (1024, the
    /// usual default, if it cannot be read).
    fn now(clusters: usize) -> Sizing {
        let limit = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
        Sizing::new(limit, clusters)
    }

    /// The limit less the reserve, but never less than a quarter of the
    /// limit: under a limit too low for the reserve (warned about), the
    /// clusters' own sockets, consoles and scrapes must still get in.
    fn budget(self) -> usize {
        let budget = self.limit.saturating_sub(self.reserve).max(self.limit / 4);
        usize::try_from(budget)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS)
    }

    /// The limit leaves little or nothing beyond the reserve.
    fn too_low(self) -> bool {
        self.limit.saturating_sub(self.reserve) < SMALL_BUDGET
    }
}

/// The open-file limit mewld was started with, once it raised its own.
static OPEN_FILES: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();

/// Raises this process's open-file limit to the hard limit (as Go programs
/// do), for servers that hold one connection per waiting client; clusters
/// started afterwards still get the original limit.
pub fn raise_open_file_limit() {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft < hard && OPEN_FILES.set((soft, hard)).is_ok() {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-file limit"),
            Err(e) => tracing::warn!(error = %e, soft, hard, "could not raise the open-file limit"),
        }
    }
}

/// The open-file limit mewld was started with (soft, hard), if it raised
/// its own: what a cluster is started with.
pub fn original_open_files() -> Option<(u64, u64)> {
    OPEN_FILES.get().copied()
}

/// Sizes the budget for the `clusters` clusters this process runs: called
/// by the engine once it knows them, and again if a reshard adds some.
/// Warns when the limit leaves outside connections almost nothing.
pub fn reserve_for(clusters: usize) {
    raise_open_file_limit();
    let sizing = Sizing::now(clusters);
    let budget = sizing.budget();
    if sizing.too_low() {
        tracing::warn!(
            limit = sizing.limit,
            reserve = sizing.reserve,
            budget,
            clusters,
            "the open-file limit leaves almost nothing beyond the file descriptors kept for \
             the clusters and Redis: connections from outside (metrics, identify queue, \
             consoles, socket clients) get `budget`, and a flood of them may leave a crashed \
             cluster waiting for descriptors to restart. Raise the limit: LimitNOFILE= in the \
             systemd unit, or `ulimit -n` before starting mewld"
        );
    } else {
        tracing::info!(
            limit = sizing.limit,
            reserve = sizing.reserve,
            budget,
            "file descriptors for connections from outside"
        );
    }
    BUDGET.resize(budget);
}

impl Budget {
    fn resize(&self, size: usize) {
        let mut current = self.size.lock().unwrap_or_else(PoisonError::into_inner);
        if size >= *current {
            self.permits.add_permits(size - *current);
        } else {
            let shrink = *current - size;
            let forgotten = self.permits.forget_permits(shrink);
            if forgotten < shrink {
                // Connections hold the rest: take it back as they close.
                let permits = self.permits.clone();
                let rest = u32::try_from(shrink - forgotten).unwrap_or(u32::MAX);
                tokio::spawn(async move {
                    if let Ok(taken) = permits.acquire_many_owned(rest).await {
                        taken.forget();
                    }
                });
            }
        }
        *current = size;
    }
}

/// An accept loop's end of the budget: a permit before each accept, and a
/// warning when the listener stops accepting for want of one.
pub struct Gate {
    listener: &'static str,
    permits: Arc<Semaphore>,
    stall: Option<Stall>,
}

/// A time the listener had to wait for permits.
struct Stall {
    since: Instant,
    last_wait: Instant,
    waits: u64,
}

impl Gate {
    /// The gate of the listener named `listener` (as logged).
    pub fn new(listener: &'static str) -> Gate {
        Gate::on(listener, BUDGET.permits.clone())
    }

    fn on(listener: &'static str, permits: Arc<Semaphore>) -> Gate {
        Gate {
            listener,
            permits,
            stall: None,
        }
    }

    /// A permit for the next connection, once the budget has one. `None`
    /// only if the budget is gone, which it never is.
    pub async fn permit(&mut self) -> Option<Permit> {
        let listener = self.listener;
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            if let Some(stall) = self.stall.take_if(|s| s.last_wait.elapsed() >= QUIET) {
                tracing::info!(
                    listener,
                    waits = stall.waits,
                    stalled_secs = stall.since.elapsed().as_secs(),
                    "accepting connections again"
                );
            }
            return Some(permit);
        }
        let stall = self.stall.get_or_insert_with(|| {
            tracing::warn!(
                listener,
                "stopped accepting connections: the file descriptors for connections from \
                 outside are all in use (the rest are kept for the clusters and Redis); new \
                 connections wait in the kernel's backlog"
            );
            let now = Instant::now();
            Stall {
                since: now,
                last_wait: now,
                waits: 0,
            }
        });
        stall.waits += 1;
        let permit = self.permits.clone().acquire_owned().await.ok();
        if let Some(stall) = &mut self.stall {
            stall.last_wait = Instant::now();
        }
        permit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_grows_with_the_clusters_and_a_quarter_of_the_limit_always_stays() {
        let sizing = Sizing::new(4096, 100);
        assert_eq!(
            (sizing.budget(), sizing.too_low()),
            (4096 - 64 - 400, false)
        );
        // Too low for the reserve: warned about, and a quarter stays.
        let sizing = Sizing::new(1024, 300);
        assert_eq!((sizing.budget(), sizing.too_low()), (256, true));
        let sizing = Sizing::new(64, 2);
        assert_eq!((sizing.budget(), sizing.too_low()), (16, true));
        assert_eq!(Sizing::new(u64::MAX, 3).budget(), Semaphore::MAX_PERMITS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_gate_waits_while_the_budget_is_spent_and_counts_one_stall_per_flood() {
        let permits = Arc::new(Semaphore::new(2));
        let mut gate = Gate::on("test", permits.clone());
        let held = [gate.permit().await, gate.permit().await];
        assert!(gate.stall.is_none());
        let third = {
            let mut waiting = std::pin::pin!(gate.permit());
            assert!(futures_util::poll!(&mut waiting).is_pending());
            drop(held);
            waiting.await
        };
        assert!(third.is_some());
        // Permits come free and are spent again: still the same stall.
        let fourth = gate.permit().await;
        let fifth = {
            let mut waiting = std::pin::pin!(gate.permit());
            assert!(futures_util::poll!(&mut waiting).is_pending());
            drop((third, fourth));
            waiting.await
        };
        let waits = gate.stall.as_ref().map(|s| s.waits);
        assert_eq!(waits, Some(2), "one stall, waited twice");
        // Quiet long enough: accepting again, the stall is over.
        tokio::time::advance(QUIET).await;
        let sixth = gate.permit().await;
        assert!(gate.stall.is_none());
        drop((fifth, sixth));
    }
}
