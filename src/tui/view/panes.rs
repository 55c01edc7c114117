//! The cluster table and the action log (the detail is `detail.rs`). Only
//! the rows in view are built.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table};
use ratatui::Frame;

use super::{filter_note, newest_that_fit, pane_block, style};
use crate::tui::app::{age, clock, App, Pane};
use mewld_core::actlog::Tone;
use mewld_core::cluster_map::shard_range;
use mewld_core::model::state::{ClusterState, ClusterView};

fn state_color(state: ClusterState) -> Color {
    match state {
        ClusterState::Running => Color::Green,
        ClusterState::Starting | ClusterState::Pending => Color::Yellow,
        ClusterState::Stopping | ClusterState::Stopped => Color::Gray,
        ClusterState::Crashed => Color::LightRed,
        ClusterState::Failed | ClusterState::Lost => Color::Red,
    }
}

pub(super) fn state_text(app: &App, c: &ClusterView) -> String {
    match (c.state, c.next_restart_at) {
        (ClusterState::Crashed, Some(at)) => {
            format!(
                "crashed {}s",
                at.duration_since(app.now).unwrap_or_default().as_secs()
            )
        }
        // A replacement starts beside its process (start_first).
        (ClusterState::Running, _) if c.replacing.is_some() => "running ↻".to_string(),
        (state, _) => state.as_str().to_string(),
    }
}

/// One column of the cluster table: its title, width, when it is shown,
/// and how a cell is written. Titles, widths and cells all come from this
/// one list.
struct Column {
    title: &'static str,
    /// Most are fixed; the name's is the longest name's.
    width: fn(&App) -> u16,
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
        width: |_| 5,
        shown: Shown::Always,
        cell: |_, c| c.id.to_string(),
    },
    Column {
        title: "HOST",
        width: |_| 10,
        shown: Shown::Fleet,
        cell: |_, c| c.host.clone().unwrap_or_else(dash),
    },
    Column {
        title: "NAME",
        width: |app| app.name_width().max(4),
        shown: Shown::Always,
        cell: |_, c| c.name.clone(),
    },
    Column {
        title: "SHARDS",
        width: |_| 9,
        shown: Shown::Always,
        cell: |_, c| shard_range(&c.shards),
    },
    Column {
        title: "STATE",
        width: |_| 11,
        shown: Shown::Always,
        cell: state_text,
    },
    Column {
        title: "PID",
        width: |_| 8,
        shown: Shown::Wide,
        cell: |_, c| c.pid.map_or_else(dash, |p| p.to_string()),
    },
    Column {
        title: "UPTIME",
        width: |_| 7,
        shown: Shown::Always,
        cell: |app, c| {
            c.started_at
                .filter(|_| c.pid.is_some())
                .map_or_else(dash, |t| age(app.now, t))
        },
    },
    Column {
        title: "RST",
        width: |_| 3,
        shown: Shown::Always,
        cell: |_, c| c.restarts.to_string(),
    },
    Column {
        title: "UP",
        width: |_| 5,
        shown: Shown::Always,
        cell: |_, c| {
            c.health
                .as_ref()
                .map_or_else(dash, |h| format!("{}/{}", h.shards_up(), h.shards.len()))
        },
    },
    Column {
        title: "LAT",
        width: |_| 6,
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
        width: |_| 8,
        shown: Shown::Wide,
        cell: |_, c| {
            c.health
                .as_ref()
                .map_or_else(dash, |h| h.guilds().to_string())
        },
    },
    Column {
        title: "AGE",
        width: |_| 6,
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
    // The sorted-by column is marked in its title, and wide enough for it.
    let t = app.table();
    let sorted = t.is_sorted().then(|| t.sort.title());
    let titles: Vec<String> = columns
        .iter()
        .map(|c| match Some(c.title) == sorted {
            true => format!("{}{}", c.title, t.arrow()),
            false => c.title.to_string(),
        })
        .collect();
    let widths: Vec<Constraint> = columns
        .iter()
        .zip(&titles)
        .map(|(c, title)| {
            let title = u16::try_from(title.chars().count()).unwrap_or(u16::MAX);
            Constraint::Length((c.width)(app).max(title))
        })
        .collect();
    let header = Row::new(titles).style(Style::default().add_modifier(Modifier::BOLD));
    let table = Table::new(rows, widths).header(header).block(block);
    frame.render_widget(table, area);
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
