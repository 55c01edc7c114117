//! The fleet task's flow on a store in memory: what it writes and reads in
//! each round, a lapse claimed again, a host displaced, a previous run's
//! record dropped, the lease, orders to stop. (Redis itself, its scripts
//! and its faults are `tests/fleet.rs`'s.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::*;
use mewld_core::cluster_map::build;
use mewld_core::fleet::heartbeat::{Renewal, LEASE, LEASE_MARGIN};
use mewld_core::fleet::Leader;
use mewld_core::model::state::FleetSummary;

/// A store in memory: the records by host id, the leader, the order, and
/// a log of what was asked of it.
#[derive(Default)]
struct MemStore {
    records: BTreeMap<String, String>,
    versions: BTreeMap<String, u64>,
    leader: Option<Leader>,
    exit_order: Option<String>,
    /// `renew` answers that the record had lapsed, once.
    lapse_once: bool,
    asked: Vec<String>,
}

impl MemStore {
    fn record(&self, id: &str) -> HostRecord {
        match self.records.get(id).map(|t| serde_json::from_str(t)) {
            Some(Ok(record)) => record,
            other => panic!("no record of {id}: {other:?}"),
        }
    }

    fn put(&mut self, record: &HostRecord) {
        let text = serde_json::to_string(record).unwrap_or_default();
        self.records.insert(record.id.clone(), text);
    }
}

impl FleetStore for MemStore {
    async fn reach(&mut self) -> redis::RedisResult<()> {
        Ok(())
    }

    fn reachable(&self) -> bool {
        true
    }

    fn reset(&mut self) {}

    async fn everyone_else(
        &mut self,
        me: &str,
    ) -> redis::RedisResult<(Vec<String>, Vec<HostRecord>)> {
        let ids: Vec<String> = self
            .records
            .keys()
            .filter(|id| *id != me)
            .cloned()
            .collect();
        let records = ids.iter().map(|id| self.record(id)).collect();
        Ok((ids, records))
    }

    async fn drop_host(&mut self, id: &str) -> redis::RedisResult<()> {
        self.asked.push(format!("drop {id}"));
        self.records.remove(id);
        Ok(())
    }

    async fn claim(&mut self, claim: &Claim<'_>) -> redis::RedisResult<Option<String>> {
        self.asked.push("claim".into());
        let conflict = self
            .records
            .iter()
            .filter(|(id, _)| **id != claim.me.id)
            .find(|(id, _)| {
                let theirs = self.record(id);
                !theirs.owned.is_disjoint(&claim.me.owned) || theirs.name == claim.me.name
            });
        if let Some((_, text)) = conflict {
            return Ok(Some(text.clone()));
        }
        self.records
            .insert(claim.me.id.clone(), claim.record.clone());
        Ok(None)
    }

    async fn renew(&mut self, id: &str, renewal: &Renewal) -> redis::RedisResult<bool> {
        self.asked.push(format!("renew v{}", renewal.version));
        if std::mem::take(&mut self.lapse_once) {
            self.records.remove(id);
            return Ok(false);
        }
        if let Some(text) = &renewal.record {
            self.records.insert(id.to_string(), text.clone());
        }
        self.versions.insert(id.to_string(), renewal.version);
        Ok(true)
    }

    async fn set_version(&mut self, id: &str, version: u64) -> redis::RedisResult<()> {
        self.asked.push(format!("version v{version}"));
        self.versions.insert(id.to_string(), version);
        Ok(())
    }

    async fn others(&mut self, me: &str) -> redis::RedisResult<Vec<HostRecord>> {
        Ok(self.everyone_else(me).await?.1)
    }

    async fn elect(&mut self, id: &str, seen: u64) -> redis::RedisResult<Option<Leader>> {
        if self.leader.is_none() {
            self.leader = Some(Leader {
                host: id.to_string(),
                epoch: seen + 1,
            });
        }
        Ok(self.leader.clone())
    }

    async fn leader(&mut self) -> redis::RedisResult<Option<Leader>> {
        Ok(self.leader.clone())
    }

    async fn write_exit_order(&mut self, order: &str) -> redis::RedisResult<()> {
        self.asked.push(format!("order {order}"));
        self.exit_order = Some(order.to_string());
        Ok(())
    }

    async fn read_exit_order(&mut self) -> redis::RedisResult<Option<String>> {
        Ok(self.exit_order.clone())
    }

    async fn resign(&mut self, id: &str) -> redis::RedisResult<()> {
        self.records.remove(id);
        Ok(())
    }
}

fn member(name: &str, owned: &[u32], solo: bool) -> (Member, watch::Sender<Arc<Snapshot>>) {
    let specs = build(8, 2, &[]);
    let (tx, snapshot) = watch::channel(Arc::new(Snapshot::default()));
    let member = Member {
        me: Membership {
            id: format!("{name}:1"),
            name: name.into(),
            pid: 1,
            owned: owned.iter().copied().collect(),
            host_count: None,
            solo,
        },
        map: MapPrint::of(8, &specs),
        started_at: 0,
        boot_id: "boot".into(),
        snapshot,
    };
    (member, tx)
}

fn at(ms: u64) -> Instant {
    thread_local!(static START: Instant = Instant::now());
    START.with(|s| *s + Duration::from_millis(ms))
}

#[tokio::test]
async fn a_round_writes_the_record_then_only_renews_it() {
    let (a, _snapshot) = member("a", &[0, 1], false);
    let mut store = MemStore::default();
    let mut rules = Heartbeat::new(None);
    a.claim(&mut store, 0).await.expect("claimed");
    let view = a
        .heartbeat(&mut store, &mut rules, at(0))
        .await
        .expect("round");
    assert_eq!(view.me, "a");
    assert_eq!(store.record("a:1").owned, BTreeSet::from([0, 1]));
    for ms in [250, 1000, 1250, 2000] {
        a.heartbeat(&mut store, &mut rules, at(ms))
            .await
            .expect("round");
    }
    // At 1 s the record changed (it carries the epoch this host saw
    // elected); at 2 s it is only renewed; in between, nothing.
    assert_eq!(
        store.asked,
        ["claim", "renew v1", "renew v2", "renew v2"],
        "written when it changes or a heartbeat is due, and only then"
    );
    assert_eq!(store.record("a:1").epoch_seen, 1);
}

#[tokio::test]
async fn a_lapsed_record_is_claimed_again_with_a_new_version() {
    let (a, _snapshot) = member("a", &[0, 1], false);
    let mut store = MemStore::default();
    let mut rules = Heartbeat::new(None);
    a.claim(&mut store, 0).await.expect("claimed");
    a.heartbeat(&mut store, &mut rules, at(0))
        .await
        .expect("round");
    store.lapse_once = true;
    let view = a
        .heartbeat(&mut store, &mut rules, at(1000))
        .await
        .expect("round");
    assert_eq!(view.displaced, None);
    assert_eq!(
        store.asked,
        ["claim", "renew v1", "renew v2", "claim", "version v3"]
    );
    assert!(store.records.contains_key("a:1"), "registered again");
}

#[tokio::test]
async fn a_host_whose_clusters_were_claimed_meanwhile_is_displaced() {
    let (a, _snapshot) = member("a", &[0, 1], false);
    let (b, _b_snapshot) = member("b", &[1, 2], false);
    let mut store = MemStore::default();
    let mut rules = Heartbeat::new(None);
    a.claim(&mut store, 0).await.expect("claimed");
    a.heartbeat(&mut store, &mut rules, at(0))
        .await
        .expect("round");
    // a's record lapses (a paused for longer than the TTL) and b claims
    // cluster 1 meanwhile.
    store.records.remove("a:1");
    b.claim(&mut store, 0)
        .await
        .expect("b claims the free clusters");
    store.lapse_once = true;
    let view = a
        .heartbeat(&mut store, &mut rules, at(1000))
        .await
        .expect("round");
    let why = view.displaced.expect("a must stop its clusters");
    assert!(
        why.contains("clusters 1 are already run by host b:1"),
        "{why}"
    );
    assert!(
        !store.records.contains_key("a:1"),
        "a did not register again"
    );
}

#[tokio::test]
async fn a_record_left_by_this_hosts_previous_run_is_dropped() {
    let (a, _snapshot) = member("a", &[0, 1], false);
    let mut store = MemStore::default();
    // The same name and boot, and this very pid: a restarted container.
    let (old, _old_snapshot) = member("a", &[0, 1], false);
    let mut previous = old.record(0);
    previous.id = "a:old".into();
    previous.pid = std::process::id();
    store.put(&previous);
    a.claim(&mut store, 0)
        .await
        .expect("the old record is no obstacle");
    assert_eq!(store.asked, ["drop a:old", "claim"]);
}

#[tokio::test]
async fn a_live_host_of_another_name_is_not_dropped_and_refuses_the_claim() {
    let (a, _snapshot) = member("a", &[0, 1], false);
    let (b, _b_snapshot) = member("b", &[1], false);
    let mut store = MemStore::default();
    store.put(&b.record(0));
    let refused = a.claim(&mut store, 0).await;
    assert!(
        matches!(refused, Err(JoinError::Refused(Refusal::Claimed { .. }))),
        "{refused:?}"
    );
    assert_eq!(store.asked, ["claim"]);
}

#[tokio::test]
async fn the_leader_acts_until_its_lease_less_the_margin() {
    let (a, _snapshot) = member("a", &[0, 1], false);
    let (b, _b_snapshot) = member("b", &[2, 3], false);
    let mut store = MemStore::default();
    let mut rules = Heartbeat::new(None);
    a.claim(&mut store, 0).await.expect("claimed");
    let view = a
        .heartbeat(&mut store, &mut rules, at(0))
        .await
        .expect("round");
    assert_eq!(view.lease_until, Some(at(0) + LEASE - LEASE_MARGIN));
    let mut b_rules = Heartbeat::new(None);
    b.claim(&mut store, 0).await.expect("claimed");
    let b_view = b
        .heartbeat(&mut store, &mut b_rules, at(100))
        .await
        .expect("round");
    assert_eq!(b_view.lease_until, None, "b does not lead");
    assert_eq!(b_view.leader.map(|l| l.host), Some("a:1".into()));
    assert_eq!(b_rules.epoch_seen(), 1);
    assert_eq!(b_view.hosts.len(), 1, "b sees a");
}

#[tokio::test]
async fn an_order_to_stop_is_written_once_and_heard_by_the_others() {
    let (a, snapshot) = member("a", &[0, 1], false);
    let (b, _b_snapshot) = member("b", &[2, 3], false);
    let mut store = MemStore::default();
    let (mut a_rules, mut b_rules) = (Heartbeat::new(None), Heartbeat::new(None));
    a.claim(&mut store, 0).await.expect("claimed");
    b.claim(&mut store, 0).await.expect("claimed");
    let order = ExitOrder {
        restart: true,
        epoch: 1,
    };
    snapshot.send_modify(|s| {
        Arc::make_mut(s).fleet = Some(FleetSummary {
            exit_order: Some(order),
            ..FleetSummary::default()
        })
    });
    for ms in [0, 250] {
        a.heartbeat(&mut store, &mut a_rules, at(ms))
            .await
            .expect("round");
    }
    let written = store
        .asked
        .iter()
        .filter(|a| a.starts_with("order"))
        .count();
    assert_eq!(written, 1, "{:?}", store.asked);
    let view = b
        .heartbeat(&mut store, &mut b_rules, at(300))
        .await
        .expect("round");
    assert_eq!(view.exit_order, Some(order));
}

#[tokio::test]
async fn alone_a_host_only_renews_its_claim() {
    let (a, _snapshot) = member("a", &[0, 1, 2, 3], true);
    let mut store = MemStore::default();
    let mut rules = Heartbeat::new(None);
    a.claim(&mut store, 0).await.expect("claimed");
    let view = a
        .heartbeat(&mut store, &mut rules, at(0))
        .await
        .expect("round");
    assert_eq!((view.leader, view.lease_until), (None, None));
    assert!(store.leader.is_none(), "no election alone");
    assert!(store.record("a:1").clusters.is_empty());
}

/// Redis lost everything (a FLUSHALL): the counter and every record. A
/// host that missed the last election must not hand out an epoch below
/// it: it waits until the others, the old leader among them, have claimed
/// again with the epochs they saw.
#[tokio::test]
async fn after_a_flush_the_epoch_still_grows() {
    let (a, _snapshot) = member("a", &[0, 1], false);
    let (b, _b_snapshot) = member("b", &[2, 3], false);
    let mut store = MemStore::default();
    let (mut a_rules, mut b_rules) = (Heartbeat::new(None), Heartbeat::new(None));
    a.claim(&mut store, 0).await.expect("claimed");
    b.claim(&mut store, 0).await.expect("claimed");
    a.heartbeat(&mut store, &mut a_rules, at(0))
        .await
        .expect("round");
    // A leader of epoch 41 that b has not read yet.
    store.leader = Some(Leader {
        host: "a:1".into(),
        epoch: 41,
    });
    a.heartbeat(&mut store, &mut a_rules, at(250))
        .await
        .expect("round");
    assert_eq!(a_rules.epoch_seen(), 41);
    store = MemStore {
        lapse_once: true,
        ..MemStore::default()
    };
    // b comes first, alone in the flushed store: it claims again, and
    // reads who leads (nobody) without electing.
    let view = b
        .heartbeat(&mut store, &mut b_rules, at(1000))
        .await
        .expect("round");
    assert_eq!((view.leader, store.leader.clone()), (None, None));
    store.lapse_once = true;
    a.heartbeat(&mut store, &mut a_rules, at(1250))
        .await
        .expect("round");
    // a's record says 41 now: the next election is above it, whoever wins.
    let later = at(1000) + mewld_core::fleet::heartbeat::ELECTION_HOLD;
    let view = b
        .heartbeat(&mut store, &mut b_rules, later)
        .await
        .expect("round");
    let epoch = view.leader.map(|l| l.epoch);
    assert!(epoch > Some(41), "the epoch went back to {epoch:?}");
}
