//! The console for a big bot: the diagnostics pane (late and missing
//! answers stand out, the view holds still while scrolled, bounded rings)
//! and the layout from 80×24 to 200×50 with 100 and more clusters.

mod console_fixture;

use std::sync::Arc;
use std::time::Duration;

use crossterm::event::KeyCode;
use mewld::tui::app::{App, Msg, Pane};
use mewld::tui::diagnostics::{ANSWERS_CAP, SAMPLES_CAP};
use mewld_core::actlog::LogEvent;
use mewld_core::model::state::ClusterState;
use mewld_core::model::Event;
use ratatui::style::Modifier;
use serde_json::json;

use console_fixture::*;
use ClusterState::*;

/// The engine's own action-log entry for a ping cluster `id` left
/// unanswered, with its time fixed for the snapshot.
fn ping_failure(app: &mut App, id: u32, secs_before: u64) {
    let mut entry = LogEvent::PingFailure { id }.entry(std::time::SystemTime::now());
    let ts = at(secs_before)
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64;
    entry.insert("ts".into(), json!(ts));
    app.update(Msg::Engine(Event::ActionLog(entry)));
}

/// One more round of answers: cluster 3's comes back after 2.5 s.
fn late_round(app: &mut App, states: &[ClusterState]) {
    let mut s = snapshot(states);
    for c in &mut s.clusters {
        if let Some(h) = &mut c.health {
            h.at = at(30);
            if c.id == 3 {
                h.round_trip_ms = 2500;
            }
        }
    }
    app.update(Msg::Snapshot(Arc::new(s)));
}

/// The answer lines of the screen's diagnostics pane, by their clock.
fn answer_lines(screen: &str) -> Vec<String> {
    screen
        .lines()
        // Plain frames, or the focused pane's thick one.
        .filter_map(|l| l.split(['│', '┃']).find(|cell| cell.starts_with("11:5")))
        .filter(|cell| cell.contains(" #") && !cell.contains('='))
        .map(|cell| cell.trim_end().to_string())
        .collect()
}

#[test]
fn late_missing_and_partial_answers_stand_out() {
    let states = [Running; 6];
    let mut app = app_with(snapshot(&states));
    with_rounds(&mut app, &states);
    late_round(&mut app, &states);
    ping_failure(&mut app, 4, 20);
    app.color = false;
    key(&mut app, KeyCode::BackTab);
    assert_eq!(app.focus, Pane::Diagnostics);
    let terminal = render(&app, 80, 24);
    let screen = format!("{:?}", terminal.backend());
    for (flag, id) in [("MISS", "#4 "), ("LATE", "#3 "), ("DOWN", "#1 ")] {
        let line = screen
            .lines()
            .rev()
            .find(|l| l.contains(id) && l.contains("11:59:"))
            .unwrap_or_default();
        assert!(line.contains(flag), "{id} is not flagged {flag}: {line}");
    }
    assert!(screen.contains("no answer (ping failure)"), "{screen}");
    assert!(screen.contains("1 unanswered"), "{screen}");
    // Without colour, trouble is still bold.
    let buffer = terminal.backend().buffer();
    let row = (0..24u16)
        .find(|y| {
            (0..80u16)
                .any(|x| buffer[(x, *y)].symbol() == "M" && buffer[(x + 1, *y)].symbol() == "I")
        })
        .expect("the MISS line");
    assert!(buffer[(10, row)].modifier.contains(Modifier::BOLD));
    app.color = true;
    insta::assert_snapshot!("late_and_missing_at_80x24", render(&app, 80, 24).backend());
    insta::assert_snapshot!(
        "late_and_missing_at_200x50",
        render(&app, 200, 50).backend()
    );
}

#[test]
fn scrolled_up_the_diagnostics_hold_still_as_answers_arrive() {
    let states = [Running; 6];
    let mut app = app_with(snapshot(&states));
    with_rounds(&mut app, &states);
    key(&mut app, KeyCode::BackTab);
    for _ in 0..3 {
        key(&mut app, KeyCode::Char('k'));
    }
    let before = answer_lines(&format!("{:?}", render(&app, 80, 24).backend()));
    assert!(before.len() >= 8, "{before:?}");
    late_round(&mut app, &states);
    ping_failure(&mut app, 4, 20);
    let after = answer_lines(&format!("{:?}", render(&app, 80, 24).backend()));
    assert_eq!(before, after, "the view moved while scrolled up");
    // Filtered, only the answers it shows move the scroll.
    key(&mut app, KeyCode::Char('/'));
    key(&mut app, KeyCode::Char('2'));
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Char('k'));
    let before = answer_lines(&format!("{:?}", render(&app, 80, 24).backend()));
    late_round(&mut app, &states);
    ping_failure(&mut app, 4, 10);
    let after = answer_lines(&format!("{:?}", render(&app, 80, 24).backend()));
    assert_eq!(before, after, "the filtered view moved while scrolled up");
    assert!(after.iter().all(|l| l.contains("#2 ")), "{after:?}");
}

#[test]
fn the_rings_are_bounded_and_samples_go_with_their_cluster() {
    let states = [Running; 6];
    let mut app = app_with(snapshot(&states));
    for round in 0..200u64 {
        let mut s = snapshot(&states);
        for c in &mut s.clusters {
            if let Some(h) = &mut c.health {
                h.at = at(1000) + Duration::from_secs(round);
            }
        }
        app.update(Msg::Snapshot(Arc::new(s)));
    }
    assert_eq!(app.diagnostics.answers.len(), ANSWERS_CAP);
    let samples = app.diagnostics.samples(5).map_or(0, |s| s.len());
    assert_eq!(samples, SAMPLES_CAP);
    // A reshard to two clusters: the others' samples are dropped.
    app.update(Msg::Snapshot(Arc::new(snapshot(&[Running; 2]))));
    assert!(app.diagnostics.samples(1).is_some());
    assert!(app.diagnostics.samples(5).is_none(), "cluster 5 is gone");
}

/// 120 clusters at 80×24: the table takes 70 % of the screen, the log
/// keeps the rest, and the selection stays in view at the bottom.
#[test]
fn a_hundred_and_twenty_clusters_at_80x24() {
    let states = vec![Running; 120];
    let mut app = app_with(snapshot(&states));
    insta::assert_snapshot!(
        "a_hundred_and_twenty_at_80x24",
        render(&app, 80, 24).backend()
    );
    key(&mut app, KeyCode::Char('G'));
    let screen = format!("{:?}", render(&app, 80, 24).backend());
    assert!(screen.contains("▶119"), "{screen}");
    assert!(screen.contains("Action log"), "{screen}");
}

/// A thousand clusters, sorted and filtered, at both ends of the sizes.
#[test]
fn a_thousand_clusters_sorted_and_filtered() {
    let mut states = vec![Running; 1000];
    states[640] = Crashed;
    let mut app = app_with(snapshot(&states));
    for _ in 0..500 {
        key(&mut app, KeyCode::Char('j'));
    }
    // Sorted by latency, slowest first: 999 has the slowest shards.
    for _ in 0..5 {
        key(&mut app, KeyCode::Char('o'));
    }
    assert_eq!(app.selected_cluster().map(|c| c.id), Some(500));
    let order: Vec<u32> = app
        .rows()
        .iter()
        .take(2)
        .map(|i| app.snapshot.clusters[*i].id)
        .collect();
    assert_eq!(order, [999, 998]);
    for (w, h) in [(80, 24), (200, 50)] {
        let screen = format!("{:?}", render(&app, w, h).backend());
        assert!(
            screen.contains("▶500"),
            "{w}x{h}: the selection is not in view\n{screen}"
        );
        assert!(
            screen.contains("LAT▼"),
            "{w}x{h}: the sort column is not marked\n{screen}"
        );
    }
    key(&mut app, KeyCode::Char('/'));
    for c in "crash".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    assert_eq!(app.selected_cluster().map(|c| c.id), Some(640));
    insta::assert_snapshot!(
        "a_thousand_filtered_at_200x50",
        render(&app, 200, 50).backend()
    );
}
