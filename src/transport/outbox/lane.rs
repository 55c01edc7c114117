//! One kind of work waiting in the outbox: its items, oldest first, with
//! the bounds they are kept within.

use std::collections::VecDeque;
use std::time::Instant;

use crate::transport::Outbound;

/// One piece of work, with when it was queued and its place in the order.
#[derive(Debug)]
pub(in crate::transport) struct Item {
    pub(in crate::transport) seq: u64,
    pub(in crate::transport) at: Instant,
    pub(in crate::transport) out: Outbound,
}

/// Items of one kind, oldest first, with their bounds.
pub(super) struct Lane {
    pub(super) items: VecDeque<Item>,
    pub(super) bytes: usize,
    pub(super) max_items: usize,
    max_bytes: usize,
}

impl Lane {
    pub(super) fn new(max_items: usize, max_bytes: usize) -> Self {
        Lane {
            items: VecDeque::new(),
            bytes: 0,
            max_items,
            max_bytes,
        }
    }

    pub(super) fn front_seq(&self) -> Option<u64> {
        self.items.front().map(|i| i.seq)
    }

    pub(super) fn push_back(&mut self, item: Item) {
        self.bytes += size(&item.out);
        self.items.push_back(item);
    }

    pub(super) fn push_front(&mut self, item: Item) {
        self.bytes += size(&item.out);
        self.items.push_front(item);
    }

    pub(super) fn pop_front(&mut self) -> Option<Item> {
        let item = self.items.pop_front()?;
        self.bytes -= size(&item.out);
        Some(item)
    }

    /// Drops the oldest items until the lane is within its bounds; how many.
    pub(super) fn trim(&mut self) -> u64 {
        let mut dropped = 0;
        while self.items.len() > self.max_items || self.bytes > self.max_bytes {
            self.pop_front();
            dropped += 1;
        }
        dropped
    }
}

/// Bytes an item holds, as far as the bounds go.
fn size(out: &Outbound) -> usize {
    match out {
        Outbound::Publish { channel, payload } => channel.len() + payload.len(),
        Outbound::PushLog(s) => s.len(),
        Outbound::ReadLog(_) | Outbound::Flush(_) => 0,
    }
}
