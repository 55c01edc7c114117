//! The diagnostics pane (every answer as it arrives, and every ping left
//! unanswered) and the detail's trend
//! lines (a cluster's recent latency and guilds, as sparklines).

use std::time::UNIX_EPOCH;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};
use ratatui::Frame;

use super::{filter_note, newest_that_fit, pane_block, style};
use crate::tui::app::{clock, App, Pane};
use crate::tui::diagnostics::Answer;
use mewld_core::model::state::ClusterView;

pub(super) fn draw_pane(frame: &mut Frame, app: &App, area: Rect) {
    let d = &app.diagnostics;
    let mut title = match d.answers.len() {
        1 => "Diagnostics · 1 answer".to_string(),
        n => format!("Diagnostics · {n} answers"),
    };
    let unanswered = d.answers.iter().filter(|a| a.reply.is_none()).count();
    if unanswered > 0 {
        title.push_str(&format!(" · {unanswered} unanswered"));
    }
    if d.scroll > 0 {
        title.push_str(&format!(" · scrolled up {}", d.scroll));
    }
    title.push_str(&filter_note(app, Pane::Diagnostics, &d.filter));
    let block = pane_block(app, Pane::Diagnostics, title);
    let height = area.height.saturating_sub(2) as usize;
    let shown = newest_that_fit(
        d.answers.iter().filter(|a| a.matches(&d.filter)),
        d.scroll,
        height,
        |a| a,
    );
    // Ids as wide as the widest shown, and names as wide as the longest,
    // as far as the widest line leaves room; cut below NAME_CUT only when
    // shorter.
    let tails: Vec<String> = shown.iter().map(|a| tail(a)).collect();
    let widest_tail = tails.iter().map(|t| Span::raw(t.as_str()).width()).max();
    let ids = shown
        .iter()
        .map(|a| a.id.to_string().len())
        .max()
        .unwrap_or(1);
    let head = "12:00:00 MISS #".len() + ids + 1;
    let room = usize::from(area.width.saturating_sub(2))
        .saturating_sub(head + 1 + widest_tail.unwrap_or(0));
    let names = usize::from(app.name_width()).min(room.max(NAME_CUT));
    let lines: Vec<Line> = shown
        .iter()
        .zip(tails)
        .map(|(a, tail)| answer_line(app, a, (ids, names), tail))
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// A name is cut to this only when the pane has no more room.
const NAME_CUT: usize = 8;

/// What an answer said, after the name.
fn tail(a: &Answer) -> String {
    match &a.reply {
        None => " no answer (ping failure)".to_string(),
        Some(r) => format!(
            "{:>2}/{:<2} up {:>5} rt {}ms {} guilds",
            r.shards_up,
            r.shards,
            r.latency_ms.map_or("-".into(), |l| format!("{l:.0}ms")),
            r.round_trip_ms,
            r.guilds,
        ),
    }
}

/// One answer. A flag column after the time says which stand out (no
/// answer, shards down, late), so they do without colour and in a narrow
/// pane; colour and bold add to it.
fn answer_line(app: &App, a: &Answer, widths: (usize, usize), tail: String) -> Line<'static> {
    let (ids, names) = widths;
    let micros =
        a.at.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
    let time = clock(i64::try_from(micros).unwrap_or(0));
    let (flag, s) = match &a.reply {
        None => ("MISS", trouble(app, Color::Red)),
        Some(r) if r.shards_up < r.shards => ("DOWN", trouble(app, Color::LightRed)),
        Some(r) if r.late() => ("LATE", trouble(app, Color::Yellow)),
        Some(_) => ("", Style::default()),
    };
    let name: String = a.name.chars().take(names).collect();
    let text = format!("{time} {flag:<4} #{:<ids$} {name:<names$} {tail}", a.id);
    Line::styled(text, s)
}

fn trouble(app: &App, color: Color) -> Style {
    style(app, Style::default().fg(color).add_modifier(Modifier::BOLD))
}

/// Rows the trend lines take in the detail, when there is history to show.
pub(super) fn trend_rows(app: &App, c: &ClusterView) -> u16 {
    match app.diagnostics.samples(c.id) {
        Some(s) if s.len() >= 2 => 2,
        _ => 0,
    }
}

/// The cluster's latency and guilds over its recent answers, newest right.
pub(super) fn draw_trends(frame: &mut Frame, app: &App, c: &ClusterView, area: Rect) {
    let Some(samples) = app.diagnostics.samples(c.id) else {
        return;
    };
    let [latency_row, guilds_row] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    // Only the newest samples that fit the width.
    let width = usize::from(area.width.saturating_sub(LABEL));
    let recent = samples.iter().skip(samples.len().saturating_sub(width));
    let latency: Vec<u64> = recent
        .clone()
        .map(|s| s.latency_ms.map_or(0, |l| l.max(0.0).round() as u64))
        .collect();
    let guilds: Vec<u64> = recent.map(|s| s.guilds).collect();
    let last_latency = samples.back().and_then(|s| s.latency_ms);
    let last_guilds = samples.back().map_or(0, |s| s.guilds);
    let latency_label = format!(
        "latency {:>6}",
        last_latency.map_or("-".into(), |l| format!("{l:.0}ms"))
    );
    trend(
        frame,
        app,
        latency_row,
        latency_label,
        &latency,
        Color::Cyan,
    );
    trend(
        frame,
        app,
        guilds_row,
        format!("guilds {last_guilds:>7}"),
        &guilds,
        Color::Green,
    );
}

/// Width of a trend line's label.
const LABEL: u16 = 16;

fn trend(frame: &mut Frame, app: &App, area: Rect, label: String, data: &[u64], color: Color) {
    let [label_area, spark] =
        Layout::horizontal([Constraint::Length(LABEL), Constraint::Min(1)]).areas(area);
    frame.render_widget(Paragraph::new(label), label_area);
    // Drawn above the window's lowest value, so a change of a few guilds
    // out of thousands still shows.
    let floor = data.iter().min().copied().unwrap_or(0).saturating_sub(1);
    let data: Vec<u64> = data.iter().map(|v| v - floor).collect();
    let sparkline = Sparkline::default()
        .data(&data)
        .style(style(app, Style::default().fg(color)));
    frame.render_widget(sparkline, spark);
}
