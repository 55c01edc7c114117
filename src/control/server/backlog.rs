//! The output backlog: what the server keeps of the clusters' output for
//! the consoles that attach later.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use mewld_core::cluster_map::ClusterId;

/// Output lines kept per cluster for consoles that attach later (an
/// embedded console has every line from the start), and the bytes they
/// may take, per cluster and in all; the oldest go first.
const BACKLOG_LINES: usize = 200;
const BACKLOG_CLUSTER_BYTES: usize = 128 * 1024;
const BACKLOG_BYTES: usize = 8 * 1024 * 1024;
/// What a kept line costs beyond its text (its slot and pointer).
const LINE_OVERHEAD: usize = 64;

/// Each cluster's latest output lines, as they go on the wire, within
/// [`BACKLOG_LINES`] and [`BACKLOG_CLUSTER_BYTES`] per cluster and
/// [`BACKLOG_BYTES`] in all; the oldest go first.
#[derive(Default)]
pub(super) struct Backlog(Mutex<Lines>);

impl Backlog {
    pub(super) fn lock(&self) -> MutexGuard<'_, Lines> {
        // Nothing under the lock can panic halfway.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
pub(super) struct Lines {
    clusters: HashMap<ClusterId, Kept>,
    /// Each cluster's oldest line by its number: the next to go when the
    /// total is over.
    oldest: BTreeMap<u64, ClusterId>,
    bytes: usize,
    next: u64,
}

#[derive(Default)]
struct Kept {
    lines: VecDeque<(u64, Arc<str>)>,
    bytes: usize,
}

fn cost(text: &str) -> usize {
    text.len() + LINE_OVERHEAD
}

impl Lines {
    pub(super) fn push(&mut self, id: ClusterId, text: Arc<str>) {
        let n = self.next;
        self.next += 1;
        self.bytes += cost(&text);
        let kept = self.clusters.entry(id).or_default();
        if kept.lines.is_empty() {
            self.oldest.insert(n, id);
        }
        kept.bytes += cost(&text);
        kept.lines.push_back((n, text));
        while self
            .clusters
            .get(&id)
            .is_some_and(|k| k.lines.len() > BACKLOG_LINES || k.bytes > BACKLOG_CLUSTER_BYTES)
        {
            self.pop(id);
        }
        while self.bytes > BACKLOG_BYTES {
            let Some((_, &id)) = self.oldest.first_key_value() else {
                return;
            };
            self.pop(id);
        }
    }

    /// Drops cluster `id`'s oldest line.
    fn pop(&mut self, id: ClusterId) {
        let Some(kept) = self.clusters.get_mut(&id) else {
            return;
        };
        let Some((n, text)) = kept.lines.pop_front() else {
            return;
        };
        self.oldest.remove(&n);
        kept.bytes -= cost(&text);
        self.bytes -= cost(&text);
        match kept.lines.front() {
            Some((next, _)) => {
                self.oldest.insert(*next, id);
            }
            None => {
                self.clusters.remove(&id);
            }
        }
    }

    /// Every line kept, each cluster's in order.
    pub(super) fn lines(&self) -> Vec<Arc<str>> {
        let kept = self.clusters.values().flat_map(|k| k.lines.iter());
        kept.map(|(_, text)| text.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(bytes: usize) -> Arc<str> {
        "o".repeat(bytes - LINE_OVERHEAD).into()
    }

    #[test]
    fn the_backlog_keeps_the_newest_lines_within_its_bounds() {
        let mut lines = Lines::default();
        // Lines per cluster.
        for _ in 0..BACKLOG_LINES + 50 {
            lines.push(0, line_of(100));
        }
        assert_eq!(lines.clusters[&0].lines.len(), BACKLOG_LINES);
        // Bytes per cluster: long lines.
        for _ in 0..100 {
            lines.push(1, line_of(16 * 1024));
        }
        assert_eq!(lines.clusters[&1].bytes, BACKLOG_CLUSTER_BYTES);
        assert_eq!(lines.clusters[&1].lines.len(), 8);
        // Bytes in all: the oldest lines go, whichever cluster has them.
        let clusters = 2 * BACKLOG_BYTES / BACKLOG_CLUSTER_BYTES;
        for id in 2..2 + clusters as ClusterId {
            for _ in 0..8 {
                lines.push(id, line_of(16 * 1024));
            }
        }
        assert!(lines.bytes <= BACKLOG_BYTES, "{} bytes", lines.bytes);
        assert!(!lines.clusters.contains_key(&0) && !lines.clusters.contains_key(&1));
        let newest = 1 + clusters as ClusterId;
        assert_eq!(lines.clusters[&newest].lines.len(), 8);
        let counted: usize = lines.clusters.values().map(|k| k.bytes).sum();
        assert_eq!(counted, lines.bytes);
        assert_eq!(lines.oldest.len(), lines.clusters.len());
        assert_eq!(lines.lines().len(), BACKLOG_BYTES / (16 * 1024));
    }
}
