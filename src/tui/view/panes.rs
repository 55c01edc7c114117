//! The three panes: the cluster table, the selected cluster's detail, and
//! the action log. Only the rows in view are built.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table};
use ratatui::Frame;

use super::overlays::first_key;
use super::{filter_note, newest_that_fit, pane_block, style};
use crate::tui::app::{age, clock, App, Pane};
use crate::tui::keys::{Action, ModeKind};
use mewld_core::actlog::Tone;
use mewld_core::cluster_map::shard_range;
use mewld_core::model::state::{ClusterState, ClusterView};
use mewld_core::model::Stream;

fn state_color(state: ClusterState) -> Color {
    match state {
        ClusterState::Running => Color::Green,
        ClusterState::Starting | ClusterState::Pending => Color::Yellow,
        ClusterState::Stopping | ClusterState::Stopped => Color::Gray,
        ClusterState::Crashed => Color::LightRed,
        ClusterState::Failed | ClusterState::Lost => Color::Red,
    }
}

fn state_text(app: &App, c: &ClusterView) -> String {
    match (c.state, c.next_restart_at) {
        (ClusterState::Crashed, Some(at)) => {
            format!(
                "crashed {}s",
                at.duration_since(app.now).unwrap_or_default().as_secs()
            )
        }
        (state, _) => state.as_str().to_string(),
    }
}

/// One column of the cluster table: its title, width, when it is shown,
/// and how a cell is written. Titles, widths and cells all come from this
/// one list.
struct Column {
    title: &'static str,
    width: Constraint,
    shown: Shown,
    cell: fn(&App, &ClusterView) -> String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shown {
    Always,
    /// On a screen 100 columns wide or more.
    Wide,
    /// When the manager is one host of a fleet.
    Fleet,
}

fn dash() -> String {
    "-".into()
}

const COLUMNS: &[Column] = &[
    Column {
        title: "ID",
        width: Constraint::Length(5),
        shown: Shown::Always,
        cell: |_, c| c.id.to_string(),
    },
    Column {
        title: "HOST",
        width: Constraint::Length(10),
        shown: Shown::Fleet,
        cell: |_, c| c.host.clone().unwrap_or_else(dash),
    },
    Column {
        title: "NAME",
        width: Constraint::Min(8),
        shown: Shown::Always,
        cell: |_, c| c.name.clone(),
    },
    Column {
        title: "SHARDS",
        width: Constraint::Length(9),
        shown: Shown::Always,
        cell: |_, c| shard_range(&c.shards),
    },
    Column {
        title: "STATE",
        width: Constraint::Length(11),
        shown: Shown::Always,
        cell: state_text,
    },
    Column {
        title: "PID",
        width: Constraint::Length(8),
        shown: Shown::Wide,
        cell: |_, c| c.pid.map_or_else(dash, |p| p.to_string()),
    },
    Column {
        title: "UPTIME",
        width: Constraint::Length(7),
        shown: Shown::Always,
        cell: |app, c| {
            c.started_at
                .filter(|_| c.pid.is_some())
                .map_or_else(dash, |t| age(app.now, t))
        },
    },
    Column {
        title: "RST",
        width: Constraint::Length(3),
        shown: Shown::Always,
        cell: |_, c| c.restarts.to_string(),
    },
    Column {
        title: "UP",
        width: Constraint::Length(5),
        shown: Shown::Always,
        cell: |_, c| {
            c.health
                .as_ref()
                .map_or_else(dash, |h| format!("{}/{}", h.shards_up(), h.shards.len()))
        },
    },
    Column {
        title: "LAT",
        width: Constraint::Length(6),
        shown: Shown::Always,
        cell: |_, c| {
            c.health
                .as_ref()
                .and_then(|h| h.mean_latency())
                .map_or_else(dash, |l| format!("{l:.0}ms"))
        },
    },
    Column {
        title: "GUILDS",
        width: Constraint::Length(8),
        shown: Shown::Wide,
        cell: |_, c| {
            c.health
                .as_ref()
                .map_or_else(dash, |h| h.guilds().to_string())
        },
    },
    Column {
        title: "AGE",
        width: Constraint::Length(6),
        shown: Shown::Always,
        cell: |app, c| c.health.as_ref().map_or_else(dash, |h| age(app.now, h.at)),
    },
];

pub(super) fn draw_table(frame: &mut Frame, app: &App, area: Rect) {
    let s = &app.snapshot;
    let rows = app.rows();
    let mut title = if rows.len() == s.clusters.len() {
        format!("Clusters ({})", s.clusters.len())
    } else {
        format!("Clusters ({} of {})", rows.len(), s.clusters.len())
    };
    if let Some(note) = app.table().sort_note() {
        title.push_str(&format!(" · {note}"));
    }
    title.push_str(&filter_note(app, Pane::Clusters, &app.table().filter));
    let block = pane_block(app, Pane::Clusters, title);
    let inner_height = area.height.saturating_sub(3) as usize; // borders + header row
    let wide = area.width >= 100;
    let fleet = s.fleet.is_some();
    let columns: Vec<&Column> = COLUMNS
        .iter()
        .filter(|c| match c.shown {
            Shown::Always => true,
            Shown::Wide => wide,
            Shown::Fleet => fleet,
        })
        .collect();
    // Only the rows in view are built.
    let first = app.selected.saturating_sub(inner_height.saturating_sub(1));
    let rows: Vec<Row> = rows
        .iter()
        .enumerate()
        .skip(first)
        .take(inner_height.max(1))
        .filter_map(|(i, index)| Some((i, s.clusters.get(*index)?)))
        .map(|(i, c)| {
            let selected = i == app.selected;
            let cells = columns.iter().enumerate().map(|(n, col)| {
                let text = (col.cell)(app, c);
                // The marker keeps the selection visible without colour.
                match (n, selected) {
                    (0, true) => format!("▶{text}"),
                    (0, false) => format!(" {text}"),
                    _ => text,
                }
            });
            let mut row_style = style(app, Style::default().fg(state_color(c.state)));
            if selected {
                row_style = row_style.add_modifier(Modifier::REVERSED);
            }
            Row::new(cells).style(row_style)
        })
        .collect();
    // The sorted-by column is marked in its title.
    let t = app.table();
    let sorted = t.is_sorted().then(|| t.sort.title());
    let header = Row::new(columns.iter().map(|c| {
        if Some(c.title) == sorted {
            format!("{}{}", c.title, if app.table().reverse { "▲" } else { "▼" })
        } else {
            c.title.to_string()
        }
    }))
    .style(Style::default().add_modifier(Modifier::BOLD));
    let table = Table::new(rows, columns.iter().map(|c| c.width))
        .header(header)
        .block(block);
    frame.render_widget(table, area);
}

/// The detail's top: state, pid, restarts, then the latest health per shard.
fn status_lines(app: &App, c: &ClusterView) -> Vec<Line<'static>> {
    let mut lines = vec![Line::from(format!(
        "{} · pid {} · restarts {} · last exit {}",
        state_text(app, c),
        c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
        c.restarts,
        c.last_exit
            .map(|e| e.to_string())
            .unwrap_or_else(|| "-".into()),
    ))];
    match &c.health {
        Some(h) => {
            lines.push(Line::from(format!(
                "health {} ago · round trip {}ms",
                age(app.now, h.at),
                h.round_trip_ms
            )));
            lines.push(Line::styled(
                "SHARD  UP    LATENCY   GUILDS     USERS",
                Style::default().add_modifier(Modifier::BOLD),
            ));
            for sh in &h.shards {
                let up = if sh.up { "up" } else { "DOWN" };
                let line = format!(
                    "{:<6} {:<5} {:>7} {:>8} {:>9}",
                    sh.shard_id,
                    up,
                    sh.latency.map_or("-".into(), |l| format!("{l:.0}ms")),
                    sh.guilds.map_or("-".into(), |g| g.to_string()),
                    sh.users.map_or("-".into(), |u| u.to_string()),
                );
                let color = if sh.up { Color::Green } else { Color::Red };
                lines.push(Line::styled(line, style(app, Style::default().fg(color))));
            }
        }
        None => lines.push(Line::from(format!(
            "health: no diagnostic answered yet ({} asks now)",
            first_key(ModeKind::Normal, Action::Diagnose)
        ))),
    }
    lines
}

pub(super) fn draw_detail(frame: &mut Frame, app: &App, area: Rect) {
    let Some(c) = app.selected_cluster() else {
        frame.render_widget(
            Paragraph::new("no clusters").block(pane_block(app, Pane::Output, "Detail".into())),
            area,
        );
        return;
    };
    let title = format!(
        "Cluster {} ({}) · shards {}",
        c.id,
        c.name,
        shard_range(&c.shards)
    );
    let block = pane_block(app, Pane::Output, title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut lines = status_lines(app, c);
    // Shards first, then the trends if they fit; the cluster's own output
    // keeps at least four lines.
    let shard_lines = lines.len().min((inner.height as usize).saturating_sub(5));
    lines.truncate(shard_lines.max(1));
    let trends = super::diagnostics::trend_rows(app, c)
        .min(inner.height.saturating_sub(lines.len() as u16 + 6));
    let [top, trend_area, bottom] = Layout::vertical([
        Constraint::Length(lines.len() as u16),
        Constraint::Length(trends + 1),
        Constraint::Min(1),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(lines), top);
    if trends == 2 {
        super::diagnostics::draw_trends(frame, app, c, trend_area);
    }

    let height = bottom.height.saturating_sub(1) as usize;
    let empty = Default::default();
    let out = app.output.get(&c.id).unwrap_or(&empty);
    let end = out.len().saturating_sub(app.output_scroll);
    let start = end.saturating_sub(height);
    let scroll = if app.output_scroll > 0 {
        format!(" (scrolled up {})", app.output_scroll)
    } else {
        String::new()
    };
    let mut out_lines = vec![Line::styled(
        format!("output{scroll}"),
        Style::default().add_modifier(Modifier::BOLD),
    )];
    out_lines.extend(out.range(start..end).map(|l| {
        let s = match l.stream {
            Stream::Stderr => style(app, Style::default().fg(Color::LightRed)),
            Stream::Stdout => Style::default(),
        };
        Line::styled(l.text.clone(), s)
    }));
    frame.render_widget(Paragraph::new(out_lines), bottom);
}

pub(super) fn draw_log(frame: &mut Frame, app: &App, area: Rect) {
    let filter = app.filter.to_lowercase();
    let mode = if app.log_follow {
        "following"
    } else {
        "paused"
    };
    let mut title = format!("Action log · {} entries · {mode}", app.log.len());
    title.push_str(&filter_note(app, Pane::Log, &app.filter));
    let block = pane_block(app, Pane::Log, title);
    let height = area.height.saturating_sub(2) as usize;
    let visible = newest_that_fit(
        app.log.iter().filter(|l| l.matches(&filter)),
        app.log_scroll,
        height,
        |l| {
            let cluster = l.cluster.map(|c| format!("#{c}")).unwrap_or_default();
            let color = match Tone::of(&l.event) {
                Tone::Trouble => Color::LightRed,
                Tone::Progress => Color::Green,
                Tone::Plain => Color::Reset,
            };
            Line::from(vec![
                Span::styled(
                    clock(l.ts),
                    style(app, Style::default().fg(Color::DarkGray)),
                ),
                Span::raw(" "),
                Span::styled(
                    format!("{:<24}", l.event),
                    style(app, Style::default().fg(color)),
                ),
                Span::raw(format!("{cluster:<5} {}", l.fields)),
            ])
        },
    );
    frame.render_widget(Paragraph::new(visible).block(block), area);
}
