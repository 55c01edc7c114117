//! What an action-log entry counts as: its `event` label, within bounds.

use std::collections::HashSet;

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
