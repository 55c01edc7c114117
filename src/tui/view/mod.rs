//! Drawing the console from [`App`]: a pure function of the state, so it is
//! tested with ratatui's `TestBackend`. Only what is visible is built, so a
//! frame stays cheap with thousands of clusters and a long action log.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Paragraph, Wrap};
use ratatui::Frame;

use super::app::{age, App, FaceView, Mode, Pane};
use mewld_core::model::state::ClusterState;
use mewld_core::model::state::FleetSummary;
use mewld_core::model::state::IdentifyStatus;

mod detail;
mod diagnostics;
mod overlays;
mod panes;

pub use overlays::question;

const WIDE: u16 = 140;
/// Rows the detail pane wants beside the table on a wide screen: its
/// header, a few shards, the trend lines and some output.
const DETAIL_ROWS: u16 = 20;

/// The cluster table (or the detail) takes the rows it needs, at most
/// 70 % of the screen; the action log gets the rest, and at least 3 rows.
fn body_height(app: &App, area: Rect) -> u16 {
    let free = area.height.saturating_sub(3);
    let most = (free * 7 / 10).max(4).min(free.saturating_sub(3));
    let clusters = u16::try_from(app.rows().len()).unwrap_or(u16::MAX);
    // Borders and the column titles.
    let table = clusters.saturating_add(3);
    let needed = if area.width >= WIDE {
        table.max(DETAIL_ROWS)
    } else if app.detail {
        most
    } else {
        table
    };
    needed.clamp(4.min(most), most)
}

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < 20 || area.height < 6 {
        frame.render_widget(
            Paragraph::new("mewld: terminal too small").wrap(Wrap { trim: true }),
            area,
        );
        return;
    }
    let [header, body, log, message, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(body_height(app, area)),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, app, header);
    if area.width >= WIDE {
        // The detail is always beside the table here; with the focus
        // (`Enter`, or Tab to it) it takes half the width.
        let detail_share = if app.focus == Pane::Output { 50 } else { 40 };
        let [table, detail] = Layout::horizontal([
            Constraint::Percentage(100 - detail_share),
            Constraint::Percentage(detail_share),
        ])
        .areas(body);
        panes::draw_table(frame, app, table);
        detail::draw(frame, app, detail);
    } else if app.detail {
        detail::draw(frame, app, body);
    } else {
        panes::draw_table(frame, app, body);
    }
    // The diagnostics share the bottom with the log on a wide screen, and
    // take its place on a narrow one while they have the focus.
    if area.width >= WIDE {
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(log);
        panes::draw_log(frame, app, left);
        diagnostics::draw_pane(frame, app, right);
    } else if app.focus == Pane::Diagnostics {
        diagnostics::draw_pane(frame, app, log);
    } else {
        panes::draw_log(frame, app, log);
    }
    draw_message(frame, app, message);
    overlays::draw_footer(frame, app, footer);
    match &app.mode {
        Mode::Help => overlays::draw_help(frame, app, area),
        Mode::Confirm { action, target } => {
            overlays::draw_dialog(frame, app, area, *action, target.as_ref());
        }
        Mode::Normal | Mode::Filter => {}
    }
}

/// Applies `s` only when colour is on; modifiers (bold, reverse) always stay,
/// so selection is visible under NO_COLOR.
fn style(app: &App, s: Style) -> Style {
    if app.color {
        s
    } else {
        Style {
            fg: None,
            bg: None,
            ..s
        }
    }
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let s = &app.snapshot;
    let total = s.clusters.len();
    let running = s
        .clusters
        .iter()
        .filter(|c| c.state == ClusterState::Running)
        .count();
    let launched = s
        .clusters
        .iter()
        .filter(|c| c.state != ClusterState::Pending)
        .count();
    let phase = if s.exiting.is_some() {
        "stopping all".to_string()
    } else if let Some(r) = &s.rolling {
        let how = if r.start_first { ", start first" } else { "" };
        format!("rolling restart {}/{}{how}", r.done, r.total)
    } else if s.resharding {
        "resharding".to_string()
    } else if s.fully_up {
        "fully up".to_string()
    } else {
        format!("launching {launched}/{total}")
    };
    // Narrow screens get the same facts in fewer words.
    let narrow = area.width < 120;
    let link = link_span(app, narrow);
    let mut spans = vec![
        Span::styled(
            " mewld ",
            style(
                app,
                Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED),
            ),
        ),
        Span::raw(if narrow {
            format!(" {}sh · {running}/{total} run · ", s.shard_count)
        } else {
            format!(" {} shards · {running}/{total} running · ", s.shard_count)
        }),
        Span::styled(phase, style(app, Style::default().fg(Color::Cyan))),
        Span::raw(" · "),
        link,
    ];
    if let Some(fleet) = &s.fleet {
        spans.push(fleet_span(app, fleet, &s.clusters, narrow));
    }
    match &s.identify {
        Some(q) => spans.push(identify_span(app, q, narrow)),
        None => {
            if let Some(rem) = s.sessions_remaining {
                let label = if narrow { "sess" } else { "sessions left" };
                spans.push(Span::raw(format!(" · {label} {rem}")));
            }
        }
    }
    if let Some(started) = s.started_at {
        spans.push(Span::raw(format!(" · up {}", age(app.now, started))));
    }
    // Attached, where the engine is comes first: it is what the rest is about.
    match app.face {
        FaceView::Embedded => spans.push(face_span(app, narrow)),
        FaceView::Attached { .. } => spans.insert(1, face_span(app, narrow)),
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The fleet: each host with its running clusters (the leader starred),
/// and the clusters of lost hosts, in red.
fn fleet_span(
    app: &App,
    fleet: &FleetSummary,
    clusters: &[mewld_core::model::state::ClusterView],
    narrow: bool,
) -> Span<'static> {
    let leader = fleet.leader.as_ref().map(|(name, _)| name.as_str());
    let hosts: Vec<String> = fleet
        .hosts
        .iter()
        .map(|h| {
            let star = if Some(h.name.as_str()) == leader {
                "★"
            } else {
                ""
            };
            format!("{}{star} {}/{}", h.name, h.running, h.clusters)
        })
        .collect();
    let lost = clusters
        .iter()
        .filter(|c| c.state == ClusterState::Lost)
        .count();
    let label = if narrow { "" } else { "hosts " };
    let mut text = format!(" · {label}{}", hosts.join(", "));
    if lost == 0 {
        return Span::raw(text);
    }
    text.push_str(&format!(" · {lost} lost"));
    Span::styled(text, style(app, Style::default().fg(Color::Red)))
}

/// The identify queue: who waits, the grants of this window against
/// Discord's `max_concurrency`, and the session starts left (live).
fn identify_span(app: &App, q: &IdentifyStatus, narrow: bool) -> Span<'static> {
    let budget = q
        .budget_remaining
        .map_or_else(|| "?".to_string(), |b| b.to_string());
    let text = if narrow {
        format!(
            " · idq {}w {}/{} sess {budget}",
            q.waiting, q.granted_in_window, q.max_concurrency
        )
    } else {
        format!(
            " · identify {} waiting, {}/{} per 5s · sessions left {budget}",
            q.waiting, q.granted_in_window, q.max_concurrency
        )
    };
    if q.held {
        let held = format!("{text} HELD (budget low)");
        Span::styled(held, style(app, Style::default().fg(Color::Red)))
    } else {
        Span::raw(text)
    }
}

/// Whether the engine runs in this console or this console is attached to
/// one (and where).
fn face_span(app: &App, narrow: bool) -> Span<'static> {
    if let (FaceView::Attached { lost: None, .. }, Some(phase)) = (&app.face, &app.engine_starting)
    {
        let text = if narrow {
            " ENGINE STARTING ·".to_string()
        } else {
            format!(" ENGINE STARTING: {phase} ·")
        };
        let starting = Style::default()
            .fg(Color::Yellow)
            .add_modifier(Modifier::BOLD);
        return Span::styled(text, style(app, starting));
    }
    match &app.face {
        FaceView::Embedded if narrow => Span::raw(""),
        FaceView::Embedded => Span::raw(" · embedded"),
        FaceView::Attached { lost: Some(_), .. } => Span::styled(
            " ENGINE GONE, reconnecting ·",
            style(
                app,
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
        ),
        FaceView::Attached { .. } if narrow => Span::styled(
            " attached ·",
            style(app, Style::default().fg(Color::Magenta)),
        ),
        FaceView::Attached { socket, .. } => Span::styled(
            format!(" attached to {socket} ·"),
            style(app, Style::default().fg(Color::Magenta)),
        ),
    }
}

/// Whether the transport (Redis or the socket) is up, or when it retries.
fn link_span(app: &App, narrow: bool) -> Span<'static> {
    let s = &app.snapshot;
    // The last snapshot of an engine out of reach (or not yet running)
    // says nothing about now.
    if matches!(app.face, FaceView::Attached { lost: Some(_), .. }) || app.engine_starting.is_some()
    {
        let text = if narrow { "ipc ?" } else { "ipc ? unknown" };
        return Span::styled(text, style(app, Style::default().fg(Color::DarkGray)));
    }
    if s.transport_connected {
        let text = if narrow {
            "ipc ●"
        } else {
            "ipc ● connected"
        };
        Span::styled(text, style(app, Style::default().fg(Color::Green)))
    } else {
        let retry = s
            .transport_retry_at
            .map(|t| {
                let secs = t.duration_since(app.now).unwrap_or_default().as_secs();
                format!(" (retry in {secs}s)")
            })
            .unwrap_or_default();
        let text = if narrow {
            "ipc ○ DOWN"
        } else {
            "ipc ○ DISCONNECTED"
        };
        Span::styled(
            format!("{text}{retry}"),
            style(
                app,
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
        )
    }
}

/// The lines of a scrolling pane's newest `items` (oldest first in, as
/// stored): `scroll` back from the newest, as many as `height` holds,
/// oldest first out. Only those are built, however many items there are.
fn newest_that_fit<'a, T: 'a, L>(
    items: impl DoubleEndedIterator<Item = &'a T>,
    scroll: usize,
    height: usize,
    line: impl FnMut(&'a T) -> L,
) -> Vec<L> {
    let mut lines: Vec<L> = items.rev().skip(scroll).take(height).map(line).collect();
    lines.reverse();
    lines
}

/// A pane title's " · filter: text", with a cursor while it is being
/// typed; empty when the pane has no filter.
fn filter_note(app: &App, pane: Pane, filter: &str) -> String {
    let typing = app.mode == Mode::Filter && app.focus == pane;
    if !typing && filter.is_empty() {
        return String::new();
    }
    let cursor = if typing { "▏" } else { "" };
    format!(" · filter: {filter}{cursor}")
}

/// A pane's frame. The focused pane's is thick, with a marker in its
/// title (both visible without colour), and cyan.
fn pane_block(app: &App, pane: Pane, title: String) -> Block<'static> {
    let focused = app.focus == pane;
    let border = if focused {
        style(
            app,
            Style::default()
                .fg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
        )
    } else {
        style(app, Style::default().fg(Color::DarkGray))
    };
    let marker = if focused { "▶ " } else { "" };
    let border_type = if focused {
        BorderType::Thick
    } else {
        BorderType::Plain
    };
    Block::default()
        .borders(Borders::ALL)
        .border_type(border_type)
        .border_style(border)
        .title(format!(" {marker}{title} "))
}

fn draw_message(frame: &mut Frame, app: &App, area: Rect) {
    if let Some(status) = &app.status {
        let s = if status.error {
            style(
                app,
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            )
        } else {
            style(app, Style::default().fg(Color::Cyan))
        };
        frame.render_widget(Paragraph::new(Span::styled(status.text.clone(), s)), area);
    }
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}
