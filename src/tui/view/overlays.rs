//! What is drawn from the key table: the footer's hints, the `?` help, and
//! the confirmation dialog with its answer line.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::{centered, style};
use crate::tui::app::{App, Confirmable, FaceView, Target};
use crate::tui::keys::{self, Action, ModeKind};
use mewld_core::model::Operation;

/// The hints of the rows that apply now, in table order (most needed
/// first), as many whole ones as fit in `width`: a hint cut in half reads
/// as a wrong key.
fn footer_text(app: &App, width: usize) -> String {
    let mode = app.mode.kind();
    let attached = matches!(app.face, FaceView::Attached { .. });
    let hints = keys::bindings(mode)
        .filter_map(|b| b.hint.as_ref().map(|h| (b, h)))
        .filter(|(_, h)| mode != ModeKind::Normal || h.panes.contains(&app.focus))
        .map(|(b, h)| {
            // An attached console's quit detaches: the footer says so.
            let quits = b.keys.first().is_some_and(|(_, a)| *a == Action::Quit);
            let text = if attached && quits { "detach" } else { h.text };
            match h.keys {
                0 => text.to_string(),
                n => format!("{} {text}", b.names(n, "/")),
            }
        });
    let mut text = String::new();
    for hint in hints {
        let sep = if text.is_empty() { "" } else { " · " };
        let wanted = text.chars().count() + sep.chars().count() + hint.chars().count();
        if wanted > width {
            break;
        }
        text.push_str(sep);
        text.push_str(&hint);
    }
    text
}

pub(super) fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    frame.render_widget(
        Paragraph::new(Span::styled(
            footer_text(app, usize::from(area.width)),
            style(app, Style::default().fg(Color::DarkGray)),
        )),
        area,
    );
}

/// The normal mode's keys, one row of the table a line.
pub(super) fn draw_help(frame: &mut Frame, app: &App, area: Rect) {
    let rows: Vec<(String, &str)> = keys::bindings(ModeKind::Normal)
        .filter_map(|b| b.help.map(|text| (b.label(), text)))
        .collect();
    let key_width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        + 1;
    let text_width = rows
        .iter()
        .map(|(_, t)| t.chars().count())
        .max()
        .unwrap_or(0);
    // Borders and a space on the right.
    let width = (key_width + text_width + 3).min(usize::from(area.width)) as u16;
    let height = (rows.len() as u16 + 3).min(area.height);
    let rect = centered(area, width, height);
    frame.render_widget(Clear, rect);
    let mut lines: Vec<Line> = rows
        .into_iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(
                    format!("{k:<key_width$}"),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::raw(what),
            ])
        })
        .collect();
    if let Some(path) = &app.log_file {
        lines.push(Line::from(format!("log file: {path}")));
    }
    let close = first_key(ModeKind::Help, Action::CloseHelp);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" Keys · {close} closes ")),
        ),
        rect,
    );
}

/// The first key the table gives `action` in `mode`, as people read it.
pub(super) fn first_key(mode: ModeKind, action: Action) -> String {
    keys::bindings(mode)
        .flat_map(|b| b.keys.iter())
        .find(|(_, a)| *a == action)
        .map(|(k, _)| k.name())
        .unwrap_or_default()
}

/// A dialog's title and question. Built when drawn, from what the dialog
/// will do and the cluster it was opened for.
pub fn question(app: &App, action: Confirmable, target: Option<&Target>) -> (String, String) {
    let named = |verb: &str| match target {
        Some(t) => (
            format!("{verb} cluster"),
            format!("{verb} cluster {} ({})?", t.id, t.name),
        ),
        None => (format!("{verb} cluster"), format!("{verb} the cluster?")),
    };
    match action {
        Confirmable::Quit => match app.face {
            FaceView::Embedded => (
                "Quit".into(),
                format!(
                    "Quitting stops every cluster. Quit? ({} stays)",
                    first_key(ModeKind::Confirm, Action::No)
                ),
            ),
            FaceView::Attached { .. } => (
                "Detach".into(),
                format!(
                    "Detach? Every cluster keeps running; {} shuts the engine down. ({} stays)",
                    first_key(ModeKind::Normal, Action::Shutdown),
                    first_key(ModeKind::Confirm, Action::No)
                ),
            ),
        },
        Confirmable::Op(Operation::Stop(_)) => named("Stop"),
        Confirmable::Op(Operation::Restart(_)) => named("Restart"),
        Confirmable::Op(Operation::RollingRestart) => {
            let running = app
                .snapshot
                .clusters
                .iter()
                .filter(|c| c.pid.is_some())
                .count();
            (
                "Rolling restart".into(),
                format!("Restart all {running} running clusters, one at a time?"),
            )
        }
        Confirmable::Op(Operation::Shutdown) => (
            "Shut down".into(),
            "Stop every cluster and exit mewld (status 0)?".into(),
        ),
        Confirmable::Op(Operation::RestartProcess) => (
            "Restart the process".into(),
            "Stop every cluster and exit with status 1, so the service manager restarts mewld?"
                .into(),
        ),
        // The console asks only for the operations above.
        Confirmable::Op(other) => ("Confirm".into(), format!("{other:?}?")),
    }
}

pub(super) fn draw_dialog(
    frame: &mut Frame,
    app: &App,
    area: Rect,
    action: Confirmable,
    target: Option<&Target>,
) {
    let (title, body) = question(app, action, target);
    // "y / Enter: yes     n / Esc: no", from the table.
    let answers: Vec<String> = keys::bindings(ModeKind::Confirm)
        .filter_map(|b| b.hint.as_ref().map(|h| (b, h)))
        .map(|(b, h)| format!("{}: {}", b.names(h.keys, " / "), h.text))
        .collect();
    let answers = answers.join("     ");
    let longest = body.chars().count().max(answers.chars().count()) as u16;
    let width = (longest + 6).min(area.width.saturating_sub(2));
    let rect = centered(area, width, 7);
    frame.render_widget(Clear, rect);
    let text = vec![
        Line::from(""),
        Line::from(body),
        Line::from(""),
        Line::from(Span::styled(
            answers,
            style(app, Style::default().add_modifier(Modifier::BOLD)),
        )),
    ];
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .centered()
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(format!(" {title} ")),
            ),
        rect,
    );
}
