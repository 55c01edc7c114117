//! Rolling restarts: restart clusters in order, `rolling_restart_parallel`
//! at a time, each slot taking the next cluster once the one before it
//! said `launch_next` (and waited out `cluster_start_next_delay`), or its
//! time ran out, so one broken cluster cannot wedge the rest.

use std::collections::VecDeque;

use crate::actlog::LogEvent;
use crate::cluster_map::ClusterId;
use crate::config::RollingMode;
use crate::model::state::RollingView;

#[derive(Debug)]
pub struct Rolling {
    queue: VecDeque<ClusterId>,
    /// The turns under way, at most `parallel`.
    slots: Vec<Slot>,
    parallel: usize,
    /// The last step handed out: each turn, and each gap after one, has
    /// its own, so a timer for an earlier one is ignored.
    step: u64,
    done: usize,
    total: usize,
    pub mode: RollingMode,
    /// Logged when every cluster has had its turn.
    pub done_event: LogEvent,
}

/// One turn of the walk.
#[derive(Debug, Clone, Copy)]
struct Slot {
    step: u64,
    /// The cluster being restarted; `None` while the slot waits out the
    /// gap after one.
    cluster: Option<ClusterId>,
}

impl Rolling {
    pub fn new(
        order: Vec<ClusterId>,
        done_event: LogEvent,
        parallel: u32,
        mode: RollingMode,
    ) -> Self {
        Rolling {
            done_event,
            total: order.len(),
            queue: order.into(),
            slots: Vec::new(),
            parallel: usize::try_from(parallel).unwrap_or(1).max(1),
            step: 0,
            done: 0,
            mode,
        }
    }

    fn next_step(&mut self) -> u64 {
        self.step += 1;
        self.step
    }

    /// The next cluster to restart, in a free slot, with its turn's step;
    /// `None` when every slot is busy or no cluster is left.
    pub fn next_turn(&mut self) -> Option<(ClusterId, u64)> {
        if self.slots.len() >= self.parallel {
            return None;
        }
        let id = self.queue.pop_front()?;
        let step = self.next_step();
        self.slots.push(Slot {
            step,
            cluster: Some(id),
        });
        Some((id, step))
    }

    /// `id` came back: its turn is over, and its slot waits out the gap
    /// under a new step. Returns (its turn's step, the gap's step).
    pub fn release(&mut self, id: ClusterId) -> Option<(u64, u64)> {
        let gap = self.step + 1;
        let slot = self.slots.iter_mut().find(|s| s.cluster == Some(id))?;
        let turn = slot.step;
        *slot = Slot {
            step: gap,
            cluster: None,
        };
        self.step = gap;
        self.done += 1;
        Some((turn, gap))
    }

    /// `id`'s turn ends without a gap (skipped, timed out, could not come
    /// back): its slot is free. Returns its turn's step.
    pub fn drop_turn(&mut self, id: ClusterId) -> Option<u64> {
        let at = self.slots.iter().position(|s| s.cluster == Some(id))?;
        self.done += 1;
        Some(self.slots.remove(at).step)
    }

    /// The gap of step `step` is over: its slot is free. False if no slot
    /// waits under that step.
    pub fn gap_over(&mut self, step: u64) -> bool {
        let at = self
            .slots
            .iter()
            .position(|s| s.step == step && s.cluster.is_none());
        at.map(|at| self.slots.remove(at)).is_some()
    }

    /// The cluster whose turn has step `step`.
    pub fn cluster_at(&self, step: u64) -> Option<ClusterId> {
        self.slots
            .iter()
            .find(|s| s.step == step)
            .and_then(|s| s.cluster)
    }

    /// The step of `id`'s turn, if it is under way.
    pub fn step_of(&self, id: ClusterId) -> Option<u64> {
        self.slots
            .iter()
            .find(|s| s.cluster == Some(id))
            .map(|s| s.step)
    }

    pub fn is_current(&self, id: ClusterId) -> bool {
        self.step_of(id).is_some()
    }

    /// The clusters being restarted now, in id order.
    pub fn under_way(&self) -> Vec<ClusterId> {
        let mut ids: Vec<_> = self.slots.iter().filter_map(|s| s.cluster).collect();
        ids.sort_unstable();
        ids
    }

    /// The steps of every slot (turns and gaps), for their timers.
    pub fn steps(&self) -> Vec<u64> {
        self.slots.iter().map(|s| s.step).collect()
    }

    /// Every cluster has had its turn, and every gap is over.
    pub fn finished(&self) -> bool {
        self.queue.is_empty() && self.slots.is_empty()
    }

    /// Turns ended so far.
    pub fn done(&self) -> usize {
        self.done
    }

    pub fn view(&self) -> RollingView {
        let under_way = self.under_way();
        RollingView {
            done: self.done,
            total: self.total,
            current: under_way.first().copied(),
            under_way,
            start_first: self.mode == RollingMode::StartFirst,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roll(order: Vec<ClusterId>, parallel: u32) -> Rolling {
        let done = LogEvent::RollingRestartDone {};
        Rolling::new(order, done, parallel, RollingMode::StopFirst)
    }

    #[test]
    fn goes_in_order_and_counts_progress() {
        let mut r = roll(vec![0, 1, 2], 1);
        assert_eq!(r.view().done, 0);
        let (id, step) = r.next_turn().expect("a turn");
        assert_eq!(id, 0);
        assert_eq!(r.next_turn(), None, "one at a time");
        assert_eq!(r.cluster_at(step), Some(0));
        let (turn, gap) = r.release(0).expect("under way");
        assert_eq!(turn, step);
        assert!(gap > step);
        assert_eq!(r.cluster_at(step), None, "the turn's timers are void");
        assert_eq!(r.next_turn(), None, "the gap first");
        assert!(r.gap_over(gap));
        assert_eq!(r.next_turn().map(|(id, _)| id), Some(1));
        assert_eq!(
            r.view(),
            RollingView {
                done: 1,
                total: 3,
                current: Some(1),
                under_way: vec![1],
                start_first: false,
            }
        );
        assert!(r.drop_turn(1).is_some());
        assert_eq!(r.next_turn().map(|(id, _)| id), Some(2));
        assert!(!r.finished());
        r.drop_turn(2);
        assert!(r.finished());
        assert_eq!(r.view().done, 3);
    }

    #[test]
    fn takes_k_clusters_at_a_time() {
        let mut r = roll(vec![0, 1, 2, 3], 2);
        assert_eq!(r.next_turn().map(|(id, _)| id), Some(0));
        assert_eq!(r.next_turn().map(|(id, _)| id), Some(1));
        assert_eq!(r.next_turn(), None);
        assert_eq!(r.under_way(), vec![0, 1]);
        r.drop_turn(1);
        assert_eq!(r.next_turn().map(|(id, _)| id), Some(2));
        assert_eq!(r.under_way(), vec![0, 2]);
    }
}
