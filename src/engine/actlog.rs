//! Action-log entries (PROTOCOL.md §5.4): JSON objects with at least
//! `event` and `ts` (unix microseconds).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An entry written by the manager: `event`, `ts`, then `fields`.
pub fn entry(event: &str, fields: Value) -> Map<String, Value> {
    let mut map = match fields {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    map.insert("event".into(), Value::String(event.into()));
    map.insert("ts".into(), Value::from(now_micros()));
    map
}

/// An entry sent by a cluster (`action_logs`): its `data` with `ts` set, so
/// every entry's time is on the manager's clock and in microseconds.
pub fn from_cluster(mut data: Map<String, Value>) -> Map<String, Value> {
    data.insert("ts".into(), Value::from(now_micros()));
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_have_event_and_microsecond_ts() {
        let e = entry("ping_failure", json!({"id": 3}));
        assert_eq!(e["event"], "ping_failure");
        assert_eq!(e["id"], 3);
        let ts = e["ts"].as_i64().expect("ts is a number");
        // Microseconds since 1970 are 16 digits for the next few centuries.
        assert!(ts > 1_600_000_000_000_000, "{ts}");
    }

    #[test]
    fn cluster_entries_get_a_ts() {
        let Value::Object(data) = json!({"event": "shards_launched", "cluster": 1, "ts": 5}) else {
            unreachable!()
        };
        let e = from_cluster(data);
        assert!(e["ts"].as_i64() > Some(5));
        assert_eq!(e["cluster"], 1);
    }
}
