//! A local fake of Discord: Get Gateway Bot, and the OAuth2 endpoints the
//! web API's login uses (`/api/oauth2/token`, `/api/users/@me`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::json;

/// One canned answer of the fake Discord.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<&'static str>,
}

impl Answer {
    pub fn gateway(shards: u32, remaining: u32, reset_after_ms: u64) -> Answer {
        Answer::gateway_with(shards, remaining, reset_after_ms, 1)
    }

    /// Get Gateway Bot for a bot whose shards may identify `max_concurrency`
    /// at a time.
    pub fn gateway_with(
        shards: u32,
        remaining: u32,
        reset_after_ms: u64,
        max_concurrency: u32,
    ) -> Answer {
        Answer {
            status: 200,
            body: json!({
                "url": "wss://gateway.discord.gg",
                "shards": shards,
                "session_start_limit": {"total": 1000, "remaining": remaining, "reset_after": reset_after_ms, "max_concurrency": max_concurrency}
            })
            .to_string(),
            retry_after: None,
        }
    }

    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            body: json!({"message": "nope", "code": 0}).to_string(),
            retry_after: None,
        }
    }

    fn json(status: u16, body: serde_json::Value) -> Answer {
        Answer {
            status,
            body: body.to_string(),
            retry_after: None,
        }
    }
}

/// The Discord application of a web API login, as the fake knows it: its
/// credentials, where it sends users back, and which login code Discord
/// would give which user (each code works once, as Discord's).
#[derive(Clone, Default)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    /// Login code → Discord user id.
    pub codes: Vec<(String, String)>,
}

/// A local HTTP server that plays Discord. `/api/gateway/bot` (and any path
/// but the OAuth2 ones) gives `answers` in order, then repeats the last
/// one; every request is recorded.
pub struct FakeDiscord {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub authorization: Option<String>,
    pub user_agent: Option<String>,
    /// The body as text (the OAuth2 token request's form).
    pub body: String,
    pub at: std::time::SystemTime,
}

/// The OAuth2 side's state: codes not used yet, and the access tokens it
/// granted, each with its user.
struct Grants {
    app: OAuthApp,
    tokens: HashMap<String, String>,
}

impl FakeDiscord {
    pub fn start(answers: Vec<Answer>) -> FakeDiscord {
        Self::start_with_oauth(answers, OAuthApp::default())
    }

    /// A fake that also plays `app`'s side of Discord's OAuth2.
    pub fn start_with_oauth(answers: Vec<Answer>, app: OAuthApp) -> FakeDiscord {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("fake discord");
        let port = server.server_addr().to_ip().expect("ip addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        thread::spawn(move || {
            let mut grants = Grants {
                app,
                tokens: HashMap::new(),
            };
            let mut served = 0;
            for mut req in server.incoming_requests() {
                let header = |name: &'static str| {
                    req.headers()
                        .iter()
                        .find(|h| h.field.equiv(name))
                        .map(|h| h.value.to_string())
                };
                let (authorization, user_agent) = (header("Authorization"), header("User-Agent"));
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let path = req.url().to_string();
                let answer = match path.as_str() {
                    "/api/oauth2/token" => grants.token(&body),
                    "/api/users/@me" => grants.me(authorization.as_deref()),
                    _ => {
                        served += 1;
                        answers[(served - 1).min(answers.len() - 1)].clone()
                    }
                };
                log.lock().expect("lock").push(Request {
                    path,
                    authorization,
                    user_agent,
                    body,
                    at: std::time::SystemTime::now(),
                });
                let mut resp = tiny_http::Response::from_string(answer.body)
                    .with_status_code(answer.status)
                    .with_header(
                        tiny_http::Header::from_bytes("Content-Type", "application/json")
                            .expect("header"),
                    );
                if let Some(after) = answer.retry_after {
                    resp.add_header(
                        tiny_http::Header::from_bytes("Retry-After", after).expect("header"),
                    );
                }
                let _ = req.respond(resp);
            }
        });
        FakeDiscord {
            url: format!("http://127.0.0.1:{port}"),
            requests,
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }
}

impl Grants {
    /// `POST /api/oauth2/token`: a code of the app's, once, for an access
    /// token, if the form names the app, its secret and its redirect.
    fn token(&mut self, form: &str) -> Answer {
        let form: HashMap<String, String> = url::form_urlencoded::parse(form.as_bytes())
            .into_owned()
            .collect();
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let app = &self.app;
        if field("client_id") != app.client_id || field("client_secret") != app.client_secret {
            return Answer::json(401, json!({"error": "invalid_client"}));
        }
        if field("grant_type") != "authorization_code" || field("redirect_uri") != app.redirect_uri
        {
            return Answer::json(400, json!({"error": "invalid_request"}));
        }
        let Some(at) = app.codes.iter().position(|(c, _)| c == field("code")) else {
            return Answer::json(
                400,
                json!({"error": "invalid_grant", "error_description": "Invalid \"code\" in request."}),
            );
        };
        let (code, user) = self.app.codes.remove(at);
        let token = format!("fake-access-token-{code}");
        self.tokens.insert(token.clone(), user);
        Answer::json(
            200,
            json!({"access_token": token, "token_type": "Bearer", "expires_in": 604800, "refresh_token": "fake-refresh", "scope": "identify"}),
        )
    }

    /// `GET /api/users/@me` with a token it granted.
    fn me(&self, authorization: Option<&str>) -> Answer {
        let user = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .and_then(|t| self.tokens.get(t));
        match user {
            Some(id) => Answer::json(
                200,
                json!({"id": id, "username": format!("user{id}"), "discriminator": "0", "avatar": null}),
            ),
            None => Answer::json(401, json!({"message": "401: Unauthorized", "code": 0})),
        }
    }
}
