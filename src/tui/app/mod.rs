//! The console's state and how messages change it (the Elm shape:
//! `update(msg)` here, `view(&app)` in `view/`). No I/O: the loop in
//! `tui/mod.rs` feeds messages in and carries [`Effect`]s out. What a key
//! does is in `actions.rs`.

mod actions;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossterm::event::KeyEvent;
use ratatui::text::Span;
use serde_json::{Map, Value};

use mewld_core::cluster_map::ClusterId;
use mewld_core::model::state::{ClusterView, Snapshot};
use mewld_core::model::{Event, Operation};

use super::clusters::TableView;
use super::diagnostics::Diagnostics;
use super::keys::ModeKind;
pub use super::lines::{age, clock, LogLine, OutputLine};
pub use super::pane::Pane;

/// Action-log entries kept in memory; the oldest go first.
pub const LOG_CAP: usize = 100_000;
/// Output lines kept per cluster.
pub const OUTPUT_CAP: usize = 2_000;
/// How long a message stays in the message line.
const STATUS_FOR: Duration = Duration::from_secs(8);
/// The widest a cluster's name is shown; longer names are cut.
pub const NAME_WIDTH_MAX: u16 = 24;

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
    /// Typing into the filter of the focused pane (the clusters, the
    /// cluster's output, the action log or the diagnostics).
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
    /// An attached console reached an engine that does not run yet: the
    /// step of its start. `Link(None)` follows once it runs.
    Starting(String),
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
    /// The longest cluster name's width on screen, at most
    /// [`NAME_WIDTH_MAX`]: the name columns are this wide.
    name_width: u16,
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
    /// Matching output lines scrolled up from the newest.
    pub output_scroll: usize,
    /// The output pane's filter: only lines that contain it (any case).
    pub output_filter: String,
    /// The action log's filter.
    pub filter: String,
    pub mode: Mode,
    pub status: Option<StatusLine>,
    pub color: bool,
    /// Where the console writes its own log, shown in the help.
    pub log_file: Option<String>,
    /// Where the engine is, for the header and the quit dialog.
    pub face: FaceView,
    /// An attached console's engine does not run yet: the step of its
    /// start, shown in the header until it runs.
    pub engine_starting: Option<String>,
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
            name_width: 0,
            diagnostics: Diagnostics::default(),
            focus: Pane::Clusters,
            detail: false,
            log: VecDeque::new(),
            log_scroll: 0,
            log_follow: true,
            output: HashMap::new(),
            output_scroll: 0,
            output_filter: String::new(),
            filter: String::new(),
            mode: Mode::Normal,
            status: None,
            color,
            log_file: None,
            face: FaceView::Embedded,
            engine_starting: None,
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

    /// How wide the name columns are: the longest name, within bounds.
    pub fn name_width(&self) -> u16 {
        self.name_width
    }

    /// The selected cluster's output lines the output filter lets through,
    /// oldest first.
    pub fn output_lines(&self) -> impl DoubleEndedIterator<Item = &OutputLine> {
        let filter = self.output_filter.to_lowercase();
        self.selected_cluster()
            .and_then(|c| self.output.get(&c.id))
            .into_iter()
            .flatten()
            .filter(move |l| filter.is_empty() || l.text.to_lowercase().contains(&filter))
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
                self.name_width = s
                    .clusters
                    .iter()
                    .map(|c| Span::raw(c.name.as_str()).width())
                    .max()
                    .map_or(0, |w| u16::try_from(w).unwrap_or(u16::MAX))
                    .min(NAME_WIDTH_MAX);
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
            Msg::Link(lost) => self.on_link(lost),
            Msg::Starting(phase) => {
                self.say(
                    format!("the engine is starting: {phase}; waiting for it…"),
                    false,
                );
                self.engine_starting = Some(phase);
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

    /// An attached console's engine reached again (or, after its start,
    /// running), or out of reach.
    fn on_link(&mut self, lost: Option<String>) {
        if let FaceView::Attached { lost: was, .. } = &mut self.face {
            *was = lost.clone();
        }
        let was_starting = self.engine_starting.take().is_some();
        match lost {
            Some(why) => self.say(format!("engine out of reach ({why}); reconnecting…"), true),
            None if was_starting => self.say("the engine has started", false),
            None => self.say("attached again", false),
        }
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
}
