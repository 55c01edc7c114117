//! Rolling restarts: restart clusters one at a time, each after the one
//! before it said `launch_next` (or its time ran out, so one broken cluster
//! cannot wedge the rest).

use std::collections::VecDeque;

use crate::actlog::LogEvent;
use crate::cluster_map::ClusterId;
use crate::model::state::RollingView;

#[derive(Debug)]
pub struct Rolling {
    queue: VecDeque<ClusterId>,
    current: Option<ClusterId>,
    /// Bumped per cluster, so a timeout for an earlier one is ignored.
    pub step: u64,
    done: usize,
    total: usize,
    /// Logged when every cluster has had its turn.
    pub done_event: LogEvent,
}

impl Rolling {
    pub fn new(order: Vec<ClusterId>, done_event: LogEvent) -> Self {
        Rolling {
            done_event,
            total: order.len(),
            queue: order.into(),
            current: None,
            step: 0,
            done: 0,
        }
    }

    /// The next cluster to restart, which becomes the current one; `None`
    /// when every cluster has had its turn.
    pub fn advance(&mut self) -> Option<ClusterId> {
        if self.current.take().is_some() {
            self.done += 1;
        }
        self.step += 1;
        self.current = self.queue.pop_front();
        self.current
    }

    /// The current cluster said `launch_next`: a new step, so its pending
    /// timeout is void. Returns the step for the "go on" timer.
    pub fn release(&mut self) -> u64 {
        self.step += 1;
        self.step
    }

    pub fn current(&self) -> Option<ClusterId> {
        self.current
    }

    pub fn view(&self) -> RollingView {
        RollingView {
            done: self.done,
            total: self.total,
            current: self.current,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goes_in_order_and_counts_progress() {
        let mut r = Rolling::new(vec![0, 1, 2], LogEvent::RollingRestartDone {});
        assert_eq!(r.view().done, 0);
        assert_eq!(r.advance(), Some(0));
        let step = r.step;
        assert_eq!(r.advance(), Some(1));
        assert!(r.step > step);
        assert_eq!(
            r.view(),
            RollingView {
                done: 1,
                total: 3,
                current: Some(1)
            }
        );
        assert_eq!(r.advance(), Some(2));
        assert_eq!(r.advance(), None);
        assert_eq!(r.view().done, 3);
    }
}
