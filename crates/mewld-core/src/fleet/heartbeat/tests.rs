//! The heartbeat's rules in simulated time: `t(ms)` is a moment after a
//! fixed start, as the fleet task would read it.

use std::collections::BTreeSet;

use super::*;
use crate::cluster_map::build;

fn t(ms: u64) -> Instant {
    thread_local!(static START: Instant = Instant::now());
    START.with(|s| *s + Duration::from_millis(ms))
}

fn me(owned: &[u32], solo: bool) -> Membership {
    Membership {
        id: "a:1".into(),
        name: "a".into(),
        pid: 1,
        owned: owned.iter().copied().collect(),
        host_count: None,
        solo,
    }
}

fn host(id: &str, epoch_seen: u64) -> HostRecord {
    let map = MapPrint::of(4, &build(4, 2, &[]));
    RecordBase {
        me: &Membership {
            id: id.into(),
            name: id.into(),
            ..me(&[], false)
        },
        map: &map,
        version: "test",
        started_at: 0,
        boot_id: "boot",
    }
    .record(epoch_seen, &[])
}

fn ids(hosts: &[HostRecord]) -> Vec<&str> {
    hosts.iter().map(|h| h.id.as_str()).collect()
}

#[test]
fn a_record_is_written_when_it_changes_or_a_heartbeat_is_due() {
    let mut beat = Heartbeat::default();
    let first = beat.renewal("r1", t(0));
    assert_eq!(
        first,
        Some(Renewal {
            record: Some("r1".into()),
            version: 1
        })
    );
    beat.renewed("r1".into(), t(0));
    assert_eq!(beat.renewal("r1", t(250)), None, "unchanged, not due");
    // Due: only the TTL is renewed, the version stays (nobody refetches).
    let due = beat.renewal("r1", t(1000));
    assert_eq!(
        due,
        Some(Renewal {
            record: None,
            version: 1
        })
    );
    beat.renewed("r1".into(), t(1000));
    // Changed: written at once, with a new version, heartbeat or not.
    let changed = beat.renewal("r2", t(1100));
    assert_eq!(
        changed,
        Some(Renewal {
            record: Some("r2".into()),
            version: 2
        })
    );
}

#[test]
fn a_write_that_failed_is_tried_again_with_a_newer_version() {
    let mut beat = Heartbeat::default();
    beat.renewal("r1", t(0));
    beat.renewed("r1".into(), t(0));
    assert!(beat.renewal("r2", t(100)).is_some());
    // Redis failed: `renewed` was never called, so the next round writes
    // the record again; its version moves on, never back.
    let again = beat.renewal("r2", t(350));
    assert_eq!(
        again,
        Some(Renewal {
            record: Some("r2".into()),
            version: 3
        })
    );
}

#[test]
fn a_lapsed_record_claimed_again_gets_a_new_version() {
    let mut beat = Heartbeat::default();
    beat.renewal("r1", t(0));
    beat.renewed("r1".into(), t(0));
    assert!(beat.may_elect(t(0)));
    assert_eq!(
        beat.reclaimed(t(0)),
        2,
        "the others must fetch the new record"
    );
    let next = beat.renewal("r1", t(1000));
    assert_eq!(next.map(|r| r.version), Some(2));
}

#[test]
fn after_a_lapse_the_election_waits_for_every_host_to_claim_again() {
    let mut beat = Heartbeat::default();
    beat.reclaimed(t(100));
    // Every live host renews within a heartbeat, with the epoch it saw.
    assert!(HEARTBEAT + READ_INTERVAL < ELECTION_HOLD);
    assert!(!beat.may_elect(t(100)));
    assert!(!beat.may_elect(t(100) + ELECTION_HOLD - Duration::from_millis(1)));
    assert!(beat.may_elect(t(100) + ELECTION_HOLD));
}

#[test]
fn a_leader_acts_until_its_lease_less_the_margin() {
    let mine = Leader {
        host: "a:1".into(),
        epoch: 3,
    };
    let until = lease_until(Some(&mine), "a:1", t(10_000));
    assert_eq!(until, Some(t(10_000) + LEASE - LEASE_MARGIN));
    assert!(
        until < Some(t(10_000) + LEASE),
        "silent before Redis elects another"
    );
    let theirs = Leader {
        host: "b:2".into(),
        epoch: 3,
    };
    assert_eq!(lease_until(Some(&theirs), "a:1", t(10_000)), None);
    assert_eq!(lease_until(None, "a:1", t(10_000)), None);
}

#[test]
fn a_host_missing_after_a_stall_is_shown_for_the_grace_then_lost() {
    let mut beat = Heartbeat::default();
    let shown = beat.through_stall(vec![host("b:2", 0), host("c:3", 0)], t(0));
    assert_eq!(ids(&shown), ["b:2", "c:3"]);
    // Without a stall, a missing record is a lost host at once.
    let shown = beat.through_stall(vec![host("b:2", 0)], t(250));
    assert_eq!(ids(&shown), ["b:2"]);

    let shown = beat.through_stall(vec![host("b:2", 0), host("c:3", 0)], t(500));
    assert_eq!(ids(&shown), ["b:2", "c:3"]);
    beat.stalled();
    // Redis is back and every record lapsed meanwhile: shown as they were.
    let shown = beat.through_stall(Vec::new(), t(3000));
    assert_eq!(ids(&shown), ["b:2", "c:3"]);
    let shown = beat.through_stall(vec![host("b:2", 0)], t(3000) + STALL_GRACE / 2);
    assert_eq!(ids(&shown), ["b:2", "c:3"], "c:3 may still claim again");
    let shown = beat.through_stall(vec![host("b:2", 0)], t(3000) + STALL_GRACE);
    assert_eq!(ids(&shown), ["b:2"], "after the grace, c:3 is lost");
}

#[test]
fn the_epoch_to_beat_never_goes_back() {
    let mut beat = Heartbeat::default();
    let seen = beat.epoch_to_beat(&[host("b:2", 7), host("c:3", 4)]);
    assert_eq!(seen, 7);
    let leader = Leader {
        host: "b:2".into(),
        epoch: 9,
    };
    beat.elected(Some(&leader), seen);
    assert_eq!(beat.epoch_seen(), 9);
    // Redis lost the counter and the records: what this host saw stands.
    assert_eq!(beat.epoch_to_beat(&[]), 9);
    let stale = Leader {
        host: "c:3".into(),
        epoch: 2,
    };
    beat.elected(Some(&stale), 9);
    assert_eq!(beat.epoch_seen(), 9);
    beat.elected(None, 9);
    assert_eq!(beat.epoch_seen(), 9);
}

#[test]
fn only_an_order_given_since_joining_is_news() {
    let old = r#"{"restart":false,"epoch":1}"#.to_string();
    let mut beat = Heartbeat::new(Some(old.clone()));
    assert_eq!(
        beat.order_read(Some(old)),
        Ok(None),
        "a previous run's order"
    );
    assert_eq!(beat.order_read(None), Ok(None));
    let new = r#"{"restart":true,"epoch":2}"#.to_string();
    assert_eq!(
        beat.order_read(Some(new)),
        Ok(Some(ExitOrder {
            restart: true,
            epoch: 2
        }))
    );
}

#[test]
fn an_order_that_cannot_be_read_is_said_once_then_ignored() {
    let mut beat = Heartbeat::new(None);
    assert!(beat.order_read(Some("garbage".into())).is_err());
    assert_eq!(beat.order_read(Some("garbage".into())), Ok(None));
}

#[test]
fn this_hosts_own_order_is_written_once() {
    let mut beat = Heartbeat::new(None);
    let order = ExitOrder {
        restart: false,
        epoch: 4,
    };
    assert_eq!(beat.order_to_write(None), None);
    assert_eq!(beat.order_to_write(Some(order)), Some(order));
    beat.order_written();
    assert_eq!(beat.order_to_write(Some(order)), None);
}

#[test]
fn a_previous_runs_record_is_recognised_only_from_the_same_boot() {
    let this = ThisRun {
        boot_id: "boot",
        pid: 40,
    };
    let mut other = host("a:9", 0);
    other.pid = 9;
    assert!(is_previous_run(&other, &this, |_| true), "its pid is gone");
    assert!(!is_previous_run(&other, &this, |_| false), "its pid lives");
    other.pid = 40;
    assert!(
        is_previous_run(&other, &this, |_| false),
        "this very pid: a restarted container"
    );
    other.boot_id = "another".into();
    assert!(!is_previous_run(&other, &this, |_| true), "another boot");
    let unknown = ThisRun {
        boot_id: "",
        pid: 40,
    };
    other.boot_id = String::new();
    assert!(!is_previous_run(&other, &unknown, |_| true), "no boot id");
}

#[test]
fn a_record_shares_its_clusters_only_in_a_fleet() {
    let specs = build(4, 2, &[]);
    let map = MapPrint::of(4, &specs);
    let views: Vec<ClusterView> = specs.iter().map(ClusterView::lost).collect();
    let solo = me(&[0, 1], true);
    let base = RecordBase {
        me: &solo,
        map: &map,
        version: "1.0",
        started_at: 5,
        boot_id: "boot",
    };
    let record = base.record(3, &views);
    assert!(record.clusters.is_empty(), "alone, a record is a claim");
    assert_eq!(record.owned, BTreeSet::from([0, 1]));
    assert_eq!((record.epoch_seen, record.solo), (3, true));

    let member = me(&[1], false);
    let record = RecordBase {
        me: &member,
        ..base
    }
    .record(3, &views);
    let shared: Vec<u32> = record.clusters.iter().map(|c| c.id).collect();
    assert_eq!(shared, [1], "only the clusters it owns");
}
