//! Wire types of the channel (PROTOCOL.md §5), parsed leniently and without
//! panics: whatever arrives, the result is a request, "not for us", or an
//! error that says what was wrong.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::cluster_map::{ClusterId, ShardId};

/// One request addressed to the manager (`scope: "launcher"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub action: Action,
    /// Echoed in the reply so the asker can match it.
    pub command_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    LaunchNext(ClusterId),
    Start(ClusterId),
    Stop(ClusterId),
    Restart(ClusterId),
    RollingRestart,
    Statuses,
    NumProcesses,
    Shutdown,
    RestartProc,
    Reshard,
    Diag(DiagAnswer),
    ActionLogs(Map<String, Value>),
}

/// A cluster's answer to a diagnostic.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagAnswer {
    pub nonce: String,
    pub shards: Vec<ShardHealth>,
}

/// One shard's health as a cluster reports it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ShardHealth {
    pub shard_id: ShardId,
    pub up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guilds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<u64>,
}

/// Why a message was dropped. Shown in logs, so it is kept short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not a JSON object")]
    NotObject,
    #[error("`action` is missing or not a string")]
    NoAction,
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    #[error("action {action:?}: {problem}")]
    BadArgs {
        action: &'static str,
        problem: String,
    },
}

/// Parses one payload. `Ok(None)`: a message for someone else (another
/// scope, a diagnostic request, our own replies).
pub fn parse(payload: &[u8]) -> Result<Option<Request>, ParseError> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let Value::Object(mut obj) = value else {
        return Err(ParseError::NotObject);
    };
    if obj.get("scope").and_then(Value::as_str) != Some("launcher") {
        return Ok(None);
    }
    let action = match obj.get("action") {
        Some(Value::String(a)) => a.clone(),
        _ => return Err(ParseError::NoAction),
    };
    let command_id = match obj.get("command_id") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let args = obj.remove("args");
    let id = |name: &'static str| {
        cluster_id(args.as_ref()).map_err(|problem| ParseError::BadArgs {
            action: name,
            problem,
        })
    };
    let action =
        match action.as_str() {
            "launch_next" => Action::LaunchNext(id("launch_next")?),
            "start" => Action::Start(id("start")?),
            "stop" => Action::Stop(id("stop")?),
            "restart" => Action::Restart(id("restart")?),
            "rollingrestart" => Action::RollingRestart,
            "statuses" => Action::Statuses,
            "num_processes" => Action::NumProcesses,
            "shutdown" => Action::Shutdown,
            "restartproc" => Action::RestartProc,
            "reshard" => Action::Reshard,
            "diag" => Action::Diag(diag_answer(obj.get("output")).map_err(|problem| {
                ParseError::BadArgs {
                    action: "diag",
                    problem,
                }
            })?),
            "action_logs" => match obj.remove("data") {
                Some(Value::Object(data)) => Action::ActionLogs(data),
                _ => {
                    return Err(ParseError::BadArgs {
                        action: "action_logs",
                        problem: "`data` must be an object".into(),
                    })
                }
            },
            _ => return Err(ParseError::UnknownAction(truncate(&action, 64))),
        };
    Ok(Some(Request { action, command_id }))
}

/// `args.id` as a cluster id. Bots send a number; a numeric string is
/// accepted too, since it can only mean the same thing.
fn cluster_id(args: Option<&Value>) -> Result<ClusterId, String> {
    let id = args
        .and_then(Value::as_object)
        .and_then(|a| a.get("id"))
        .ok_or_else(|| "`args.id` is missing".to_string())?;
    let parsed = match id {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    parsed
        .and_then(|n| ClusterId::try_from(n).ok())
        .ok_or_else(|| {
            format!(
                "`args.id` is not a cluster id: {}",
                truncate(&id.to_string(), 64)
            )
        })
}

/// The diagnostic answer travels as a string holding JSON (the original's
/// shape); an object is accepted as well. Keys are matched case-insensitively,
/// as Go's JSON decoder did, so `Nonce`/`nonce` and `Data`/`data` both work.
fn diag_answer(output: Option<&Value>) -> Result<DiagAnswer, String> {
    let inner: Value = match output {
        Some(Value::String(s)) => {
            serde_json::from_str(s).map_err(|e| format!("`output` is not JSON: {e}"))?
        }
        Some(v @ Value::Object(_)) => v.clone(),
        _ => return Err("`output` must be a JSON string".into()),
    };
    let obj = inner.as_object().ok_or("`output` is not an object")?;
    let nonce = match get_ci(obj, "nonce") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err("`Nonce` is missing or not a string".into()),
    };
    let shards = match get_ci(obj, "data") {
        Some(Value::Array(items)) => items
            .iter()
            .map(shard_health)
            .collect::<Result<Vec<_>, _>>()?,
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err("`Data` must be a list".into()),
    };
    Ok(DiagAnswer { nonce, shards })
}

fn shard_health(v: &Value) -> Result<ShardHealth, String> {
    let obj = v.as_object().ok_or("a `Data` entry is not an object")?;
    let shard_id = get_ci(obj, "shard_id")
        .and_then(Value::as_u64)
        .and_then(|n| ShardId::try_from(n).ok())
        .ok_or("a `Data` entry has no numeric `shard_id`")?;
    let up = get_ci(obj, "up").and_then(Value::as_bool).unwrap_or(false);
    let count = |key| {
        get_ci(obj, key)
            .and_then(Value::as_f64)
            .filter(|n| n.is_finite() && *n >= 0.0)
            .map(|n| n as u64)
    };
    Ok(ShardHealth {
        shard_id,
        up,
        latency: get_ci(obj, "latency")
            .and_then(Value::as_f64)
            .filter(|n| n.is_finite()),
        guilds: count("guilds"),
        users: count("users"),
    })
}

fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Cuts `s` to at most `max` characters for logs.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}… ({} bytes)", &s[..i], s.len()),
        None => s.to_string(),
    }
}

/// A reply or an announcement from the manager, in the original's shape.
#[derive(Debug, Serialize)]
struct BotMessage<'a> {
    command_id: &'a str,
    output: &'a Value,
    scope: &'static str,
    action: &'a str,
}

/// The answer to a request: `output` is `"ok"` for an ack, or the payload.
pub fn reply(command_id: Option<&str>, output: &Value) -> String {
    bot_message(command_id.unwrap_or(""), output, "")
}

/// Published once the last cluster of the launch has said `launch_next`.
pub fn all_clusters_launched(command_id: &str) -> String {
    bot_message(
        command_id,
        &Value::String(String::new()),
        "all_clusters_launched",
    )
}

fn bot_message(command_id: &str, output: &Value, action: &str) -> String {
    let msg = BotMessage {
        command_id,
        output,
        scope: "bot",
        action,
    };
    // Serialising a struct of strings and a Value cannot fail.
    serde_json::to_string(&msg).unwrap_or_default()
}

/// A health ping for one cluster; it has no `scope` on purpose (§5.3).
pub fn diag_request(id: ClusterId, nonce: &str) -> String {
    serde_json::json!({"id": id, "nonce": nonce, "diag": true}).to_string()
}

/// A random id for messages the manager starts itself.
pub fn random_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: Value) -> Request {
        match parse(v.to_string().as_bytes()) {
            Ok(Some(r)) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn actions_with_ids() {
        let r = req(json!({"scope": "launcher", "action": "launch_next", "args": {"id": 3}}));
        assert_eq!(r.action, Action::LaunchNext(3));
        let r = req(
            json!({"scope": "launcher", "action": "stop", "args": {"id": "2"}, "command_id": "c1"}),
        );
        assert_eq!(r.action, Action::Stop(2));
        assert_eq!(r.command_id.as_deref(), Some("c1"));
    }

    #[test]
    fn other_scopes_and_our_own_messages_are_not_for_us() {
        for v in [
            json!({"scope": "bot", "action": "x"}),
            json!({"id": 1, "nonce": "n", "diag": true}),
            json!({"scope": 5}),
        ] {
            assert_eq!(parse(v.to_string().as_bytes()), Ok(None), "{v}");
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(matches!(parse(b"{nope"), Err(ParseError::NotJson(_))));
        assert_eq!(parse(b"[1,2]"), Err(ParseError::NotObject));
        assert_eq!(parse(br#"{"scope":"launcher"}"#), Err(ParseError::NoAction));
        assert!(matches!(
            parse(br#"{"scope":"launcher","action":"fly"}"#),
            Err(ParseError::UnknownAction(_))
        ));
        for args in [
            json!(null),
            json!({"id": -1}),
            json!({"id": 1.5}),
            json!({"id": [1]}),
            json!({"id": 99999999999u64}),
        ] {
            let v = json!({"scope": "launcher", "action": "start", "args": args});
            assert!(
                matches!(
                    parse(v.to_string().as_bytes()),
                    Err(ParseError::BadArgs { .. })
                ),
                "{v}"
            );
        }
        let v = json!({"scope": "launcher", "action": "action_logs", "data": "x"});
        assert!(parse(v.to_string().as_bytes()).is_err());
    }

    #[test]
    fn diag_answer_in_the_originals_shape() {
        let inner = json!({"Nonce": "abc", "Data": [{"shard_id": 0, "up": true, "latency": 41.5, "guilds": 1200, "users": 98000}, {"shard_id": 1, "up": false}], "cluster_id": 0});
        let r = req(json!({"scope": "launcher", "action": "diag", "output": inner.to_string()}));
        let Action::Diag(d) = r.action else {
            panic!("not a diag")
        };
        assert_eq!(d.nonce, "abc");
        assert_eq!(d.shards.len(), 2);
        assert_eq!(d.shards[0].latency, Some(41.5));
        assert_eq!(d.shards[0].guilds, Some(1200));
        assert!(!d.shards[1].up);
        assert_eq!(d.shards[1].users, None);
    }

    #[test]
    fn diag_keys_are_case_insensitive() {
        let inner = json!({"nonce": "n2", "data": [{"Shard_ID": 4, "UP": true}]});
        let r = req(json!({"scope": "launcher", "action": "diag", "output": inner.to_string()}));
        let Action::Diag(d) = r.action else {
            panic!("not a diag")
        };
        assert_eq!(d.nonce, "n2");
        assert_eq!(d.shards[0].shard_id, 4);
        assert!(d.shards[0].up);
    }

    #[test]
    fn reply_shapes() {
        let ack: Value = serde_json::from_str(&reply(Some("c9"), &json!("ok"))).expect("json");
        assert_eq!(
            ack,
            json!({"command_id": "c9", "output": "ok", "scope": "bot", "action": ""})
        );
        let all: Value = serde_json::from_str(&all_clusters_launched("r")).expect("json");
        assert_eq!(
            all,
            json!({"command_id": "r", "output": "", "scope": "bot", "action": "all_clusters_launched"})
        );
        let diag: Value = serde_json::from_str(&diag_request(2, "n")).expect("json");
        assert_eq!(diag, json!({"id": 2, "nonce": "n", "diag": true}));
    }

    #[test]
    fn truncate_is_char_safe() {
        assert_eq!(truncate("héllo", 10), "héllo");
        assert!(truncate(&"é".repeat(100), 3).starts_with("ééé…"));
    }
}
