//! What the key table's actions do to the console's state: the key
//! arrives as a message ([`App::update`]), the table in `keys.rs` names its
//! action, and the action changes the state or asks for an [`Effect`].

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::tui::keys::{self, Action};
use mewld_core::cluster_map::ClusterId;
use mewld_core::model::Operation;

use super::{App, Confirmable, Effect, Mode, Pane, Target};

impl App {
    /// A key: what the key table says it does in the current mode.
    pub(super) fn on_key(&mut self, key: KeyEvent) -> Option<Effect> {
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
            Action::Back if !self.output_filter.is_empty() && self.focus == Pane::Output => {
                self.output_filter.clear();
                self.output_scroll = 0;
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
            Action::Filter => self.mode = Mode::Filter,
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
                self.say(self.table.order(), false);
            }
            Action::Reverse => {
                self.table.reverse = !self.table.reverse;
                self.refresh_rows();
                self.say(self.table.order(), false);
            }
            Action::Follow => self.toggle_follow(),
        }
        None
    }

    /// Changes the filter of the pane being filtered.
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
            Pane::Output => {
                edit(&mut self.output_filter);
                self.output_scroll = 0;
            }
            Pane::Log => {
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
                let len = self.output_lines().count();
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
