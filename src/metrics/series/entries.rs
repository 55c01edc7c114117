//! What an action-log entry counts as: its `event` label, within bounds,
//! and the restarts it stands for.

use std::collections::HashSet;

use mewld_core::model::RestartReason;
use serde_json::{Map, Value};

/// Distinct `event` labels kept, per counter; clusters write entries with
/// names of their own, and each name is a series.
pub(super) const EVENT_NAMES: usize = 64;
/// Longer event names are counted as `other`.
pub(super) const EVENT_NAME_LEN: usize = 64;

/// The `event` labels of one counter: at most [`EVENT_NAMES`].
pub(super) struct EventNames {
    counter: &'static str,
    names: HashSet<String>,
}

/// The entry's `event`, or `(none)`.
pub(super) fn event_of(entry: &Map<String, Value>) -> &str {
    entry
        .get("event")
        .and_then(Value::as_str)
        .unwrap_or("(none)")
}

impl EventNames {
    pub(super) fn new(counter: &'static str) -> EventNames {
        EventNames {
            counter,
            names: HashSet::new(),
        }
    }

    /// `event` itself while there is room for another series, else `other`.
    pub(super) fn label(&mut self, event: &str) -> String {
        if self.names.contains(event) {
            return event.to_string();
        }
        if event.len() > EVENT_NAME_LEN || self.names.len() >= EVENT_NAMES {
            if self.names.insert("other".to_string()) {
                tracing::warn!(
                    event,
                    counter = self.counter,
                    "too many or too long action-log event names; counting the rest as `other`"
                );
            }
            return "other".to_string();
        }
        self.names.insert(event.to_string());
        event.to_string()
    }
}

/// The clusters an action-log entry restarts, and why (the reasons are
/// the core's [`RestartReason`], which the console shows too): `crash` (a
/// crash restart's process started), `ping_failure` (a cluster that left a
/// diagnostic unanswered is stopped to be restarted), `operator` (a
/// `restart` that was not refused), `rolling_restart` (each cluster in the
/// roll's order), `reshard` (each cluster whose shards changed).
pub(super) fn restarts(event: &str, entry: &Map<String, Value>) -> Vec<(u64, RestartReason)> {
    let id = entry.get("id").and_then(Value::as_u64);
    let ids = |key: &str| -> Vec<u64> {
        entry
            .get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    };
    let with = |ids: Vec<u64>, reason| ids.into_iter().map(|i| (i, reason)).collect();
    match event {
        "cluster_restarted" => with(id.into_iter().collect(), RestartReason::Crash),
        "ping_failure" => with(id.into_iter().collect(), RestartReason::PingFailure),
        "operator_action"
            if entry.get("action").and_then(Value::as_str) == Some("restart")
                && entry.get("refused").is_none() =>
        {
            with(id.into_iter().collect(), RestartReason::Operator)
        }
        "rolling_restart" => with(ids("clusters"), RestartReason::RollingRestart),
        "reshard_success" => with(ids("restarting"), RestartReason::Reshard),
        _ => Vec::new(),
    }
}
