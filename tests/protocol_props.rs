//! Property tests: whatever arrives on the channel, the parser answers
//! (a request, "not for us", or an error) and never panics.

use mewld_core::protocol::{parse, Action};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::String),
        // Words the parser looks for, so the interesting branches are hit.
        prop::sample::select(vec![
            "launcher",
            "launch_next",
            "start",
            "stop",
            "restart",
            "diag",
            "action_logs",
            "statuses",
            "num_processes",
            "rollingrestart",
            "reshard",
            "shutdown",
            "restartproc",
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let key = prop::sample::select(vec![
            "scope",
            "action",
            "args",
            "id",
            "command_id",
            "output",
            "data",
            "Nonce",
            "nonce",
            "Data",
            "shard_id",
            "up",
            "latency",
            "guilds",
            "users",
            "x",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..6).prop_map(|kv| Value::Object(
                kv.into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect::<Map<_, _>>()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(v in any_json()) {
        let _ = parse(v.to_string().as_bytes());
    }

    #[test]
    fn launcher_messages_with_arbitrary_parts_never_panic(action in any_json(), args in any_json(), output in any_json(), data in any_json()) {
        let msg = json!({"scope": "launcher", "action": action, "args": args, "output": output, "data": data});
        let _ = parse(msg.to_string().as_bytes());
    }

    #[test]
    fn diag_answers_with_arbitrary_payloads_never_panic(inner in any_json(), as_string in any::<bool>()) {
        let output = if as_string { Value::String(inner.to_string()) } else { inner };
        let msg = json!({"scope": "launcher", "action": "diag", "output": output});
        let _ = parse(msg.to_string().as_bytes());
    }

    #[test]
    fn any_cluster_id_round_trips(id in any::<u32>()) {
        let msg = json!({"scope": "launcher", "action": "stop", "args": {"id": id}});
        let parsed = parse(msg.to_string().as_bytes());
        prop_assert_eq!(parsed.ok().flatten().map(|r| r.action), Some(Action::Stop(id)));
    }
}
