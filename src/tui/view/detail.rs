//! The selected cluster's detail: its state, restarts and last exit, the
//! latest health per shard, the trend lines, and its own output (filtered
//! with `/`).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::overlays::first_key;
use super::panes::state_text;
use super::{filter_note, newest_that_fit, pane_block, style};
use crate::tui::app::{age, App, Pane};
use crate::tui::keys::{Action, ModeKind};
use mewld_core::cluster_map::shard_range;
use mewld_core::model::state::{ClusterState, ClusterView};
use mewld_core::model::Stream;

pub(super) fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let Some(c) = app.selected_cluster() else {
        frame.render_widget(
            Paragraph::new("no clusters").block(pane_block(app, Pane::Output, "Detail".into())),
            area,
        );
        return;
    };
    let mut title = format!(
        "Cluster {} ({}) · shards {}",
        c.id,
        c.name,
        shard_range(&c.shards)
    );
    title.push_str(&filter_note(app, Pane::Output, &app.output_filter));
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
    draw_output(frame, app, c, bottom);
}

/// The detail's top: state, pid and last exit, the restarts by reason,
/// why it could not start, then the latest health per shard.
fn status_lines(app: &App, c: &ClusterView) -> Vec<Line<'static>> {
    let state = match (c.state, c.next_restart_at) {
        (ClusterState::Crashed, Some(at)) => format!(
            "crashed, restarting in {}s",
            at.duration_since(app.now).unwrap_or_default().as_secs()
        ),
        _ => state_text(app, c),
    };
    let mut lines = vec![
        Line::from(format!(
            "{state} · pid {} · last exit: {}",
            c.pid.map_or_else(|| "-".into(), |p| p.to_string()),
            c.last_exit.map_or_else(|| "-".into(), |e| e.to_string()),
        )),
        Line::from(restarts_text(c)),
    ];
    // A start_first overlap: the second process beside this one.
    if let Some(new) = c.replacing {
        lines.push(Line::from(format!("replacing: new pid {new} starting")));
    }
    if let Some(old) = c.retiring {
        lines.push(Line::from(format!("pid {old} stopping beside it")));
    }
    if let Some(error) = &c.start_error {
        let red = style(app, Style::default().fg(Color::Red));
        lines.push(Line::styled(format!("could not start: {error}"), red));
    }
    let Some(h) = &c.health else {
        lines.push(Line::from(format!("health: {}", no_health(c))));
        return lines;
    };
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
    lines
}

/// "restarts 3: crash 1, operator 2", with the reasons the metric
/// `mewld_cluster_restarts_total` counts by.
fn restarts_text(c: &ClusterView) -> String {
    let reasons: Vec<String> = c
        .restarts_by
        .nonzero()
        .map(|(reason, n)| format!("{} {n}", reason.as_str()))
        .collect();
    if reasons.is_empty() {
        format!("restarts {}", c.restarts)
    } else {
        format!("restarts {}: {}", c.restarts, reasons.join(", "))
    }
}

/// Why a cluster shows no health: a live process not asked or not
/// answered yet (`d` asks now), or no process to ask, and why.
fn no_health(c: &ClusterView) -> String {
    let key = |action| first_key(ModeKind::Normal, action);
    match c.state {
        ClusterState::Starting | ClusterState::Running => format!(
            "no diagnostic answered yet ({} asks now)",
            key(Action::Diagnose)
        ),
        ClusterState::Stopping => "none, it is stopping".into(),
        ClusterState::Pending => "none, it waits for its turn in the launch".into(),
        ClusterState::Stopped => format!("none, it is stopped ({} starts it)", key(Action::Start)),
        ClusterState::Crashed => "none, no process until it restarts".into(),
        ClusterState::Failed => format!(
            "none, it failed and stays stopped ({} starts it)",
            key(Action::Start)
        ),
        ClusterState::Lost => "unknown, its host stopped heartbeating".into(),
    }
}

/// The cluster's own output, the newest lines that fit, filtered.
fn draw_output(frame: &mut Frame, app: &App, c: &ClusterView, area: Rect) {
    let height = area.height.saturating_sub(1) as usize;
    let mut head = "output".to_string();
    if !app.output_filter.is_empty() {
        let all = app.output.get(&c.id).map_or(0, |o| o.len());
        let shown = app.output_lines().count();
        head.push_str(&format!(" · {shown} of {all} lines match"));
    } else if app.output.get(&c.id).is_none_or(|o| o.is_empty()) {
        head.push_str(" · none yet");
    }
    if app.output_scroll > 0 {
        head.push_str(&format!(" · scrolled up {}", app.output_scroll));
    }
    let mut lines = vec![Line::styled(
        head,
        Style::default().add_modifier(Modifier::BOLD),
    )];
    lines.extend(newest_that_fit(
        app.output_lines(),
        app.output_scroll,
        height,
        |l| {
            let s = match l.stream {
                Stream::Stderr => style(app, Style::default().fg(Color::LightRed)),
                Stream::Stdout => Style::default(),
            };
            Line::styled(l.text.clone(), s)
        },
    ));
    frame.render_widget(Paragraph::new(lines), area);
}
