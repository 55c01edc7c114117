//! The original's web API (`web_api`, docs/protocol.md §8.2), end to end: a
//! real `mewld --daemon` with fake-bot clusters on a real redis-server,
//! users logging in through the fake Discord's OAuth2 endpoints, and the
//! answers compared with samples of the original's JSON
//! (tests/data/web_api/, written from its structs: see the README there).

mod common;

use std::collections::BTreeSet;

use common::*;
use redis::Commands;
use serde_json::{json, Value};

const CLIENT_ID: &str = "424242424242424242";
const SECRET: &str = "client-secret-Zm9vYmFyYmF6";
const ALLOWED: &str = "563808552288780322";
const STRANGER: &str = "111111111111111111";
const DASHBOARD: &str = "http://dash.test:5173";
const GUARDED: [(&str, &str); 5] = [
    ("GET", "/ping"),
    ("GET", "/instance-list"),
    ("GET", "/action-logs"),
    ("GET", "/cluster-health?cid=0"),
    ("POST", "/redis/pub"),
];

/// A launched `mewld --daemon` serving the web API on `port`.
struct Web {
    f: Fixture,
    manager: Manager,
    port: u16,
}

/// The web API keys for an API on `port` (its own `redirect_url`), with
/// [`ALLOWED`] allowed and [`DASHBOARD`] listed.
fn web_keys(port: u16) -> String {
    format!(
        "web_api: 127.0.0.1:{port}\nweb_api_origins: [\"{DASHBOARD}\"]\noauth:\n  client_id: {CLIENT_ID}\n  client_secret: \"{SECRET}\"\n  redirect_url: http://127.0.0.1:{port}\nallowed_ids:\n  - \"{ALLOWED}\"\nping_interval: 1\n"
    )
}

/// The fake Discord's application for an API on `port`, giving `codes`
/// (login code, Discord user id).
fn app(port: u16, codes: &[(&str, &str)]) -> OAuthApp {
    OAuthApp {
        client_id: CLIENT_ID.into(),
        client_secret: SECRET.into(),
        redirect_uri: format!("http://127.0.0.1:{port}/confirm"),
        codes: codes
            .iter()
            .map(|(c, u)| (c.to_string(), u.to_string()))
            .collect(),
    }
}

impl Web {
    /// Two clusters (4 shards) launched, the API on a free port.
    fn start(test: &str, codes: &[(&str, &str)]) -> Web {
        let port = free_port();
        let gateway = vec![Answer::gateway(4, 900, 0)];
        let f = Fixture::with_discord(
            test,
            FakeDiscord::start_with_oauth(gateway, app(port, codes)),
        );
        let mut manager = Manager::start(&f.config(&web_keys(port)), &f.redis, &f.bot);
        manager.wait_launched(&f.listener);
        Web { f, manager, port }
    }

    fn ask(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpAnswer {
        http_request(self.port, method, path, headers, body)
            .unwrap_or_else(|| panic!("no answer to {method} {path}"))
    }

    fn get(&self, path: &str, token: &str) -> HttpAnswer {
        self.ask("GET", path, &[("X-Session", token)], b"")
    }

    /// Logs in with `code` as Discord would send the user back; the token
    /// from the session cookie.
    fn login(&self, code: &str) -> String {
        let answer = self.get(&format!("/confirm?code={code}&state="), "");
        assert_eq!(answer.status, 302, "{answer:?}");
        let cookie = answer.header("set-cookie").expect("a session cookie");
        let token = cookie
            .strip_prefix("session=")
            .and_then(|c| c.split(';').next())
            .expect("session=<token>");
        token.to_string()
    }

    fn session_key(&self, token: &str) -> String {
        format!("{}/web/session/{token}", self.f.ch)
    }

    /// `GET /instance-list` once it satisfies `ready`.
    fn instance_list_when(&self, token: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        wait_for_seen(what, DEADLINE, || {
            let answer = self.get("/instance-list", token);
            let list: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
            if answer.status == 200 && ready(&list) {
                Ok(list)
            } else {
                Err(answer.body)
            }
        })
    }

    /// Everything mewld printed.
    fn output(&self) -> String {
        format!(
            "{}\n{}",
            self.manager.stdout().join("\n"),
            self.manager.stderr().join("\n")
        )
    }
}

fn sample(name: &str) -> Value {
    let path = format!("{}/tests/data/web_api/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A JSON value's type, as a dashboard's code meets it.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Fails unless `ours` has `sample`'s shape: the same keys, each value of
/// the same type, all the way down. Arrays of one length are compared
/// element by element, others against the sample's first element.
fn same_shape(at: &str, sample: &Value, ours: &Value) {
    match (sample, ours) {
        (Value::Object(s), Value::Object(o)) => {
            let (sk, ok): (BTreeSet<_>, BTreeSet<_>) = (s.keys().collect(), o.keys().collect());
            assert_eq!(sk, ok, "{at}: the original's fields against ours");
            for (k, v) in s {
                same_shape(&format!("{at}.{k}"), v, &o[k]);
            }
        }
        (Value::Array(s), Value::Array(o)) => {
            for (i, v) in o.iter().enumerate() {
                let like = if s.len() == o.len() {
                    s.get(i)
                } else {
                    s.first()
                };
                if let Some(like) = like {
                    same_shape(&format!("{at}[{i}]"), like, v);
                }
            }
        }
        (s, o) => assert_eq!(kind(s), kind(o), "{at}: the original's {s} against our {o}"),
    }
}

/// A time as Go wrote one: RFC 3339, here in UTC.
fn is_go_time(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    s.len() >= 20 && s.as_bytes()[10] == b'T' && s.ends_with('Z') && s[..4].parse::<u32>().is_ok()
}

#[test]
fn logins_sessions_and_every_route_with_and_without_one() {
    let w = Web::start(
        "web-login",
        &[
            ("good", ALLOWED),
            ("again", ALLOWED),
            ("stranger", STRANGER),
        ],
    );
    let banner = w.get("/", "");
    assert_eq!(banner.status, 200);
    assert!(banner.body.starts_with("Mewld instance up"), "{banner:?}");

    // Without a session every route behind the login sends to /login.
    for (method, path) in GUARDED {
        let answer = w.ask(method, path, &[], b"{}");
        assert_eq!(answer.status, 302, "{method} {path}: {answer:?}");
        let location = answer.header("location").unwrap_or("");
        assert!(
            location.starts_with("/login?redirect=/"),
            "{method} {path}: {location}"
        );
    }
    let login = w.get("/login", "");
    assert_eq!(login.status, 302);
    let to = login.header("location").expect("to Discord");
    assert!(
        to.starts_with("https://discord.com/api/oauth2/authorize?"),
        "{to}"
    );
    for part in [
        format!("client_id={CLIENT_ID}"),
        format!("redirect_uri=http%3A%2F%2F127.0.0.1%3A{}%2Fconfirm", w.port),
        "response_type=code".into(),
        "scope=identify".into(),
    ] {
        assert!(to.contains(&part), "{part} in {to}");
    }

    // A user not in allowed_ids is refused, and gets no session.
    let refused = w.get("/confirm?code=stranger&state=", "");
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (403, "User not allowed")
    );
    assert!(refused.header("set-cookie").is_none());
    let sessions: Vec<String> =
        w.f.redis
            .conn()
            .keys(format!("{}/web/session/*", w.f.ch))
            .expect("KEYS");
    assert!(sessions.is_empty(), "{sessions:?}");

    // An allowed one gets a session: a cookie, and a key that expires.
    let answer = w.get("/confirm?code=good&state=", "");
    assert_eq!(answer.status, 302, "{answer:?}");
    assert_eq!(
        answer.header("location"),
        Some(format!("http://127.0.0.1:{}/", w.port).as_str())
    );
    let cookie = answer.header("set-cookie").expect("a cookie");
    for part in ["; Path=/", "; Max-Age=1800", "; HttpOnly", "; SameSite=Lax"] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    let token = w.login("again");
    let ttl: i64 = w.f.redis.conn().ttl(w.session_key(&token)).expect("TTL");
    assert!(
        (1700..=1800).contains(&ttl),
        "the session lives 30 minutes: {ttl}"
    );
    let used = w.get("/confirm?code=good&state=", "");
    assert_eq!(used.status, 400, "a code works once: {used:?}");

    // With the session, as header or cookie, every route answers.
    let cookie = format!("theme=dark; session={token}");
    for headers in [
        [("X-Session", token.as_str())],
        [("Cookie", cookie.as_str())],
    ] {
        for (method, path) in GUARDED {
            let body = json!({"scope": "bot", "action": "web_test_ping"}).to_string();
            let answer = wait_for_seen(&format!("{method} {path}"), DEADLINE, || {
                let a = w.ask(method, path, &headers, body.as_bytes());
                if a.status == 200 {
                    Ok(a)
                } else {
                    Err(a)
                }
            });
            if path == "/ping" {
                assert_eq!(answer.body, "pong");
            }
        }
    }
    let forged = w.get("/ping", &"x".repeat(64));
    assert_eq!(forged.status, 302, "an unknown token is no session");

    // The secret went to Discord, and neither it nor the access token was
    // ever printed.
    let token_requests: Vec<Request> =
        w.f.discord
            .requests()
            .into_iter()
            .filter(|r| r.path == "/api/oauth2/token")
            .collect();
    assert!(
        !token_requests.is_empty()
            && token_requests
                .iter()
                .all(|r| r.body.contains(&format!("client_secret={SECRET}"))),
        "{} token requests: {token_requests:?}",
        token_requests.len()
    );
    let said = w.output();
    for secret in [SECRET, "fake-access-token", &token] {
        assert!(!said.contains(secret), "{secret} was printed");
    }

    // An expired session is no session.
    let _: bool =
        w.f.redis
            .conn()
            .pexpire(w.session_key(&token), 1)
            .expect("PEXPIRE");
    wait_for("the session key to expire", DEADLINE, || {
        let left: bool =
            w.f.redis
                .conn()
                .exists(w.session_key(&token))
                .expect("EXISTS");
        (!left).then_some(())
    });
    let expired = w.get("/ping", &token);
    assert_eq!(expired.status, 302, "{expired:?}");
}

#[test]
fn answers_have_the_originals_shapes() {
    let w = Web::start("web-shapes", &[("good", ALLOWED)]);
    let token = w.login("good");
    // Both clusters answer health pings; then cluster 1 is stopped.
    w.instance_list_when(&token, "both clusters' health", |l| {
        (0..2).all(|i| l["Instances"][i]["ClusterHealth"].is_array())
    });
    w.f.redis.publish(
        &w.f.ch,
        &json!({"scope": "launcher", "action": "stop", "args": {"id": 1}}),
    );
    let list = w.instance_list_when(&token, "cluster 1 stopped", |l| {
        l["Instances"][1]["Active"] == false && l["Instances"][1]["ClusterHealth"].is_null()
    });
    same_shape("InstanceList", &sample("instance_list.json"), &list);
    assert_eq!(list["ShardCount"], 4);
    assert_eq!(list["FullyUp"], true);
    assert_eq!(list["RollRestarting"], false);
    assert_eq!(list["Dir"], json!(w.f.bot.path().display().to_string()));
    assert_eq!(
        list["Map"],
        json!([{"ID": 0, "Name": "cluster-0", "Shards": [0, 1]}, {"ID": 1, "Name": "cluster-1", "Shards": [2, 3]}])
    );
    assert_eq!(
        list["GetGatewayBot"]["session_start_limit"]["remaining"],
        900
    );
    assert_eq!(list["GetGatewayBot"]["url"], "wss://gateway.discord.gg");
    let (up, down) = (&list["Instances"][0], &list["Instances"][1]);
    assert_eq!(
        (
            up["ClusterID"].clone(),
            up["Active"].clone(),
            up["LaunchedFully"].clone()
        ),
        (json!(0), json!(true), json!(true))
    );
    assert_eq!(up["Shards"], json!([0, 1]));
    assert_eq!(
        up["ClusterHealth"].as_array().map(Vec::len),
        Some(2),
        "{up}"
    );
    assert_eq!(
        (down["LaunchedFully"].clone(), down["SessionID"].clone()),
        (json!(false), json!(""))
    );
    for t in [
        &list["LastClusterStartedAt"],
        &up["StartedAt"],
        &up["LastChecked"],
        &down["StartedAt"],
    ] {
        assert!(is_go_time(t), "{t}");
    }

    let health = w.get("/cluster-health?cid=0", &token);
    assert_eq!(health.status, 200, "{health:?}");
    let health: Value = serde_json::from_str(&health.body).expect("JSON");
    same_shape("cluster-health", &sample("cluster_health.json"), &health);
    assert_eq!(health["health"][1]["shard_id"], 1);
    let errors = sample("cluster_health_errors.json");
    for (cid, cause) in [
        ("x", "not a number"),
        ("9", "no such cluster"),
        ("-1", "no such cluster"),
        ("1", "not launched"),
    ] {
        let answer = w.get(&format!("/cluster-health?cid={cid}"), &token);
        assert_eq!(answer.status, 400, "{cid}");
        assert_eq!(
            answer.body, errors[cause],
            "cid={cid}: the original's body, byte for byte"
        );
    }
    // No cid is cluster 0, as in the original.
    assert_eq!(w.get("/cluster-health", &token).status, 200);

    let logs = w.get("/action-logs", &token);
    assert_eq!(logs.status, 200);
    let logs: Value = serde_json::from_str(&logs.body).expect("JSON");
    let entries = logs.as_array().expect("an array");
    let stored = w.f.redis.action_log(&w.f.ch);
    // Read before the stored log: what it answered is where that starts.
    let n = entries.len();
    assert!(
        n > 0 && n <= stored.len() && entries[..] == stored[..n],
        "the log as stored, oldest first: {n} answered, {} stored",
        stored.len()
    );
    let like = &sample("action_logs.json")[0];
    for entry in entries {
        same_shape("an entry's ts", &like["ts"], &entry["ts"]);
        assert!(entry.is_object() && entry["event"].is_string(), "{entry}");
    }
    let events: Vec<&str> = entries.iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(
        events.contains(&"operator_action") && events.contains(&"cluster_stopped"),
        "{events:?}"
    );
}

#[test]
fn publishing_cors_and_the_dashboards_redirect() {
    let w = Web::start(
        "web-publish",
        &[("good", ALLOWED), ("dash", ALLOWED), ("foreign", ALLOWED)],
    );
    let token = w.login("good");
    let session = [("X-Session", token.as_str())];

    // A publish reaches a subscriber once, and is in the action log and
    // shown at once to who follows the engine.
    let follow = LogsFollower::start(&w.manager.config_path);
    let message = json!({"scope": "bot", "action": "from_the_dashboard", "n": 7});
    let answer = w.ask(
        "POST",
        "/redis/pub",
        &session,
        message.to_string().as_bytes(),
    );
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    w.f.listener
        .wait("the published message", |m| *m == message);
    let entry = wait_for("the publish in the action log", DEADLINE, || {
        let log = w.f.redis.action_log(&w.f.ch);
        events(&log, "operator_action")
            .into_iter()
            .find(|e| e["action"] == "publish")
    });
    assert_eq!(
        (entry["via"].clone(), entry["user"].clone()),
        (json!("web"), json!(ALLOWED)),
        "{entry}"
    );
    follow.wait_for_line("logs -f to show the publish", ALLOWED);

    // Too large a body is refused, and nothing is published.
    let before = w.f.listener.len();
    let big = vec![b'x'; 1024 * 1024 + 1];
    let answer = w.ask("POST", "/redis/pub", &session, &big);
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.body.contains("over 1024 KiB"), "{}", answer.body);
    let fits = json!({"scope": "bot", "action": "after_the_big_one"});
    assert_eq!(
        w.ask("POST", "/redis/pub", &session, fits.to_string().as_bytes())
            .status,
        200
    );
    w.f.listener.wait("the message after", |m| *m == fits);
    let since = w.f.listener.since(before);
    assert!(
        since.iter().all(|m| *m != Value::Null),
        "the large body was published: {} messages",
        since.len()
    );
    let publishes = events(&w.f.redis.action_log(&w.f.ch), "operator_action")
        .into_iter()
        .filter(|e| e["action"] == "publish")
        .count();
    assert_eq!(publishes, 2, "one entry per publish");

    // CORS answers the listed origin only; a foreign page cannot publish.
    let listed = [("Origin", DASHBOARD), ("X-Session", token.as_str())];
    let answer = w.ask("GET", "/ping", &listed, b"");
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some(DASHBOARD)
    );
    assert_eq!(
        answer.header("access-control-allow-credentials"),
        Some("true")
    );
    let preflight = w.ask(
        "OPTIONS",
        "/redis/pub",
        &[
            ("Origin", DASHBOARD),
            ("Access-Control-Request-Headers", "x-session"),
        ],
        b"",
    );
    assert_eq!(preflight.status, 200);
    assert!(preflight
        .header("access-control-allow-headers")
        .unwrap_or("")
        .contains("X-Session"));
    let foreign = [
        ("Origin", "https://evil.test"),
        ("X-Session", token.as_str()),
    ];
    let answer = w.ask("GET", "/ping", &foreign, b"");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("access-control-allow-origin"), None);
    assert_eq!(w.ask("OPTIONS", "/ping", &foreign[..1], b"").status, 403);
    let answer = w.ask("POST", "/redis/pub", &foreign, fits.to_string().as_bytes());
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(answer.body.contains("web_api_origins"), "{}", answer.body);
    let answer = w.ask("POST", "/redis/pub", &listed, fits.to_string().as_bytes());
    assert_eq!(answer.status, 200, "{answer:?}");

    // The dashboard's login: /login says where to go, and /confirm sends
    // the session back to a listed dashboard only.
    let instance = format!("http://127.0.0.1:{}", w.port);
    let state = format!("api@{DASHBOARD}@{instance}");
    let answer = w.get(&format!("/login?api={state}"), "");
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .body
            .contains("state=api%40http%3A%2F%2Fdash.test%3A5173%40"),
        "{}",
        answer.body
    );
    let answer = w.get(&format!("/confirm?code=dash&state={state}"), "");
    assert_eq!(answer.status, 302, "{answer:?}");
    let to = answer.header("location").expect("a redirect");
    let sent = to
        .strip_prefix(&format!("{DASHBOARD}/ss?session="))
        .unwrap_or_else(|| panic!("to the dashboard: {to}"));
    let (sent, rest) = sent.split_once('&').expect("and the instance");
    assert_eq!(
        rest,
        "instanceUrl=http%3A%2F%2F127.0.0.1%3A".to_string() + &w.port.to_string()
    );
    assert_eq!(
        w.get("/ping", sent).body,
        "pong",
        "the dashboard's session works"
    );
    let asked_before = w.f.discord.requests().len();
    let evil = format!("api@https://evil.test@{instance}");
    assert_eq!(w.get(&format!("/login?api={evil}"), "").status, 400);
    let answer = w.get(&format!("/confirm?code=foreign&state={evil}"), "");
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(
        answer.body.contains("web_api_origins") && answer.header("set-cookie").is_none(),
        "{answer:?}"
    );
    assert_eq!(
        w.f.discord.requests().len(),
        asked_before,
        "a refused state spends no code"
    );
}

#[test]
fn a_start_with_web_api_and_without_its_keys_is_refused_naming_them() {
    let port = free_port();
    let f = Fixture::new("web-refused", vec![Answer::gateway(2, 900, 0)]);
    let keys = web_keys(port);
    let no_oauth: String = keys
        .lines()
        .filter(|l| {
            !l.starts_with("oauth") && !l.starts_with("  client") && !l.starts_with("  redirect")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let no_ids = keys.replace(&format!("allowed_ids:\n  - \"{ALLOWED}\"\n"), "");
    for (text, key) in [(no_oauth, "oauth"), (no_ids, "allowed_ids")] {
        let mut manager = Manager::start(&f.config(&text), &f.redis, &f.bot);
        assert_eq!(
            manager.wait_exit(),
            Some(2),
            "{}",
            manager.stderr().join("\n")
        );
        let said = manager.stderr().join("\n");
        assert!(
            said.contains(&format!("key `{key}`")) && said.contains("web_api"),
            "{said}"
        );
        assert!(f.bot.records().is_empty(), "no cluster started");
    }
    // check-config shows the API and hides the secret.
    let (code, said) = check_config_with(&web_keys(port));
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!("web API:           http://127.0.0.1:{port}")),
        "{said}"
    );
    assert!(
        said.contains("secret hidden") && !said.contains(SECRET),
        "{said}"
    );
}

#[test]
fn every_host_of_a_fleet_answers_for_the_fleet_and_publishes_once() {
    // One config for both hosts: host 1 serves on the port plus one, and
    // the login comes back to host 0's address; the session is in Redis,
    // so it works on either.
    let port = free_ports(2);
    let gateway = vec![Answer::gateway(8, 900, 0)];
    let discord = FakeDiscord::start_with_oauth(gateway, app(port, &[("good", ALLOWED)]));
    let f = Fixture::with_discord("web-fleet", discord);
    let config = f.config(&web_keys(port));
    let _a = f.fleet_host(&config, "a", 0, 2, &[]);
    let mut b = f.fleet_host(&config, "b", 1, 2, &[]);
    b.wait_launched(&f.listener);
    let w = Web {
        f,
        manager: b,
        port,
    };
    let token = w.login("good");
    let on_b = Web {
        port: port + 1,
        ..w
    };

    let list = on_b.instance_list_when(&token, "every cluster of the fleet, from host b", |l| {
        let instances = l["Instances"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        instances.len() == 4
            && instances
                .iter()
                .all(|i| i["LaunchedFully"] == true && i["ClusterHealth"].is_array())
    });
    assert_eq!(list["ShardCount"], 8);
    let health = wait_for_seen("cluster 0 (host a's) health from host b", DEADLINE, || {
        let a = on_b.get("/cluster-health?cid=0", &token);
        if a.status == 200 {
            Ok(a)
        } else {
            Err(a)
        }
    });
    assert!(
        health.body.starts_with("{\"health\":[{\"shard_id\":0"),
        "{}",
        health.body
    );

    let message = json!({"scope": "bot", "action": "from_host_b"});
    let after = json!({"scope": "bot", "action": "after_it"});
    for m in [&message, &after] {
        let answer = on_b.ask(
            "POST",
            "/redis/pub",
            &[("X-Session", &token)],
            m.to_string().as_bytes(),
        );
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    // The second publish follows the first on one connection: once it is
    // heard, so is every copy of the first that anybody published.
    on_b.f.listener.wait("the message after", |m| *m == after);
    let heard = on_b
        .f
        .listener
        .all()
        .iter()
        .filter(|m| **m == message)
        .count();
    assert_eq!(heard, 1, "published once");
    let log = on_b.f.redis.action_log(&on_b.f.ch);
    let publishes: Vec<Value> = events(&log, "operator_action")
        .into_iter()
        .filter(|e| e["action"] == "publish")
        .collect();
    assert_eq!(publishes.len(), 2, "{publishes:?}");
    assert!(publishes.iter().all(|e| e["host"] == "b"), "{publishes:?}");
}
