//! The cluster's detail as a newcomer reads it: how it last exited, its
//! restarts by reason, why there is no health, `Enter` on a wide screen,
//! the output's filter; and the name columns as wide as the names.

use std::sync::Arc;
use std::time::Duration;

use crossterm::event::KeyCode;
use mewld::tui::app::{App, Msg, Pane};
use mewld_core::model::state::{ClusterState, Snapshot};
use mewld_core::model::{Event, ExitInfo, RestartCounts, Stream};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

mod console_fixture;

use console_fixture::*;
use ClusterState::*;

/// The screen's rows as text.
fn rows(t: &Terminal<TestBackend>) -> Vec<String> {
    let buf = t.backend().buffer();
    (0..buf.area.height)
        .map(|y| (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect())
        .collect()
}

fn screen(app: &App, width: u16, height: u16) -> String {
    rows(&render(app, width, height)).join("\n")
}

/// The detail of cluster 2, opened on an 80-column screen.
fn detail_of_2(s: Snapshot) -> App {
    let mut app = app_with(s);
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Enter);
    app
}

#[test]
fn the_detail_says_how_it_last_exited_and_why_it_restarted() {
    let mut s = snapshot(&[Running, Running, Crashed, Running]);
    let c = &mut s.clusters[2];
    c.next_restart_at = Some(t0() + Duration::from_secs(4));
    c.restarts_by = RestartCounts {
        crash: 1,
        operator: 2,
        rolling_restart: 1,
        ..Default::default()
    };
    c.restarts = c.restarts_by.total();
    c.last_exit = Some(ExitInfo {
        code: None,
        signal: Some(9),
    });
    let app = detail_of_2(s.clone());
    let text = screen(&app, 80, 24);
    assert!(text.contains("last exit: signal 9 (SIGKILL)"), "{text}");
    assert!(
        text.contains("restarts 4: crash 1, operator 2, rolling_restart 1"),
        "{text}"
    );
    assert!(text.contains("crashed, restarting in 4s"), "{text}");
    insta::assert_snapshot!(render(&app, 80, 24).backend());
    // Every kind of exit reads once as an exit.
    for (exit, said) in [
        (Some((Some(0), None)), "last exit: code 0 "),
        (Some((Some(101), None)), "last exit: code 101 "),
        (Some((None, Some(15))), "last exit: signal 15 (SIGTERM)"),
        (Some((None, None)), "last exit: unknown status"),
        (None, "last exit: - "),
    ] {
        s.clusters[2].last_exit = exit.map(|(code, signal)| ExitInfo { code, signal });
        let text = screen(&detail_of_2(s.clone()), 80, 24);
        assert!(text.contains(said), "{said}:\n{text}");
        assert!(!text.contains("exit exit"), "{text}");
    }
}

#[test]
fn a_cluster_that_could_not_start_says_why() {
    let mut s = snapshot(&[Running, Running, Failed]);
    s.clusters[2].start_error = Some("/srv/bot/bot.sh: No such file or directory".into());
    let text = screen(&detail_of_2(s), 80, 24);
    assert!(
        text.contains("could not start: /srv/bot/bot.sh: No such file or directory"),
        "{text}"
    );
    assert!(
        text.contains("health: none, it failed and stays stopped (s starts it)"),
        "{text}"
    );
}

/// `d` is offered only where a process could answer.
#[test]
fn only_a_live_cluster_invites_a_diagnostic() {
    let cases = [
        (Stopped, "health: none, it is stopped (s starts it)"),
        (Pending, "health: none, it waits for its turn in the launch"),
        (Crashed, "health: none, no process until it restarts"),
        (Stopping, "health: none, it is stopping"),
        (Lost, "health: unknown, its host stopped heartbeating"),
        (Starting, "health: no diagnostic answered yet (d asks now)"),
    ];
    for (state, said) in cases {
        let text = screen(&detail_of_2(snapshot(&[Running, Running, state])), 80, 24);
        assert!(text.contains(said), "{state:?}:\n{text}");
        if state != Starting {
            assert!(!text.contains("asks now"), "{state:?}:\n{text}");
        }
    }
}

/// At 160 columns the detail is already beside the table: `Enter` gives
/// it the focus (a thick frame, half the width), keys scroll its output,
/// and `Esc` gives the table the focus back.
#[test]
fn enter_on_a_wide_screen_gives_the_detail_the_focus() {
    let mut app = app_with(snapshot(&[Running; 6]));
    for n in 0..30 {
        app.update(Msg::Engine(Event::Output {
            id: 1,
            name: "Eevee".into(),
            stream: Stream::Stdout,
            line: format!("line {n}"),
        }));
    }
    key(&mut app, KeyCode::Char('j'));
    // Where the detail's frame begins on the top row, and its corner.
    let corner = |app: &App| -> (usize, String) {
        let top: Vec<char> = rows(&render(app, 160, 40))[1].chars().collect();
        let x = top
            .iter()
            .position(|c| matches!(c, '┐' | '┓'))
            .map_or(0, |x| x + 1);
        (x, top.get(x).map(|c| c.to_string()).unwrap_or_default())
    };
    let (before, frame) = corner(&app);
    assert_eq!(frame, "┌", "the detail has a plain frame without the focus");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.focus, Pane::Output);
    let (at, frame) = corner(&app);
    assert_eq!(frame, "┏", "a thick frame with the focus");
    assert!(at < before, "wider: from column {at}, was {before}");
    let top = rows(&render(&app, 160, 40))[1].clone();
    assert!(top.starts_with('┌'), "the table lost the focus: {top}");
    insta::assert_snapshot!(render(&app, 160, 40).backend());
    key(&mut app, KeyCode::Char('k'));
    key(&mut app, KeyCode::Char('k'));
    let text = screen(&app, 160, 40);
    assert!(text.contains("output · scrolled up 2"), "{text}");
    assert!(!text.contains("line 29"), "{text}");
    assert_eq!(app.selected, 1, "k scrolled the output, not the table");
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.focus, Pane::Clusters);
    assert_eq!(corner(&app), (before, "┌".to_string()));
}

/// `/` in the output pane keeps the lines that match; the title says
/// the filter; `Esc` clears it; the action log's filter is not touched.
#[test]
fn slash_filters_the_clusters_output() {
    let mut app = app_with(snapshot(&[Running; 6]));
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Char('/'));
    for c in "SLOW".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    key(&mut app, KeyCode::Enter);
    assert_eq!(
        (app.output_filter.as_str(), app.filter.as_str()),
        ("SLOW", "")
    );
    assert_eq!(app.focus, Pane::Output);
    let terminal = render(&app, 80, 24);
    let text = rows(&terminal).join("\n");
    assert!(text.contains("shards 4-7 · filter: SLOW"), "{text}");
    assert!(text.contains("output · 1 of 3 lines match"), "{text}");
    assert!(text.contains("warning: slow identify"), "{text}");
    assert!(!text.contains("identifying shard"), "{text}");
    insta::assert_snapshot!(terminal.backend());
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.output_filter, "");
    assert_eq!(app.focus, Pane::Output, "the first Esc only clears");
    assert!(screen(&app, 80, 24).contains("identifying shard 4 of 24"));
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.focus, Pane::Clusters);
}

/// NAME is as wide as the longest name (within a bound), and the
/// diagnostics show whole names where they have room.
#[test]
fn name_columns_fit_the_names() {
    let mut app = app_with(snapshot(&[Running; 6]));
    with_rounds(&mut app, &[Running; 6]);
    let wide = rows(&render(&app, 160, 40));
    assert!(wide[2].contains("ID    NAME      SHARDS"), "{}", wide[2]);
    assert!(
        wide.iter().any(|r| r.contains("#2 Bulbasaur  4/4")),
        "{}",
        wide.join("\n")
    );
    // A very long name is cut at the bound; the others keep their room.
    let mut s = snapshot(&[Running; 3]);
    s.clusters[1].name = "a-name-far-longer-than-any-column-should-be".into();
    app.update(Msg::Snapshot(Arc::new(s)));
    let header = rows(&render(&app, 160, 40))[2].clone();
    let name_at = header.find("NAME").unwrap_or(0);
    let shards_at = header.find("SHARDS").unwrap_or(0);
    assert_eq!(shards_at - name_at, 24 + 1, "{header}");
}

#[test]
fn the_sort_arrow_points_the_way_the_rows_go() {
    let mut app = app_with(snapshot(&[Running; 6]));
    key(&mut app, KeyCode::Char('o'));
    let text = screen(&app, 100, 30);
    assert!(text.contains("NAME▲"), "names a→z: {text}");
    assert!(text.contains("sorted by NAME ▲"), "{text}");
    key(&mut app, KeyCode::Char('O'));
    assert!(screen(&app, 100, 30).contains("NAME▼"));
    for _ in 0..3 {
        key(&mut app, KeyCode::Char('o'));
    }
    // Restarts go most first by themselves; reversed, fewest first.
    assert!(screen(&app, 100, 30).contains("RST▲"));
    key(&mut app, KeyCode::Char('O'));
    assert!(screen(&app, 100, 30).contains("RST▼"));
}
