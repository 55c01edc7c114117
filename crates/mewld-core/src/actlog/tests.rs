use super::*;
use serde_json::json;

#[test]
fn entries_have_event_and_microsecond_ts() {
    let e = LogEvent::PingFailure { id: 3 }.entry(SystemTime::now());
    assert_eq!(e["event"], "ping_failure");
    assert_eq!(e["id"], 3);
    let ts = e["ts"].as_i64().expect("ts is a number");
    // Microseconds since 1970 are 16 digits for the next few centuries.
    assert!(ts > 1_600_000_000_000_000, "{ts}");
}

/// The stored JSON is what the original's readers and ours expect.
#[test]
fn events_serialise_as_the_original_shapes() {
    let without_ts = |e: LogEvent| {
        let mut m = e.entry(SystemTime::now());
        m.remove("ts");
        Value::Object(m)
    };
    assert_eq!(
        without_ts(LogEvent::ClusterExited {
            id: 2,
            exit: ExitFields {
                code: None,
                signal: Some(9)
            },
            restart_in_ms: Some(3000),
            quick_failures: None,
        }),
        json!({"event": "cluster_exited", "id": 2, "signal": 9, "restart_in_ms": 3000})
    );
    assert_eq!(
        without_ts(LogEvent::ClusterStartFailed {
            id: 1,
            via: StartVia::PingCheck,
            error: "e".into(),
            restart_in_ms: None,
        }),
        json!({"event": "cluster_start_failed", "id": 1, "via": "ping_check", "error": "e"})
    );
    assert_eq!(
        without_ts(LogEvent::ClusterRestartFailed {
            id: 1,
            via: RestartVia::Start,
            error: "e".into(),
            restart_in_ms: Some(3000),
        }),
        json!({"event": "cluster_restart_failed", "id": 1, "via": "start", "error": "e", "restart_in_ms": 3000})
    );
    assert_eq!(
        without_ts(LogEvent::RollingRestartAborted {
            id: 0,
            reason: "the replacement exited (code 3) before its launch_next".into(),
            pid: Some(41),
            output: vec!["boom".into()],
        }),
        json!({"event": "rolling_restart_aborted", "id": 0, "pid": 41,
            "reason": "the replacement exited (code 3) before its launch_next", "output": ["boom"]})
    );
    assert_eq!(
        without_ts(LogEvent::ReplacedProcessStopped {
            id: 2,
            pid: 40,
            exit: ExitFields {
                code: Some(0),
                signal: None
            },
        }),
        json!({"event": "replaced_process_stopped", "id": 2, "pid": 40, "code": 0})
    );
    assert_eq!(
        without_ts(LogEvent::RollingRestartDone {}),
        json!({"event": "rolling_restart_done"})
    );
    assert_eq!(
        without_ts(LogEvent::OperatorAction {
            host: None,
            action: "stop",
            via: "redis",
            id: Some(99),
            peer_pid: None,
            peer_uid: None,
            refused: Some("there is no cluster 99".into()),
        }),
        json!({"event": "operator_action", "action": "stop", "via": "redis", "id": 99, "refused": "there is no cluster 99"})
    );
}

/// Every name `Tone` knows is an event the manager writes.
#[test]
fn tones_name_real_events() {
    let id = 1;
    let exit = ExitFields {
        code: Some(1),
        signal: None,
    };
    let error = String::new();
    let events = [
        LogEvent::PingFailure { id },
        LogEvent::ClusterExited {
            id,
            exit,
            restart_in_ms: None,
            quick_failures: None,
        },
        LogEvent::ClusterFailed {
            id,
            quick_failures: 1,
            error: error.clone(),
        },
        LogEvent::ClusterStartFailed {
            id,
            via: StartVia::Observe,
            error: error.clone(),
            restart_in_ms: None,
        },
        LogEvent::ClusterRestartFailed {
            id,
            via: RestartVia::Start,
            error: error.clone(),
            restart_in_ms: None,
        },
        LogEvent::ReshardFailed {
            subsystem: "discord",
            error: error.clone(),
        },
        LogEvent::LaunchTimeout { id, waited_secs: 1 },
        LogEvent::RollingRestartTimeout { id, waited_secs: 1 },
        LogEvent::RollingRestartAborted {
            id,
            reason: error.clone(),
            pid: None,
            output: vec![],
        },
        LogEvent::ReshardAborted {
            id,
            reason: error.clone(),
            pid: None,
            output: vec![],
        },
        LogEvent::ChannelStall {
            waited_secs: 1,
            error,
        },
        LogEvent::IdentifyBudgetLow {
            remaining: 5,
            reserve: 5,
            resets_in_secs: 1,
        },
        LogEvent::HostLost {
            host: "b".into(),
            clusters: "3-5".into(),
        },
        LogEvent::IdentifyBudgetReset { remaining: 1 },
        LogEvent::HostJoined {
            host: "b".into(),
            pid: 1,
            clusters: "3-5".into(),
        },
        LogEvent::LeaderElected {
            host: "a".into(),
            epoch: 1,
        },
        LogEvent::ClusterStarted { id, pid: 1 },
        LogEvent::ClusterLaunched { id },
        LogEvent::ClusterRestarted { id, restarts: 1 },
        LogEvent::AllClustersLaunched { clusters: 1 },
        LogEvent::ChannelRecovered { stalled_secs: 1 },
        LogEvent::ReshardSuccess {
            subsystem: "cluster_map",
            old_shards: 1,
            new_shards: 2,
            clusters: 1,
            restarting: vec![],
        },
        LogEvent::RollingRestartDone {},
        LogEvent::ReshardRestartsDone {},
        LogEvent::ReplacementStarted {
            id,
            pid: 2,
            replaces: 1,
        },
        LogEvent::ClusterReplaced {
            id,
            pid: 2,
            old_pid: 1,
        },
    ];
    let (trouble, progress): (Vec<_>, Vec<_>) = events
        .iter()
        .map(|e| {
            Tone::of(
                e.entry(SystemTime::now())["event"]
                    .as_str()
                    .unwrap_or_default(),
            )
        })
        .partition(|t| *t == Tone::Trouble);
    assert_eq!(trouble.len(), 13);
    assert!(progress.iter().all(|t| *t == Tone::Progress));
    assert_eq!(Tone::of("shards_launched"), Tone::Plain);
}

#[test]
fn cluster_entries_get_a_ts() {
    let Value::Object(data) = json!({"event": "shards_launched", "cluster": 1, "ts": 5}) else {
        unreachable!()
    };
    let e = from_cluster(data, SystemTime::now());
    assert!(e["ts"].as_i64() > Some(5));
    assert_eq!(e["cluster"], 1);
}
