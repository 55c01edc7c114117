//! The routes behind the login: the cluster list, the action log, a
//! cluster's health, and publishing on the channel. Each reads the engine
//! as a face does (its latest snapshot, its action log); in a fleet the
//! snapshot holds every host's clusters, so any host answers for all.

use std::time::{Duration, SystemTime};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::shapes::{ClusterHealth, InstanceList};
use super::{json, text, Followed, Query, Resp, Settings, Shared};
use mewld_core::actlog::LogEvent;
use mewld_core::model::state::ClusterState;
use mewld_core::model::{Event, Via};

/// Largest message `POST /redis/pub` publishes.
pub(super) const PUBLISH_MAX: usize = 1024 * 1024;
/// A body over [`PUBLISH_MAX`] is still read (and dropped) up to this, so
/// the client gets the refusal rather than a reset connection; one that
/// says it is larger is refused unread.
const DRAIN_MAX: u64 = 16 * 1024 * 1024;
/// Largest `/action-logs` answer: past it the oldest entries are left out
/// (and counted in `X-Mewld-Omitted`). A log holds `action_log_max_len`
/// entries, which clusters may make large.
const LOG_ANSWER_MAX: usize = 64 * 1024 * 1024;
/// How long an `/action-logs` request waits for the one read at a time.
const HISTORY_WAIT: Duration = Duration::from_secs(20);

/// `GET /instance-list`: the original's `InstanceList`.
pub(super) fn instance_list(settings: &Settings, engine: &Followed) -> Resp {
    let snapshot = engine.handle.snapshot().borrow().clone();
    let list = InstanceList::of(&snapshot, &settings.dir, engine.gateway.as_ref());
    match serde_json::to_string(&list) {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `GET /action-logs`: the action log, oldest first, as one JSON array of
/// its entries (those that are not JSON objects left out). One read at a
/// time: the engine's transport reads the whole list for each.
pub(super) async fn action_logs(shared: &Shared, engine: &Followed) -> Resp {
    let Ok(Ok(_turn)) = tokio::time::timeout(HISTORY_WAIT, shared.histories.acquire()).await else {
        let why = "the action log is being read for others; try again shortly";
        return text(StatusCode::SERVICE_UNAVAILABLE, why);
    };
    let entries = match engine.handle.history().await {
        Ok(entries) => entries,
        Err(e) => {
            let why = format!("cannot read the action log: {e}");
            return text(StatusCode::SERVICE_UNAVAILABLE, &why);
        }
    };
    let objects: Vec<Box<RawValue>> = entries
        .iter()
        .filter_map(|e| serde_json::from_str::<Box<RawValue>>(e).ok())
        .filter(|e| e.get().starts_with('{'))
        .collect();
    // The newest entries that fit, oldest first.
    let mut size = 2;
    let kept = objects
        .iter()
        .rev()
        .take_while(|e| {
            size += e.get().len() + 1;
            size <= LOG_ANSWER_MAX
        })
        .count();
    let omitted = objects.len() - kept;
    let body: Vec<&str> = objects[omitted..].iter().map(|e| e.get()).collect();
    let mut response = json(StatusCode::OK, format!("[{}]", body.join(",")));
    if omitted > 0 {
        tracing::warn!(
            omitted,
            "an /action-logs answer left out the oldest entries: over 64 MiB"
        );
        response
            .headers_mut()
            .insert("x-mewld-omitted", omitted.into());
    }
    response
}

/// `GET /cluster-health?cid=N`: `{"health": […], "locked": false}`, with
/// the original's errors. mewld pings every running cluster each
/// `ping_interval`, so the latest answer is there; a cluster that has not
/// answered yet is said so rather than pinged on a GET.
pub(super) fn cluster_health(engine: &Followed, query: &Query) -> Resp {
    let error = |body: &str| json(StatusCode::BAD_REQUEST, body.to_string());
    let cid = match query.get("cid") {
        "" => "0",
        cid => cid,
    };
    let Some(cid) = go_atoi(cid) else {
        return error(r#"{"error": "Invalid cid, could not parse as int"}"#);
    };
    let snapshot = engine.handle.snapshot().borrow().clone();
    let Some(cluster) = snapshot.clusters.iter().find(|c| i64::from(c.id) == cid) else {
        return error(r#"{"error": "Invalid cid, no such instance"}"#);
    };
    let Some(health) = &cluster.health else {
        if cluster.state != ClusterState::Running {
            return error(r#"{"error": "Instance not fully launched"}"#);
        }
        let why = "Error scanning shards: no answer to a diagnostic yet (mewld sends one every ping_interval)";
        return error(&json!({ "error": why }).to_string());
    };
    match serde_json::to_string(&ClusterHealth::of(health)) {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Go's `strconv.Atoi`: an optional sign, then decimal digits.
fn go_atoi(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `POST /redis/pub`: publishes the body, as it is, on the main channel,
/// and logs it as `operator_action` (`publish`, `via: "web"`, the user's
/// Discord id). The host that is asked publishes it, once.
pub(super) async fn publish(
    shared: &Shared,
    engine: &Followed,
    user: &str,
    req: Request<Incoming>,
) -> Resp {
    let announced = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let payload = match read_body(req.into_body(), announced).await {
        Ok(Some(payload)) => payload,
        Ok(None) => {
            let why = format!(
                "the message is over {} KiB; nothing was published",
                PUBLISH_MAX / 1024
            );
            return text(StatusCode::PAYLOAD_TOO_LARGE, &why);
        }
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the body: {e}"),
            )
        }
    };
    let host = engine
        .handle
        .snapshot()
        .borrow()
        .fleet
        .as_ref()
        .map(|f| f.me.clone());
    let mut entry = LogEvent::OperatorAction {
        action: "publish",
        via: Via::Web.as_str(),
        host,
        id: None,
        peer_pid: None,
        peer_uid: None,
        refused: None,
    }
    .entry(SystemTime::now());
    entry.insert("user".into(), Value::from(user));
    entry.insert("bytes".into(), Value::from(payload.len()));
    let stored = Value::Object(entry.clone()).to_string();
    match shared.store.publish(payload, &stored).await {
        Ok(()) => {
            tracing::info!(target: "mewld::actlog", "{stored}");
            engine.handle.tell(Event::ActionLog(entry));
            text(StatusCode::OK, "")
        }
        Err(e) => {
            tracing::warn!(error = %e, "the web API could not publish");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("could not publish: Redis: {e}"),
            )
        }
    }
}

/// The body if it fits in [`PUBLISH_MAX`], `None` if not.
async fn read_body(
    mut body: Incoming,
    announced: Option<u64>,
) -> Result<Option<Vec<u8>>, hyper::Error> {
    if announced.is_some_and(|n| n > DRAIN_MAX) {
        return Ok(None);
    }
    let (mut kept, mut seen, mut over) = (Vec::new(), 0u64, false);
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        seen += data.len() as u64;
        over |= kept.len() + data.len() > PUBLISH_MAX;
        if over {
            kept = Vec::new();
            if seen > DRAIN_MAX {
                break;
            }
        } else {
            kept.extend_from_slice(&data);
        }
    }
    Ok((!over).then_some(kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_parse_as_go_parsed_them() {
        assert_eq!(go_atoi("3"), Some(3));
        assert_eq!(go_atoi("+3"), Some(3));
        assert_eq!(go_atoi("-1"), Some(-1));
        assert_eq!(go_atoi("007"), Some(7));
        for bad in [
            "",
            " 3",
            "3 ",
            "x",
            "1.0",
            "0x1",
            "+",
            "99999999999999999999",
        ] {
            assert_eq!(go_atoi(bad), None, "{bad}");
        }
    }
}
