use super::entries::{EVENT_NAMES, EVENT_NAME_LEN};
use super::*;
use mewld_core::actlog::LogEvent;
use prometheus_client::encoding::text::encode;

fn operator(action: &'static str, refused: Option<&str>) -> LogEvent {
    LogEvent::OperatorAction {
        host: None,
        action,
        via: "redis",
        id: Some(0),
        peer_pid: None,
        peer_uid: None,
        refused: refused.map(str::to_string),
    }
}

/// The restarts are the engine's counts (a snapshot's `restarts_by`),
/// each counted once, whatever the entries say; a cluster counted fewer
/// times than before is a new one, counted from its start.
#[test]
fn restarts_are_the_engines_counts_each_counted_once() {
    let (mut series, registry) = Series::registered();
    let with = |counts: &[RestartReason]| {
        let mut s = healthy(&[0]);
        for &reason in counts {
            s.clusters[0].restarts_by.count(reason);
        }
        s
    };
    let sample = |reason: &str, n: u32| {
        format!("mewld_cluster_restarts_total{{cluster=\"0\",reason=\"{reason}\"}} {n}\n")
    };
    use RestartReason::*;
    series.on_snapshot(&with(&[Crash]));
    series.on_snapshot(&with(&[Crash]));
    series.on_entry(&operator("restart", None).entry(std::time::SystemTime::now()));
    series.on_snapshot(&with(&[Crash, RollingRestart, Operator, RollingRestart]));
    let text = text(&registry);
    for (reason, n) in [
        ("crash", 1),
        ("rolling_restart", 2),
        ("operator", 1),
        ("reshard", 0),
    ] {
        assert!(text.contains(&sample(reason, n)), "{reason} {n}:\n{text}");
    }
    series.on_snapshot(&with(&[Reshard]));
    let text = self::text(&registry);
    assert!(text.contains(&sample("reshard", 1)), "{text}");
    assert!(text.contains(&sample("crash", 1)), "{text}");
}

#[test]
fn every_clusters_counters_are_served_from_zero() {
    let (mut series, registry) = Series::registered();
    series.on_snapshot(&healthy(&[0]));
    let text = text(&registry);
    for reason in RestartReason::ALL.map(RestartReason::as_str) {
        let sample = format!("mewld_cluster_restarts_total{{cluster=\"0\",reason=\"{reason}\"}} 0");
        assert!(text.contains(&sample), "{sample} missing from:\n{text}");
    }
    assert!(
        text.contains("mewld_ping_failures_total{cluster=\"0\"} 0"),
        "{text}"
    );
    // Counting goes on from there, once.
    series.on_entry(&LogEvent::PingFailure { id: 0 }.entry(std::time::SystemTime::now()));
    series.on_snapshot(&healthy(&[0]));
    let text = self::text(&registry);
    assert!(
        text.contains("mewld_ping_failures_total{cluster=\"0\"} 1"),
        "{text}"
    );
}

fn text(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).expect("encode");
    text
}

#[test]
fn event_names_are_bounded() {
    let (mut series, registry) = Series::registered();
    for i in 0..EVENT_NAMES + 10 {
        let mut e = Map::new();
        e.insert("event".into(), Value::from(format!("bot_event_{i}")));
        series.on_entry(&e);
    }
    let mut long = Map::new();
    long.insert("event".into(), Value::from("x".repeat(EVENT_NAME_LEN + 1)));
    series.on_entry(&long);
    let text = text(&registry);
    let lines = text
        .lines()
        .filter(|l| l.starts_with("mewld_action_log_entries_total{"))
        .count();
    assert_eq!(lines, EVENT_NAMES + 1, "{text}");
    assert!(
        text.contains("mewld_action_log_entries_total{event=\"other\"} 11"),
        "{text}"
    );
}

/// In a fleet, a host counts its own clusters, and the leader the lost
/// ones' gauges: summed over the hosts, each cluster once.
#[test]
fn a_fleet_host_counts_its_own_clusters() {
    use mewld_core::model::state::{ClusterView, FleetSummary};
    let view = |id, state, host: Option<&str>| ClusterView {
        state,
        host: host.map(String::from),
        ..ClusterView::lost(&mewld_core::cluster_map::build(3, 1, &[])[id as usize])
    };
    let mut snapshot = Snapshot {
        clusters: vec![
            view(0, ClusterState::Running, Some("a")),
            view(1, ClusterState::Running, Some("b")),
            view(2, ClusterState::Lost, None),
        ],
        fleet: Some(FleetSummary {
            me: "a".into(),
            leader: Some(("b".into(), 2)),
            leading: false,
            hosts: Vec::new(),
            exit_order: None,
        }),
        ..Snapshot::default()
    };
    let (mut series, registry) = Series::registered();
    series.on_snapshot(&snapshot);
    let text = text(&registry);
    assert!(
        text.contains("mewld_clusters{state=\"running\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("mewld_clusters{state=\"lost\"} 0\n"),
        "{text}"
    );
    assert!(text.contains("mewld_fleet_leader 0\n"), "{text}");
    if let Some(f) = snapshot.fleet.as_mut() {
        f.leading = true;
    }
    series.on_snapshot(&snapshot);
    let text = self::text(&registry);
    assert!(
        text.contains("mewld_clusters{state=\"lost\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("mewld_fleet_leader 1\n"), "{text}");
    // Counters are only ever the host's own clusters', leading or not.
    assert!(
        text.contains("mewld_ping_failures_total{cluster=\"0\"} 0"),
        "{text}"
    );
    for other in ["1", "2"] {
        let series = format!("{{cluster=\"{other}\"");
        let counters: Vec<_> = text
            .lines()
            .filter(|l| l.contains(&series) && l.contains("_total"))
            .collect();
        assert!(counters.is_empty(), "{counters:?}");
    }
}

#[test]
fn the_session_budget_is_served_only_when_known() {
    let (mut series, registry) = Series::registered();
    series.on_snapshot(&Snapshot::default());
    assert!(!text(&registry).contains("mewld_session_starts_remaining "));
    series.on_snapshot(&Snapshot {
        sessions_remaining: Some(900),
        ..Snapshot::default()
    });
    let text = text(&registry);
    assert!(
        text.contains("\nmewld_session_starts_remaining 900\n"),
        "{text}"
    );
}

/// The queue's figures are served only while it runs; its budget is
/// the live one, and its grants count up by what is new.
#[test]
fn the_identify_queue_is_served_while_it_runs() {
    let (mut series, registry) = Series::registered();
    series.on_snapshot(&Snapshot::default());
    assert!(!text(&registry).contains("mewld_identify"));
    let mut status = mewld_core::model::state::IdentifyStatus {
        waiting: 3,
        granted_total: 4,
        max_concurrency: 4,
        budget_remaining: Some(996),
        ..Default::default()
    };
    let with = |status: &mewld_core::model::state::IdentifyStatus| Snapshot {
        sessions_remaining: Some(1000),
        identify: Some(status.clone()),
        ..Snapshot::default()
    };
    series.on_snapshot(&with(&status));
    status.granted_total = 6;
    status.held = true;
    series.on_snapshot(&with(&status));
    series.on_snapshot(&with(&status));
    let text = text(&registry);
    for sample in [
        "\nmewld_identify_waiting 3\n",
        "\nmewld_identify_grants_total 6\n",
        "\nmewld_identify_held 1\n",
        "\nmewld_session_starts_remaining 996\n",
    ] {
        assert!(text.contains(sample), "{sample} missing from:\n{text}");
    }
}

/// A snapshot of one running cluster with health from `shards`.
fn healthy(shards: &[u32]) -> Snapshot {
    let spec = mewld_core::cluster_map::build(4, 4, &["Zeus".to_string()]).remove(0);
    let shards = shards
        .iter()
        .map(|&shard_id| mewld_core::protocol::ShardHealth {
            shard_id,
            up: true,
            latency: Some(42.0),
            guilds: Some(7),
            users: None,
        })
        .collect();
    Snapshot {
        clusters: vec![mewld_core::model::state::ClusterView {
            id: spec.id,
            name: spec.name,
            shards: spec.shards,
            state: ClusterState::Running,
            pid: Some(1),
            started_at: None,
            restarts: 0,
            restarts_by: Default::default(),
            quick_failures: 0,
            next_restart_at: None,
            last_exit: None,
            start_error: None,
            host: None,
            replacing: None,
            retiring: None,
            health: Some(mewld_core::model::health::Health {
                at: SystemTime::UNIX_EPOCH,
                round_trip_ms: 3,
                shards,
            }),
        }],
        sessions_remaining: Some(900),
        ..Snapshot::default()
    }
}

#[test]
fn shards_no_answer_has_are_dropped_and_round_trips_observed_once() {
    let (mut series, registry) = Series::registered();
    series.on_snapshot(&healthy(&[0, 1]));
    series.on_snapshot(&healthy(&[1]));
    let text = text(&registry);
    assert!(!text.contains("shard=\"0\""), "{text}");
    assert!(
        text.contains("mewld_shard_latency_seconds{cluster=\"0\",shard=\"1\"} 0.042"),
        "{text}"
    );
    // Both snapshots carry the same answer.
    assert!(
        text.contains("mewld_diag_round_trip_seconds_count 1"),
        "{text}"
    );
}

/// A bot's entries, whatever they claim, count only as the clusters':
/// no restart, no ping failure, no manager event.
#[test]
fn a_clusters_entries_never_count_as_the_managers() {
    let (mut series, registry) = Series::registered();
    let forged = [
        LogEvent::ClusterRestarted { id: 0, restarts: 1 }.entry(std::time::SystemTime::now()),
        LogEvent::ClusterRestarted {
            id: 7_777,
            restarts: 1,
        }
        .entry(std::time::SystemTime::now()),
        LogEvent::PingFailure { id: 1 }.entry(std::time::SystemTime::now()),
        LogEvent::RollingRestart {
            clusters: (100..200).collect(),
        }
        .entry(std::time::SystemTime::now()),
        operator("restart", None).entry(std::time::SystemTime::now()),
        LogEvent::ClusterStarted { id: 0, pid: 9 }.entry(std::time::SystemTime::now()),
    ];
    for entry in &forged {
        series.on_cluster_entry(entry);
    }
    let text = text(&registry);
    for absent in [
        "mewld_cluster_restarts_total{",
        "mewld_ping_failures_total{",
        "mewld_action_log_entries_total{",
    ] {
        assert!(!text.contains(absent), "{absent} in:\n{text}");
    }
    for present in [
        "mewld_cluster_log_entries_total{event=\"cluster_restarted\"} 2",
        "mewld_cluster_log_entries_total{event=\"cluster_started\"} 1",
    ] {
        assert!(text.contains(present), "{present} missing from:\n{text}");
    }
}

#[test]
fn a_cluster_gone_after_a_reshard_leaves_no_series() {
    let (mut series, registry) = Series::registered();
    series.on_snapshot(&healthy(&[0]));
    series.on_snapshot(&Snapshot::default());
    let text = text(&registry);
    assert!(!text.contains("mewld_cluster_up{"), "{text}");
    assert!(!text.contains("mewld_cluster_replacing{"), "{text}");
    assert!(!text.contains("mewld_shard_up{"), "{text}");
}

/// A replacement starting beside the cluster's process (start_first): the
/// cluster is up, and replacing.
#[test]
fn a_replacement_is_a_gauge_beside_cluster_up() {
    let (mut series, registry) = Series::registered();
    let mut s = healthy(&[0]);
    s.clusters[0].replacing = Some(77);
    series.on_snapshot(&s);
    let shown = text(&registry);
    assert!(
        shown.contains("mewld_cluster_up{cluster=\"0\",name=\"Zeus\"} 1"),
        "{shown}"
    );
    assert!(
        shown.contains("mewld_cluster_replacing{cluster=\"0\",name=\"Zeus\"} 1"),
        "{shown}"
    );
    s.clusters[0].replacing = None;
    series.on_snapshot(&s);
    let shown = text(&registry);
    assert!(
        shown.contains("mewld_cluster_replacing{cluster=\"0\",name=\"Zeus\"} 0"),
        "{shown}"
    );
}

#[test]
fn the_text_format_has_every_series_the_dashboard_queries() {
    let (mut series, registry) = Series::registered();
    series.on_entry(&LogEvent::PingFailure { id: 0 }.entry(std::time::SystemTime::now()));
    let mut snapshot = healthy(&[0]);
    snapshot.clusters[0]
        .restarts_by
        .count(RestartReason::PingFailure);
    series.on_snapshot(&snapshot);
    let text = text(&registry);
    for name in [
        "mewld_clusters{state=\"running\"} 1",
        "mewld_clusters{state=\"failed\"} 0",
        "mewld_cluster_up{cluster=\"0\",name=\"Zeus\"} 1",
        "mewld_ping_failures_total{cluster=\"0\"} 1",
        "mewld_cluster_restarts_total{cluster=\"0\",reason=\"ping_failure\"} 1",
        "mewld_action_log_entries_total{event=\"ping_failure\"} 1",
        "mewld_redis_connected 0",
        "mewld_shard_up{cluster=\"0\",shard=\"0\"} 1",
        "mewld_shard_guilds{cluster=\"0\",shard=\"0\"} 7",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let dashboard = include_str!("../../../contrib/grafana-dashboard.json");
    for name in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if name.starts_with("mewld_") {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "contrib/grafana-dashboard.json queries {name}, which is not served"
            );
        }
    }
}
