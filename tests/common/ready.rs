//! Whether each cluster has a ready process (one that said `launch_next`,
//! still runs and has not been told to stop), from what the fake bots
//! record: sampled while a rolling restart goes, and each cluster's
//! downtime afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use std::path::Path;

use serde_json::Value;

use super::{alive, records_in, BotDir};

/// The clusters among `0..clusters` with no ready process now (`records`:
/// the fake bots' records directory).
pub fn not_ready(records: &Path, clusters: u32) -> Vec<u32> {
    let stopped: BTreeSet<u64> = records_in(records, "sigterm")
        .iter()
        .filter_map(pid_of)
        .collect();
    let ready: BTreeSet<u64> = records_in(records, "launched")
        .iter()
        .filter(|l| pid_of(l).is_some_and(|p| !stopped.contains(&p) && alive(p as u32)))
        .filter_map(|l| l["cluster_id"].as_u64())
        .collect();
    (0..clusters)
        .filter(|id| !ready.contains(&u64::from(*id)))
        .collect()
}

fn pid_of(record: &Value) -> Option<u64> {
    record["pid"].as_u64()
}

/// Samples [`not_ready`] every 100 ms on a thread of its own.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Samples>,
}

/// What a sampler saw: how many samples, and each one that found a
/// cluster without a ready process (when, which).
#[derive(Debug, Default)]
pub struct Samples {
    pub taken: usize,
    pub gaps: Vec<(Duration, Vec<u32>)>,
}

impl Sampler {
    pub fn start(bot: &BotDir, clusters: u32) -> Sampler {
        let records = bot.records_dir();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = thread::spawn(move || {
            let started = Instant::now();
            let mut samples = Samples::default();
            while !stopping.load(Ordering::Relaxed) {
                let missing = not_ready(&records, clusters);
                samples.taken += 1;
                if !missing.is_empty() {
                    samples.gaps.push((started.elapsed(), missing));
                }
                thread::sleep(Duration::from_millis(100));
            }
            samples
        });
        Sampler { stop, thread }
    }

    pub fn finish(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler")
    }
}

/// Each stopped process's cluster's downtime: from its SIGTERM to the
/// `launch_next` of the process that followed it (0 when that came
/// first, as in `start_first`). By cluster, in the order they were stopped.
pub fn downtimes(bot: &BotDir) -> BTreeMap<u64, Vec<Duration>> {
    let launches = bot.launches();
    let launched_at = |pid: u64| {
        launches
            .iter()
            .find(|l| pid_of(l) == Some(pid))
            .and_then(|l| l["at_us"].as_u64())
    };
    let mut out: BTreeMap<u64, Vec<Duration>> = BTreeMap::new();
    for term in bot.sigterms() {
        let (Some(id), Some(pid), Some(at)) = (
            term["cluster_id"].as_u64(),
            pid_of(&term),
            term["at_us"].as_u64(),
        ) else {
            continue;
        };
        let Some(since) = launched_at(pid) else {
            continue;
        };
        // The next process of the cluster to say launch_next after it.
        let next = launches
            .iter()
            .filter(|l| l["cluster_id"].as_u64() == Some(id) && pid_of(l) != Some(pid))
            .filter_map(|l| l["at_us"].as_u64())
            .filter(|t| *t > since)
            .min();
        if let Some(next) = next {
            let gap = Duration::from_micros(next.saturating_sub(at));
            out.entry(id).or_default().push(gap);
        }
    }
    out
}
