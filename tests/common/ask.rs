//! Questions to a fleet over Redis, and their answers: how many hosts
//! answered, and the `statuses` answer once it says what a test waits for.

use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use super::{wait_for, Fixture, DEADLINE};

/// Every reply to `command_id` seen so far.
pub fn replies(f: &Fixture, command_id: &str) -> Vec<Value> {
    f.listener
        .all()
        .into_iter()
        .filter(|m| m["scope"] == "bot" && m["command_id"] == command_id)
        .collect()
}

/// Asks `action` and waits for its reply, then long enough for a second
/// host's reply to arrive too: returns every reply.
pub fn ask_all(f: &Fixture, action: &str, args: Value) -> Vec<Value> {
    let command_id = format!("{action}-{}", std::process::id() ^ rand_id());
    f.redis.publish(
        &f.ch,
        &json!({"scope": "launcher", "action": action, "args": args, "command_id": command_id}),
    );
    f.listener.reply(&command_id);
    // Every host hears a request within a heartbeat; a second answer would be here by now.
    thread::sleep(Duration::from_secs(2));
    replies(f, &command_id)
}

pub fn rand_id() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

/// The `statuses` answer once `check` holds for it. A question nobody
/// answers in 10 s (asked while no manager was subscribed: Redis keeps no
/// message for later) is asked again.
pub fn statuses_when(f: &Fixture, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let mut asked = 0;
    wait_for(what, DEADLINE * 2, || {
        asked += 1;
        let command_id = format!("st-{}-{asked}", rand_id());
        f.redis.publish(
            &f.ch,
            &json!({"scope": "launcher", "action": "statuses", "command_id": command_id}),
        );
        let reply = wait_for_opt(Duration::from_secs(10), || {
            replies(f, &command_id).into_iter().next()
        })?;
        let output = reply["output"].clone();
        if check(&output) {
            Some(output)
        } else {
            thread::sleep(Duration::from_millis(500));
            None
        }
    })
}

/// `check`'s first `Some` within `deadline`, if any.
pub fn wait_for_opt<T>(deadline: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = std::time::Instant::now();
    while start.elapsed() < deadline {
        if let Some(v) = check() {
            return Some(v);
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

pub fn status_of(statuses: &Value, id: u32) -> &str {
    statuses[id.to_string()]["status"].as_str().unwrap_or("?")
}

/// Times `count` `statuses` questions, each from its publish to its reply,
/// read on a subscription of its own so nothing is polled during the
/// measurement. Without `reply_to`, asked on the main channel `ch` as a bot
/// written for the original asks (every cluster hears the question and the
/// reply); with it, asked on the launcher channel, so the manager alone
/// hears the question and the asker alone the reply (docs/protocol.md §5.5). Each reply must cover `n`
/// clusters; one not seen within 10 s is left out (the caller counts them).
pub fn statuses_round_trips(
    redis: &super::Redis,
    ch: &str,
    reply_to: Option<&str>,
    n: u32,
    count: usize,
) -> Vec<Duration> {
    const WAIT: Duration = Duration::from_secs(10);
    let mut sub = redis.conn();
    let mut publisher = redis.conn();
    let mut pubsub = sub.as_pubsub();
    // Only where the reply comes: at 1,000 clusters without
    // `cluster_channels` the main channel carries 1,000 pings a second,
    // more than a reader here keeps up with before Redis closes it for
    // its output buffer.
    pubsub.subscribe(reply_to.unwrap_or(ch)).expect("subscribe");
    pubsub.set_read_timeout(Some(WAIT)).expect("timeout");
    (0..count)
        .filter_map(|i| {
            let id = format!("bench-{i}");
            let mut request = json!({"scope": "launcher", "action": "statuses", "command_id": id});
            if let Some(reply_to) = reply_to {
                request["reply_to"] = json!(reply_to);
            }
            let on = match reply_to {
                Some(_) => format!("{ch}:launcher"),
                None => ch.to_string(),
            };
            let asked = std::time::Instant::now();
            let _: i64 = redis::cmd("PUBLISH")
                .arg(on)
                .arg(request.to_string())
                .query(&mut publisher)
                .expect("publish");
            loop {
                if asked.elapsed() > WAIT {
                    return None;
                }
                let msg = pubsub.get_message().ok()?;
                let payload = msg.get_payload_bytes();
                // Skip the flood of diagnostics without parsing it.
                if !payload.windows(id.len()).any(|w| w == id.as_bytes()) {
                    continue;
                }
                let v: Value = serde_json::from_slice(payload).unwrap_or_default();
                if v["command_id"] == id.as_str() && v["scope"] == "bot" {
                    let covered = v["output"].as_object().map_or(0, |o| o.len());
                    assert_eq!(covered, n as usize, "statuses covers every cluster");
                    return Some(asked.elapsed());
                }
            }
        })
        .collect()
}
