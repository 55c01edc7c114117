//! Reading the fleet in Redis, for a member ([`super::store`]) and for
//! `attach --redis` alike: the hosts' ids, their records fetched only when
//! they moved, and the leader. Key names, deadlines and connecting are
//! [`crate::redis_link`]'s.

use std::collections::HashMap;

use redis::aio::MultiplexedConnection;

use crate::redis_link::{within, Keys};
use mewld_core::fleet::{HostRecord, Leader};

/// Sets a record's version, with the record's TTL.
pub(super) fn set_version(key: &str, version: u64, ttl_ms: u64) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(version).arg("PX").arg(ttl_ms);
    cmd
}

/// The hosts' records as last fetched, with their versions: a refresh
/// reads every version (a few bytes each) and fetches only the records
/// whose version moved, so a fleet of big hosts costs little to watch.
#[derive(Default)]
pub(super) struct HostCache {
    records: HashMap<String, (u64, HostRecord)>,
}

impl HostCache {
    /// The records of the hosts `ids` that are alive. A record that cannot
    /// be read is skipped, with a warning.
    pub(super) async fn refresh(
        &mut self,
        conn: &mut MultiplexedConnection,
        keys: &Keys,
        ids: Vec<String>,
    ) -> redis::RedisResult<Vec<HostRecord>> {
        let live: Vec<(String, u64)> = if ids.is_empty() {
            Vec::new()
        } else {
            let version_keys: Vec<String> = ids.iter().map(|id| keys.version(id)).collect();
            // Read as text: a value that is not a number is skipped, not fatal.
            let versions: Vec<Option<String>> =
                within(redis::cmd("MGET").arg(&version_keys).query_async(conn)).await?;
            ids.into_iter()
                .zip(versions)
                .filter_map(|(id, v)| Some((id, v?.parse().ok()?)))
                .collect()
        };
        self.records
            .retain(|id, (v, _)| live.iter().any(|(l, lv)| l == id && lv == v));
        let stale: Vec<&(String, u64)> = live
            .iter()
            .filter(|(id, _)| !self.records.contains_key(id))
            .collect();
        if !stale.is_empty() {
            let host_keys: Vec<String> = stale.iter().map(|(id, _)| keys.host(id)).collect();
            let texts: Vec<Option<String>> =
                within(redis::cmd("MGET").arg(&host_keys).query_async(conn)).await?;
            for ((id, version), text) in stale.into_iter().zip(texts) {
                let Some(text) = text else { continue };
                match serde_json::from_str::<HostRecord>(&text) {
                    Ok(r) => {
                        self.records.insert(id.clone(), (*version, r));
                    }
                    Err(e) => {
                        tracing::warn!(host = %id, error = %e, "ignored a host record that cannot be read")
                    }
                }
            }
        }
        Ok(self.records.values().map(|(_, r)| r.clone()).collect())
    }
}

/// The host ids in the fleet's set, but this host's. A set key of the
/// wrong type reads as empty until the next heartbeat replaces it.
pub(super) async fn members(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
) -> redis::RedisResult<Vec<String>> {
    match within(redis::cmd("SMEMBERS").arg(&keys.hosts).query_async(conn)).await {
        Err(e) if e.code() == Some("WRONGTYPE") => Ok(Vec::new()),
        other => other,
    }
}

/// The leader's order to stop, as stored. A key of another type reads as
/// none (the leader's next order replaces it).
pub(super) async fn exit_order(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
) -> redis::RedisResult<Option<String>> {
    match within(redis::cmd("GET").arg(&keys.exit).query_async(conn)).await {
        Err(e) if e.code() == Some("WRONGTYPE") => Ok(None),
        other => other,
    }
}

/// The ids of every host record in Redis, whether or not the set names it.
pub(super) async fn scan_ids(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
) -> redis::RedisResult<Vec<String>> {
    let pattern = keys.host_pattern();
    let mut ids = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, found): (u64, Vec<String>) = within(
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(conn),
        )
        .await?;
        ids.extend(
            found
                .iter()
                .filter_map(|k| keys.host_id(k).map(str::to_string)),
        );
        if next == 0 {
            return Ok(ids);
        }
        cursor = next;
    }
}

/// `<host> <epoch>`, as the election stores it.
pub(super) fn parse_leader(holder: &str) -> Option<Leader> {
    let (host, epoch) = holder.rsplit_once(' ')?;
    Some(Leader {
        host: host.to_string(),
        epoch: epoch.parse().ok()?,
    })
}
