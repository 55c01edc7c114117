//! `GET /login` and `GET /confirm`: the original's Discord login. `/login`
//! sends the user to Discord (or, given `api`, says where, for the
//! dashboard to go); Discord sends them back to `/confirm` with a code,
//! which becomes a session if the user is in `allowed_ids`. Unlike the
//! original, `/confirm` sends a session only to `web_api_origins`, and its
//! cookie is `HttpOnly`, `SameSite=Lax`, and `Secure` over HTTPS.

use hyper::header::HeaderValue;
use hyper::StatusCode;

use super::oauth::LoginError;
use super::store::SESSION_TTL;
use super::{redirect, text, Query, Resp, Shared};
use mewld_core::web::AfterLogin;

/// `GET /login[?api=<state>]`: off to Discord; with `api` (the dashboard's
/// `api@<dashboard>@<instance>`), the URL as text, for the dashboard to
/// open itself. A dashboard that could not be sent the session back is
/// refused here already.
pub(super) fn start(shared: &Shared, query: &Query) -> Resp {
    let api = query.get("api");
    if let Err(why) = AfterLogin::of_state(api, &shared.settings.api.origins) {
        return text(StatusCode::BAD_REQUEST, &why);
    }
    let url = shared.discord.authorize_url(api);
    if api.is_empty() {
        redirect(&url)
    } else {
        text(StatusCode::OK, &url)
    }
}

/// `GET /confirm?code=…&state=…`: Discord sent the user back.
pub(super) async fn confirm(shared: &Shared, query: &Query) -> Resp {
    let after = match AfterLogin::of_state(query.get("state"), &shared.settings.api.origins) {
        Ok(after) => after,
        Err(why) => {
            tracing::warn!("refused a web API login: {why}");
            return text(StatusCode::BAD_REQUEST, &why);
        }
    };
    let code = query.get("code");
    if code.is_empty() {
        let why = match query.get("error") {
            "" => "no login code: log in through /login".to_string(),
            error => format!("the login was not completed at Discord ({error})"),
        };
        return text(StatusCode::BAD_REQUEST, &why);
    }
    let Ok(_turn) = shared.logins.try_acquire() else {
        let why = "too many logins under way; try again in a moment";
        return text(StatusCode::SERVICE_UNAVAILABLE, why);
    };
    let user = match shared.discord.user_of(code).await {
        Ok(user) => user,
        Err(e) => {
            tracing::warn!("a web API login failed: {e}");
            let status = match e {
                LoginError::Refused(_) => StatusCode::BAD_REQUEST,
                LoginError::Unreachable(_) => StatusCode::BAD_GATEWAY,
            };
            return text(status, &e.to_string());
        }
    };
    if !shared.settings.api.allowed_ids.contains(&user) {
        tracing::warn!(user = %user, "refused a web API login: the Discord user is not in allowed_ids");
        return text(StatusCode::FORBIDDEN, "User not allowed");
    }
    let token = match shared.store.open_session(&user).await {
        Ok(token) => token,
        Err(e) => {
            tracing::warn!(error = %e, "the web API cannot keep a session in Redis");
            let why = format!("cannot keep the session: Redis: {e}");
            return text(StatusCode::SERVICE_UNAVAILABLE, &why);
        }
    };
    tracing::info!(user = %user, "a web API user logged in");
    let oauth = &shared.settings.api.oauth;
    let mut response = match after {
        AfterLogin::Home => redirect(&format!("{}/", oauth.redirect_url)),
        AfterLogin::Dashboard { origin, instance } => {
            let instance: String =
                url::form_urlencoded::byte_serialize(instance.as_bytes()).collect();
            redirect(&format!(
                "{origin}/ss?session={token}&instanceUrl={instance}"
            ))
        }
    };
    let secure = if oauth.https() { "; Secure" } else { "" };
    let cookie = format!(
        "session={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        SESSION_TTL.as_secs()
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response
            .headers_mut()
            .insert(hyper::header::SET_COOKIE, value);
    }
    response
}
