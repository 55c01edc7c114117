use super::*;
use tokio::sync::oneshot;

fn text(item: Item) -> String {
    match item.out {
        Outbound::Publish { payload, .. } => format!("p:{payload}"),
        Outbound::PushLog(s) => format!("l:{s}"),
        Outbound::ReadLog(_) => "read".into(),
        Outbound::Flush(_) => "flush".into(),
    }
}

fn publish(payload: String) -> Outbound {
    Outbound::Publish {
        channel: String::new(),
        payload,
    }
}

fn drain(outbox: &Outbox) -> Vec<String> {
    std::iter::from_fn(|| outbox.pop()).map(text).collect()
}

#[test]
fn items_come_out_in_the_order_they_went_in_across_kinds() {
    let outbox = Outbox::new();
    outbox.push(publish("a".into()));
    outbox.push(Outbound::PushLog("b".into()));
    let (tx, _rx) = oneshot::channel();
    outbox.push(Outbound::Flush(tx));
    outbox.push(publish("c".into()));
    assert_eq!(drain(&outbox), ["p:a", "l:b", "flush", "p:c"]);
    assert_eq!(outbox.dropped(), Dropped::default());
}

#[test]
fn full_publishes_drop_the_oldest_publishes_and_keep_every_log_entry() {
    let outbox = Outbox::new();
    outbox.push(Outbound::PushLog("first".into()));
    for i in 0..PUBLISHES + 10 {
        outbox.push(publish(i.to_string()));
    }
    outbox.push(Outbound::PushLog("last".into()));
    assert_eq!(outbox.dropped().publishes, 10);
    let backlog = outbox.backlog();
    assert_eq!((backlog.publishes, backlog.log_entries), (PUBLISHES, 2));
    let all = drain(&outbox);
    assert_eq!(all.first().map(String::as_str), Some("l:first"));
    assert_eq!(all[1], "p:10", "the ten oldest publishes went");
    assert_eq!(all[all.len() - 2], format!("p:{}", PUBLISHES + 9));
    assert_eq!(all.last().map(String::as_str), Some("l:last"));
}

#[test]
fn publishes_are_bounded_in_bytes_and_one_too_big_alone_is_dropped() {
    let outbox = Outbox::new();
    let big = "x".repeat(PUBLISH_BYTES / 4);
    for _ in 0..5 {
        outbox.push(publish(big.clone()));
    }
    assert_eq!(outbox.backlog().publishes, 4);
    assert!(outbox.backlog().publish_bytes <= PUBLISH_BYTES);
    assert_eq!(outbox.dropped().publishes, 1);
    outbox.push(publish("y".repeat(PUBLISH_BYTES + 1)));
    assert_eq!(
        outbox.dropped().publishes,
        6,
        "it alone was too big: all went"
    );
    assert_eq!(outbox.backlog(), Backlog::default());
}

#[test]
fn full_action_log_drops_the_oldest_entries() {
    let outbox = Outbox::new();
    for i in 0..LOG_ENTRIES + 3 {
        outbox.push(Outbound::PushLog(i.to_string()));
    }
    assert_eq!(outbox.dropped().log_entries, 3);
    let all = drain(&outbox);
    assert_eq!(all.len(), LOG_ENTRIES);
    assert_eq!(all[0], "l:3");
}

#[tokio::test]
async fn requests_past_the_bound_are_answered_at_once() {
    let outbox = Outbox::new();
    let mut waiting = Vec::new();
    for _ in 0..REQUESTS {
        let (tx, rx) = oneshot::channel();
        outbox.push(Outbound::ReadLog(tx));
        waiting.push(rx);
    }
    let (tx, rx) = oneshot::channel();
    outbox.push(Outbound::ReadLog(tx));
    let answer = rx.await.expect("answered");
    assert!(answer.is_err_and(|e| e.contains("too many")));
    let (tx, rx) = oneshot::channel();
    outbox.push(Outbound::Flush(tx));
    assert_eq!(rx.await, Ok(()));
    assert_eq!(outbox.dropped().requests, 2);
    // The waiting ones are still there, unanswered.
    assert_eq!(outbox.backlog().requests, REQUESTS);
    assert!(waiting[0].try_recv().is_err());
}

#[test]
fn put_back_keeps_the_order_and_stale_publishes_expire() {
    let outbox = Outbox::new();
    for s in ["a", "b", "c"] {
        outbox.push(publish(s.into()));
    }
    let taken = vec![
        outbox.pop_publish().expect("a"),
        outbox.pop_publish().expect("b"),
    ];
    outbox.push(Outbound::PushLog("d".into()));
    outbox.put_back(taken);
    outbox.expire_publishes(Duration::from_secs(60));
    assert_eq!(outbox.dropped().stale_publishes, 0);
    assert_eq!(drain(&outbox), ["p:a", "p:b", "p:c", "l:d"]);
    outbox.push(publish("old".into()));
    outbox.push(Outbound::PushLog("kept".into()));
    outbox.expire_publishes(Duration::ZERO);
    assert_eq!(outbox.dropped().stale_publishes, 1);
    assert_eq!(drain(&outbox), ["l:kept"]);
}

#[tokio::test]
async fn ready_says_false_once_closed_and_drained() {
    let outbox = Outbox::new();
    outbox.push(publish("a".into()));
    outbox.close();
    outbox.push(publish("after".into()));
    assert_eq!(outbox.recv().await.map(text).as_deref(), Some("p:a"));
    assert!(outbox.recv().await.is_none());
}
