//! Connections still in their hello: at most [`MAX_GREETING`] at once,
//! each for [`HELLO_TIMEOUT`], and one more closes the oldest, so silent
//! connections cannot keep a console out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

/// Connections still in their hello at once; one more closes the oldest.
const MAX_GREETING: usize = 64;
/// How long a connection has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections still in their hello, oldest first. One more than
/// [`MAX_GREETING`] closes the oldest: a flood of silent connections turns
/// over, and a console (which says hello at once) gets through.
#[derive(Default)]
pub(super) struct Greeting(Arc<Mutex<Greeters>>);

#[derive(Default)]
struct Greeters {
    next: u64,
    /// Dropping a sender tells its connection to give up.
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
}

impl Greeting {
    fn lock(&self) -> MutexGuard<'_, Greeters> {
        // Nothing under the lock can leave it half-changed.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more connection in its hello.
    pub(super) fn enter(&self) -> Ticket {
        let (tx, evicted) = oneshot::channel();
        let mut greeters = self.lock();
        if greeters.waiting.len() >= MAX_GREETING {
            greeters.waiting.pop_front();
        }
        let id = greeters.next;
        greeters.next += 1;
        greeters.waiting.push_back((id, tx));
        Ticket {
            id,
            pool: Greeting(self.0.clone()),
            evicted,
        }
    }
}

/// A connection's place among those in their hello; left when dropped.
pub(super) struct Ticket {
    id: u64,
    pool: Greeting,
    evicted: oneshot::Receiver<()>,
}

impl Ticket {
    /// Runs the hello within [`HELLO_TIMEOUT`], unless newer connections
    /// need the place first.
    pub(super) async fn greet<T>(
        mut self,
        hello: impl std::future::Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        tokio::select! {
            done = tokio::time::timeout(HELLO_TIMEOUT, hello) => {
                done.unwrap_or_else(|_| Err("no hello".into()))
            }
            _ = &mut self.evicted => Err("no hello yet, and newer connections needed the place".into()),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.pool.lock().waiting.retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_in_its_hello_makes_way_for_a_newer_one() {
        let greeting = Greeting::default();
        let first = greeting.enter();
        let rest: Vec<Ticket> = (1..MAX_GREETING).map(|_| greeting.enter()).collect();
        // Full: one more makes the oldest give up its hello, at once.
        let _newest = greeting.enter();
        let gave_up = first.greet(std::future::pending::<Result<(), String>>());
        let gave_up = tokio::time::timeout(Duration::from_secs(1), gave_up).await;
        assert!(matches!(gave_up, Ok(Err(_))), "{gave_up:?}");
        // Those done with their hello leave their places: nobody goes.
        drop(rest);
        let mut second = greeting.enter();
        let _third = greeting.enter();
        assert_eq!(greeting.lock().waiting.len(), 3);
        assert_eq!(
            second.evicted.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        );
    }
}
