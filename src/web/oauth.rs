//! Discord's OAuth2 code flow, for the web API's login: the page users are
//! sent to, then the exchange of the code Discord sends them back with for
//! an access token, and the user that token belongs to. The exchange goes
//! through the config's `proxy`, as every Discord call does. The client
//! secret and the access token are sent, never shown: no message holds
//! them, Discord's answers are not logged (the original logged the token's),
//! and the token is dropped once the user is known.

use serde::Deserialize;

use crate::config::Token;
use crate::discord::{read_capped, short_cause, DISCORD_API, TIMEOUT, USER_AGENT};

/// Where users are sent to log in: a page of Discord's, never the proxy.
const AUTHORIZE: &str = "https://discord.com/api/oauth2/authorize";

/// Why a login could not be finished.
#[derive(Debug, thiserror::Error)]
pub(super) enum LoginError {
    /// Discord refused the code (used, expired, for another application).
    #[error("Discord did not accept the login ({0}); log in again")]
    Refused(String),
    /// Discord could not be asked, or answered what is not understood.
    #[error("cannot finish the login with Discord: {0}")]
    Unreachable(String),
}

/// The Discord application the users log in through.
pub(super) struct Discord {
    client: reqwest::Client,
    /// `<proxy or https://discord.com>/api`.
    api: String,
    client_id: String,
    secret: Token,
    /// `<redirect_url>/confirm`, as registered with the application.
    redirect_uri: String,
}

#[derive(Deserialize)]
struct Granted {
    access_token: String,
}

#[derive(Deserialize)]
struct User {
    id: String,
}

#[derive(Deserialize)]
struct Refusal {
    error: Option<String>,
}

impl Discord {
    pub(super) fn new(settings: &super::Settings) -> Result<Discord, String> {
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| short_cause(&e))?;
        let oauth = &settings.api.oauth;
        Ok(Discord {
            client,
            api: format!("{}/api", settings.proxy.as_deref().unwrap_or(DISCORD_API)),
            client_id: oauth.client_id.clone(),
            secret: oauth.client_secret.clone(),
            redirect_uri: format!("{}/confirm", oauth.redirect_url),
        })
    }

    /// The page that asks the user to log in, then sends them to
    /// `/confirm` with a code and `state`. Only `identify` is asked for:
    /// the user's id is all the API needs (the original also asked for
    /// `guilds` and `applications.commands.permissions.update`).
    pub(super) fn authorize_url(&self, state: &str) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("scope", "identify")
            .append_pair("state", state)
            .finish();
        format!("{AUTHORIZE}?{query}")
    }

    /// The Discord user id the login `code` belongs to.
    pub(super) async fn user_of(&self, code: &str) -> Result<String, LoginError> {
        let form = [
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.expose()),
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
        ];
        let token = self
            .client
            .post(format!("{}/oauth2/token", self.api))
            .form(&form);
        let granted: Granted = answer(token).await?;
        let me = self
            .client
            .get(format!("{}/users/@me", self.api))
            .bearer_auth(&granted.access_token);
        let user: User = answer(me).await?;
        Ok(user.id)
    }
}

/// Sends `request` and reads its answer as `T`. A 4xx is Discord saying
/// no (its `error` code is kept, nothing else of the body); anything else
/// that is not a success is Discord out of reach.
async fn answer<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
) -> Result<T, LoginError> {
    let unreachable = |e: &reqwest::Error| LoginError::Unreachable(short_cause(e));
    let resp = request.send().await.map_err(|e| unreachable(&e))?;
    let status = resp.status();
    let (body, complete) = read_capped(resp).await.map_err(|e| unreachable(&e))?;
    if status.is_client_error() {
        let code = serde_json::from_slice::<Refusal>(&body)
            .ok()
            .and_then(|r| r.error)
            .map(|e| format!("{status}: {}", mewld_core::protocol::truncate(&e, 64)));
        return Err(LoginError::Refused(
            code.unwrap_or_else(|| status.to_string()),
        ));
    }
    if !status.is_success() {
        return Err(LoginError::Unreachable(format!(
            "Discord answered {status}"
        )));
    }
    if !complete {
        return Err(LoginError::Unreachable(
            "Discord's answer is too large".into(),
        ));
    }
    // Not the parser's words: they could quote the answer.
    serde_json::from_slice(&body)
        .map_err(|_| LoginError::Unreachable("Discord's answer was not understood".into()))
}
