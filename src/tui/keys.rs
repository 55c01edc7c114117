//! Every key of the console, in one table. Dispatch looks keys up here, and
//! the footer, the `?` help and the dialog's answer line are written from
//! it, so a key is spelled once (a test holds the README's table to it).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::pane::Pane;

/// Who gets a key: the console is in exactly one of these at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeKind {
    Normal,
    /// The `?` overlay is open.
    Help,
    /// Typing into the focused pane's filter.
    Filter,
    /// A confirmation dialog is open.
    Confirm,
}

/// A key as the table knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A key without Ctrl (Shift is part of the character: `G` is `G`).
    Code(KeyCode),
    /// Ctrl and a letter.
    Ctrl(char),
    /// Any character without Ctrl: text typed into the filter.
    Text,
}

impl Key {
    pub fn matches(self, ev: &KeyEvent) -> bool {
        let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
        match self {
            Key::Code(code) => !ctrl && ev.code == code,
            Key::Ctrl(c) => ctrl && ev.code == KeyCode::Char(c),
            Key::Text => !ctrl && matches!(ev.code, KeyCode::Char(_)),
        }
    }

    /// The key as people read it (and as the README writes it).
    pub fn name(self) -> String {
        match self {
            Key::Code(KeyCode::Char(c)) => c.to_string(),
            Key::Code(KeyCode::Down) => "↓".into(),
            Key::Code(KeyCode::Up) => "↑".into(),
            Key::Code(KeyCode::PageDown) => "PgDn".into(),
            Key::Code(KeyCode::PageUp) => "PgUp".into(),
            Key::Code(KeyCode::Tab) => "Tab".into(),
            Key::Code(KeyCode::BackTab) => "Shift-Tab".into(),
            Key::Code(KeyCode::Enter) => "Enter".into(),
            Key::Code(KeyCode::Esc) => "Esc".into(),
            Key::Code(KeyCode::Backspace) => "Backspace".into(),
            Key::Code(KeyCode::Home) => "Home".into(),
            Key::Code(KeyCode::End) => "End".into(),
            // Keys the table does not use; crossterm's words (its own per platform).
            Key::Code(code) => code.to_string(),
            Key::Ctrl(c) => format!("Ctrl-{}", c.to_ascii_uppercase()),
            Key::Text => "text".into(),
        }
    }
}

/// What a key does. The console's state decides the details (which pane
/// scrolls, which cluster is meant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Help,
    Quit,
    /// Move the selection or scroll the focused pane by this many lines.
    Move(isize),
    Top,
    Bottom,
    NextPane,
    PrevPane,
    Detail,
    Back,
    Start,
    Stop,
    Restart,
    Diagnose,
    RollingRestart,
    Shutdown,
    RestartProcess,
    Filter,
    /// Sort the clusters by the next column.
    Sort,
    /// Reverse the clusters' order.
    Reverse,
    Follow,
    CloseHelp,
    /// The typed character goes into the filter.
    Type,
    DeleteChar,
    KeepFilter,
    ClearFilter,
    Yes,
    No,
}

/// A footer entry: the first `keys` keys of the row, then `text`, shown
/// while one of `panes` has the focus (outside normal mode, always).
pub struct Hint {
    pub keys: usize,
    pub text: &'static str,
    pub panes: &'static [Pane],
}

/// One row of the table: keys with their actions, read as one line of help.
pub struct Binding {
    pub keys: &'static [(Key, Action)],
    pub modes: &'static [ModeKind],
    pub hint: Option<Hint>,
    /// The `?` help's text; the help lists the normal mode's rows.
    pub help: Option<&'static str>,
}

impl Binding {
    /// "j / k / ↓ / ↑": the row's keys, for the help.
    pub fn label(&self) -> String {
        self.names(self.keys.len(), " / ")
    }

    /// The first `n` keys' names joined by `sep`.
    pub fn names(&self, n: usize, sep: &str) -> String {
        let names: Vec<String> = self.keys.iter().take(n).map(|(k, _)| k.name()).collect();
        names.join(sep)
    }
}

const fn ch(c: char) -> Key {
    Key::Code(KeyCode::Char(c))
}

const fn code(c: KeyCode) -> Key {
    Key::Code(c)
}

const ALL_PANES: &[Pane] = &[Pane::Clusters, Pane::Output, Pane::Log, Pane::Diagnostics];
const CLUSTER_PANES: &[Pane] = &[Pane::Clusters, Pane::Output];
const NORMAL: &[ModeKind] = &[ModeKind::Normal];

const fn hint(keys: usize, text: &'static str, panes: &'static [Pane]) -> Option<Hint> {
    Some(Hint { keys, text, panes })
}

/// The table. Order matters: the help and the footer follow it, most
/// needed first, so a narrow footer loses the least useful hints.
pub const BINDINGS: &[Binding] = &[
    // Normal mode.
    Binding {
        keys: &[(ch('?'), Action::Help)],
        modes: NORMAL,
        hint: hint(1, "help", ALL_PANES),
        help: Some("this help"),
    },
    Binding {
        keys: &[(ch('q'), Action::Quit), (Key::Ctrl('c'), Action::Quit)],
        modes: NORMAL,
        hint: hint(1, "quit", ALL_PANES),
        help: Some("quit: stops every cluster, or detaches if attached (asks)"),
    },
    Binding {
        keys: &[
            (ch('j'), Action::Move(1)),
            (ch('k'), Action::Move(-1)),
            (code(KeyCode::Down), Action::Move(1)),
            (code(KeyCode::Up), Action::Move(-1)),
        ],
        modes: NORMAL,
        hint: hint(2, "move", ALL_PANES),
        help: Some("move the selection, or scroll the focused pane"),
    },
    Binding {
        keys: &[
            (code(KeyCode::PageDown), Action::Move(10)),
            (code(KeyCode::PageUp), Action::Move(-10)),
        ],
        modes: NORMAL,
        hint: None,
        help: Some("move or scroll by ten"),
    },
    Binding {
        keys: &[
            (ch('g'), Action::Top),
            (ch('G'), Action::Bottom),
            (code(KeyCode::Home), Action::Top),
            (code(KeyCode::End), Action::Bottom),
        ],
        modes: NORMAL,
        hint: hint(2, "top/end", &[Pane::Output, Pane::Log, Pane::Diagnostics]),
        help: Some("to the top / to the end"),
    },
    Binding {
        keys: &[(code(KeyCode::Enter), Action::Detail)],
        modes: NORMAL,
        hint: hint(1, "detail", &[Pane::Clusters]),
        help: Some("open the selected cluster's detail (health, output)"),
    },
    Binding {
        keys: &[(code(KeyCode::Esc), Action::Back)],
        modes: NORMAL,
        hint: hint(1, "back", &[Pane::Output, Pane::Log, Pane::Diagnostics]),
        help: Some("back; clear the focused pane's filter"),
    },
    Binding {
        keys: &[(ch('s'), Action::Start)],
        modes: NORMAL,
        hint: hint(1, "start", CLUSTER_PANES),
        help: Some("start the selected cluster"),
    },
    Binding {
        keys: &[(ch('x'), Action::Stop)],
        modes: NORMAL,
        hint: hint(1, "stop", CLUSTER_PANES),
        help: Some("stop the selected cluster (asks first)"),
    },
    Binding {
        keys: &[(ch('r'), Action::Restart)],
        modes: NORMAL,
        hint: hint(1, "restart", CLUSTER_PANES),
        help: Some("restart the selected cluster (asks first)"),
    },
    Binding {
        keys: &[(ch('d'), Action::Diagnose)],
        modes: NORMAL,
        hint: hint(1, "diag", CLUSTER_PANES),
        help: Some("diagnose the selected cluster now"),
    },
    Binding {
        keys: &[(ch('R'), Action::RollingRestart)],
        modes: NORMAL,
        hint: hint(1, "rolling", &[Pane::Clusters]),
        help: Some("rolling restart of every cluster (asks first)"),
    },
    Binding {
        keys: &[(ch('S'), Action::Shutdown)],
        modes: NORMAL,
        hint: hint(1, "shutdown", &[Pane::Clusters]),
        help: Some("shut down: stop every cluster, exit 0 (asks first)"),
    },
    Binding {
        keys: &[(ch('P'), Action::RestartProcess)],
        modes: NORMAL,
        hint: hint(1, "restart proc", &[Pane::Clusters]),
        help: Some("restart the process: stop all clusters, exit 1 (asks first)"),
    },
    Binding {
        keys: &[(ch('/'), Action::Filter)],
        modes: NORMAL,
        hint: hint(1, "filter", ALL_PANES),
        help: Some("filter the focused pane (clusters: id, name or state)"),
    },
    Binding {
        keys: &[(ch('o'), Action::Sort), (ch('O'), Action::Reverse)],
        modes: NORMAL,
        hint: hint(1, "sort", &[Pane::Clusters]),
        help: Some("sort the clusters by the next column / reverse the order"),
    },
    Binding {
        keys: &[(ch('f'), Action::Follow)],
        modes: NORMAL,
        hint: hint(1, "follow/pause", &[Pane::Log]),
        help: Some("follow / pause the action log"),
    },
    Binding {
        keys: &[
            (code(KeyCode::Tab), Action::NextPane),
            (code(KeyCode::BackTab), Action::PrevPane),
        ],
        modes: NORMAL,
        hint: hint(1, "pane", ALL_PANES),
        help: Some("next / previous pane (clusters, output, log, diagnostics)"),
    },
    // The help overlay.
    Binding {
        keys: &[
            (code(KeyCode::Esc), Action::CloseHelp),
            (ch('?'), Action::CloseHelp),
            (ch('q'), Action::CloseHelp),
        ],
        modes: &[ModeKind::Help],
        hint: hint(3, "close help", ALL_PANES),
        help: None,
    },
    // Ctrl-C asks to quit from the help and the filter too; the dialog
    // takes their place.
    Binding {
        keys: &[(Key::Ctrl('c'), Action::Quit)],
        modes: &[ModeKind::Help, ModeKind::Filter],
        hint: None,
        help: None,
    },
    // Typing the filter: every character is text, whatever it does elsewhere.
    Binding {
        keys: &[(Key::Text, Action::Type)],
        modes: &[ModeKind::Filter],
        hint: hint(0, "type to filter", ALL_PANES),
        help: None,
    },
    Binding {
        keys: &[(code(KeyCode::Backspace), Action::DeleteChar)],
        modes: &[ModeKind::Filter],
        hint: None,
        help: None,
    },
    Binding {
        keys: &[(code(KeyCode::Enter), Action::KeepFilter)],
        modes: &[ModeKind::Filter],
        hint: hint(1, "keep", ALL_PANES),
        help: None,
    },
    Binding {
        keys: &[(code(KeyCode::Esc), Action::ClearFilter)],
        modes: &[ModeKind::Filter],
        hint: hint(1, "clear", ALL_PANES),
        help: None,
    },
    // A confirmation dialog takes yes and no, nothing else.
    Binding {
        keys: &[
            (ch('y'), Action::Yes),
            (code(KeyCode::Enter), Action::Yes),
            (ch('Y'), Action::Yes),
        ],
        modes: &[ModeKind::Confirm],
        hint: hint(2, "yes", ALL_PANES),
        help: None,
    },
    Binding {
        keys: &[
            (ch('n'), Action::No),
            (code(KeyCode::Esc), Action::No),
            (ch('N'), Action::No),
        ],
        modes: &[ModeKind::Confirm],
        hint: hint(2, "no", ALL_PANES),
        help: None,
    },
];

/// The rows that apply in `mode`, in table order.
pub fn bindings(mode: ModeKind) -> impl Iterator<Item = &'static Binding> {
    BINDINGS.iter().filter(move |b| b.modes.contains(&mode))
}

/// What `key` does in `mode`, if anything.
pub fn action_for(mode: ModeKind, key: &KeyEvent) -> Option<Action> {
    bindings(mode)
        .flat_map(|b| b.keys.iter())
        .find(|(k, _)| k.matches(key))
        .map(|(_, action)| *action)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODES: [ModeKind; 4] = [
        ModeKind::Normal,
        ModeKind::Help,
        ModeKind::Filter,
        ModeKind::Confirm,
    ];

    #[test]
    fn no_key_is_bound_twice_in_a_mode() {
        for mode in MODES {
            let keys: Vec<Key> = bindings(mode)
                .flat_map(|b| b.keys.iter().map(|(k, _)| *k))
                .collect();
            for (i, k) in keys.iter().enumerate() {
                assert!(!keys[i + 1..].contains(k), "{k:?} twice in {mode:?}");
            }
        }
    }

    #[test]
    fn the_filter_takes_every_letter_as_text() {
        // A character key bound in the filter would never reach it.
        assert!(bindings(ModeKind::Filter)
            .flat_map(|b| b.keys.iter())
            .all(|(k, _)| !matches!(k, Key::Code(KeyCode::Char(_)))));
        for c in ['q', 'x', '?', '/', 'S'] {
            let ev = KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
            assert_eq!(action_for(ModeKind::Filter, &ev), Some(Action::Type));
        }
    }

    #[test]
    fn every_normal_key_has_help_and_hints_name_real_keys() {
        for b in bindings(ModeKind::Normal) {
            assert!(b.help.is_some(), "{} has no help", b.label());
        }
        for b in BINDINGS {
            if let Some(h) = &b.hint {
                assert!(h.keys <= b.keys.len(), "{}", b.label());
            }
        }
    }

    #[test]
    fn shift_is_part_of_the_character_and_ctrl_is_not() {
        let shifted = KeyEvent::new(KeyCode::Char('G'), KeyModifiers::SHIFT);
        assert_eq!(action_for(ModeKind::Normal, &shifted), Some(Action::Bottom));
        let ctrl_x = KeyEvent::new(KeyCode::Char('x'), KeyModifiers::CONTROL);
        assert_eq!(action_for(ModeKind::Normal, &ctrl_x), None);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action_for(ModeKind::Confirm, &ctrl_c), None);
        assert_eq!(action_for(ModeKind::Help, &ctrl_c), Some(Action::Quit));
    }

    #[test]
    fn keys_read_as_people_write_them() {
        let names: Vec<String> = [
            code(KeyCode::BackTab),
            code(KeyCode::PageDown),
            code(KeyCode::Esc),
            code(KeyCode::Enter),
            Key::Ctrl('c'),
            ch('/'),
        ]
        .iter()
        .map(|k| k.name())
        .collect();
        assert_eq!(names, ["Shift-Tab", "PgDn", "Esc", "Enter", "Ctrl-C", "/"]);
    }
}
