//! The console's state and how messages change it (the Elm shape:
//! `update(msg)` here, `view(&app)` in `view.rs`). No I/O: the loop in
//! `mod.rs` feeds messages in and carries [`Effect`]s out.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use serde_json::{Map, Value};

use crate::cluster_map::ClusterId;
use crate::engine::state::{ClusterView, Snapshot};
use crate::engine::{Event, Operation};

use super::clusters::TableView;
use super::diagnostics::Diagnostics;
use super::keys::{self, Action, ModeKind};
pub use super::lines::{age, clock, LogLine, OutputLine};
pub use super::pane::Pane;

/// Action-log entries kept in memory; the oldest go first.
pub const LOG_CAP: usize = 100_000;
/// Output lines kept per cluster.
pub const OUTPUT_CAP: usize = 2_000;
/// How long a message stays in the message line.
const STATUS_FOR: Duration = Duration::from_secs(8);

/// What a confirmation dialog will do if the operator says yes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmable {
    Op(Operation),
    Quit,
}

/// The cluster a dialog names, fixed when it opens: the table may change
/// under the dialog, the answer still means this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: ClusterId,
    pub name: String,
}

/// Who gets the next key. One at a time: a dialog replaces the help or the
/// filter input, it never opens on top of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Help,
    /// Typing into the filter of the focused pane (the clusters, or the
    /// action log).
    Filter,
    Confirm {
        action: Confirmable,
        target: Option<Target>,
    },
}

impl Mode {
    pub fn kind(&self) -> ModeKind {
        match self {
            Mode::Normal => ModeKind::Normal,
            Mode::Help => ModeKind::Help,
            Mode::Filter => ModeKind::Filter,
            Mode::Confirm { .. } => ModeKind::Confirm,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    pub text: String,
    pub error: bool,
    pub at: SystemTime,
}

/// Messages into the console.
#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    Snapshot(Arc<Snapshot>),
    Engine(Event),
    /// The stored action log, read at start.
    History(Vec<Map<String, Value>>),
    /// The engine's answer to a request.
    Outcome(Result<String, String>),
    /// An attached console's link to its engine: up again (`None`), or lost.
    Link(Option<String>),
    Tick(SystemTime),
}

/// What the loop must do after an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Request(Operation),
    Quit,
}

pub struct App {
    pub snapshot: Arc<Snapshot>,
    pub now: SystemTime,
    /// Position of the selection among the rows shown ([`App::rows`]).
    pub selected: usize,
    /// The cluster selected: the selection follows it when rows move.
    selected_id: Option<ClusterId>,
    /// The table's filter and sort.
    table: TableView,
    /// The clusters shown, in table order: indices into the snapshot.
    /// Worked out when the snapshot, the filter or the sort changes, not
    /// on every frame (sorting 1000 clusters is not free).
    rows: Vec<usize>,
    /// Diagnostic answers, each cluster's recent samples, and the pane's
    /// filter and scroll.
    pub diagnostics: Diagnostics,
    pub focus: Pane,
    /// The detail view is open (on narrow screens it replaces the table).
    pub detail: bool,
    pub log: VecDeque<LogLine>,
    /// Lines scrolled up from the newest; 0 follows the log.
    pub log_scroll: usize,
    pub log_follow: bool,
    pub output: HashMap<ClusterId, VecDeque<OutputLine>>,
    pub output_scroll: usize,
    pub filter: String,
    pub mode: Mode,
    pub status: Option<StatusLine>,
    pub color: bool,
    /// Where the console writes its own log, shown in the help.
    pub log_file: Option<String>,
    /// Where the engine is, for the header and the quit dialog.
    pub face: FaceView,
}

/// Where the console's engine runs, as the header tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaceView {
    /// In this process: quitting stops every cluster.
    Embedded,
    /// In another process, over the control socket at `socket`: quitting
    /// detaches. `lost` says why it is out of reach, while it is.
    Attached {
        socket: String,
        lost: Option<String>,
    },
}

impl App {
    pub fn new(color: bool, now: SystemTime) -> App {
        App {
            snapshot: Arc::new(Snapshot::default()),
            now,
            selected: 0,
            selected_id: None,
            table: TableView::default(),
            rows: Vec::new(),
            diagnostics: Diagnostics::default(),
            focus: Pane::Clusters,
            detail: false,
            log: VecDeque::new(),
            log_scroll: 0,
            log_follow: true,
            output: HashMap::new(),
            output_scroll: 0,
            filter: String::new(),
            mode: Mode::Normal,
            status: None,
            color,
            log_file: None,
            face: FaceView::Embedded,
        }
    }

    /// The clusters shown, in table order: indices into the snapshot.
    pub fn rows(&self) -> &[usize] {
        &self.rows
    }

    /// How the table is filtered and sorted.
    pub fn table(&self) -> &TableView {
        &self.table
    }

    pub fn selected_cluster(&self) -> Option<&ClusterView> {
        let index = *self.rows.get(self.selected)?;
        self.snapshot.clusters.get(index)
    }

    /// After the snapshot, the filter or the sort changed: the rows again,
    /// and the selection stays on its cluster if it is still shown.
    fn refresh_rows(&mut self) {
        self.rows = self.table.rows(&self.snapshot.clusters);
        let clusters = &self.snapshot.clusters;
        let kept = self
            .selected_id
            .and_then(|id| self.rows.iter().position(|i| clusters[*i].id == id));
        self.selected = kept.unwrap_or(self.selected.min(self.rows.len().saturating_sub(1)));
        self.selected_id = self.rows.get(self.selected).map(|i| clusters[*i].id);
    }

    pub fn update(&mut self, msg: Msg) -> Option<Effect> {
        match msg {
            Msg::Key(key) => return self.on_key(key),
            Msg::Snapshot(s) => {
                self.diagnostics.observe(&s);
                self.snapshot = s;
                self.refresh_rows();
            }
            Msg::Engine(Event::ActionLog(entry) | Event::ClusterLog(entry)) => {
                let line = LogLine::from_entry(&entry);
                if let Some(id) = line.missed_ping() {
                    self.diagnostics.missed(line.at(), id, &self.snapshot);
                }
                // The history read may already have brought it.
                if !self.has_recent(&line) {
                    self.push_log(line);
                }
            }
            Msg::Engine(Event::Output {
                id, stream, line, ..
            }) => {
                let buf = self.output.entry(id).or_default();
                buf.push_back(OutputLine { stream, text: line });
                if buf.len() > OUTPUT_CAP {
                    buf.pop_front();
                }
            }
            Msg::History(entries) => {
                // Live entries may already be here; keep those the history lacks.
                let live: Vec<LogLine> = self.log.drain(..).collect();
                self.log = entries.iter().map(LogLine::from_entry).collect();
                for line in live {
                    if !self.has_recent(&line) {
                        self.log.push_back(line);
                    }
                }
                while self.log.len() > LOG_CAP {
                    self.log.pop_front();
                }
            }
            Msg::Link(lost) => {
                if let FaceView::Attached { lost: was, .. } = &mut self.face {
                    *was = lost.clone();
                }
                match lost {
                    Some(why) => {
                        self.say(format!("engine out of reach ({why}); reconnecting…"), true)
                    }
                    None => self.say("attached again", false),
                }
            }
            Msg::Outcome(Ok(text)) => self.say(text, false),
            Msg::Outcome(Err(text)) => self.say(text, true),
            Msg::Tick(now) => {
                self.now = now;
                if self
                    .status
                    .as_ref()
                    .is_some_and(|s| now.duration_since(s.at).unwrap_or_default() > STATUS_FOR)
                {
                    self.status = None;
                }
            }
        }
        None
    }

    /// Whether `line` is among the last entries shown (the history and
    /// the live events overlap by what was written while both were read).
    fn has_recent(&self, line: &LogLine) -> bool {
        self.log
            .iter()
            .rev()
            .take(1000)
            .any(|h| h.ts == line.ts && h.event == line.event && h.cluster == line.cluster)
    }

    fn push_log(&mut self, line: LogLine) {
        self.log.push_back(line);
        if self.log.len() > LOG_CAP {
            self.log.pop_front();
        }
        if !self.log_follow {
            // Keep the same lines in view while paused.
            self.log_scroll += 1;
        }
    }

    pub fn say(&mut self, text: impl Into<String>, error: bool) {
        self.status = Some(StatusLine {
            text: text.into(),
            error,
            at: self.now,
        });
    }

    fn on_key(&mut self, key: KeyEvent) -> Option<Effect> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        // Esc followed quickly by a key arrives as Alt+key (tmux, slow links):
        // take it as the two keys it was.
        if key.modifiers.contains(KeyModifiers::ALT) {
            let _ = self.on_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
            let plain = KeyEvent::new(key.code, key.modifiers - KeyModifiers::ALT);
            return self.on_key(plain);
        }
        let action = keys::action_for(self.mode.kind(), &key)?;
        self.act(action, key.code)
    }

    /// Does what the key table says; `code` is the key, for typed text.
    fn act(&mut self, action: Action, code: KeyCode) -> Option<Effect> {
        match action {
            Action::Yes => return self.answer_yes(),
            Action::Start => return self.on_cluster(Operation::Start, false),
            Action::Diagnose => return self.on_cluster(Operation::Diagnose, false),
            Action::Stop => return self.on_cluster(Operation::Stop, true),
            Action::Restart => return self.on_cluster(Operation::Restart, true),
            Action::Help => self.mode = Mode::Help,
            Action::CloseHelp => self.mode = Mode::Normal,
            Action::Quit => self.ask(Confirmable::Quit, None),
            Action::RollingRestart => self.ask(Confirmable::Op(Operation::RollingRestart), None),
            Action::Shutdown => self.ask(Confirmable::Op(Operation::Shutdown), None),
            Action::RestartProcess => self.ask(Confirmable::Op(Operation::RestartProcess), None),
            Action::No => {
                self.mode = Mode::Normal;
                self.say("cancelled", false);
            }
            Action::Move(by) => self.scroll(by),
            Action::Top => self.scroll(isize::MIN / 2),
            Action::Bottom => self.scroll(isize::MAX / 2),
            Action::NextPane => self.focus = self.focus.next(),
            Action::PrevPane => self.focus = self.focus.prev(),
            Action::Detail => {
                self.detail = true;
                self.focus = Pane::Output;
                self.output_scroll = 0;
            }
            Action::Back if !self.filter.is_empty() && self.focus == Pane::Log => {
                self.filter.clear();
            }
            Action::Back
                if !self.diagnostics.filter.is_empty() && self.focus == Pane::Diagnostics =>
            {
                self.diagnostics.filter.clear();
            }
            Action::Back if !self.table.filter.is_empty() && self.focus == Pane::Clusters => {
                self.table.filter.clear();
                self.refresh_rows();
            }
            Action::Back => {
                self.detail = false;
                self.focus = Pane::Clusters;
            }
            Action::Filter => {
                if self.focus == Pane::Output {
                    self.focus = Pane::Log;
                }
                self.mode = Mode::Filter;
            }
            Action::Type => {
                if let KeyCode::Char(c) = code {
                    self.edit_filter(|f| f.push(c));
                }
            }
            Action::DeleteChar => self.edit_filter(|f| {
                f.pop();
            }),
            Action::KeepFilter => self.mode = Mode::Normal,
            Action::ClearFilter => {
                self.mode = Mode::Normal;
                self.edit_filter(String::clear);
            }
            Action::Sort => {
                self.table.sort = self.table.sort.next();
                self.refresh_rows();
                self.say(format!("sorted by {}", self.table.sort.title()), false);
            }
            Action::Reverse => {
                self.table.reverse = !self.table.reverse;
                self.refresh_rows();
            }
            Action::Follow => self.toggle_follow(),
        }
        None
    }

    /// Changes the filter of the pane being filtered: the clusters', or
    /// the action log's.
    fn edit_filter(&mut self, edit: impl FnOnce(&mut String)) {
        match self.focus {
            Pane::Clusters => {
                edit(&mut self.table.filter);
                self.refresh_rows();
            }
            Pane::Diagnostics => {
                edit(&mut self.diagnostics.filter);
                self.diagnostics.scroll = 0;
            }
            Pane::Output | Pane::Log => {
                edit(&mut self.filter);
                self.log_scroll = 0;
            }
        }
    }

    fn toggle_follow(&mut self) {
        self.log_follow = !self.log_follow;
        if self.log_follow {
            self.log_scroll = 0;
        }
        let state = if self.log_follow {
            "following"
        } else {
            "paused"
        };
        self.say(format!("action log {state}"), false);
    }

    fn answer_yes(&mut self) -> Option<Effect> {
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Confirm {
                action: Confirmable::Op(op),
                ..
            } => Some(Effect::Request(op)),
            Mode::Confirm {
                action: Confirmable::Quit,
                ..
            } => Some(Effect::Quit),
            other => {
                self.mode = other;
                None
            }
        }
    }

    /// An operation on the selected cluster; its target is fixed now, by
    /// id, whatever the table does while the dialog is open.
    fn on_cluster(&mut self, op: fn(ClusterId) -> Operation, confirm: bool) -> Option<Effect> {
        let Some(c) = self.selected_cluster() else {
            self.say("no cluster selected", true);
            return None;
        };
        let target = Target {
            id: c.id,
            name: c.name.clone(),
        };
        let operation = op(target.id);
        if !confirm {
            return Some(Effect::Request(operation));
        }
        self.ask(Confirmable::Op(operation), Some(target));
        None
    }

    fn ask(&mut self, action: Confirmable, target: Option<Target>) {
        self.mode = Mode::Confirm { action, target };
    }

    fn scroll(&mut self, by: isize) {
        match self.focus {
            Pane::Clusters => {
                let last = self.rows.len().saturating_sub(1);
                self.selected = self.selected.saturating_add_signed(by).min(last);
                self.selected_id = self
                    .rows
                    .get(self.selected)
                    .map(|i| self.snapshot.clusters[*i].id);
                self.output_scroll = 0;
            }
            Pane::Output => {
                let len = self
                    .selected_cluster()
                    .and_then(|c| self.output.get(&c.id))
                    .map_or(0, VecDeque::len);
                self.output_scroll = self.output_scroll.saturating_add_signed(-by).min(len);
            }
            Pane::Diagnostics => self.diagnostics.scroll_by(by),
            Pane::Log => {
                self.log_scroll = self
                    .log_scroll
                    .saturating_add_signed(-by)
                    .min(self.log.len());
                self.log_follow = self.log_scroll == 0;
            }
        }
    }
}
