//! The lines the panes show: action-log entries, formatted once when they
//! arrive, and the clusters' output.

use serde_json::{Map, Value};

use crate::engine::process::Stream;

/// One action-log entry, formatted once when it arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Microseconds since the epoch.
    pub ts: i64,
    pub event: String,
    pub cluster: Option<u64>,
    /// The other fields, `key=value`.
    pub fields: String,
    /// Lower-cased text the filter searches.
    search: String,
}

impl LogLine {
    pub fn from_entry(entry: &Map<String, Value>) -> LogLine {
        let ts = entry.get("ts").and_then(Value::as_i64).unwrap_or(0);
        let event = entry
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or("(no event)")
            .to_string();
        let cluster = ["id", "cluster"]
            .iter()
            .find_map(|k| entry.get(*k).and_then(Value::as_u64));
        let fields: Vec<String> = entry
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "ts" | "event" | "id" | "cluster"))
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={}", crate::protocol::truncate(s, 120)),
                other => format!("{k}={}", crate::protocol::truncate(&other.to_string(), 120)),
            })
            .collect();
        let fields = fields.join(" ");
        let search = format!(
            "{event} {} {fields}",
            cluster.map(|c| format!("cluster {c}")).unwrap_or_default()
        )
        .to_lowercase();
        LogLine {
            ts,
            event,
            cluster,
            fields,
            search,
        }
    }

    pub fn matches(&self, filter_lower: &str) -> bool {
        filter_lower.is_empty() || self.search.contains(filter_lower)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    pub stream: Stream,
    pub text: String,
}
