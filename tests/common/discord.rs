//! A local fake of Discord's Get Gateway Bot.

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
}

/// A local HTTP server that plays Discord's `/api/gateway/bot`. It gives
/// `answers` in order, then repeats the last one, and records each request.
pub struct FakeDiscord {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub authorization: Option<String>,
    pub user_agent: Option<String>,
    pub at: std::time::SystemTime,
}

impl FakeDiscord {
    pub fn start(answers: Vec<Answer>) -> FakeDiscord {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("fake discord");
        let port = server.server_addr().to_ip().expect("ip addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        thread::spawn(move || {
            for (served, req) in server.incoming_requests().enumerate() {
                let header = |name: &'static str| {
                    req.headers()
                        .iter()
                        .find(|h| h.field.equiv(name))
                        .map(|h| h.value.to_string())
                };
                log.lock().expect("lock").push(Request {
                    path: req.url().to_string(),
                    authorization: header("Authorization"),
                    user_agent: header("User-Agent"),
                    at: std::time::SystemTime::now(),
                });
                let answer = answers[served.min(answers.len() - 1)].clone();
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
