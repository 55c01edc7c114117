//! The original's JSON, filled from the engine's snapshot: `InstanceList`
//! (`GET /instance-list`) and a cluster's health (`GET /cluster-health`),
//! field for field as Go's `encoding/json` wrote the original's structs
//! (docs/protocol.md §8.2 lists them; tests/data/web_api/ has samples).

use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use mewld_core::actlog::unix_micros;
use mewld_core::model::health::Health;
use mewld_core::model::state::{ClusterState, ClusterView, Snapshot};
use mewld_core::model::SessionStartLimit;

/// Go's zero `time.Time`, which the original showed for "never".
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The original's `InstanceList`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct InstanceList<'a> {
    last_cluster_started_at: String,
    map: Vec<ClusterMap<'a>>,
    instances: Vec<Instance<'a>>,
    shard_count: u32,
    #[serde(rename = "GetGatewayBot")]
    gateway_bot: GatewayBot,
    dir: String,
    roll_restarting: bool,
    fully_up: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ClusterMap<'a> {
    #[serde(rename = "ID")]
    id: u32,
    name: &'a str,
    shards: &'a [u32],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Instance<'a> {
    started_at: String,
    #[serde(rename = "SessionID")]
    session_id: String,
    #[serde(rename = "ClusterID")]
    cluster_id: u32,
    shards: &'a [u32],
    active: bool,
    cluster_health: Option<Vec<ShardHealth>>,
    currently_killing: bool,
    /// mewld has no cluster locks (the engine takes one request at a
    /// time): always `null`, as the original's unlocked clusters.
    lock_cluster_time: Option<String>,
    launched_fully: bool,
    last_checked: String,
}

/// `/cluster-health`'s answer: the original's `map[string]any`, whose keys
/// Go wrote sorted. mewld has no cluster locks (the engine takes one
/// request at a time), so `locked` is always `false`.
#[derive(Serialize)]
pub(super) struct ClusterHealth {
    health: Vec<ShardHealth>,
    locked: bool,
}

impl ClusterHealth {
    pub(super) fn of(health: &Health) -> ClusterHealth {
        ClusterHealth {
            health: shard_health(health),
            locked: false,
        }
    }
}

/// The original's `ShardHealth`: every field always written, in its order.
#[derive(Serialize)]
pub(super) struct ShardHealth {
    shard_id: u32,
    up: bool,
    latency: f64,
    guilds: u64,
    users: u64,
}

/// The original's `GatewayBot`, as Discord answered at start-up.
#[derive(Serialize)]
struct GatewayBot {
    url: String,
    shards: u32,
    session_start_limit: SessionStartLimit,
}

impl<'a> InstanceList<'a> {
    /// The list as of `snapshot` (in a fleet, every host's clusters);
    /// `gateway` is Discord's answer when it was asked.
    pub(super) fn of(
        snapshot: &'a Snapshot,
        dir: &Path,
        gateway: Option<&mewld_core::model::GatewayBot>,
    ) -> InstanceList<'a> {
        let last_started = snapshot.clusters.iter().filter_map(|c| c.started_at).max();
        InstanceList {
            last_cluster_started_at: go_time(last_started),
            map: snapshot
                .clusters
                .iter()
                .map(|c| ClusterMap {
                    id: c.id,
                    name: &c.name,
                    shards: &c.shards,
                })
                .collect(),
            instances: snapshot.clusters.iter().map(Instance::of).collect(),
            shard_count: snapshot.shard_count,
            gateway_bot: GatewayBot {
                url: gateway.map(|g| g.url.clone()).unwrap_or_default(),
                // The map's count, which fixed_shard_count may set.
                shards: snapshot.shard_count,
                session_start_limit: gateway.map_or(
                    SessionStartLimit {
                        total: 0,
                        remaining: 0,
                        reset_after: 0,
                        max_concurrency: 0,
                    },
                    |g| g.session_start_limit.clone(),
                ),
            },
            dir: dir.display().to_string(),
            roll_restarting: snapshot.rolling.is_some(),
            fully_up: snapshot.fully_up,
        }
    }
}

impl<'a> Instance<'a> {
    fn of(c: &'a ClusterView) -> Instance<'a> {
        Instance {
            started_at: go_time(c.started_at),
            // One per process, as the original's random one was; "" with
            // no process, as the original's after a stop.
            session_id: match (c.pid, c.started_at) {
                (Some(pid), Some(at)) => format!("{pid}-{}", unix_micros(at)),
                _ => String::new(),
            },
            cluster_id: c.id,
            shards: &c.shards,
            active: c.pid.is_some(),
            cluster_health: c.health.as_ref().map(shard_health),
            currently_killing: c.state == ClusterState::Stopping,
            lock_cluster_time: None,
            launched_fully: c.state == ClusterState::Running,
            last_checked: go_time(c.health.as_ref().map(|h| h.at).or(c.started_at)),
        }
    }
}

/// A diagnostic answer as the original's `[]ShardHealth` (a missing
/// figure is 0, as Go left it).
fn shard_health(health: &Health) -> Vec<ShardHealth> {
    health
        .shards
        .iter()
        .map(|s| ShardHealth {
            shard_id: s.shard_id,
            up: s.up,
            latency: s.latency.unwrap_or(0.0),
            guilds: s.guilds.unwrap_or(0),
            users: s.users.unwrap_or(0),
        })
        .collect()
}

/// `t` as Go's `encoding/json` writes a `time.Time` (RFC 3339, as many
/// fraction digits as needed), in UTC; `None` is Go's zero time.
fn go_time(t: Option<SystemTime>) -> String {
    let Some(t) = t else {
        return ZERO_TIME.to_string();
    };
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| ZERO_TIME.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mewld_core::protocol::ShardHealth as Answered;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn times_read_as_gos() {
        let at = |nanos: u64| Some(UNIX_EPOCH + Duration::from_nanos(nanos));
        assert_eq!(go_time(None), "0001-01-01T00:00:00Z");
        assert_eq!(
            go_time(at(1_718_000_000_000_000_000)),
            "2024-06-10T06:13:20Z"
        );
        assert_eq!(
            go_time(at(1_718_000_000_500_000_000)),
            "2024-06-10T06:13:20.5Z"
        );
        assert_eq!(
            go_time(at(1_718_000_000_000_000_001)),
            "2024-06-10T06:13:20.000000001Z"
        );
    }

    #[test]
    fn a_cluster_reads_as_the_originals_instance() {
        let started = UNIX_EPOCH + Duration::from_secs(1_718_000_000);
        let spec = mewld_core::cluster_map::build(4, 2, &["Pika".into()]);
        let mut running = ClusterView::lost(&spec[0]);
        running.state = ClusterState::Running;
        running.pid = Some(4242);
        running.started_at = Some(started);
        running.health = Some(Health {
            at: started + Duration::from_secs(60),
            round_trip_ms: 3,
            shards: vec![Answered {
                shard_id: 1,
                up: true,
                latency: None,
                guilds: Some(7),
                users: None,
            }],
        });
        let pending = ClusterView {
            state: ClusterState::Pending,
            ..ClusterView::lost(&spec[1])
        };
        let snapshot = Snapshot {
            shard_count: 4,
            clusters: vec![running, pending],
            ..Snapshot::default()
        };
        let list = InstanceList::of(&snapshot, Path::new("/srv/bot"), None);
        let json = serde_json::to_value(&list).expect("serialises");
        let first = &json["Instances"][0];
        assert_eq!(first["SessionID"], "4242-1718000000000000");
        assert_eq!(first["LastChecked"], "2024-06-10T06:14:20Z");
        assert_eq!(
            first["ClusterHealth"],
            serde_json::json!([{"shard_id": 1, "up": true, "latency": 0.0, "guilds": 7, "users": 0}])
        );
        let second = &json["Instances"][1];
        assert_eq!(second["StartedAt"], ZERO_TIME);
        assert_eq!(second["SessionID"], "");
        assert_eq!(second["ClusterHealth"], serde_json::Value::Null);
        assert_eq!(json["LastClusterStartedAt"], "2024-06-10T06:13:20Z");
        assert_eq!(
            json["Map"][1],
            serde_json::json!({"ID": 1, "Name": "cluster-1", "Shards": [2, 3]})
        );
        assert_eq!(json["Dir"], "/srv/bot");
    }
}
