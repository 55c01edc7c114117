//! The lines the panes show: action-log entries, formatted once when they
//! arrive, and the clusters' output.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use mewld_core::cluster_map::ClusterId;
use mewld_core::model::Stream;

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
                Value::String(s) => format!("{k}={}", mewld_core::protocol::truncate(s, 120)),
                other => format!(
                    "{k}={}",
                    mewld_core::protocol::truncate(&other.to_string(), 120)
                ),
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

    /// The cluster a `ping_failure` entry names: a ping it left unanswered.
    pub fn missed_ping(&self) -> Option<ClusterId> {
        let id = self.cluster.filter(|_| self.event == "ping_failure")?;
        ClusterId::try_from(id).ok()
    }

    /// When the entry was written.
    pub fn at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(u64::try_from(self.ts).unwrap_or(0))
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

/// "3h04m", "12m05s", "42s": how long since `then`.
pub fn age(now: SystemTime, then: SystemTime) -> String {
    let secs = now.duration_since(then).unwrap_or_default().as_secs();
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
        _ => format!("{}d{:02}h", secs / 86_400, (secs % 86_400) / 3600),
    }
}

/// "14:03:27" (UTC) for a microsecond timestamp.
pub fn clock(ts_micros: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_micros(u64::try_from(ts_micros).unwrap_or(0));
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}
