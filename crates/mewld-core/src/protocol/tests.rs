use super::*;
use serde_json::json;

fn req(v: Value) -> Request {
    match parse(v.to_string().as_bytes()) {
        Ok(Some(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

#[test]
fn actions_with_ids() {
    let r = req(json!({"scope": "launcher", "action": "launch_next", "args": {"id": 3}}));
    assert_eq!(r.action, Action::LaunchNext(3));
    let r = req(
        json!({"scope": "launcher", "action": "stop", "args": {"id": "2"}, "command_id": "c1"}),
    );
    assert_eq!(r.action, Action::Stop(2));
    assert_eq!(r.command_id.as_deref(), Some("c1"));
}

#[test]
fn fleet_ops_round_trip_and_bad_ones_say_why() {
    let op = FleetOp {
        op: "stop".into(),
        id: Some(7),
        via: "console".into(),
        host: "box-a".into(),
        rolling: false,
        epoch: None,
        peer: Some(crate::model::Peer {
            pid: Some(4242),
            uid: 1000,
        }),
    };
    let r = req(serde_json::from_str(&fleet_op(&op)).expect("json"));
    assert_eq!(r.action, Action::FleetOp(op.clone()));
    // As an older host sends it: no peer.
    let old = json!({"scope": "launcher", "action": "mewld_op", "op": "stop", "id": 7, "via": "console", "host": "box-a", "rolling": false, "epoch": null});
    let r = req(old);
    assert_eq!(r.action, Action::FleetOp(FleetOp { peer: None, ..op }));
    let bad = json!({"scope": "launcher", "action": "mewld_op", "op": "stop", "id": -1, "via": "x", "host": "h"});
    let e = parse(bad.to_string().as_bytes()).expect_err("bad id");
    assert!(e.to_string().contains("`id`"), "{e}");
}

#[test]
fn other_scopes_and_our_own_messages_are_not_for_us() {
    let r = req(serde_json::from_str(&all_clusters_launched("x")).expect("json"));
    assert_eq!(r.action, Action::Announced);
    let r = req(serde_json::from_str(&reply(Some("c9"), &json!("ok"))).expect("json"));
    assert_eq!(
        (r.action, r.command_id.as_deref()),
        (Action::Answered, Some("c9"))
    );
    for v in [
        json!({"scope": "bot", "action": "x"}),
        json!({"scope": "bot", "action": "", "command_id": ""}),
        json!({"id": 1, "nonce": "n", "diag": true}),
        json!({"scope": 5}),
    ] {
        assert_eq!(parse(v.to_string().as_bytes()), Ok(None), "{v}");
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    assert!(matches!(parse(b"{nope"), Err(ParseError::NotJson(_))));
    assert_eq!(parse(b"[1,2]"), Err(ParseError::NotObject));
    assert_eq!(parse(br#"{"scope":"launcher"}"#), Err(ParseError::NoAction));
    assert!(matches!(
        parse(br#"{"scope":"launcher","action":"fly"}"#),
        Err(ParseError::UnknownAction(_))
    ));
    for args in [
        json!(null),
        json!({"id": -1}),
        json!({"id": 1.5}),
        json!({"id": [1]}),
        json!({"id": 99999999999u64}),
    ] {
        let v = json!({"scope": "launcher", "action": "start", "args": args});
        assert!(
            matches!(
                parse(v.to_string().as_bytes()),
                Err(ParseError::BadArgs { .. })
            ),
            "{v}"
        );
    }
}

fn diag(inner: Value) -> DiagAnswer {
    let r = req(json!({"scope": "launcher", "action": "diag", "output": inner.to_string()}));
    match r.action {
        Action::Diag(d) => d,
        other => panic!("not a diag: {other:?}"),
    }
}

#[test]
fn diag_answer_in_the_originals_shape() {
    let d = diag(
        json!({"Nonce": "abc", "Data": [{"shard_id": 0, "up": true, "latency": 41.5, "guilds": 1200, "users": 98000}, {"shard_id": 1, "up": false}], "cluster_id": 0}),
    );
    assert_eq!(d.nonce, "abc");
    let (h, _) = d.health(&[0, 1]);
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].latency, Some(41.5));
    assert_eq!(h[0].guilds, Some(1200));
    assert!(!h[1].up);
    assert_eq!(h[1].users, None);
}

#[test]
fn diag_keys_are_case_insensitive() {
    let d = diag(json!({"nonce": "n2", "data": [{"Shard_ID": 4, "UP": true}]}));
    assert_eq!(d.nonce, "n2");
    let (h, _) = d.health(&[4]);
    assert_eq!(h[0].shard_id, 4);
    assert!(h[0].up);
}

/// What the discord.py bot the original was written for sends: lowercase
/// keys and entries keyed `id`, no `shard_id`.
#[test]
fn diag_from_a_discord_py_bot() {
    let d = diag(json!({"nonce": "n3", "data": [
        {"id": 10, "latency": 0.041, "up": true, "guilds": 1500},
        {"id": 11, "latency": 0.052, "up": false, "guilds": 1400},
    ]}));
    let (h, _) = d.health(&[10, 11]);
    assert_eq!(
        h.iter().map(|s| (s.shard_id, s.up)).collect::<Vec<_>>(),
        vec![(10, true), (11, false)]
    );
    assert_eq!(h[1].guilds, Some(1400));
}

#[test]
fn only_the_clusters_own_shards_are_kept_once_each() {
    let mut data: Vec<Value> = (0..100_000)
        .map(|id| json!({"shard_id": id, "up": true}))
        .collect();
    data.insert(0, json!({"shard_id": 7, "up": false}));
    let d = diag(json!({"Nonce": "n5", "Data": data}));
    let (h, strays) = d.health(&[6, 7]);
    assert_eq!(
        h.iter().map(|s| (s.shard_id, s.up)).collect::<Vec<_>>(),
        vec![(7, false), (6, true)]
    );
    assert_eq!(strays, 99_998);
}

#[test]
fn entries_without_an_id_take_their_place_in_the_shard_list() {
    let d = diag(json!({"Nonce": "n4", "Data": [{"up": true}, {"up": true}, {"up": false}]}));
    let (h, _) = d.health(&[6, 7]);
    // The third entry has no id and no place: left out, the rest kept.
    assert_eq!(
        h.iter().map(|s| (s.shard_id, s.up)).collect::<Vec<_>>(),
        vec![(6, true), (7, true)]
    );
}

#[test]
fn odd_entries_and_fields_never_void_an_answer() {
    for inner in [
        json!({"Nonce": "n5", "Data": [{"shard_id": "zero", "up": "yes", "latency": "fast"}, 7, null, {"shard_id": 1.5}]}),
        json!({"Nonce": "n5", "Data": "not a list"}),
        json!({"Nonce": "n5"}),
        json!({"Nonce": "n5", "Data": null, "extra": {"deep": [1, 2]}}),
    ] {
        let d = diag(inner.clone());
        assert_eq!(d.nonce, "n5", "{inner}");
        for s in d.health(&[0, 1, 2, 3]).0 {
            assert!(!s.up && s.latency.is_none(), "{inner}: {s:?}");
        }
    }
    // A mistyped id falls back to the entry's place in the list.
    let d = diag(json!({"Nonce": "n6", "Data": [{"up": true}, {"shard_id": "x", "up": true}]}));
    assert_eq!(
        d.health(&[8, 9])
            .0
            .iter()
            .map(|s| s.shard_id)
            .collect::<Vec<_>>(),
        vec![8, 9]
    );
}

#[test]
fn top_level_keys_are_case_insensitive_and_data_is_lenient() {
    let r =
        req(json!({"Scope": "launcher", "Action": "stop", "Args": {"ID": 2.0}, "Command_Id": 7}));
    assert_eq!(r.action, Action::Stop(2));
    assert_eq!(r.command_id.as_deref(), Some("7"));
    let r = req(json!({"scope": "launcher", "action": "action_logs", "data": "x"}));
    assert_eq!(r.action, Action::ActionLogs(Map::new()));
    let r = req(json!({"scope": "launcher", "action": "action_logs"}));
    assert_eq!(r.action, Action::ActionLogs(Map::new()));
}

#[test]
fn the_managers_echo_comes_back_as_an_echo() {
    let r = req(serde_json::from_str(&echo("e1")).expect("json"));
    assert_eq!(r.action, Action::Echo("e1".into()));
}

#[test]
fn reply_shapes() {
    let ack: Value = serde_json::from_str(&reply(Some("c9"), &json!("ok"))).expect("json");
    assert_eq!(
        ack,
        json!({"command_id": "c9", "output": "ok", "scope": "bot", "action": ""})
    );
    let all: Value = serde_json::from_str(&all_clusters_launched("r")).expect("json");
    assert_eq!(
        all,
        json!({"command_id": "r", "output": "", "scope": "bot", "action": "all_clusters_launched"})
    );
    let diag: Value = serde_json::from_str(&diag_request(2, "n")).expect("json");
    assert_eq!(diag, json!({"id": 2, "nonce": "n", "diag": true}));
}

#[test]
fn truncate_is_char_safe() {
    assert_eq!(truncate("héllo", 10), "héllo");
    assert!(truncate(&"é".repeat(100), 3).starts_with("ééé…"));
}

#[test]
fn reply_to_is_read_as_written_and_its_note_comes_back_as_answered() {
    let r = req(
        json!({"scope": "launcher", "action": "statuses", "command_id": "q", "REPLY_TO": "c:r"}),
    );
    assert_eq!(r.reply_to.as_deref(), Some("c:r"));
    let r = req(json!({"scope": "launcher", "action": "statuses", "reply_to": ["c:r"]}));
    assert_eq!(r.reply_to, None, "mistyped: none");
    let note = req(serde_json::from_str(&answered("q")).expect("json"));
    assert_eq!(
        (note.action, note.command_id.as_deref()),
        (Action::Answered, Some("q"))
    );
}

#[test]
fn channel_names_and_what_reply_to_may_name() {
    let ch = Channels("bot");
    assert_eq!(ch.name(&Channel::Main), "bot");
    assert_eq!(ch.name(&Channel::Launcher), "bot:launcher");
    assert_eq!(ch.name(&Channel::Cluster(12)), "bot:12");
    for ok in ["bot:r", "bot:launcher", "bot:a:b:c", "bot:3"] {
        assert_eq!(ch.reply_to(ok), Ok(Channel::Reply(ok.into())), "{ok}");
    }
    let long = format!("bot:{}", "x".repeat(MAX_REPLY_TO));
    for bad in [
        "bot",
        "bot:",
        "bots:r",
        "other",
        "BOT:r",
        ":bot:r",
        long.as_str(),
    ] {
        assert!(ch.reply_to(bad).is_err(), "{bad}");
    }
}
