//! Get Gateway Bot (docs/protocol.md §3): how many shards Discord recommends and
//! how many session starts are left.

use std::time::Duration;

use crate::config::Token;
use mewld_core::cluster_map::MAX_SHARDS;
use mewld_core::model::GatewayBot;

pub const DISCORD_API: &str = "https://discord.com";
const USER_AGENT: &str = concat!(
    "DiscordBot (https://github.com/mewld/mewld, ",
    env!("CARGO_PKG_VERSION"),
    ")"
);
const ATTEMPTS: u32 = 5;
/// Largest answer read. Discord's is about 150 bytes; a proxy that answers
/// with a page or a stream must not fill the memory.
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    #[error("Discord rejected the bot token (401 Unauthorized): check `token` in the config or the MTOKEN variable")]
    InvalidToken,
    #[error("Discord answered {status} to GET {url}: {body}")]
    Status {
        status: u16,
        url: String,
        body: String,
    },
    #[error("could not reach {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Discord's answer from {url} was not understood: {problem}")]
    Decode { url: String, problem: String },
    #[error("Discord's answer from {url} is over {} KiB; is `proxy` pointing at Discord's API?", MAX_BODY / 1024)]
    TooLarge { url: String },
    #[error("Discord's answer from {url} recommends {shards} shards; mewld accepts 1 to {MAX_SHARDS} (is `proxy` pointing at Discord's API?)")]
    ImplausibleShards { url: String, shards: u32 },
}

/// Fetches `/api/gateway/bot` from `proxy` (or Discord itself), retrying
/// 429 and 5xx answers and network errors with backoff, honouring
/// `Retry-After`. A 401 fails at once.
pub async fn get_gateway_bot(
    proxy: Option<&str>,
    token: &Token,
) -> Result<GatewayBot, DiscordError> {
    let url = format!("{}/api/gateway/bot", proxy.unwrap_or(DISCORD_API));
    let client = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|source| DiscordError::Http {
            url: url.clone(),
            source,
        })?;
    let mut backoff = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        let result = client
            .get(&url)
            .header("Authorization", format!("Bot {}", token.expose()))
            .send()
            .await;
        let wait = match result {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    return decode(resp, url).await;
                }
                if status.as_u16() == 401 {
                    return Err(DiscordError::InvalidToken);
                }
                let retry_after = retry_after(resp.headers());
                // Only the start of an error body is shown anyway.
                let body = match read_capped(resp).await {
                    Ok((body, _)) => String::from_utf8_lossy(&body).into_owned(),
                    Err(_) => String::new(),
                };
                let retryable = status.as_u16() == 429 || status.is_server_error();
                if !retryable || attempt >= ATTEMPTS {
                    return Err(DiscordError::Status {
                        status: status.as_u16(),
                        url,
                        body: mewld_core::protocol::truncate(&body, 200),
                    });
                }
                tracing::warn!(
                    status = status.as_u16(),
                    attempt,
                    "Get Gateway Bot failed; retrying"
                );
                retry_after.unwrap_or(backoff)
            }
            Err(source) => {
                if attempt >= ATTEMPTS {
                    return Err(DiscordError::Http { url, source });
                }
                tracing::warn!(error = %source, attempt, "Get Gateway Bot failed; retrying");
                backoff
            }
        };
        tokio::time::sleep(wait.min(Duration::from_secs(60))).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
        attempt += 1;
    }
}

/// A successful answer's body as a [`GatewayBot`], within bounds.
async fn decode(resp: reqwest::Response, url: String) -> Result<GatewayBot, DiscordError> {
    let (body, complete) = match read_capped(resp).await {
        Ok(read) => read,
        Err(source) => return Err(DiscordError::Http { url, source }),
    };
    if !complete {
        return Err(DiscordError::TooLarge { url });
    }
    let gateway: GatewayBot = match serde_json::from_slice(&body) {
        Ok(g) => g,
        Err(e) => {
            let problem = e.to_string();
            return Err(DiscordError::Decode { url, problem });
        }
    };
    if !(1..=MAX_SHARDS).contains(&gateway.shards) {
        let shards = gateway.shards;
        return Err(DiscordError::ImplausibleShards { url, shards });
    }
    Ok(gateway)
}

/// The body, up to [`MAX_BODY`] bytes, and whether that was all of it.
async fn read_capped(mut resp: reqwest::Response) -> Result<(Vec<u8>, bool), reqwest::Error> {
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
    fn user_agent_has_the_discord_form() {
        assert!(USER_AGENT.starts_with("DiscordBot (https://"));
        assert!(USER_AGENT.ends_with(')'));
    }
}
