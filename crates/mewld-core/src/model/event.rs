//! News the engine gives its faces (console, attach, metrics).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::process::Stream;
use crate::cluster_map::ClusterId;

/// News for faces. Plain data, so it can travel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Event {
    /// One line a cluster printed.
    Output {
        id: ClusterId,
        name: String,
        stream: Stream,
        line: String,
    },
    /// An entry the manager wrote to the action log.
    ActionLog(Map<String, Value>),
    /// An entry a cluster sent (`action_logs`), written to the action log:
    /// kept apart so that nothing a bot says counts as the manager's.
    ClusterLog(Map<String, Value>),
}
