//! The console's screens, drawn with ratatui's TestBackend from fixed
//! states and compared with reviewed snapshots (tests/snapshots/).

use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use mewld::tui::app::{App, Confirmable, Effect, FaceView, Mode, Msg};
use mewld::tui::view;
use mewld_core::model::state::IdentifyStatus;
use mewld_core::model::state::{ClusterState, FleetSummary, HostSummary, RollingView};
use mewld_core::model::ExitInfo;
use mewld_core::model::Operation;
use ratatui::style::Modifier;

mod console_fixture;

use console_fixture::*;
use ClusterState::*;

#[test]
fn launching() {
    let app = app_with(snapshot(&[
        Running, Running, Starting, Pending, Pending, Pending,
    ]));
    insta::assert_snapshot!(render(&app, 100, 30).backend());
}

#[test]
fn fully_up_with_health_at_80x24() {
    let app = app_with(snapshot(&[Running; 6]));
    insta::assert_snapshot!(render(&app, 80, 24).backend());
}

#[test]
fn wide_layout_shows_the_detail_beside_the_table() {
    let mut app = app_with(snapshot(&[Running; 6]));
    key(&mut app, KeyCode::Char('j'));
    insta::assert_snapshot!(render(&app, 160, 40).backend());
}

#[test]
fn detail_view_on_a_narrow_screen() {
    let mut app = app_with(snapshot(&[Running; 6]));
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Enter);
    insta::assert_snapshot!(render(&app, 80, 30).backend());
}

#[test]
fn help_overlay() {
    let mut app = app_with(snapshot(&[Running; 6]));
    key(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!(render(&app, 100, 30).backend());
    // Every row and the log file fit the smallest supported screen.
    app.log_file = Some("mewld.log".into());
    insta::assert_snapshot!("help_overlay_at_80x24", render(&app, 80, 24).backend());
}

#[test]
fn stop_confirmation_names_its_target_and_keeps_it() {
    let mut app = app_with(snapshot(&[Running; 6]));
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Char('x'));
    insta::assert_snapshot!(render(&app, 100, 30).backend());
    // The table changes under the dialog (cluster 1 is gone, rows shift)…
    let mut moved = snapshot(&[Running; 6]);
    moved.clusters.remove(1);
    app.update(Msg::Snapshot(Arc::new(moved)));
    // …but yes still stops the cluster named when the dialog opened.
    assert_eq!(
        key(&mut app, KeyCode::Char('y')),
        Some(Effect::Request(Operation::Stop(1)))
    );
}

#[test]
fn crash_backoff_outage_and_rolling_restart_in_the_header() {
    let mut s = snapshot(&[Running, Running, Crashed, Running]);
    s.clusters[2].next_restart_at = Some(t0() + Duration::from_secs(4));
    s.clusters[2].restarts = 3;
    s.clusters[2].last_exit = Some(ExitInfo {
        code: Some(101),
        signal: None,
    });
    s.transport_connected = false;
    s.transport_retry_at = Some(t0() + Duration::from_secs(2));
    s.rolling = Some(RollingView {
        done: 1,
        total: 4,
        current: Some(1),
        under_way: vec![1],
        start_first: false,
    });
    let app = app_with(s);
    insta::assert_snapshot!(render(&app, 100, 20).backend());
}

/// A `start_first` roll: cluster 1 runs its old process with a
/// replacement starting beside it (↻ in the table, both pids in the
/// detail); cluster 0, replaced, is stopping its old process.
#[test]
fn a_start_first_roll_shows_the_replacement_beside_the_running_process() {
    let mut s = snapshot(&[Running, Running, Running, Running]);
    s.clusters[1].replacing = Some(5001);
    s.clusters[0].retiring = Some(4000);
    s.rolling = Some(RollingView {
        done: 0,
        total: 4,
        current: Some(0),
        under_way: vec![0, 1],
        start_first: true,
    });
    let mut app = app_with(s);
    key(&mut app, KeyCode::Char('j'));
    insta::assert_snapshot!(render(&app, 160, 30).backend());
}

/// The identify queue in the header: who waits, this window's grants, the
/// budget; held in red when the budget is down to the reserve.
#[test]
fn identify_queue_in_the_header() {
    let mut s = snapshot(&[Running, Starting, Starting, Pending]);
    s.identify = Some(IdentifyStatus {
        waiting: 7,
        granted_in_window: 4,
        granted_total: 20,
        max_concurrency: 4,
        budget_remaining: Some(980),
        held: false,
    });
    let app = app_with(s.clone());
    let header = first_line(&render(&app, 160, 20));
    assert!(
        header.contains("identify 7 waiting, 4/4 per 5s · sessions left 980"),
        "{header}"
    );
    let narrow = first_line(&render(&app, 100, 20));
    assert!(narrow.contains("idq 7w 4/4 sess 980"), "{narrow}");
    if let Some(q) = s.identify.as_mut() {
        q.held = true;
        q.budget_remaining = Some(5);
    }
    let header = first_line(&render(&app_with(s), 160, 20));
    assert!(header.contains("HELD (budget low)"), "{header}");
}

/// One host of a fleet: a HOST column, each host's running clusters in
/// the header with the leader starred, and a lost host's clusters in red.
#[test]
fn a_fleet_shows_its_hosts() {
    let mut s = snapshot(&[Running, Running, Lost, Lost, Running, Starting]);
    for (c, host) in s.clusters.iter_mut().zip(["a", "a", "", "", "c", "c"]) {
        c.host = (!host.is_empty()).then(|| host.to_string());
    }
    s.fleet = Some(FleetSummary {
        me: "a".into(),
        leader: Some(("c".into(), 4)),
        leading: false,
        hosts: vec![
            HostSummary {
                name: "a".into(),
                pid: 10,
                clusters: 2,
                running: 2,
            },
            HostSummary {
                name: "c".into(),
                pid: 12,
                clusters: 2,
                running: 1,
            },
        ],
        exit_order: None,
    });
    let app = app_with(s);
    let terminal = render(&app, 160, 20);
    let header = first_line(&terminal);
    assert!(header.contains("hosts a 2/2, c★ 1/2 · 2 lost"), "{header}");
    insta::assert_snapshot!(terminal.backend());
}

fn first_line(t: &ratatui::Terminal<ratatui::backend::TestBackend>) -> String {
    let buf = t.backend().buffer();
    (0..buf.area.width)
        .map(|x| buf[(x, 0)].symbol().to_string())
        .collect()
}

#[test]
fn filtered_paused_action_log() {
    let mut app = app_with(snapshot(&[Running; 3]));
    // `/` filters the focused pane: the log, two Tabs away.
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Char('/'));
    for c in "exited".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Char('f'));
    insta::assert_snapshot!(render(&app, 100, 24).backend());
}

#[test]
fn any_size_draws_without_panicking() {
    let app = app_with(snapshot(&[Running; 6]));
    for (w, h) in [
        (1, 1),
        (10, 3),
        (19, 5),
        (20, 6),
        (30, 8),
        (80, 24),
        (300, 100),
    ] {
        render(&app, w, h);
    }
    insta::assert_snapshot!(render(&app, 12, 4).backend());
}

#[test]
fn no_color_keeps_the_selection_visible() {
    let mut app = app_with(snapshot(&[Running; 6]));
    app.color = false;
    key(&mut app, KeyCode::Char('j'));
    let terminal = render(&app, 100, 30);
    let buf = terminal.backend().buffer();
    // Row of cluster 1: reversed, with a marker, and no colour anywhere.
    let row = (0..buf.area.height)
        .find(|y| buf[(1, *y)].symbol() == "▶" && buf[(2, *y)].symbol() == "1")
        .expect("the selected row is marked");
    assert!(buf[(3, row)].modifier.contains(Modifier::REVERSED));
    let colored = buf
        .content()
        .iter()
        .any(|c| c.fg != ratatui::style::Color::Reset || c.bg != ratatui::style::Color::Reset);
    assert!(!colored, "NO_COLOR: no colours");
}

#[test]
fn quitting_asks_first_and_can_stay() {
    let mut app = app_with(snapshot(&[Running; 2]));
    assert_eq!(key(&mut app, KeyCode::Char('q')), None);
    let Mode::Confirm { action, target } = &app.mode else {
        panic!("q asks first, got {:?}", app.mode);
    };
    let (_, body) = view::question(&app, *action, target.as_ref());
    assert!(body.contains("stops every cluster"), "{body}");
    assert_eq!(key(&mut app, KeyCode::Char('n')), None);
    assert_eq!(app.mode, Mode::Normal);
    key(&mut app, KeyCode::Char('q'));
    assert_eq!(key(&mut app, KeyCode::Enter), Some(Effect::Quit));
}

/// An attached console says where its engine is, says so when it is out
/// of reach, and its quit detaches (the dialog says the clusters stay).
#[test]
fn an_attached_console_names_its_socket_and_quit_detaches() {
    let mut app = app_with(snapshot(&[Running; 6]));
    app.face = FaceView::Attached {
        socket: "/srv/bot/mewld.ctl".into(),
        lost: None,
    };
    key(&mut app, KeyCode::Char('q'));
    let Mode::Confirm { action, target } = &app.mode else {
        panic!("q asks first, got {:?}", app.mode);
    };
    let (title, body) = view::question(&app, *action, target.as_ref());
    assert_eq!(title, "Detach");
    assert!(body.contains("Every cluster keeps running"), "{body}");
    insta::assert_snapshot!(render(&app, 160, 30).backend());
    assert_eq!(key(&mut app, KeyCode::Char('y')), Some(Effect::Quit));
    app.update(Msg::Link(Some("the engine closed the connection".into())));
    insta::assert_snapshot!(
        "attached_console_engine_gone_at_80x24",
        render(&app, 80, 24).backend()
    );
}

#[test]
fn start_and_diagnose_need_no_confirmation() {
    let mut app = app_with(snapshot(&[Running, Stopped]));
    key(&mut app, KeyCode::Char('j'));
    assert_eq!(
        key(&mut app, KeyCode::Char('s')),
        Some(Effect::Request(Operation::Start(1)))
    );
    assert_eq!(
        key(&mut app, KeyCode::Char('d')),
        Some(Effect::Request(Operation::Diagnose(1)))
    );
    assert_eq!(
        key(&mut app, KeyCode::Char('R')),
        None,
        "rolling restart asks first"
    );
    assert_eq!(
        key(&mut app, KeyCode::Char('y')),
        Some(Effect::Request(Operation::RollingRestart))
    );
}

fn ctrl_c(app: &mut App) -> Option<Effect> {
    app.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    )))
}

#[test]
fn ctrl_c_in_the_help_asks_to_quit_instead_of_the_help() {
    let mut app = app_with(snapshot(&[Running; 6]));
    key(&mut app, KeyCode::Char('?'));
    assert_eq!(app.mode, Mode::Help);
    assert_eq!(ctrl_c(&mut app), None);
    assert!(matches!(
        app.mode,
        Mode::Confirm {
            action: Confirmable::Quit,
            ..
        }
    ));
    // The dialog alone: the help is gone, not under it.
    insta::assert_snapshot!(render(&app, 80, 24).backend());
    // No goes back to the console, not to the help.
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn a_dialog_takes_only_yes_and_no() {
    let mut app = app_with(snapshot(&[Running; 6]));
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Char('x'));
    let asked = app.mode.clone();
    assert!(matches!(
        asked,
        Mode::Confirm {
            action: Confirmable::Op(Operation::Stop(1)),
            ..
        }
    ));
    // Keys that act in normal mode do nothing here, Ctrl-C and q included:
    // the question stays the one that was asked.
    for code in [
        KeyCode::Char('j'),
        KeyCode::Char('r'),
        KeyCode::Char('S'),
        KeyCode::Char('q'),
        KeyCode::Char('?'),
        KeyCode::Char('/'),
        KeyCode::Tab,
        KeyCode::Down,
    ] {
        assert_eq!(key(&mut app, code), None, "{code:?}");
        assert_eq!(app.mode, asked, "{code:?}");
    }
    assert_eq!(ctrl_c(&mut app), None);
    assert_eq!(app.mode, asked, "Ctrl-C");
    assert_eq!(
        app.selected, 1,
        "the selection did not move under the dialog"
    );
    assert_eq!(
        key(&mut app, KeyCode::Char('Y')),
        Some(Effect::Request(Operation::Stop(1)))
    );
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn the_filter_eats_letters_that_are_keys_elsewhere() {
    let mut app = app_with(snapshot(&[Running; 3]));
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Char('/'));
    assert_eq!(app.mode, Mode::Filter);
    // q would quit, x stop, S shut down, ? open the help: here they are text.
    for c in "qxS?/".chars() {
        assert_eq!(key(&mut app, KeyCode::Char(c)), None, "{c}");
    }
    assert_eq!(app.filter, "qxS?/");
    assert_eq!(app.mode, Mode::Filter);
    key(&mut app, KeyCode::Backspace);
    assert_eq!(app.filter, "qxS?");
    insta::assert_snapshot!(render(&app, 80, 24).backend());
    // Esc clears and leaves the filter; then the letters are keys again.
    key(&mut app, KeyCode::Esc);
    assert_eq!((app.mode.clone(), app.filter.as_str()), (Mode::Normal, ""));
    key(&mut app, KeyCode::Char('?'));
    assert_eq!(app.mode, Mode::Help);
}

#[test]
fn esc_and_a_key_read_as_alt_are_the_two_keys() {
    let mut app = app_with(snapshot(&[Running; 3]));
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Char('/'));
    key(&mut app, KeyCode::Char('e'));
    // Esc then `/` typed quickly arrives as Alt-/: the filter is cleared,
    // then a new one begins.
    app.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('/'),
        KeyModifiers::ALT,
    )));
    assert_eq!((app.mode.clone(), app.filter.as_str()), (Mode::Filter, ""));
}

/// A big bot: `/` on the clusters keeps only the matches, `o` sorts (trouble
/// first), and the selection stays on its cluster while rows move.
#[test]
fn clusters_filtered_and_sorted_keep_the_selection_on_its_cluster() {
    let mut states = vec![Running; 120];
    states[7] = Crashed;
    states[42] = Failed;
    states[99] = Stopped;
    let mut app = app_with(snapshot(&states));
    for _ in 0..42 {
        key(&mut app, KeyCode::Char('j'));
    }
    assert_eq!(app.selected_cluster().map(|c| c.id), Some(42));
    // Sorted by state: the failed cluster goes to the top, still selected.
    key(&mut app, KeyCode::Char('o'));
    key(&mut app, KeyCode::Char('o'));
    assert_eq!(app.selected_cluster().map(|c| c.id), Some(42));
    assert_eq!(app.selected, 0);
    let order: Vec<u32> = app
        .rows()
        .iter()
        .take(4)
        .map(|i| app.snapshot.clusters[*i].id)
        .collect();
    assert_eq!(order, vec![42, 7, 99, 0]);
    insta::assert_snapshot!(
        "clusters_sorted_by_state_120_at_100x30",
        render(&app, 100, 30).backend()
    );
    // Filtered by state: only the crashed one; Esc clears the filter.
    key(&mut app, KeyCode::Char('/'));
    for c in "crash".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.rows().len(), 1);
    assert_eq!(app.selected_cluster().map(|c| c.id), Some(7));
    insta::assert_snapshot!("clusters_filtered_at_80x24", render(&app, 80, 24).backend());
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.rows().len(), 120);
    assert_eq!(
        app.selected_cluster().map(|c| c.id),
        Some(7),
        "the selection stayed"
    );
}

/// The diagnostics pane streams every answer (filterable by cluster), and
/// the detail draws the recent latency and guilds as trend lines.
#[test]
fn diagnostics_pane_and_the_detail_trends() {
    let mut app = app_with(snapshot(&[Running; 6]));
    with_rounds(&mut app, &[Running; 6]);
    assert_eq!(app.diagnostics.answers.len(), 6 * 11);
    // Shift-Tab from the clusters: the diagnostics, in place of the log.
    key(&mut app, KeyCode::BackTab);
    insta::assert_snapshot!("diagnostics_pane_at_80x24", render(&app, 80, 24).backend());
    key(&mut app, KeyCode::Char('/'));
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Enter);
    let screen = format!("{:?}", render(&app, 80, 24).backend());
    assert!(
        screen.contains("#1 ") && !screen.contains("#2 "),
        "{screen}"
    );
    // The detail of cluster 1 with its trend lines.
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Enter);
    insta::assert_snapshot!(
        "detail_with_trends_at_80x30",
        render(&app, 80, 30).backend()
    );
}

/// A big bot on a big screen: 120 clusters, the detail with trends beside
/// the table, the log and the diagnostics side by side below.
#[test]
fn a_hundred_and_twenty_clusters_at_200x50() {
    let states = vec![Running; 120];
    let mut app = app_with(snapshot(&states));
    with_rounds(&mut app, &states);
    key(&mut app, KeyCode::Char('j'));
    insta::assert_snapshot!(render(&app, 200, 50).backend());
}
