//! The engine's cluster processes: each live one by cluster and
//! generation (during a `start_first` overlap a cluster has two, each with
//! its own generation, so a stop or an exit reaches the right one), spawned
//! with the environment of docs/protocol.md §4, their output sent to the
//! faces as the cluster's (a replacement's lines in its cluster's pane),
//! and the last lines of each cluster's latest replacement, which
//! `rolling_restart_aborted` carries.
//!
//! Bounds: one tail per cluster at most (a newer replacement's replaces
//! it), [`TAIL_LINES`] lines of at most [`TAIL_LINE_CHARS`] characters
//! each, the oldest line dropped first. A tail is let go once its
//! replacement took over or its abort was logged; its reader then stops
//! keeping lines.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use super::process::{self, ProcHandle};
use super::Message;
use crate::config::{Config, Ipc};
use mewld_core::actlog::LogEvent;
use mewld_core::cluster_map::ClusterId;
use mewld_core::model::{CommandLine, Event, SpawnError};
use mewld_core::protocol;

/// Lines of a replacement's output kept for `rolling_restart_aborted`.
const TAIL_LINES: usize = 20;
/// Each kept line is cut to this many characters.
const TAIL_LINE_CHARS: usize = 300;

type Tail = Mutex<VecDeque<String>>;

pub(super) struct Children {
    /// What every cluster gets in its environment (docs/protocol.md §4).
    env: Vec<(String, String)>,
    procs: HashMap<(ClusterId, u64), ProcHandle>,
    /// Each cluster's latest replacement: its pid and last lines.
    tails: HashMap<ClusterId, (u32, Arc<Tail>)>,
}

impl Children {
    pub(super) fn new(config: &Config, env_vars: Vec<(String, String)>) -> Children {
        Children {
            env: child_env(config, env_vars),
            procs: HashMap::new(),
            tails: HashMap::new(),
        }
    }

    /// Starts a process of cluster `id` (a replacement of `replaces`, if
    /// set: it gets `MEWLD_REPLACES`); its output goes to the faces, its
    /// exit back to the engine's inbox.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn spawn(
        &mut self,
        config: &Config,
        events: &broadcast::Sender<Event>,
        inbox: &mpsc::UnboundedSender<Message>,
        id: ClusterId,
        name: String,
        generation: u64,
        line: &CommandLine,
        replaces: Option<u32>,
    ) -> Result<u32, SpawnError> {
        let (events, inbox) = (events.clone(), inbox.clone());
        let mut env = self.env.clone();
        if matches!(config.ipc, Ipc::Redis { .. }) {
            let channels = config.channels();
            env.push((
                "MEWLD_CLUSTER_CHANNEL".into(),
                channels.name(&protocol::Channel::Cluster(id)),
            ));
        }
        let tail = replaces.map(|old| {
            env.push(("MEWLD_REPLACES".into(), old.to_string()));
            Arc::new(Tail::default())
        });
        let keep = tail.as_ref().map(Arc::downgrade);
        let handle = process::spawn(
            line,
            &env,
            move |stream, text| {
                if let Some(tail) = keep.as_ref() {
                    keep_line(tail, &text);
                }
                let _ = events.send(Event::Output {
                    id,
                    name: name.clone(),
                    stream,
                    line: text,
                });
            },
            move |exit| {
                let _ = inbox.send(Message::Exited {
                    id,
                    generation,
                    exit,
                });
            },
        )?;
        let pid = handle.pid;
        self.procs.insert((id, generation), handle);
        if let Some(tail) = tail {
            self.tails.insert(id, (pid, tail));
        }
        Ok(pid)
    }

    /// SIGTERM, then SIGKILL after `grace`, to that process if it runs.
    pub(super) fn stop(&self, id: ClusterId, generation: u64, grace: Duration) {
        if let Some(proc) = self.procs.get(&(id, generation)) {
            proc.stop(grace);
        }
    }

    pub(super) fn exited(&mut self, id: ClusterId, generation: u64) {
        self.procs.remove(&(id, generation));
    }

    /// Adds a replacement's last lines to the event that ends its roll,
    /// and lets go of a tail that is no longer needed.
    pub(super) fn fill(&mut self, event: &mut LogEvent) {
        if let LogEvent::ClusterReplaced { id, .. } = event {
            self.tails.remove(id);
            return;
        }
        let Some((id, pid, output)) = event.replacement_output() else {
            return;
        };
        if self.tails.get(&id).is_some_and(|(p, _)| *p == pid) {
            if let Some((_, tail)) = self.tails.remove(&id) {
                let lines = tail.lock().unwrap_or_else(PoisonError::into_inner);
                output.extend(lines.iter().cloned());
            }
        }
    }
}

fn keep_line(tail: &Weak<Tail>, text: &str) {
    let Some(tail) = tail.upgrade() else { return };
    let mut lines = tail.lock().unwrap_or_else(PoisonError::into_inner);
    if lines.len() == TAIL_LINES {
        lines.pop_front();
    }
    lines.push_back(protocol::truncate(text, TAIL_LINE_CHARS));
}

/// What every cluster gets in its environment besides the manager's own
/// (docs/protocol.md §4).
fn child_env(config: &Config, mut env: Vec<(String, String)>) -> Vec<(String, String)> {
    env.push(("MEWLD_CHANNEL".into(), config.channel.clone()));
    match &config.ipc {
        // The URL the manager itself uses (`host:port` already made
        // `redis://host:port/0`), password included: it is never logged.
        Ipc::Redis { url } => {
            env.push(("MEWLD_REDIS_URL".into(), url.clone()));
            // Set whether or not `cluster_channels` is on: where a bot may
            // listen, and where it may talk to the manager alone (§5.5).
            let launcher = config.channels().name(&protocol::Channel::Launcher);
            env.push(("MEWLD_LAUNCHER_CHANNEL".into(), launcher));
        }
        Ipc::Unix { path } => env.push(("MEWLD_SOCKET".into(), path.display().to_string())),
    }
    if let Some(token) = &config.token {
        env.push(("MTOKEN".into(), token.expose().to_string()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_keeps_the_last_lines_cut_short_and_stops_once_let_go() {
        let tail = Arc::new(Tail::default());
        let weak = Arc::downgrade(&tail);
        for n in 0..TAIL_LINES + 5 {
            keep_line(&weak, &format!("line {n}"));
        }
        keep_line(&weak, &"x".repeat(1000));
        let lines = tail.lock().expect("lock").clone();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines[0], "line 6");
        assert!(lines[TAIL_LINES - 1].len() < 400, "cut");
        drop(tail);
        keep_line(&weak, "after");
    }
}
