//! Drawing the console from [`App`]: a pure function of the state, so it is
//! tested with ratatui's `TestBackend`. Only what is visible is built, so a
//! frame stays cheap with thousands of clusters and a long action log.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::app::{age, clock, App, Pane};
use crate::cluster_map::shard_range;
use crate::engine::process::Stream;
use crate::engine::state::{ClusterState, ClusterView};

/// Wide enough to show the detail pane beside the table.
const WIDE: u16 = 140;

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
        Constraint::Min(4),
        Constraint::Percentage(30),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, app, header);
    if area.width >= WIDE {
        let [table, detail] =
            Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)])
                .areas(body);
        draw_table(frame, app, table);
        draw_detail(frame, app, detail);
    } else if app.detail {
        draw_detail(frame, app, body);
    } else {
        draw_table(frame, app, body);
    }
    draw_log(frame, app, log);
    draw_message(frame, app, message);
    draw_footer(frame, app, footer);
    if app.help {
        draw_help(frame, app, area);
    }
    if let Some(dialog) = &app.dialog {
        let hint = "y / Enter: yes     n / Esc: no";
        let longest = dialog.body.chars().count().max(hint.len()) as u16;
        let width = (longest + 6).min(area.width.saturating_sub(2));
        let rect = centered(area, width, 7);
        frame.render_widget(Clear, rect);
        let text = vec![
            Line::from(""),
            Line::from(dialog.body.as_str()),
            Line::from(""),
            Line::from(Span::styled(
                hint,
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
                        .title(format!(" {} ", dialog.title)),
                ),
            rect,
        );
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

fn state_color(state: ClusterState) -> Color {
    match state {
        ClusterState::Running => Color::Green,
        ClusterState::Starting | ClusterState::Pending => Color::Yellow,
        ClusterState::Stopping | ClusterState::Stopped => Color::Gray,
        ClusterState::Crashed => Color::LightRed,
        ClusterState::Failed => Color::Red,
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
    let phase = if s.exiting {
        "stopping all".to_string()
    } else if let Some(r) = &s.rolling {
        format!("rolling restart {}/{}", r.done, r.total)
    } else if s.resharding {
        "resharding".to_string()
    } else if s.fully_up {
        "fully up".to_string()
    } else {
        format!("launching {launched}/{total}")
    };
    // Narrow screens get the same facts in fewer words.
    let narrow = area.width < 120;
    let link = if s.transport_connected {
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
    };
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
    if let Some(rem) = s.sessions_remaining {
        let label = if narrow { "sess" } else { "sessions left" };
        spans.push(Span::raw(format!(" · {label} {rem}")));
    }
    if let Some(started) = s.started_at {
        spans.push(Span::raw(format!(" · up {}", age(app.now, started))));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

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
    Block::default()
        .borders(Borders::ALL)
        .border_style(border)
        .title(format!(" {marker}{title} "))
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

/// One column of the cluster table: its title, width, whether it needs a
/// wide screen, and how a cell is written. Titles, widths and cells all
/// come from this one list.
struct Column {
    title: &'static str,
    width: Constraint,
    wide_only: bool,
    cell: fn(&App, &ClusterView) -> String,
}

fn dash() -> String {
    "-".into()
}

const COLUMNS: &[Column] = &[
    Column {
        title: "ID",
        width: Constraint::Length(5),
        wide_only: false,
        cell: |_, c| c.id.to_string(),
    },
    Column {
        title: "NAME",
        width: Constraint::Min(8),
        wide_only: false,
        cell: |_, c| c.name.clone(),
    },
    Column {
        title: "SHARDS",
        width: Constraint::Length(9),
        wide_only: false,
        cell: |_, c| shard_range(&c.shards),
    },
    Column {
        title: "STATE",
        width: Constraint::Length(11),
        wide_only: false,
        cell: state_text,
    },
    Column {
        title: "PID",
        width: Constraint::Length(8),
        wide_only: true,
        cell: |_, c| c.pid.map_or_else(dash, |p| p.to_string()),
    },
    Column {
        title: "UPTIME",
        width: Constraint::Length(7),
        wide_only: false,
        cell: |app, c| {
            c.started_at
                .filter(|_| c.pid.is_some())
                .map_or_else(dash, |t| age(app.now, t))
        },
    },
    Column {
        title: "RST",
        width: Constraint::Length(3),
        wide_only: false,
        cell: |_, c| c.restarts.to_string(),
    },
    Column {
        title: "UP",
        width: Constraint::Length(5),
        wide_only: false,
        cell: |_, c| {
            c.health
                .as_ref()
                .map_or_else(dash, |h| format!("{}/{}", h.shards_up(), h.shards.len()))
        },
    },
    Column {
        title: "LAT",
        width: Constraint::Length(6),
        wide_only: false,
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
        wide_only: true,
        cell: |_, c| {
            c.health
                .as_ref()
                .map_or_else(dash, |h| h.guilds().to_string())
        },
    },
    Column {
        title: "AGE",
        width: Constraint::Length(6),
        wide_only: false,
        cell: |app, c| c.health.as_ref().map_or_else(dash, |h| age(app.now, h.at)),
    },
];

fn draw_table(frame: &mut Frame, app: &App, area: Rect) {
    let s = &app.snapshot;
    let block = pane_block(
        app,
        Pane::Clusters,
        format!("Clusters ({})", s.clusters.len()),
    );
    let inner_height = area.height.saturating_sub(3) as usize; // borders + header row
    let wide = area.width >= 100;
    let columns: Vec<&Column> = COLUMNS.iter().filter(|c| wide || !c.wide_only).collect();
    // Only the rows in view are built.
    let first = app.selected.saturating_sub(inner_height.saturating_sub(1));
    let rows: Vec<Row> = s
        .clusters
        .iter()
        .enumerate()
        .skip(first)
        .take(inner_height.max(1))
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
    let header = Row::new(columns.iter().map(|c| c.title))
        .style(Style::default().add_modifier(Modifier::BOLD));
    let table = Table::new(rows, columns.iter().map(|c| c.width))
        .header(header)
        .block(block);
    frame.render_widget(table, area);
}

fn draw_detail(frame: &mut Frame, app: &App, area: Rect) {
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
        None => lines.push(Line::from(
            "health: no diagnostic answered yet (d asks now)",
        )),
    }
    // Shards first; the cluster's own output keeps at least four lines.
    let shard_lines = lines.len().min((inner.height as usize).saturating_sub(5));
    lines.truncate(shard_lines.max(1));
    let [top, bottom] = Layout::vertical([
        Constraint::Length(lines.len() as u16 + 1),
        Constraint::Min(1),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(lines), top);

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

fn draw_log(frame: &mut Frame, app: &App, area: Rect) {
    let filter = app.filter.to_lowercase();
    let mode = if app.log_follow {
        "following"
    } else {
        "paused"
    };
    let mut title = format!("Action log · {} entries · {mode}", app.log.len());
    if app.filter_editing || !app.filter.is_empty() {
        title.push_str(&format!(
            " · filter: {}{}",
            app.filter,
            if app.filter_editing { "▏" } else { "" }
        ));
    }
    let block = pane_block(app, Pane::Log, title);
    let height = area.height.saturating_sub(2) as usize;
    // Walk back from the newest matching entry; only what fits is formatted.
    let mut visible: Vec<Line> = app
        .log
        .iter()
        .rev()
        .filter(|l| l.matches(&filter))
        .skip(app.log_scroll)
        .take(height)
        .map(|l| {
            let cluster = l.cluster.map(|c| format!("#{c}")).unwrap_or_default();
            let color = match l.event.as_str() {
                e if e.contains("fail") || e == "cluster_exited" => Color::LightRed,
                e if e.contains("started") || e.contains("launched") => Color::Green,
                _ => Color::Reset,
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
        })
        .collect();
    visible.reverse();
    frame.render_widget(Paragraph::new(visible).block(block), area);
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

/// The keys that apply now, most needed first, so a narrow screen cuts
/// the least useful ones.
fn footer_keys(app: &App) -> &'static str {
    if app.dialog.is_some() {
        return "y/Enter confirm · n/Esc cancel";
    }
    if app.help {
        return "Esc/?/q close help";
    }
    if app.filter_editing {
        return "type to filter · Enter keep · Esc clear";
    }
    match app.focus {
        Pane::Clusters => "? help · q quit · j/k move · Enter detail · s start · x stop · r restart · d diag · R rolling · S shutdown · P restart proc · Tab pane",
        Pane::Output => "? help · q quit · Esc back · j/k scroll · g/G top/end · s/x/r/d this cluster · Tab pane",
        Pane::Log => "? help · q quit · j/k scroll · f follow/pause · / filter · Esc clear filter · Tab pane",
    }
}

fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    frame.render_widget(
        Paragraph::new(Span::styled(
            footer_keys(app),
            style(app, Style::default().fg(Color::DarkGray)),
        )),
        area,
    );
}

/// Every key, in one place, for the `?` overlay.
pub const HELP: &[(&str, &str)] = &[
    (
        "j / k / ↓ / ↑",
        "move the selection, or scroll the focused pane",
    ),
    ("PgDn / PgUp", "move or scroll by ten"),
    ("g / G", "to the top / to the end"),
    (
        "Tab / Shift-Tab",
        "next / previous pane (clusters, output, action log)",
    ),
    (
        "Enter",
        "open the selected cluster's detail (health, output)",
    ),
    ("Esc", "back; in the action log, clear the filter"),
    ("s", "start the selected cluster"),
    ("x", "stop the selected cluster (asks first)"),
    ("r", "restart the selected cluster (asks first)"),
    ("d", "diagnose the selected cluster now"),
    ("R", "rolling restart of every cluster (asks first)"),
    ("S", "shut down: stop every cluster, exit 0 (asks first)"),
    (
        "P",
        "restart the process: stop every cluster, exit 1 (asks first)",
    ),
    ("/", "filter the action log"),
    ("f", "follow / pause the action log"),
    ("?", "this help"),
    ("q / Ctrl-C", "quit (stops every cluster; asks first)"),
];

fn draw_help(frame: &mut Frame, app: &App, area: Rect) {
    let height = (HELP.len() as u16 + 3).min(area.height);
    let longest = HELP
        .iter()
        .map(|(_, w)| w.chars().count())
        .max()
        .unwrap_or(0) as u16;
    let width = (longest + 16 + 4).min(area.width);
    let rect = centered(area, width, height);
    frame.render_widget(Clear, rect);
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(
                    format!("{k:<16}"),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    if let Some(path) = &app.log_file {
        lines.push(Line::from(format!("log file: {path}")));
    }
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Keys · Esc closes "),
        ),
        rect,
    );
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
