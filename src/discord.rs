//! Get Gateway Bot (docs/protocol.md §3): how many shards Discord recommends and
//! how many session starts are left. Retried with backoff: each failed
//! attempt is one log line (attempt n of m, a short cause, when the next
//! try is), and the last failure one error that says where it asked and
//! what to check. The token is sent, never shown: no message holds a
//! header, and a `proxy`'s password is masked. The web API's login
//! (`web/oauth.rs`) shares the client's settings and bounded reading.

use std::fmt;
use std::time::{Duration, Instant};

use crate::config::Token;
use mewld_core::cluster_map::MAX_SHARDS;
use mewld_core::model::GatewayBot;

pub const DISCORD_API: &str = "https://discord.com";
pub(crate) const USER_AGENT: &str = concat!(
    "DiscordBot (https://github.com/mewld/mewld, ",
    env!("CARGO_PKG_VERSION"),
    ")"
);
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// One attempt's time, connecting and reading included.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read. Discord's is about 150 bytes; a proxy that answers
/// with a page or a stream must not fill the memory.
const MAX_BODY: usize = 64 * 1024;

/// Where Get Gateway Bot is asked: Discord, or the config's `proxy`.
#[derive(Debug, Clone)]
pub struct Target {
    url: String,
    proxy: bool,
}

impl Target {
    fn new(proxy: Option<&str>) -> Target {
        Target {
            url: format!("{}/api/gateway/bot", proxy.unwrap_or(DISCORD_API)),
            proxy: proxy.is_some(),
        }
    }

    /// What to check when it cannot be used.
    fn advice(&self) -> &'static str {
        if self.proxy {
            "check `proxy` in the config: is it right, up and reachable from this host?"
        } else {
            "check this host's way to discord.com (DNS, firewall, an outbound proxy), or set `proxy`"
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = mewld_core::config::redacted_url(&self.url);
        if self.proxy {
            write!(f, "{url} (the config's `proxy`)")
        } else {
            f.write_str(&url)
        }
    }
}

/// How often, and for how long, Discord was asked.
#[derive(Debug, Clone, Copy)]
pub struct Tries {
    attempts: u32,
    over: Duration,
}

impl fmt::Display for Tries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.attempts {
            1 => f.write_str("1 attempt"),
            n => write!(f, "{n} attempts over {}", seconds(self.over)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    #[error("Discord rejected the bot token (401 Unauthorized): check `token` in the config or the MTOKEN variable")]
    InvalidToken,
    #[error("{target} answered {status} (after {tries}){body}; {}", target.advice())]
    Status {
        target: Target,
        status: String,
        tries: Tries,
        /// The start of the answer, with its `: `, or nothing.
        body: String,
    },
    #[error("no answer from {target} after {tries} (the last: {cause}); {}", target.advice())]
    Unreachable {
        target: Target,
        tries: Tries,
        cause: String,
    },
    #[error("cannot make an HTTP client to ask Discord: {0}")]
    Client(String),
    #[error("Discord's answer from {target} was not understood: {problem}")]
    Decode { target: Target, problem: String },
    #[error("Discord's answer from {target} is over {} KiB; is `proxy` pointing at Discord's API?", MAX_BODY / 1024)]
    TooLarge { target: Target },
    #[error("Discord's answer from {target} recommends {shards} shards; mewld accepts 1 to {MAX_SHARDS} (is `proxy` pointing at Discord's API?)")]
    ImplausibleShards { target: Target, shards: u32 },
}

/// Why one attempt failed.
enum Failure {
    /// Discord answered, but not with the gateway.
    Status {
        status: reqwest::StatusCode,
        body: String,
        retry_after: Option<Duration>,
    },
    /// No answer: the short cause ([`short_cause`]).
    Network(String),
}

impl Failure {
    fn retryable(&self) -> bool {
        match self {
            Failure::Status { status, .. } => status.as_u16() == 429 || status.is_server_error(),
            Failure::Network(_) => true,
        }
    }

    /// The log line's cause: short, without the URL.
    fn cause(&self) -> String {
        match self {
            Failure::Status { status, .. } => format!("answered {status}"),
            Failure::Network(cause) => cause.clone(),
        }
    }

    fn into_error(self, target: Target, tries: Tries) -> DiscordError {
        match self {
            Failure::Status { status, body, .. } => DiscordError::Status {
                target,
                status: status.to_string(),
                tries,
                body: match mewld_core::protocol::truncate(body.trim(), 200) {
                    b if b.is_empty() => b,
                    b => format!(": {b}"),
                },
            },
            Failure::Network(cause) => DiscordError::Unreachable {
                target,
                tries,
                cause,
            },
        }
    }
}

/// Fetches `/api/gateway/bot` from `proxy` (or Discord itself), retrying
/// 429 and 5xx answers and network errors with backoff, honouring
/// `Retry-After`. A 401 fails at once.
pub async fn get_gateway_bot(
    proxy: Option<&str>,
    token: &Token,
) -> Result<GatewayBot, DiscordError> {
    let target = Target::new(proxy);
    let client = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| DiscordError::Client(short_cause(&e)))?;
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let failure = match ask(&client, &target, token).await {
            Ok(answer) => return answer,
            Err(failure) => failure,
        };
        if !failure.retryable() || attempt >= ATTEMPTS {
            let tries = Tries {
                attempts: attempt,
                over: started.elapsed(),
            };
            return Err(failure.into_error(target, tries));
        }
        let wait = match &failure {
            Failure::Status { retry_after, .. } => retry_after.unwrap_or(backoff),
            Failure::Network(_) => backoff,
        }
        .min(MAX_RETRY_AFTER);
        tracing::warn!(
            "Get Gateway Bot at {target}: attempt {attempt} of {ATTEMPTS} failed: {}; next try in {}",
            failure.cause(),
            seconds(wait)
        );
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        attempt += 1;
    }
}

/// One attempt: the answer (or an error no retry can mend), or why it
/// failed.
async fn ask(
    client: &reqwest::Client,
    target: &Target,
    token: &Token,
) -> Result<Result<GatewayBot, DiscordError>, Failure> {
    let resp = client
        .get(&target.url)
        .header("Authorization", format!("Bot {}", token.expose()))
        .send()
        .await
        .map_err(|e| Failure::Network(short_cause(&e)))?;
    let status = resp.status();
    if status.is_success() {
        return decode(resp, target).await;
    }
    if status.as_u16() == 401 {
        return Ok(Err(DiscordError::InvalidToken));
    }
    let retry_after = retry_after(resp.headers());
    // Only the start of an error body is shown anyway.
    let body = match read_capped(resp).await {
        Ok((body, _)) => String::from_utf8_lossy(&body).into_owned(),
        Err(_) => String::new(),
    };
    Err(Failure::Status {
        status,
        body,
        retry_after,
    })
}

/// What went wrong with a request, in a few words: its kind and the
/// innermost cause (the system's or the TLS library's own words). The
/// errors around that one each repeat the URL.
pub(crate) fn short_cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {}", seconds(TIMEOUT));
    }
    let kind = if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else {
        "the request failed"
    };
    let mut innermost = std::error::Error::source(e);
    while let Some(inner) = innermost.and_then(std::error::Error::source) {
        innermost = Some(inner);
    }
    match innermost {
        Some(cause) => format!("{kind}: {cause}"),
        None => kind.to_string(),
    }
}

/// `d` for a person: `0.5 s`, `4 s`, `7.5 s`.
fn seconds(d: Duration) -> String {
    let tenths = (d.as_millis() + 50) / 100;
    match tenths % 10 {
        0 => format!("{} s", tenths / 10),
        t => format!("{}.{t} s", tenths / 10),
    }
}

/// A successful answer's body as a [`GatewayBot`], within bounds; an
/// answer that broke off is a failure to retry.
async fn decode(
    resp: reqwest::Response,
    target: &Target,
) -> Result<Result<GatewayBot, DiscordError>, Failure> {
    let (body, complete) = read_capped(resp)
        .await
        .map_err(|e| Failure::Network(short_cause(&e)))?;
    let target = target.clone();
    if !complete {
        return Ok(Err(DiscordError::TooLarge { target }));
    }
    let gateway: GatewayBot = match serde_json::from_slice(&body) {
        Ok(g) => g,
        Err(e) => {
            let problem = e.to_string();
            return Ok(Err(DiscordError::Decode { target, problem }));
        }
    };
    if !(1..=MAX_SHARDS).contains(&gateway.shards) {
        let shards = gateway.shards;
        return Ok(Err(DiscordError::ImplausibleShards { target, shards }));
    }
    Ok(Ok(gateway))
}

/// The body, up to [`MAX_BODY`] bytes, and whether that was all of it.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Ok((body, false));
    }
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_BODY - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

/// `Retry-After` in seconds (possibly fractional, as Discord sends it).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: f64 = headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn retry_after_parses_fractions() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("1.5"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn seconds_are_said_to_the_tenth() {
        let said: Vec<String> = [500, 1000, 4000, 7_530, 60_000]
            .into_iter()
            .map(|ms| seconds(Duration::from_millis(ms)))
            .collect();
        assert_eq!(said, ["0.5 s", "1 s", "4 s", "7.5 s", "60 s"]);
    }

    /// A port nothing listens on: the cause is short and names no URL,
    /// and the final error names the URL once, the proxy and what to check.
    #[tokio::test]
    async fn a_refused_connection_is_one_short_cause() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let url = format!("http://{}", closed.local_addr().expect("its address"));
        drop(closed);
        let e = reqwest::Client::new()
            .get(format!("{url}/api/gateway/bot"))
            .send()
            .await
            .expect_err("nothing listens");
        let cause = short_cause(&e);
        assert!(cause.starts_with("cannot connect: "), "{cause}");
        assert!(!cause.contains(&url), "{cause}");
        let with_password = url.replace("http://", "http://me:hunter2@");
        let tries = Tries {
            attempts: 5,
            over: Duration::from_millis(7_520),
        };
        let text = Failure::Network(cause.clone())
            .into_error(Target::new(Some(&with_password)), tries)
            .to_string();
        assert_eq!(text.matches("/api/gateway/bot").count(), 1, "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("5 attempts over 7.5 s"), "{text}");
        assert!(text.contains(&cause), "{text}");
        assert!(text.contains("check `proxy`"), "{text}");
    }

    #[test]
    fn an_error_status_says_its_body_once_and_what_to_check() {
        let failure = |body: &str| Failure::Status {
            status: reqwest::StatusCode::BAD_GATEWAY,
            body: body.into(),
            retry_after: None,
        };
        assert_eq!(failure("").cause(), "answered 502 Bad Gateway");
        let tries = Tries {
            attempts: 1,
            over: Duration::ZERO,
        };
        let text = failure("").into_error(Target::new(None), tries).to_string();
        assert_eq!(
            text,
            "https://discord.com/api/gateway/bot answered 502 Bad Gateway (after 1 attempt); \
             check this host's way to discord.com (DNS, firewall, an outbound proxy), or set `proxy`"
        );
        let text = failure(" {\"message\": \"nope\"}\n")
            .into_error(Target::new(None), tries)
            .to_string();
        assert!(
            text.contains("(after 1 attempt): {\"message\": \"nope\"}; check"),
            "{text}"
        );
    }

    #[test]
    fn user_agent_has_the_discord_form() {
        assert!(USER_AGENT.starts_with("DiscordBot (https://"));
        assert!(USER_AGENT.ends_with(')'));
    }
}
