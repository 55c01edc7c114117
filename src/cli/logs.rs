//! `mewld logs [-f] [--cluster ID] [-n N] [--json]`: the action log's
//! newest entries (and with `--cluster`, only that cluster's, followed by
//! its latest output lines), then, with `-f`, what comes as it comes.
//! Lines are `HH:MM:SS event cluster N key=value…` (UTC), or each entry as
//! stored with `--json`; a cluster's output lines are `[name] line`.

use std::collections::VecDeque;

use serde_json::{Map, Value};
use tokio::sync::broadcast::error::RecvError;

use super::{say, Target, NOT_OK, OK};
use crate::control::client::{farewell, LinkStatus, Stream};
use crate::control::{Client, ServerMsg};
use crate::tui::lines::{clock, LogLine};
use mewld_core::cluster_map::ClusterId;
use mewld_core::model::Event;

/// What to print.
pub struct Ask {
    pub follow: bool,
    pub cluster: Option<ClusterId>,
    /// The newest stored entries to print first.
    pub lines: usize,
    pub json: bool,
}

impl Ask {
    fn wants(&self, entry: &Map<String, Value>) -> bool {
        let Some(id) = self.cluster else { return true };
        ["id", "cluster"]
            .iter()
            .any(|k| entry.get(*k).and_then(Value::as_u64) == Some(u64::from(id)))
    }

    fn print_entry(&self, entry: &Map<String, Value>) {
        if !self.wants(entry) {
            return;
        }
        if self.json {
            say(Value::Object(entry.clone()));
        } else {
            say(line(entry));
        }
    }

    fn print_event(&self, event: &Event) {
        match event {
            Event::ActionLog(entry) | Event::ClusterLog(entry) => self.print_entry(entry),
            Event::Output { id, name, line, .. } if self.cluster == Some(*id) => {
                say(format_args!("[{name}] {line}"))
            }
            Event::Output { .. } => {}
        }
    }

    /// The newest `lines` of `entries` this asks for.
    fn tail<'a>(
        &self,
        entries: impl Iterator<Item = &'a Map<String, Value>>,
    ) -> Vec<&'a Map<String, Value>> {
        let mut kept = VecDeque::with_capacity(self.lines.min(4096));
        for entry in entries.filter(|e| self.wants(e)) {
            if kept.len() == self.lines {
                kept.pop_front();
            }
            if self.lines > 0 {
                kept.push_back(entry);
            }
        }
        kept.into()
    }
}

/// One entry as a line of text.
pub fn line(entry: &Map<String, Value>) -> String {
    let l = LogLine::from_entry(entry);
    let cluster = l
        .cluster
        .map(|c| format!(" cluster {c}"))
        .unwrap_or_default();
    format!("{} {}{cluster} {}", clock(l.ts), l.event, l.fields)
        .trim_end()
        .to_string()
}

pub async fn run(target: &Target, ask: Ask) -> u8 {
    match target {
        Target::Socket(path) => match Stream::open(path, Client::Logs).await {
            Ok((_, stream)) => from_socket(stream, &ask).await,
            Err(why) => super::unreachable(&why),
        },
        Target::Fleet(_) => from_fleet(target, &ask).await,
    }
}

/// Over the control socket, in the engine's order: the stored history,
/// the clusters' latest output, then live.
async fn from_socket(mut stream: Stream, ask: &Ask) -> u8 {
    let mut history: Vec<Map<String, Value>> = Vec::new();
    // Whether the engine said it was exiting, for why the stream ends.
    let mut exiting = None;
    loop {
        let msg = match stream.next().await {
            Ok(Some(msg)) => msg,
            Ok(None) if ask.follow => {
                let why = exiting.map_or("the engine closed the connection", farewell);
                eprintln!("mewld: {why}");
                return OK;
            }
            Ok(None) => return super::unreachable("the engine closed the connection"),
            Err(why) => return super::unreachable(&why),
        };
        match msg {
            ServerMsg::History { entries, done } => {
                history.extend(entries);
                if done {
                    for entry in ask.tail(history.iter()) {
                        ask.print_entry(entry);
                    }
                    history = Vec::new();
                }
            }
            ServerMsg::Event { event } => ask.print_event(&event),
            ServerMsg::CaughtUp if !ask.follow => return OK,
            ServerMsg::Lagged { skipped } => {
                eprintln!("mewld: skipped {skipped} entries (they came too fast)")
            }
            ServerMsg::Error { message } => return super::unreachable(&message),
            ServerMsg::Snapshot { snapshot } => exiting = snapshot.exiting,
            // With -f, the history and what follows come once it runs (or
            // the connection closes: the start was given up).
            ServerMsg::Starting {
                phase,
                exiting: given_up,
            } if ask.follow => match given_up {
                None => eprintln!("mewld: the engine is starting: {phase}; waiting for it…"),
                Some(_) => exiting = given_up,
            },
            ServerMsg::Starting { phase, .. } => {
                eprintln!("mewld: the engine is starting: {phase}");
                return NOT_OK;
            }
            ServerMsg::CaughtUp | ServerMsg::Hello(_) | ServerMsg::Verdict { .. } => {}
        }
    }
}

/// Through the fleet's Redis: the action log (cluster output stays on
/// each host: `mewld logs` there shows it).
async fn from_fleet(target: &Target, ask: &Ask) -> u8 {
    let reached = match target.reach(Client::Logs).await {
        Ok(reached) => reached,
        Err(why) => return super::unreachable(&why),
    };
    let mut attached = reached.attached;
    let mut events = attached.handle.events();
    let entries = match attached.handle.history().await {
        Ok(entries) => entries,
        Err(why) => return super::unreachable(&format!("cannot read the action log: {why}")),
    };
    let parsed: Vec<Map<String, Value>> = entries
        .iter()
        .filter_map(|e| serde_json::from_str(e).ok())
        .collect();
    for entry in ask.tail(parsed.iter()) {
        ask.print_entry(entry);
    }
    if ask.cluster.is_some() {
        eprintln!("mewld: a cluster's output is on its host: run `mewld logs --cluster` there");
    }
    if !ask.follow {
        return OK;
    }
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => ask.print_event(&event),
                Err(RecvError::Lagged(n)) => eprintln!("mewld: skipped {n} entries"),
                Err(RecvError::Closed) => return NOT_OK,
            },
            Some(news) = attached.status.recv() => match news {
                LinkStatus::Lost(why) | LinkStatus::Starting(why) => eprintln!("mewld: {why}"),
                LinkStatus::Connected(_) => eprintln!("mewld: reading the fleet again"),
                LinkStatus::Ended(why) => {
                    eprintln!("mewld: {why}");
                    return NOT_OK;
                }
            },
        }
    }
}
