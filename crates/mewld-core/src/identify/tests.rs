//! The identify queue's rules, in simulated time.

use super::*;

const MARGIN: Duration = Duration::from_millis(250);

fn rules(max_concurrency: u32) -> Rules {
    Rules {
        max_concurrency,
        margin: MARGIN,
        reserve: 5,
        capacity: 100,
    }
}

fn tickets(p: &Poll) -> Vec<Ticket> {
    p.grants.iter().map(|g| g.ticket).collect()
}

#[test]
fn one_grant_per_bucket_per_window() {
    let t0 = Instant::now();
    let mut q = Queue::new(rules(4), 16, None);
    // Shards 0, 4, 8 share bucket 0; 1 and 5 bucket 1.
    for (ticket, shard) in [(1, 0), (2, 4), (3, 8), (4, 1), (5, 5)] {
        q.enqueue(ticket, Some(shard)).expect("queued");
    }
    let p = q.poll(t0);
    assert_eq!(tickets(&p), [1, 4]);
    assert_eq!(p.grants[1].bucket, 1);
    assert_eq!(p.wake_at, Some(t0 + WINDOW + MARGIN));
    // Nothing more until the window and margin have passed.
    assert!(q.poll(t0 + WINDOW).grants.is_empty());
    assert_eq!(tickets(&q.poll(t0 + WINDOW + MARGIN)), [2, 5]);
    assert_eq!(q.status(t0 + WINDOW + MARGIN).granted_in_window, 2);
    let p = q.poll(t0 + (WINDOW + MARGIN) * 2);
    assert_eq!(tickets(&p), [3]);
    assert_eq!(p.wake_at, None, "nothing left waiting");
    assert_eq!(q.status(t0).granted_total, 5);
}

#[test]
fn first_come_first_served_within_a_bucket() {
    let t0 = Instant::now();
    let mut q = Queue::new(rules(1), 8, None);
    for ticket in [7, 3, 9] {
        q.enqueue(ticket, Some(ticket % 8)).expect("queued");
    }
    let mut order = Vec::new();
    for i in 0..3 {
        order.extend(tickets(&q.poll(t0 + (WINDOW + MARGIN) * i)));
    }
    assert_eq!(order, [7, 3, 9]);
}

#[test]
fn a_bucket_idle_for_a_window_grants_at_once() {
    let t0 = Instant::now();
    let mut q = Queue::new(rules(2), 4, None);
    q.enqueue(1, Some(0)).expect("queued");
    assert_eq!(tickets(&q.poll(t0)), [1]);
    q.enqueue(2, Some(2)).expect("queued");
    let p = q.poll(t0 + Duration::from_secs(1));
    assert!(p.grants.is_empty(), "bucket 0 granted a second ago");
    assert_eq!(p.wake_at, Some(t0 + WINDOW + MARGIN));
    q.enqueue(3, Some(1)).expect("queued");
    assert_eq!(
        tickets(&q.poll(t0 + Duration::from_secs(2))),
        [3],
        "bucket 1 is free"
    );
    assert_eq!(tickets(&q.poll(t0 + Duration::from_secs(60))), [2]);
}

#[test]
fn a_cancelled_request_spends_nothing() {
    let t0 = Instant::now();
    let mut q = Queue::new(
        rules(1),
        4,
        Some(Budget {
            remaining: 100,
            total: 1000,
            resets_at: Some(t0 + BUDGET_PERIOD),
        }),
    );
    q.enqueue(1, Some(0)).expect("queued");
    q.enqueue(2, Some(1)).expect("queued");
    assert!(q.cancel(1));
    assert!(!q.cancel(1), "already gone");
    assert_eq!(q.waiting(), 1);
    assert_eq!(tickets(&q.poll(t0)), [2], "its place went to the next");
    assert_eq!(q.status(t0).budget_remaining, Some(99));
}

#[test]
fn bad_shards_and_a_full_queue_are_refused() {
    let mut q = Queue::new(
        Rules {
            capacity: 2,
            ..rules(1)
        },
        4,
        None,
    );
    assert_eq!(
        q.enqueue(1, Some(4)),
        Err(Refusal::NoSuchShard {
            shard: 4,
            shard_count: 4
        })
    );
    assert!(q.enqueue(1, Some(u64::MAX)).is_err());
    q.enqueue(1, None).expect("no shard: bucket 0");
    q.enqueue(2, Some(3)).expect("queued");
    assert_eq!(q.enqueue(3, Some(1)), Err(Refusal::Full { waiting: 2 }));
    q.set_shard_count(8);
    assert!(q.cancel(2));
    q.enqueue(4, Some(7)).expect("a reshard added shard 7");
}

#[test]
fn the_budget_holds_at_the_reserve_until_it_resets() {
    let t0 = Instant::now();
    let resets_at = t0 + Duration::from_secs(3600);
    let mut q = Queue::new(
        rules(2),
        8,
        Some(Budget {
            remaining: 7,
            total: 1000,
            resets_at: Some(resets_at),
        }),
    );
    for ticket in 0..4 {
        q.enqueue(ticket, Some(ticket)).expect("queued");
    }
    // Two left above the reserve of 5: buckets 0 and 1 take them.
    assert_eq!(tickets(&q.poll(t0)), [0, 1]);
    let later = t0 + Duration::from_secs(10);
    let p = q.poll(later);
    assert!(p.grants.is_empty(), "the last 5 are kept");
    assert_eq!(
        p.notices,
        [Notice::BudgetLow {
            remaining: 5,
            reserve: 5,
            resets_in: Duration::from_secs(3590)
        }]
    );
    assert_eq!(p.wake_at, Some(resets_at));
    assert!(q.status(later).held);
    assert!(q.poll(later).notices.is_empty(), "said once");
    let p = q.poll(resets_at);
    assert_eq!(
        p.notices,
        [Notice::BudgetReset {
            remaining: 1000,
            ended_hold: true
        }]
    );
    assert_eq!(tickets(&p), [2, 3]);
    assert_eq!(q.status(resets_at).budget_remaining, Some(998));
    assert!(!q.status(resets_at).held);
}

/// Discord says `reset_after: 0` while nothing is spent: no reset runs
/// until the first session start, whose day it starts (the queue's reset
/// then comes no earlier than Discord's). A reset is said to the action
/// log only when it ends a hold, but always reported (Discord is asked).
#[test]
fn discords_day_starts_with_the_first_session_start() {
    let t0 = Instant::now();
    let limit = crate::model::SessionStartLimit {
        total: 10,
        remaining: 10,
        reset_after: 0,
        max_concurrency: 1,
    };
    let budget = Budget::from_discord(&limit, t0);
    assert_eq!(budget.resets_at, None);
    let mut q = Queue::new(rules(1), 2, Some(budget));
    assert_eq!(q.poll(t0), Poll::default(), "nothing to reset");
    let first = t0 + Duration::from_secs(10 * 3600);
    q.enqueue(1, Some(0)).expect("queued");
    assert_eq!(tickets(&q.poll(first)), [1]);
    // Not a day after the start: a day after the first grant.
    assert!(q.poll(t0 + BUDGET_PERIOD).notices.is_empty());
    let p = q.poll(first + BUDGET_PERIOD);
    assert_eq!(
        p.notices,
        [Notice::BudgetReset {
            remaining: 10,
            ended_hold: false
        }]
    );
    assert_eq!(q.status(first).budget_remaining, Some(10));
}

/// A fresh word from Discord that there is budget enough ends a hold
/// before the reset time the queue was waiting for.
#[test]
fn discords_count_can_end_a_hold() {
    let t0 = Instant::now();
    let low = Budget {
        remaining: 5,
        total: 1000,
        resets_at: Some(t0 + Duration::from_secs(3600)),
    };
    let mut q = Queue::new(rules(1), 2, Some(low));
    q.enqueue(1, Some(0)).expect("queued");
    assert!(q.poll(t0).grants.is_empty());
    assert!(q.status(t0).held);
    q.set_budget(Budget {
        remaining: 900,
        ..low
    });
    assert_eq!(tickets(&q.poll(t0)), [1]);
    assert!(!q.status(t0).held);
}

#[test]
fn grants_in_the_window_are_counted_and_forgotten() {
    let t0 = Instant::now();
    let mut q = Queue::new(rules(3), 3, None);
    for s in 0..3 {
        q.enqueue(s, Some(s)).expect("queued");
    }
    q.poll(t0);
    assert_eq!(q.status(t0).granted_in_window, 3);
    q.prune(t0 + WINDOW);
    assert_eq!(q.status(t0 + WINDOW).granted_in_window, 0);
    assert_eq!(q.status(t0 + WINDOW).granted_total, 3);
}

/// Any arrival order, any cancellations: no bucket is granted twice
/// within a window, and every request is granted exactly once.
#[test]
fn random_arrivals_never_break_the_window() {
    use proptest::prelude::*;
    proptest!(|(arrivals in proptest::collection::vec((0u64..32, 0u64..20_000, any::<bool>()), 1..80))| {
        let t0 = Instant::now();
        let mut q = Queue::new(Rules { capacity: 1000, ..rules(4) }, 32, None);
        let mut events: Vec<_> = arrivals.iter().enumerate().collect();
        events.sort_by_key(|(_, (_, at, _))| *at);
        let mut granted: Vec<Grant> = Vec::new();
        let mut times: Vec<(u32, Instant)> = Vec::new();
        let mut cancelled = 0;
        // Step time in 250 ms ticks, enqueuing arrivals as they come,
        // long enough for 80 requests in one bucket.
        let mut next = 0;
        for tick in 0..2000u64 {
            let now = t0 + Duration::from_millis(tick * 250);
            while next < events.len() && events[next].1 .1 <= tick * 250 {
                let (ticket, (shard, _, cancel)) = events[next];
                q.enqueue(ticket as u64, Some(*shard)).expect("room");
                if *cancel && q.cancel(ticket as u64) {
                    cancelled += 1;
                }
                next += 1;
            }
            for g in q.poll(now).grants {
                times.push((g.bucket, now));
                granted.push(g);
            }
        }
        prop_assert_eq!(granted.len() + cancelled, arrivals.len());
        for bucket in 0..4 {
            let t: Vec<_> = times.iter().filter(|(b, _)| *b == bucket).map(|(_, t)| *t).collect();
            for pair in t.windows(2) {
                prop_assert!(pair[1] - pair[0] >= WINDOW + MARGIN);
            }
        }
    });
}

/// In a fleet, the queue grants only where Redis gave this host the
/// bucket's window, and holds when the shared budget is down to the reserve.
#[test]
fn a_fleet_grants_only_in_the_buckets_it_holds() {
    let t0 = Instant::now();
    let budget = Budget {
        remaining: 100,
        total: 1000,
        resets_at: None,
    };
    let mut q = Queue::new(rules(4), 16, Some(budget));
    for (ticket, shard) in [(1, 0), (2, 1), (3, 5)] {
        q.enqueue(ticket, Some(shard)).expect("queued");
    }
    assert_eq!(q.ready_buckets(t0), [0, 1]);
    // Another host holds bucket 0's window.
    let p = q.poll_where(t0, |b| b == 1);
    assert_eq!(tickets(&p), [2]);
    assert_eq!(
        q.ready_buckets(t0),
        [0],
        "bucket 1 is spent here for a window"
    );
    assert_eq!(q.budget().map(|b| b.remaining), Some(99));
    // The fleet has spent the rest: held, whatever Redis allows.
    q.set_remaining(5);
    let p = q.poll_where(t0 + WINDOW + MARGIN, |_| true);
    assert!(p.grants.is_empty());
    assert!(matches!(
        p.notices[..],
        [Notice::BudgetLow { remaining: 5, .. }]
    ));
}
