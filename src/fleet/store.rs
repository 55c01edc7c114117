//! Where the fleet meets: what the fleet task asks of it ([`FleetStore`])
//! and its one implementation, on Redis ([`RedisStore`]). The task's flow
//! (claim, renew, claim again after a lapse, read, elect, orders to stop)
//! is written against the trait, so it is tested on a store in memory; the
//! atomic rules of a claim and of the election are the Lua scripts'.

use redis::RedisResult;

use mewld_core::cluster_map::{ClusterId, MapPrint};
use mewld_core::fleet::heartbeat::{Renewal, EXIT_ORDER_TTL, HOST_TTL, LEASE};
use mewld_core::fleet::{HostRecord, Leader, Membership};

use super::reads::{self, members, parse_leader, scan_ids, set_version, HostCache};
use super::scripts::{CLAIM, ELECT, RENEW, RESIGN};
use crate::redis_link::{within, Keys, Link};

/// A claim of this host's clusters.
pub(super) struct Claim<'a> {
    pub me: &'a Membership,
    pub map: &'a MapPrint,
    /// This host's record, as text.
    pub record: String,
    /// Every other host id known, looked at besides the set's.
    pub others: Vec<String>,
}

/// What the fleet task needs from the place the hosts meet.
pub(super) trait FleetStore {
    /// Makes sure the store can be reached (connecting if need be).
    async fn reach(&mut self) -> RedisResult<()>;
    /// Whether it could be reached at the last call.
    fn reachable(&self) -> bool;
    /// After an error: the next call reaches the store afresh.
    fn reset(&mut self);
    /// Every other host's id and live record, read afresh, whether or not
    /// the hosts' set names it.
    async fn everyone_else(&mut self, me: &str) -> RedisResult<(Vec<String>, Vec<HostRecord>)>;
    /// Deletes a host's record (one a previous run of this host left).
    async fn drop_host(&mut self, id: &str) -> RedisResult<()>;
    /// Registers the claim, atomically, unless a live record conflicts
    /// with it: then that record, as text.
    async fn claim(&mut self, claim: &Claim<'_>) -> RedisResult<Option<String>>;
    /// Renews this host's record; `false` if it had lapsed.
    async fn renew(&mut self, id: &str, renewal: &Renewal) -> RedisResult<bool>;
    /// Sets the version beside this host's record.
    async fn set_version(&mut self, id: &str, version: u64) -> RedisResult<()>;
    /// The other hosts' live records.
    async fn others(&mut self, me: &str) -> RedisResult<Vec<HostRecord>>;
    /// Takes or renews the lease, a new leader's epoch above `seen`: the
    /// leader as the store holds it.
    async fn elect(&mut self, id: &str, seen: u64) -> RedisResult<Option<Leader>>;
    /// The leader as the store holds it, without taking part.
    async fn leader(&mut self) -> RedisResult<Option<Leader>>;
    /// Writes the leader's order to stop, for hosts that miss the message.
    async fn write_exit_order(&mut self, order: &str) -> RedisResult<()>;
    async fn read_exit_order(&mut self) -> RedisResult<Option<String>>;
    /// Gives the lease up (if held) and deletes this host's record.
    async fn resign(&mut self, id: &str) -> RedisResult<()>;
}

/// The fleet's store in Redis.
pub(super) struct RedisStore {
    link: Link,
    pub(super) keys: Keys,
    /// The other hosts' records as last fetched.
    hosts: HostCache,
    reached: bool,
}

impl RedisStore {
    pub(super) fn new(link: Link, keys: Keys) -> RedisStore {
        RedisStore {
            link,
            keys,
            hosts: HostCache::default(),
            reached: false,
        }
    }
}

impl FleetStore for RedisStore {
    async fn reach(&mut self) -> RedisResult<()> {
        let reached = self.link.conn().await.map(|_| ());
        self.reached = reached.is_ok();
        reached
    }

    fn reachable(&self) -> bool {
        self.reached
    }

    fn reset(&mut self) {
        self.link.reset();
        self.reached = false;
    }

    async fn everyone_else(&mut self, me: &str) -> RedisResult<(Vec<String>, Vec<HostRecord>)> {
        let conn = self.link.conn().await?;
        let mut ids = members(conn, &self.keys).await?;
        for id in scan_ids(conn, &self.keys).await? {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids.retain(|id| id != me);
        let records = HostCache::default()
            .refresh(conn, &self.keys, ids.clone())
            .await?;
        Ok((ids, records))
    }

    async fn drop_host(&mut self, id: &str) -> RedisResult<()> {
        let conn = self.link.conn().await?;
        within(
            redis::pipe()
                .del(self.keys.host(id))
                .srem(&self.keys.hosts, id)
                .query_async(conn),
        )
        .await
    }

    async fn claim(&mut self, claim: &Claim<'_>) -> RedisResult<Option<String>> {
        let conn = self.link.conn().await?;
        let owned: Vec<ClusterId> = claim.me.owned.iter().copied().collect();
        let host_count = claim.me.host_count.map(|n| n.to_string());
        within(
            redis::Script::new(CLAIM)
                .key(&self.keys.hosts)
                .arg(&claim.me.id)
                .arg(&claim.record)
                .arg(HOST_TTL.as_millis() as u64)
                .arg(serde_json::to_string(&owned).unwrap_or_default())
                .arg(&self.keys.host_prefix)
                .arg(&claim.map.digest)
                .arg(claim.map.shards)
                .arg(claim.map.clusters)
                .arg(host_count.unwrap_or_default())
                .arg(serde_json::to_string(&claim.others).unwrap_or_default())
                .arg(&claim.me.name)
                .invoke_async(conn),
        )
        .await
    }

    async fn renew(&mut self, id: &str, renewal: &Renewal) -> RedisResult<bool> {
        let conn = self.link.conn().await?;
        let (renewed, repaired, added): (i64, i64, i64) = within(
            redis::Script::new(RENEW)
                .key(&self.keys.hosts)
                .key(self.keys.host(id))
                .key(self.keys.version(id))
                .arg(id)
                .arg(renewal.record.as_deref().unwrap_or(""))
                .arg(HOST_TTL.as_millis() as u64)
                .arg(renewal.version)
                .invoke_async(conn),
        )
        .await?;
        if repaired == 1 {
            tracing::warn!(key = %self.keys.hosts, "the fleet's host set was not a set; replaced it");
        }
        if added == 1 {
            tracing::warn!(key = %self.keys.hosts, "this host was missing from the fleet's host set (deleted or evicted?); added it back");
        }
        Ok(renewed == 1)
    }

    async fn set_version(&mut self, id: &str, version: u64) -> RedisResult<()> {
        let conn = self.link.conn().await?;
        let key = self.keys.version(id);
        let ttl = HOST_TTL.as_millis() as u64;
        within(set_version(&key, version, ttl).query_async(conn)).await
    }

    async fn others(&mut self, me: &str) -> RedisResult<Vec<HostRecord>> {
        let conn = self.link.conn().await?;
        let mut ids = members(conn, &self.keys).await?;
        ids.retain(|id| id != me);
        self.hosts.refresh(conn, &self.keys, ids).await
    }

    async fn elect(&mut self, id: &str, seen: u64) -> RedisResult<Option<Leader>> {
        let conn = self.link.conn().await?;
        let (holder, repaired): (String, String) = within(
            redis::Script::new(ELECT)
                .key(&self.keys.leader)
                .key(&self.keys.epoch)
                .arg(id)
                .arg(LEASE.as_millis() as u64)
                .arg(seen)
                .invoke_async(conn),
        )
        .await?;
        if !repaired.is_empty() {
            tracing::warn!(what = %repaired, "replaced a fleet key that could not be used");
        }
        Ok(parse_leader(&holder))
    }

    async fn leader(&mut self) -> RedisResult<Option<Leader>> {
        let conn = self.link.conn().await?;
        let holder: Option<String> =
            match within(redis::cmd("GET").arg(&self.keys.leader).query_async(conn)).await {
                Err(e) if e.code() == Some("WRONGTYPE") => None,
                other => other?,
            };
        Ok(holder.as_deref().and_then(parse_leader))
    }

    async fn write_exit_order(&mut self, order: &str) -> RedisResult<()> {
        let conn = self.link.conn().await?;
        within(
            redis::cmd("SET")
                .arg(&self.keys.exit)
                .arg(order)
                .arg("PX")
                .arg(EXIT_ORDER_TTL.as_millis() as u64)
                .query_async(conn),
        )
        .await
    }

    async fn read_exit_order(&mut self) -> RedisResult<Option<String>> {
        let conn = self.link.conn().await?;
        reads::exit_order(conn, &self.keys).await
    }

    async fn resign(&mut self, id: &str) -> RedisResult<()> {
        let conn = self.link.conn().await?;
        let _: i64 = within(
            redis::Script::new(RESIGN)
                .key(&self.keys.leader)
                .arg(id)
                .invoke_async(conn),
        )
        .await?;
        within(
            redis::pipe()
                .del(self.keys.host(id))
                .del(self.keys.version(id))
                .srem(&self.keys.hosts, id)
                .query_async(conn),
        )
        .await
    }
}
