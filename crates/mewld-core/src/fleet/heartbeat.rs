//! The heartbeat's rules: when this host's record is written, which
//! version it carries, how long a leader may act on its lease, which hosts
//! are shown through a Redis stall, which epoch is the highest seen, and
//! which order to stop is news. The fleet task (main crate) does the Redis
//! round trips these decide; the time comes in as an argument.

use std::time::{Duration, Instant};

use crate::cluster_map::MapPrint;
use crate::model::fleet::{HostRecord, Leader, Membership};
use crate::model::state::{ClusterView, ExitOrder};

/// How often a host renews its record (sooner when its clusters change).
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often a host reads the others' records and takes part in the
/// election: what it shows of another host lags by at most this much
/// behind that host's own record.
pub const READ_INTERVAL: Duration = Duration::from_millis(250);
/// A record not renewed for this long is gone: its host is lost.
pub const HOST_TTL: Duration = Duration::from_secs(5);
/// The leader's lease in Redis.
pub const LEASE: Duration = Duration::from_secs(5);
/// A leader stops acting as one this long before its lease ends in Redis,
/// so that a paused or cut-off leader is silent before another is elected.
pub const LEASE_MARGIN: Duration = Duration::from_millis(1500);
/// How long the leader's order to stop stays in Redis for hosts that
/// missed the message: longer than any stall a host lives through.
pub const EXIT_ORDER_TTL: Duration = Duration::from_secs(600);
/// After Redis failed or stalled, how long a host missing from it is not
/// taken for lost (a host claims again within a heartbeat of Redis coming
/// back).
pub const STALL_GRACE: Duration = HOST_TTL;
/// After this host's record lapsed (Redis lost it, or this host was away),
/// how long it takes no part in the election: every live host renews
/// within a heartbeat, claiming again with the epoch it saw, so by then
/// the records say the highest epoch any of them knows. Elected sooner, a
/// host that missed the last election could hand out an epoch below it
/// (a FLUSHALL takes the counter too).
pub const ELECTION_HOLD: Duration = HOST_TTL;

/// A write of this host's record: the record's text when it changed
/// (`None`: only the TTL is renewed), and the version it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewal {
    pub record: Option<String>,
    pub version: u64,
}

/// What the heartbeat keeps between rounds.
#[derive(Debug, Default)]
pub struct Heartbeat {
    /// The record as last written, and when it was last renewed.
    written: Option<String>,
    renewed_at: Option<Instant>,
    /// Bumped at each write of the record, so that the others fetch it
    /// again (they read versions, and records only when those move).
    version: u64,
    /// The highest leader epoch seen, this host's or in others' records.
    epoch_seen: u64,
    /// The order to stop that was in Redis when this host joined (its own
    /// previous run's, say) or that could not be read: not for this run.
    old_order: Option<String>,
    /// This host's own order, once it is in Redis.
    ordered: bool,
    /// Redis failed or stalled since the last good round.
    stalled: bool,
    /// Until then, hosts missing from Redis are kept as last read.
    grace_until: Option<Instant>,
    /// Until then, this host does not take part in the election.
    hold_election_until: Option<Instant>,
    /// The other hosts as last shown.
    last_hosts: Vec<HostRecord>,
}

impl Heartbeat {
    /// A heartbeat for a host that joined while `old_order` stood in Redis.
    pub fn new(old_order: Option<String>) -> Heartbeat {
        Heartbeat {
            old_order,
            ..Heartbeat::default()
        }
    }

    pub fn epoch_seen(&self) -> u64 {
        self.epoch_seen
    }

    /// The write due at `now` for the record `record` (as text): one when
    /// it changed (a new version) or when a heartbeat has passed since the
    /// last renewal.
    pub fn renewal(&mut self, record: &str, now: Instant) -> Option<Renewal> {
        let changed = self.written.as_deref() != Some(record);
        let due = self
            .renewed_at
            .is_none_or(|at| now.duration_since(at) >= HEARTBEAT);
        if !(changed || due) {
            return None;
        }
        if changed {
            self.version += 1;
        }
        Some(Renewal {
            record: changed.then(|| record.to_string()),
            version: self.version,
        })
    }

    /// The renewal asked at `at` is in Redis, with the record `record`.
    pub fn renewed(&mut self, record: String, at: Instant) {
        self.written = Some(record);
        self.renewed_at = Some(at);
    }

    /// The record had lapsed and this host claimed its clusters again at
    /// `now`: the version to write beside the new record. The election
    /// waits [`ELECTION_HOLD`].
    pub fn reclaimed(&mut self, now: Instant) -> u64 {
        self.hold_election_until = Some(now + ELECTION_HOLD);
        self.version += 1;
        self.version
    }

    /// Whether this host may take part in the election at `now`.
    pub fn may_elect(&self, now: Instant) -> bool {
        self.hold_election_until.is_none_or(|until| now >= until)
    }

    /// Redis failed or did not answer in time this round.
    pub fn stalled(&mut self) {
        self.stalled = true;
    }

    /// The hosts to show after a read at `now`. Right after Redis failed
    /// or stalled here (a `CLIENT PAUSE`, an outage) every host's record
    /// may have lapsed meanwhile, ours too: that says nothing about the
    /// others, who claim again within a heartbeat of Redis coming back.
    /// So for a while a host missing from Redis is shown as it was.
    pub fn through_stall(&mut self, mut hosts: Vec<HostRecord>, now: Instant) -> Vec<HostRecord> {
        if std::mem::take(&mut self.stalled) {
            self.grace_until = Some(now + STALL_GRACE);
        }
        if self.grace_until.is_some_and(|until| now < until) {
            for was in &self.last_hosts {
                if !hosts.iter().any(|h| h.id == was.id) {
                    hosts.push(was.clone());
                }
            }
        } else {
            self.grace_until = None;
        }
        self.last_hosts = hosts.clone();
        hosts
    }

    /// The highest epoch this host knows of, with the others' records: a
    /// new leader's epoch must be above it (fencing never goes back).
    pub fn epoch_to_beat(&self, hosts: &[HostRecord]) -> u64 {
        hosts
            .iter()
            .map(|h| h.epoch_seen)
            .fold(self.epoch_seen, u64::max)
    }

    /// The election's outcome, with `seen` the epoch it was told to beat.
    pub fn elected(&mut self, leader: Option<&Leader>, seen: u64) {
        self.epoch_seen = leader.map_or(seen, |l| l.epoch.max(seen));
    }

    /// This host's own order to stop, if it gave one that is not yet in
    /// Redis: to be written for hosts that miss the message.
    pub fn order_to_write(&self, own: Option<ExitOrder>) -> Option<ExitOrder> {
        own.filter(|_| !self.ordered)
    }

    /// The order is in Redis: it is not written again.
    pub fn order_written(&mut self) {
        self.ordered = true;
    }

    /// The order to stop read from Redis (`text`), if it is news to this
    /// run. One that cannot be read is said once (the `Err`) and ignored
    /// from then on.
    pub fn order_read(&mut self, text: Option<String>) -> Result<Option<ExitOrder>, String> {
        let Some(text) = text.filter(|t| Some(t) != self.old_order.as_ref()) else {
            return Ok(None);
        };
        match serde_json::from_str::<ExitOrder>(&text) {
            Ok(order) => Ok(Some(order)),
            Err(e) => {
                self.old_order = Some(text);
                Err(e.to_string())
            }
        }
    }
}

/// Until when this host may act as the leader, after an election asked at
/// `asked_at` named `leader`: the lease less its margin, or `None` when
/// another host leads.
pub fn lease_until(leader: Option<&Leader>, me: &str, asked_at: Instant) -> Option<Instant> {
    leader
        .filter(|l| l.host == me)
        .map(|_| asked_at + LEASE - LEASE_MARGIN)
}

/// What this process knows of itself, to recognise a record its previous
/// run left behind.
pub struct ThisRun<'a> {
    /// This machine's boot id (empty where the kernel does not say).
    pub boot_id: &'a str,
    pub pid: u32,
}

/// Whether `other` (a record of this host's name) was left by a previous
/// run on this machine: same boot, and its process gone (`gone(pid)`), or
/// it is this very process's pid, which a restarted container reuses.
/// Anything else is left to lapse.
pub fn is_previous_run(other: &HostRecord, me: &ThisRun, gone: impl Fn(u32) -> bool) -> bool {
    if me.boot_id.is_empty() || other.boot_id != me.boot_id {
        return false;
    }
    other.pid == me.pid || gone(other.pid)
}

/// What every record of one run says that does not change.
pub struct RecordBase<'a> {
    pub me: &'a Membership,
    pub map: &'a MapPrint,
    pub version: &'a str,
    pub started_at: u64,
    pub boot_id: &'a str,
}

impl RecordBase<'_> {
    /// This host's record: alone, a claim (the clusters' states are not
    /// shared); in a fleet, with the states of the clusters it owns.
    pub fn record(&self, epoch_seen: u64, clusters: &[ClusterView]) -> HostRecord {
        let clusters = if self.me.solo {
            Vec::new()
        } else {
            clusters
                .iter()
                .filter(|c| self.me.owned.contains(&c.id))
                .cloned()
                .collect()
        };
        HostRecord {
            id: self.me.id.clone(),
            name: self.me.name.clone(),
            pid: self.me.pid,
            version: self.version.to_string(),
            owned: self.me.owned.clone(),
            shard_count: self.map.shards,
            cluster_count: self.map.clusters,
            map: self.map.clone(),
            host_count: self.me.host_count,
            solo: self.me.solo,
            epoch_seen,
            started_at: self.started_at,
            boot_id: self.boot_id.to_string(),
            clusters,
        }
    }
}

#[cfg(test)]
mod tests;
