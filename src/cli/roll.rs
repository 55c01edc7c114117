//! `mewld rolling-restart [--wait]`: for deploy scripts. Without `--wait`
//! it says whether the roll began; with it, it prints the action log as
//! the roll goes and exits 0 once every cluster came back, non-zero when
//! the roll was refused, stopped, timed out on a cluster, or outlived
//! `--timeout`.

use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::broadcast::error::RecvError;

use super::{logs, say, Target, NOT_OK, OK};
use crate::control::client::LinkStatus;
use crate::control::Client;
use mewld_core::model::{Event, Operation};

/// How a roll watched to its end went.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `rolling_restart_done`, and no cluster stayed down.
    Done,
    /// It ended, but these went wrong (`rolling_restart_timeout`, a
    /// cluster that failed to come back).
    DoneWithTrouble(Vec<String>),
    /// It will not finish: stopped (the leader lost its lease), or the
    /// engine went away.
    Broken(String),
}

/// What one action-log entry means for a roll being watched: `Some` once
/// the roll is over.
#[derive(Debug, Default)]
pub struct Watch {
    trouble: Vec<String>,
}

impl Watch {
    pub fn on_entry(&mut self, entry: &Map<String, Value>) -> Option<Outcome> {
        let event = entry.get("event").and_then(Value::as_str).unwrap_or("");
        let cluster = entry.get("id").and_then(Value::as_u64);
        let named = |what: &str| match cluster {
            Some(id) => format!("cluster {id} {what}"),
            None => what.to_string(),
        };
        match event {
            "rolling_restart_done" if self.trouble.is_empty() => Some(Outcome::Done),
            "rolling_restart_done" => Some(Outcome::DoneWithTrouble(self.trouble.clone())),
            "rolling_restart_stopped" => {
                let why = entry.get("reason").and_then(Value::as_str);
                let why = why.unwrap_or("the fleet's leader changed");
                Some(Outcome::Broken(format!(
                    "the rolling restart was stopped ({why})"
                )))
            }
            // start_first: a replacement failed; the old processes run on.
            "rolling_restart_aborted" => {
                let why = entry.get("reason").and_then(Value::as_str).unwrap_or("");
                Some(Outcome::Broken(format!(
                    "aborted at {}: {why}; every cluster from there on runs its old process",
                    named("").trim_end()
                )))
            }
            "rolling_restart_timeout" => {
                self.trouble.push(named("did not come back in time"));
                None
            }
            "cluster_failed" | "cluster_restart_failed" => {
                self.trouble.push(named("failed"));
                None
            }
            _ => None,
        }
    }
}

pub async fn run(target: &Target, wait: bool, timeout: Option<Duration>) -> u8 {
    let reached = match target.reach(Client::Command).await {
        Ok(reached) => reached,
        Err(why) => return super::unreachable(&why),
    };
    let mut attached = reached.attached;
    // Subscribed before asking: no entry of this roll is missed.
    let mut events = attached.handle.events();
    let op = Operation::RollingRestart;
    if let Err(refused) = attached.handle.request(op, super::me()).await {
        return super::refusal(op, &refused);
    }
    if !wait {
        say("rolling restart: begun (`mewld status` shows how it goes; --wait waits for it)");
        return OK;
    }
    say("rolling restart: begun; waiting for every cluster to come back");
    let watched = async {
        let mut watch = Watch::default();
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(Event::ActionLog(entry)) => {
                        say(logs::line(&entry));
                        if let Some(outcome) = watch.on_entry(&entry) {
                            return outcome;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => eprintln!("mewld: skipped {n} entries (too many at once)"),
                    Err(RecvError::Closed) => return Outcome::Broken("the engine went away".into()),
                },
                Some(news) = attached.status.recv() => {
                    if let LinkStatus::Ended(why) | LinkStatus::Lost(why) = news {
                        return Outcome::Broken(format!("lost the engine during the roll: {why}"));
                    }
                }
            }
        }
    };
    let outcome = match timeout {
        Some(limit) => tokio::time::timeout(limit, watched)
            .await
            .unwrap_or_else(|_| {
                Outcome::Broken(format!(
                    "still rolling after {}s (--timeout); it goes on",
                    limit.as_secs()
                ))
            }),
        None => watched.await,
    };
    match outcome {
        Outcome::Done => {
            say("rolling restart: done, every cluster came back");
            OK
        }
        Outcome::DoneWithTrouble(trouble) => {
            eprintln!("mewld: rolling restart ended, but {}", trouble.join("; "));
            NOT_OK
        }
        Outcome::Broken(why) => {
            eprintln!("mewld: rolling restart did not finish: {why}");
            NOT_OK
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn a_roll_ends_on_its_done_entry_with_what_went_wrong() {
        let mut watch = Watch::default();
        assert_eq!(
            watch.on_entry(&entry(json!({"event": "cluster_restarted", "id": 0}))),
            None
        );
        assert_eq!(
            watch.on_entry(&entry(json!({"event": "rolling_restart_timeout", "id": 1}))),
            None
        );
        assert_eq!(
            watch.on_entry(&entry(json!({"event": "rolling_restart_done"}))),
            Some(Outcome::DoneWithTrouble(vec![
                "cluster 1 did not come back in time".into()
            ]))
        );
        let mut clean = Watch::default();
        assert_eq!(
            clean.on_entry(&entry(json!({"event": "rolling_restart_done"}))),
            Some(Outcome::Done)
        );
        assert!(matches!(
            clean.on_entry(&entry(json!({"event": "rolling_restart_stopped"}))),
            Some(Outcome::Broken(_))
        ));
        let aborted = json!({"event": "rolling_restart_aborted", "id": 0,
            "reason": "the replacement exited (code 3) before its launch_next"});
        match Watch::default().on_entry(&entry(aborted)) {
            Some(Outcome::Broken(why)) => assert!(
                why.contains("cluster 0") && why.contains("exited (code 3)"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
