//! Wire types of the channel (docs/protocol.md §5), parsed leniently and without
//! panics: whatever arrives, the result is a request, "not for us", or an
//! error that says what was wrong.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::cluster_map::{ClusterId, ShardId};
use crate::model::Peer;

mod channel;
pub use channel::{Channel, Channels, MAX_REPLY_TO};

/// One request addressed to the manager (`scope: "launcher"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub action: Action,
    /// Echoed in the reply so the asker can match it.
    pub command_id: Option<String>,
    /// Where the asker wants the reply (ext, §5.5), as written: the core
    /// accepts it only under the manager's channel ([`Channels::reply_to`]).
    pub reply_to: Option<String>,
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
    /// The manager's own channel probe coming back (see [`echo`]).
    Echo(String),
    /// An operation one host of a fleet hands to another (see [`fleet_op`]).
    FleetOp(FleetOp),
    /// A reply to `command_id` went out (from this manager or another host
    /// of its fleet): the question is answered.
    Answered,
    /// `all_clusters_launched` went out (from this manager or another host).
    Announced,
    /// A host of the fleet gave up its replacement of cluster `id` in the
    /// leader's `start_first` rolling restart (see [`roll_aborted`]).
    RollAborted {
        id: ClusterId,
        host: String,
    },
}

/// An operation asked on one host of a fleet, for the host that carries
/// it out: a cluster's owner, or the leader for a rolling restart.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetOp {
    /// `start`, `stop`, `restart` or `rollingrestart`.
    pub op: String,
    pub id: Option<ClusterId>,
    /// How the operator asked (`console`, `attach`, …), for the action log.
    pub via: String,
    /// The host the operator asked on.
    pub host: String,
    /// A step of the leader's rolling restart, not an operator's restart.
    pub rolling: bool,
    /// The sending leader's fencing token (rolling steps): an owner ignores
    /// a step from a leader older than the one it knows.
    pub epoch: Option<u64>,
    /// The asking process (`peer_pid`, `peer_uid`), when the host knew it
    /// (a command or an attached console): the owner logs it. A host of
    /// an older version sends none.
    pub peer: Option<Peer>,
}

/// The action of the manager's channel probe. It travels with the launcher's
/// scope, which bots already see from each other and leave alone.
const ECHO_ACTION: &str = "mewld_echo";
/// The action of an operation handed from one host of a fleet to another.
const FLEET_OP_ACTION: &str = "mewld_op";
/// The action of a host's note that it answered a `command_id` on the
/// asker's `reply_to`, where the fleet's other hosts do not listen.
const ANSWERED_ACTION: &str = "mewld_answered";
/// The action of a host's note that its replacement of a cluster failed,
/// for the leader walking a `start_first` rolling restart.
const ROLL_ABORTED_ACTION: &str = "mewld_roll_aborted";

/// A cluster's answer to a diagnostic.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagAnswer {
    pub nonce: String,
    pub shards: Vec<ShardReport>,
}

/// One `Data` entry as it arrived: the shard id may be missing (real bots
/// send `id`, or nothing), so its position in the list is kept too.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardReport {
    pub shard_id: Option<ShardId>,
    pub position: usize,
    pub up: bool,
    pub latency: Option<f64>,
    pub guilds: Option<u64>,
    pub users: Option<u64>,
}

impl DiagAnswer {
    /// Each entry's health, its shard taken from `shard_id`, else `id`, else
    /// its position in the cluster's shard list. An entry with none of these
    /// (more entries than the cluster has shards) is left out, and so is one
    /// for a shard that is not the cluster's or that an earlier entry told
    /// (the first wins): what a cluster says is kept within its own shards,
    /// however long its answer. Returns the health and how many entries
    /// named shards not the cluster's.
    pub fn health(self, cluster_shards: &[ShardId]) -> (Vec<ShardHealth>, usize) {
        let mut told = vec![false; cluster_shards.len()];
        let mut strays = 0;
        let health = self
            .shards
            .into_iter()
            .filter_map(|r| {
                let shard_id = r
                    .shard_id
                    .or_else(|| cluster_shards.get(r.position).copied())?;
                // A cluster's shards are in ascending order (the map's).
                let Ok(at) = cluster_shards.binary_search(&shard_id) else {
                    strays += 1;
                    return None;
                };
                if std::mem::replace(&mut told[at], true) {
                    return None;
                }
                Some(ShardHealth {
                    shard_id,
                    up: r.up,
                    latency: r.latency,
                    guilds: r.guilds,
                    users: r.users,
                })
            })
            .collect();
        (health, strays)
    }
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
///
/// As lenient as the original's decoder (Go's `encoding/json`): keys match
/// case-insensitively, unknown keys are ignored, and a field that is missing
/// or of the wrong type is left empty. Only what the manager cannot act on
/// without (an action, a cluster id, a diagnostic's nonce) is an error.
pub fn parse(payload: &[u8]) -> Result<Option<Request>, ParseError> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(ParseError::NotObject);
    };
    match get_ci(&obj, "scope").and_then(Value::as_str) {
        Some("launcher") => {}
        Some("bot") => return Ok(from_a_manager(&obj)),
        _ => return Ok(None),
    }
    let action = match get_ci(&obj, "action") {
        Some(Value::String(a)) => a.as_str(),
        _ => return Err(ParseError::NoAction),
    };
    let command_id = match get_ci(&obj, "command_id") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    // A missing, empty or mistyped `reply_to` is none: the main channel.
    let reply_to = match get_ci(&obj, "reply_to") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let args = get_ci(&obj, "args");
    let id = |name: &'static str| {
        cluster_id(args).map_err(|problem| ParseError::BadArgs {
            action: name,
            problem,
        })
    };
    let action = match action {
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
        "diag" => Action::Diag(diag_answer(get_ci(&obj, "output")).map_err(|problem| {
            ParseError::BadArgs {
                action: "diag",
                problem,
            }
        })?),
        // A missing or mistyped `data` is an empty entry, as in the original.
        "action_logs" => Action::ActionLogs(match get_ci(&obj, "data") {
            Some(Value::Object(data)) => data.clone(),
            _ => Map::new(),
        }),
        ECHO_ACTION => match get_ci(&obj, "nonce") {
            Some(Value::String(nonce)) => Action::Echo(nonce.clone()),
            _ => return Ok(None),
        },
        ANSWERED_ACTION => Action::Answered,
        ROLL_ABORTED_ACTION => Action::RollAborted {
            id: id("mewld_roll_aborted")?,
            host: match get_ci(&obj, "host") {
                Some(Value::String(host)) => truncate(host, 64),
                _ => String::new(),
            },
        },
        FLEET_OP_ACTION => {
            Action::FleetOp(fleet_op_of(&obj).map_err(|problem| ParseError::BadArgs {
                action: FLEET_OP_ACTION,
                problem,
            })?)
        }
        _ => return Err(ParseError::UnknownAction(truncate(action, 64))),
    };
    Ok(Some(Request {
        action,
        command_id,
        reply_to,
    }))
}

/// `args.id` as a cluster id. Bots send a number; a numeric string, or a
/// float with no fraction (what a Go or JavaScript client may send), is
/// accepted too, since it can only mean the same thing.
fn cluster_id(args: Option<&Value>) -> Result<ClusterId, String> {
    let id = args
        .and_then(Value::as_object)
        .and_then(|a| get_ci(a, "id"))
        .ok_or_else(|| "`args.id` is missing".to_string())?;
    let parsed = match id {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX))
                .map(|f| f as u64)
        }),
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

/// What a manager (this one, or another host of its fleet) said in the
/// bots' scope: a reply ([`reply`]'s shape: an empty action) answers its
/// `command_id`; `all_clusters_launched` announces the bot up.
fn from_a_manager(obj: &Map<String, Value>) -> Option<Request> {
    let action = get_ci(obj, "action").and_then(Value::as_str);
    if action == Some("all_clusters_launched") {
        return Some(Request {
            action: Action::Announced,
            command_id: None,
            reply_to: None,
        });
    }
    match get_ci(obj, "command_id") {
        Some(Value::String(id)) if action == Some("") && !id.is_empty() => Some(Request {
            action: Action::Answered,
            command_id: Some(id.clone()),
            reply_to: None,
        }),
        _ => None,
    }
}

fn fleet_op_of(obj: &Map<String, Value>) -> Result<FleetOp, String> {
    let text = |key: &str| match get_ci(obj, key) {
        Some(Value::String(s)) => Ok(truncate(s, 64)),
        _ => Err(format!("`{key}` is missing or not a string")),
    };
    let id = match get_ci(obj, "id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| ClusterId::try_from(n).ok())
                .ok_or("`id` is not a cluster id")?,
        ),
    };
    Ok(FleetOp {
        op: text("op")?,
        id,
        via: text("via")?,
        host: text("host")?,
        rolling: get_ci(obj, "rolling").and_then(Value::as_bool) == Some(true),
        epoch: get_ci(obj, "epoch").and_then(Value::as_u64),
        peer: get_ci(obj, "peer_uid")
            .and_then(Value::as_u64)
            .and_then(|uid| u32::try_from(uid).ok())
            .map(|uid| Peer {
                pid: get_ci(obj, "peer_pid")
                    .and_then(Value::as_i64)
                    .and_then(|pid| i32::try_from(pid).ok()),
                uid,
            }),
    })
}

/// The diagnostic answer travels as a string holding JSON (the original's
/// shape); an object is accepted as well. The nonce is what makes it an
/// answer: whatever `Data` holds, a matching nonce counts, and an entry the
/// manager cannot read is skipped, never the whole answer.
fn diag_answer(output: Option<&Value>) -> Result<DiagAnswer, String> {
    let parsed;
    let obj = match output {
        Some(Value::String(s)) => {
            parsed = serde_json::from_str::<Value>(s)
                .map_err(|e| format!("`output` is not JSON: {e}"))?;
            parsed.as_object()
        }
        Some(Value::Object(o)) => Some(o),
        _ => return Err("`output` must be a JSON string".into()),
    }
    .ok_or("`output` is not an object")?;
    let nonce = match get_ci(obj, "nonce") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("`Nonce` is missing or not a string".into()),
    };
    let shards = match get_ci(obj, "data") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(position, v)| v.as_object().map(|o| shard_report(position, o)))
            .collect(),
        _ => Vec::new(),
    };
    Ok(DiagAnswer { nonce, shards })
}

fn shard_report(position: usize, obj: &Map<String, Value>) -> ShardReport {
    let number = |key| {
        get_ci(obj, key)
            .and_then(Value::as_f64)
            .filter(|n| n.is_finite())
    };
    let count = |key| number(key).filter(|n| *n >= 0.0).map(|n| n as u64);
    let shard_id = ["shard_id", "id"].iter().find_map(|key| {
        count(key)
            .filter(|n| *n as f64 == number(key).unwrap_or(-1.0))
            .and_then(|n| ShardId::try_from(n).ok())
    });
    ShardReport {
        shard_id,
        position,
        up: get_ci(obj, "up").and_then(Value::as_bool).unwrap_or(false),
        latency: number("latency"),
        guilds: count("guilds"),
        users: count("users"),
    }
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

/// A probe the manager publishes to itself: when it comes back, everything
/// the manager published before it has been delivered, and the channel works.
pub fn echo(nonce: &str) -> String {
    serde_json::json!({"scope": "launcher", "action": ECHO_ACTION, "nonce": nonce}).to_string()
}

/// Tells the fleet's other hosts that `command_id` was answered (on a
/// `reply_to` they do not hear), so none answers it again.
pub fn answered(command_id: &str) -> String {
    serde_json::json!({"scope": "launcher", "action": ANSWERED_ACTION, "command_id": command_id})
        .to_string()
}

/// Tells the fleet's leader that `host` gave up its replacement of
/// cluster `id`: the `start_first` rolling restart ends there.
pub fn roll_aborted(id: ClusterId, host: &str) -> String {
    serde_json::json!({"scope": "launcher", "action": ROLL_ABORTED_ACTION, "args": {"id": id}, "host": host})
        .to_string()
}

/// An operation for another host of the fleet. It travels in the
/// launcher's scope with an action of mewld's own, which bots leave alone.
pub fn fleet_op(op: &FleetOp) -> String {
    let mut message = serde_json::json!({
        "scope": "launcher",
        "action": FLEET_OP_ACTION,
        "op": op.op,
        "id": op.id,
        "via": op.via,
        "host": op.host,
        "rolling": op.rolling,
        "epoch": op.epoch,
    });
    if let Some(peer) = op.peer {
        message["peer_pid"] = serde_json::json!(peer.pid);
        message["peer_uid"] = serde_json::json!(peer.uid);
    }
    message.to_string()
}

#[cfg(test)]
mod tests;
